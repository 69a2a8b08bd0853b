//! `GET /search`: parameters -> tantivy query -> hits, total, category facets and highlighted
//! titles. Reads only the index (never the database).
//!
//! Text: the query is cut by the shop tokenizer ([`Mode::Query`]); every token must match
//! (in title, English title, brand, category or description, boosted in that order). When no
//! product has every token, products with any of them are returned (`matched: "any"`).
//! Filters (category, price range, in stock) do not score. Relevance is BM25 times a popularity
//! boost (`1 + 0.1 * ln(1 + units sold)`), so of two equally good matches the better seller
//! comes first; an empty `q` ranks by popularity alone.
//!
//! Facets count hits per category for the query and every filter except `category` (so a
//! shopper sees what the other categories hold); without a category filter they add up to
//! `total`.

use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;

use serde::{Deserialize, Serialize};
use tantivy::collector::{Collector, Count, SegmentCollector, TopDocs};
use tantivy::columnar::Column;
use tantivy::query::{
    AllQuery, BooleanQuery, BoostQuery, ConstScoreQuery, Occur, Query, RangeQuery, TermQuery,
};
use tantivy::schema::{Field, IndexRecordOption, Value};
use tantivy::{DocAddress, DocId, Order, Score, SegmentReader, TantivyDocument, Term};

use super::tokenizer::{Mode, tokens};
use super::{Fields, SearchIndex};
use crate::money::Money;

/// Longest `q` accepted, in characters.
pub const MAX_QUERY_CHARS: usize = 100;
/// Deepest page: `page * per_page` stays under this.
pub const MAX_RESULTS: u32 = 5_000;

/// Result order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sort {
    /// Best match first (popularity breaks near-ties); popularity alone without `q`.
    Relevance,
    /// Cheapest first.
    Price,
    /// Most units sold first.
    Popularity,
}

/// The query string of `GET /search`, as sent (checked by [`SearchRequest::parse`]).
#[derive(Debug, Default, Deserialize)]
pub struct SearchParams {
    pub q: Option<String>,
    pub category: Option<String>,
    pub min_price: Option<String>,
    pub max_price: Option<String>,
    pub in_stock: Option<String>,
    pub sort: Option<String>,
    pub page: Option<String>,
    pub per_page: Option<String>,
}

/// A checked search.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchRequest {
    pub q: String,
    pub category: Option<u32>,
    /// Cents, inclusive.
    pub min_price: Option<u64>,
    pub max_price: Option<u64>,
    pub in_stock: Option<bool>,
    pub sort: Sort,
    pub page: u32,
    pub per_page: u32,
}

impl SearchRequest {
    /// Checks every parameter; the error says which one and what it takes.
    pub fn parse(p: &SearchParams) -> Result<SearchRequest, String> {
        let q = p.q.as_deref().unwrap_or("").trim().to_string();
        if q.chars().count() > MAX_QUERY_CHARS {
            return Err(format!("q: at most {MAX_QUERY_CHARS} characters"));
        }
        let category = match p.category.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(c) => Some(
                c.parse::<u32>()
                    .map_err(|_| format!("category {c:?}: a category id"))?,
            ),
        };
        let price = |name: &str, v: &Option<String>| -> Result<Option<u64>, String> {
            match v.as_deref().map(str::trim) {
                None | Some("") => Ok(None),
                Some(s) => Money::parse(s)
                    .filter(|m| m.0 >= 0)
                    .map(|m| Some(m.0 as u64))
                    .ok_or_else(|| format!("{name} {s:?}: an amount like \"19.90\"")),
            }
        };
        let min_price = price("min_price", &p.min_price)?;
        let max_price = price("max_price", &p.max_price)?;
        if let (Some(lo), Some(hi)) = (min_price, max_price)
            && lo > hi
        {
            return Err("min_price is above max_price".into());
        }
        let in_stock = match p.in_stock.as_deref().map(str::trim) {
            None | Some("") => None,
            Some("true" | "1") => Some(true),
            Some("false" | "0") => Some(false),
            Some(s) => return Err(format!("in_stock {s:?}: true or false")),
        };
        let sort = match p.sort.as_deref().map(str::trim) {
            None | Some("" | "relevance") => Sort::Relevance,
            Some("price") => Sort::Price,
            Some("popularity") => Sort::Popularity,
            Some(s) => return Err(format!("sort {s:?}: relevance, price or popularity")),
        };
        let number = |name: &str, v: &Option<String>, default: u32, max: u32| match v
            .as_deref()
            .map(str::trim)
        {
            None | Some("") => Ok(default),
            Some(s) => s
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| format!("{name} {s:?}: 1 to {max}")),
        };
        let per_page = number("per_page", &p.per_page, 20, 50)?;
        let page = number("page", &p.page, 1, MAX_RESULTS / per_page)?;
        Ok(SearchRequest {
            q,
            category,
            min_price,
            max_price,
            in_stock,
            sort,
            page,
            per_page,
        })
    }
}

/// One product found.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Hit {
    pub id: u64,
    pub title: String,
    pub title_en: String,
    pub brand: String,
    pub category_id: u64,
    pub price: String,
    pub list_price: String,
    pub in_stock: bool,
    pub popularity: u64,
    pub is_flash_sale: bool,
    /// The ranking score (relevance order only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
    /// `title` HTML-escaped, matched terms in `<b>..</b>`.
    pub title_html: String,
    pub title_en_html: String,
}

/// Hits of one category.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FacetCount {
    pub category_id: u64,
    pub count: u64,
}

/// The answer of `GET /search`.
#[derive(Debug, Clone, Serialize)]
pub struct SearchResults {
    pub q: String,
    pub total: u64,
    /// `all`: every query token matched; `any`: no product had them all, these have some.
    pub matched: &'static str,
    pub page: u32,
    pub per_page: u32,
    pub sort: Sort,
    pub hits: Vec<Hit>,
    /// Per category, most hits first.
    pub facets: Vec<FacetCount>,
}

/// Field boosts of a text token.
fn text_fields(f: &Fields) -> [(Field, Score); 5] {
    [
        (f.title, 3.0),
        (f.title_en, 3.0),
        (f.brand, 2.0),
        (f.category, 1.5),
        (f.description, 0.5),
    ]
}

/// Every token, in `occur` (Must: all of them; Should: any), each in any text field.
fn text_query(f: &Fields, terms: &[String], occur: Occur) -> Box<dyn Query> {
    let per_token = terms
        .iter()
        .map(|t| {
            let alternatives = text_fields(f)
                .into_iter()
                .map(|(field, boost)| {
                    let term = TermQuery::new(
                        Term::from_field_text(field, t),
                        IndexRecordOption::WithFreqs,
                    );
                    (
                        Occur::Should,
                        Box::new(BoostQuery::new(Box::new(term), boost)) as Box<dyn Query>,
                    )
                })
                .collect();
            (
                occur,
                Box::new(BooleanQuery::new(alternatives)) as Box<dyn Query>,
            )
        })
        .collect();
    Box::new(BooleanQuery::new(per_token))
}

fn dup(q: &Option<Box<dyn Query>>) -> Option<Box<dyn Query>> {
    q.as_ref().map(|q| q.box_clone())
}

fn filter(q: Box<dyn Query>) -> (Occur, Box<dyn Query>) {
    (Occur::Must, Box::new(ConstScoreQuery::new(q, 0.0)))
}

fn term_filter(field: Field, v: u64) -> (Occur, Box<dyn Query>) {
    filter(Box::new(TermQuery::new(
        Term::from_field_u64(field, v),
        IndexRecordOption::Basic,
    )))
}

/// The text part and the filters; the category filter only if `with_category`.
fn full_query(
    f: &Fields,
    text: Option<Box<dyn Query>>,
    r: &SearchRequest,
    with_category: bool,
) -> BooleanQuery {
    let mut clauses = vec![(
        Occur::Must,
        text.unwrap_or_else(|| Box::new(AllQuery) as Box<dyn Query>),
    )];
    clauses.push(term_filter(f.active, 1));
    if with_category && let Some(c) = r.category {
        clauses.push(term_filter(f.category_id, u64::from(c)));
    }
    if r.min_price.is_some() || r.max_price.is_some() {
        let bound = |v: Option<u64>| match v {
            Some(v) => Bound::Included(Term::from_field_u64(f.price, v)),
            None => Bound::Unbounded,
        };
        clauses.push(filter(Box::new(RangeQuery::new(
            bound(r.min_price),
            bound(r.max_price),
        ))));
    }
    if let Some(s) = r.in_stock {
        clauses.push(term_filter(f.in_stock, u64::from(s)));
    }
    BooleanQuery::new(clauses)
}

/// Runs a search on the index's current reader.
pub fn search(index: &SearchIndex, r: &SearchRequest) -> tantivy::Result<SearchResults> {
    let f = index.fields();
    let searcher = index.reader().searcher();
    let terms: Vec<String> = {
        let mut seen = BTreeSet::new();
        tokens(&r.q, Mode::Query)
            .into_iter()
            .map(|t| t.text)
            .filter(|t| seen.insert(t.clone()))
            .collect()
    };
    let limit = r.per_page as usize;
    let offset = ((r.page - 1) * r.per_page) as usize;

    let mut matched = "all";
    let mut text = (!terms.is_empty()).then(|| text_query(f, &terms, Occur::Must));
    let mut query = full_query(f, dup(&text), r, true);
    let mut total = searcher.search(&query, &Count)? as u64;
    if total == 0 && terms.len() > 1 {
        matched = "any";
        text = Some(text_query(f, &terms, Occur::Should));
        query = full_query(f, dup(&text), r, true);
        total = searcher.search(&query, &Count)? as u64;
    }

    let top = TopDocs::with_limit(limit).and_offset(offset);
    let ranked: Vec<(Option<f32>, DocAddress)> = match r.sort {
        Sort::Relevance => searcher
            .search(&query, &top.tweak_score(PopularityBoost))?
            .into_iter()
            .map(|(s, a)| (Some(s), a))
            .collect(),
        Sort::Price => searcher
            .search(&query, &top.order_by_fast_field::<u64>("price", Order::Asc))?
            .into_iter()
            .map(|(_, a)| (None, a))
            .collect(),
        Sort::Popularity => searcher
            .search(
                &query,
                &top.order_by_fast_field::<u64>("popularity", Order::Desc),
            )?
            .into_iter()
            .map(|(_, a)| (None, a))
            .collect(),
    };

    let facet_counts = if r.category.is_some() {
        searcher.search(&full_query(f, text, r, false), &CategoryCounts)?
    } else {
        searcher.search(&query, &CategoryCounts)?
    };
    let mut facets: Vec<FacetCount> = facet_counts
        .into_iter()
        .map(|(category_id, count)| FacetCount { category_id, count })
        .collect();
    facets.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then(a.category_id.cmp(&b.category_id))
    });

    let mut hits = Vec::with_capacity(ranked.len());
    for (score, addr) in ranked {
        let doc: TantivyDocument = searcher.doc(addr)?;
        let text_of = |field: Field| {
            doc.get_first(field)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string()
        };
        let num = |field: Field| doc.get_first(field).and_then(|v| v.as_u64()).unwrap_or(0);
        let title = text_of(f.title);
        let title_en = text_of(f.title_en);
        hits.push(Hit {
            id: num(f.id),
            title_html: highlight(&title, &terms),
            title_en_html: highlight(&title_en, &terms),
            title,
            title_en,
            brand: text_of(f.brand),
            category_id: num(f.category_id),
            price: Money(num(f.price) as i64).to_string(),
            list_price: Money(num(f.list_price) as i64).to_string(),
            in_stock: num(f.in_stock) != 0,
            popularity: num(f.popularity),
            is_flash_sale: num(f.flash) != 0,
            score,
        });
    }
    Ok(SearchResults {
        q: r.q.clone(),
        total,
        matched,
        page: r.page,
        per_page: r.per_page,
        sort: r.sort,
        hits,
        facets,
    })
}

/// `text` HTML-escaped, with every span covered by a token of `terms` in `<b>..</b>`
/// (overlapping and touching spans merged: `蓝牙耳机` is one mark, not three).
pub fn highlight(text: &str, terms: &[String]) -> String {
    let mut spans: Vec<(usize, usize)> = tokens(text, Mode::Index)
        .into_iter()
        .filter(|t| terms.contains(&t.text))
        .map(|t| (t.offset_from, t.offset_to))
        .collect();
    spans.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(spans.len());
    for (from, to) in spans {
        match merged.last_mut() {
            Some(last) if from <= last.1 => last.1 = last.1.max(to),
            _ => merged.push((from, to)),
        }
    }
    let mut out = String::with_capacity(text.len() + merged.len() * 7);
    let mut at = 0;
    for (from, to) in merged {
        escape_into(&mut out, &text[at..from]);
        out.push_str("<b>");
        escape_into(&mut out, &text[from..to]);
        out.push_str("</b>");
        at = to;
    }
    escape_into(&mut out, &text[at..]);
    out
}

fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// Relevance times `1 + 0.1 * ln(1 + popularity)`.
struct PopularityBoost;

struct SegmentPopularity(Column<u64>);

impl tantivy::collector::ScoreTweaker<Score> for PopularityBoost {
    type Child = SegmentPopularity;

    fn segment_tweaker(&self, segment: &SegmentReader) -> tantivy::Result<SegmentPopularity> {
        Ok(SegmentPopularity(segment.fast_fields().u64("popularity")?))
    }
}

impl tantivy::collector::ScoreSegmentTweaker<Score> for SegmentPopularity {
    fn score(&mut self, doc: DocId, score: Score) -> Score {
        let popularity = self.0.first(doc).unwrap_or(0) as f32;
        score * (1.0 + 0.1 * popularity.ln_1p())
    }
}

/// Counts matching documents per `category_id`.
struct CategoryCounts;

struct SegmentCategoryCounts {
    column: Column<u64>,
    counts: HashMap<u64, u64>,
}

impl Collector for CategoryCounts {
    type Fruit = HashMap<u64, u64>;
    type Child = SegmentCategoryCounts;

    fn for_segment(&self, _: u32, segment: &SegmentReader) -> tantivy::Result<Self::Child> {
        Ok(SegmentCategoryCounts {
            column: segment.fast_fields().u64("category_id")?,
            counts: HashMap::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<HashMap<u64, u64>>) -> tantivy::Result<Self::Fruit> {
        let mut all = HashMap::new();
        for fruit in fruits {
            for (k, v) in fruit {
                *all.entry(k).or_default() += v;
            }
        }
        Ok(all)
    }
}

impl SegmentCollector for SegmentCategoryCounts {
    type Fruit = HashMap<u64, u64>;

    fn collect(&mut self, doc: DocId, _: Score) {
        if let Some(c) = self.column.first(doc) {
            *self.counts.entry(c).or_default() += 1;
        }
    }

    fn harvest(self) -> Self::Fruit {
        self.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::IndexPosition;
    use crate::search::tests::doc;

    fn params(pairs: &[(&str, &str)]) -> SearchParams {
        let mut p = SearchParams::default();
        for (k, v) in pairs {
            let v = Some(v.to_string());
            match *k {
                "q" => p.q = v,
                "category" => p.category = v,
                "min_price" => p.min_price = v,
                "max_price" => p.max_price = v,
                "in_stock" => p.in_stock = v,
                "sort" => p.sort = v,
                "page" => p.page = v,
                "per_page" => p.per_page = v,
                _ => panic!("{k}"),
            }
        }
        p
    }

    #[test]
    fn parameters_are_checked() {
        let r = SearchRequest::parse(&params(&[
            ("q", " 蓝牙 "),
            ("category", "3"),
            ("min_price", "10"),
            ("max_price", "99.90"),
            ("in_stock", "true"),
            ("sort", "price"),
            ("page", "2"),
        ]))
        .expect("valid");
        assert_eq!(r.q, "蓝牙");
        assert_eq!((r.min_price, r.max_price), (Some(1000), Some(9990)));
        assert_eq!((r.sort, r.page, r.per_page), (Sort::Price, 2, 20));
        for (bad, what) in [
            (("sort", "cheap"), "sort"),
            (("min_price", "abc"), "min_price"),
            (("max_price", "-1"), "max_price"),
            (("in_stock", "yes"), "in_stock"),
            (("page", "0"), "page"),
            (("page", "251"), "page"),
            (("per_page", "51"), "per_page"),
            (("category", "phones"), "category"),
        ] {
            let err = SearchRequest::parse(&params(&[bad])).expect_err(what);
            assert!(err.starts_with(what), "{err}");
        }
        let err = SearchRequest::parse(&params(&[("min_price", "9"), ("max_price", "1")]))
            .expect_err("min above max");
        assert!(err.contains("above"), "{err}");
        let long = "长".repeat(MAX_QUERY_CHARS + 1);
        assert!(SearchRequest::parse(&params(&[("q", &long)])).is_err());
    }

    #[test]
    fn highlights_merge_and_escape() {
        let t = |q: &str| -> Vec<String> {
            tokens(q, Mode::Query).into_iter().map(|t| t.text).collect()
        };
        assert_eq!(
            highlight("Anker 便携蓝牙耳机 3号", &t("蓝牙耳机")),
            "Anker 便携<b>蓝牙耳机</b> 3号"
        );
        assert_eq!(
            highlight("Li-Ning Running Shoes #7", &t("running shoes")),
            "Li-Ning <b>Running</b> <b>Shoes</b> #7"
        );
        assert_eq!(
            highlight("<A&B> 茶", &t("a 茶")),
            "&lt;<b>A</b>&amp;B&gt; <b>茶</b>"
        );
        assert_eq!(highlight("nothing here", &t("tea")), "nothing here");
    }

    #[test]
    fn filters_sorts_and_facets_on_a_small_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let index = SearchIndex::open(dir.path()).expect("open");
        let mut docs = Vec::new();
        for id in 1..=12u64 {
            let mut d = doc(id, 1, &format!("{}.00", id * 10));
            d.category_id = 1 + (id % 3) as u32;
            d.in_stock = id % 4 != 0;
            if id % 2 == 0 {
                d.title = format!("小米 龙井茶 {id}号");
                d.title_en = format!("Xiaomi Longjing Tea #{id}");
            }
            docs.push(d);
        }
        docs[11].active = false; // id 12: hidden
        index
            .replace_all(docs.into_iter().map(Ok), &IndexPosition::default())
            .expect("build");
        let run = |pairs: &[(&str, &str)]| {
            search(
                &index,
                &SearchRequest::parse(&params(pairs)).expect("params"),
            )
            .expect("search")
        };

        let all = run(&[]);
        assert_eq!(all.total, 11, "hidden products are never found");
        assert_eq!(all.facets.iter().map(|f| f.count).sum::<u64>(), 11);
        // Popularity is the id here: without q, the best seller first.
        assert_eq!(all.hits[0].id, 11);

        let tea = run(&[("q", "龙井茶")]);
        assert_eq!(tea.total, 5);
        assert!(
            tea.hits
                .iter()
                .all(|h| h.title_html.contains("<b>龙井茶</b>"))
        );
        let tea_en = run(&[("q", "longjing TEA")]);
        assert_eq!(tea_en.total, 5);
        assert!(
            tea_en.hits[0]
                .title_en_html
                .contains("<b>Longjing</b> <b>Tea</b>")
        );

        let cat = run(&[("q", "龙井茶"), ("category", "1")]);
        assert!(cat.hits.iter().all(|h| h.category_id == 1));
        // Facets ignore the category filter: the other categories' counts are there too.
        assert_eq!(cat.facets.iter().map(|f| f.count).sum::<u64>(), 5);
        let one = cat
            .facets
            .iter()
            .find(|f| f.category_id == 1)
            .expect("facet 1");
        assert_eq!(one.count, cat.total);

        let cheap = run(&[
            ("min_price", "20"),
            ("max_price", "50.00"),
            ("sort", "price"),
        ]);
        let prices: Vec<&str> = cheap.hits.iter().map(|h| h.price.as_str()).collect();
        assert_eq!(prices, ["20.00", "30.00", "40.00", "50.00"]);
        let stocked = run(&[("in_stock", "false")]);
        assert_eq!(stocked.total, 2, "ids 4 and 8 (12 is hidden)");
        let popular = run(&[("sort", "popularity"), ("per_page", "3"), ("page", "2")]);
        let ids: Vec<u64> = popular.hits.iter().map(|h| h.id).collect();
        assert_eq!(ids, [8, 7, 6]);

        // Not every word matches anywhere: any of them.
        let some = run(&[("q", "龙井茶 nosuchword")]);
        assert_eq!((some.matched, some.total), ("any", 5));
        assert_eq!(run(&[("q", "nosuchword")]).total, 0);
    }
}
