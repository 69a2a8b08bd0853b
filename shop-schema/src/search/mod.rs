//! Product search on a tantivy index, kept in sync with the catalogue through the outbox.
//!
//! Start here: [`SearchIndex`] is one on-disk index (its directory, writer, reader and the stream
//! position it has applied). Around it:
//! - [`tokenizer`]: CJK bigrams + lowercase Latin words, for product text in both scripts;
//! - [`query`]: `GET /search` parameters -> tantivy query, hits, total, category facets,
//!   highlighted titles. It reads only the index: the search path never issues SQL;
//! - [`source`]: the catalogue as documents, read from the database ([`ProductDoc`]), used by
//!   the rebuild and by the service when it writes a catalogue event;
//! - [`rebuild`]: `peakgate-shop reindex`, the full rebuild from the database;
//! - [`sync`]: the index consumer, a durable JetStream consumer of the catalogue events
//!   (`product.updated`), idempotent by product version, resumable from its stream position.
//!
//! Each document carries its product's `version` (`products.version`, bumped by every change
//! that writes a catalogue event). A document is replaced only by a higher version, so
//! redelivered, republished or reordered events change nothing, and events older than a rebuild
//! are ignored.
//!
//! The stream position the index has applied is stored in the index's own commit (tantivy's
//! commit payload), in the same commit as the documents: the index directory alone says where
//! its consumer must resume. Several shop instances each hold a replica: each has its own
//! directory and its own durable consumer, and all read the same stream.

pub mod query;
pub mod rebuild;
pub mod source;
pub mod sync;
pub mod tokenizer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tantivy::collector::TopDocs;
use tantivy::directory::MmapDirectory;
use tantivy::directory::error::LockError;
use tantivy::query::TermQuery;
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, TantivyError, Term};

use crate::money::Money;
use tokenizer::{ShopTokenizer, TOKENIZER_NAME};

/// Memory the writer may use before it flushes a segment (tantivy's minimum is 15 MB per
/// thread).
const WRITER_MEMORY: usize = 50_000_000;

/// A product as the index holds it, and the payload of a `product.updated` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductDoc {
    pub id: u64,
    /// `products.version`: a document replaces only a lower version.
    pub version: u64,
    pub category_id: u32,
    /// The category's name (Chinese and English), searchable.
    pub category: String,
    pub title: String,
    pub title_en: String,
    pub brand: String,
    pub description: String,
    /// Decimal text, as the database has it.
    pub price: String,
    pub list_price: String,
    pub is_flash_sale: bool,
    /// `status = 'active'`; other products stay in the index (with their version) but are
    /// never found.
    pub active: bool,
    pub in_stock: bool,
    /// Units sold (`sku_stock.sold`) when the document was made: the ranking signal.
    pub popularity: u64,
}

/// The event type of catalogue events (`catalog_outbox`), published to
/// `<subject prefix>.product.updated`.
pub const PRODUCT_UPDATED: &str = "product.updated";

/// The payload of a `product.updated` event: the product's whole document after the change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductEvent {
    pub product: ProductDoc,
    /// What changed (`price`, `stock`): for people reading the stream; the index takes the
    /// whole document either way.
    pub reason: String,
    /// When the change was made (the writing service's clock, Unix milliseconds): the start of
    /// the index lag.
    pub changed_at_ms: u64,
}

/// The fields of the index.
#[derive(Debug, Clone, Copy)]
pub struct Fields {
    pub id: Field,
    pub title: Field,
    pub title_en: Field,
    pub brand: Field,
    pub category: Field,
    pub description: Field,
    pub category_id: Field,
    pub price: Field,
    pub list_price: Field,
    pub in_stock: Field,
    pub popularity: Field,
    pub active: Field,
    pub flash: Field,
    pub version: Field,
}

/// The index's schema. Text fields use the shop tokenizer with term frequencies (no positions:
/// queries are term conjunctions); numbers are fast fields for filters, sorting and facets.
pub fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let indexing = TextFieldIndexing::default()
        .set_tokenizer(TOKENIZER_NAME)
        .set_index_option(IndexRecordOption::WithFreqs);
    let stored_text = TextOptions::default()
        .set_indexing_options(indexing.clone())
        .set_stored();
    let text = TextOptions::default().set_indexing_options(indexing);
    let fields = Fields {
        id: b.add_u64_field("id", INDEXED | STORED | FAST),
        title: b.add_text_field("title", stored_text.clone()),
        title_en: b.add_text_field("title_en", stored_text.clone()),
        brand: b.add_text_field("brand", stored_text),
        category: b.add_text_field("category", text.clone()),
        description: b.add_text_field("description", text),
        category_id: b.add_u64_field("category_id", INDEXED | STORED | FAST),
        price: b.add_u64_field("price", INDEXED | STORED | FAST),
        list_price: b.add_u64_field("list_price", STORED),
        in_stock: b.add_u64_field("in_stock", INDEXED | STORED | FAST),
        popularity: b.add_u64_field("popularity", STORED | FAST),
        active: b.add_u64_field("active", INDEXED | FAST),
        flash: b.add_u64_field("is_flash_sale", STORED),
        version: b.add_u64_field("version", STORED | FAST),
    };
    (b.build(), fields)
}

/// Where in the stream the index is: stored in each commit's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct IndexPosition {
    /// The JetStream stream.
    pub stream: String,
    /// When that stream was created (Unix nanoseconds, as text): a stream deleted and created
    /// again under the same name has other sequence numbers.
    pub stream_created: String,
    /// Every event up to this stream sequence is in the index.
    pub stream_seq: u64,
}

/// One on-disk index: directory, writer (this process holds its lock), reader.
pub struct SearchIndex {
    index: Index,
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    fields: Fields,
    path: PathBuf,
}

impl SearchIndex {
    /// Opens the index at `path`, creating the directory and an empty index if missing. Takes
    /// the writer lock: one process per directory (each shop instance has its own).
    pub fn open(path: &Path) -> anyhow::Result<SearchIndex> {
        std::fs::create_dir_all(path)
            .with_context(|| format!("create the index directory {}", path.display()))?;
        let (schema, fields) = schema();
        let dir = MmapDirectory::open(path)
            .with_context(|| format!("open the index directory {}", path.display()))?;
        let index = Index::builder()
            .schema(schema)
            .open_or_create(dir)
            .map_err(|e| match e {
                TantivyError::SchemaError(_) => anyhow::anyhow!(
                    "the index at {} was built with another schema: rebuild it into an empty \
                     directory (peakgate-shop reindex --index NEW_DIR)",
                    path.display()
                ),
                e => anyhow::Error::new(e).context(format!("open the index at {}", path.display())),
            })?;
        index.tokenizers().register(TOKENIZER_NAME, ShopTokenizer);
        let writer = index
            .writer_with_num_threads(1, WRITER_MEMORY)
            .map_err(|e| match e {
                TantivyError::LockFailure(LockError::LockBusy, _) => anyhow::anyhow!(
                    "the index at {} is in use by another process (a running `serve` holds it \
                     for its index consumer): stop it first, or use another directory",
                    path.display()
                ),
                e => anyhow::Error::new(e).context("open the index writer"),
            })?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .context("open the index reader")?;
        Ok(SearchIndex {
            index,
            reader,
            writer: Mutex::new(writer),
            fields,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fields(&self) -> &Fields {
        &self.fields
    }

    pub fn reader(&self) -> &IndexReader {
        &self.reader
    }

    /// Documents searchable now (active or not).
    pub fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// The stream position of the last commit; `None` for an index never committed.
    pub fn position(&self) -> anyhow::Result<Option<IndexPosition>> {
        let meta = self
            .index
            .load_metas()
            .context("read the index's meta.json")?;
        meta.payload
            .map(|p| serde_json::from_str(&p).context("the index's commit payload"))
            .transpose()
    }

    /// The version of product `id` in the index now.
    pub fn version_of(&self, id: u64) -> anyhow::Result<Option<u64>> {
        version_in(&self.reader.searcher(), &self.fields, id)
    }

    /// Adds or replaces the documents whose version is higher than the index's, commits them
    /// with `position` and makes them searchable. Returns, per document, whether it was
    /// applied (`false`: the index had that version or a newer one). Blocking (disk I/O): call
    /// from a blocking task.
    pub fn apply(
        &self,
        docs: &[ProductDoc],
        position: &IndexPosition,
    ) -> anyhow::Result<Vec<bool>> {
        let searcher = self.reader.searcher();
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut pending: HashMap<u64, u64> = HashMap::new();
        let mut applied = Vec::with_capacity(docs.len());
        for doc in docs {
            let current = match pending.get(&doc.id) {
                Some(v) => Some(*v),
                None => version_in(&searcher, &self.fields, doc.id)?,
            };
            if current.is_some_and(|v| v >= doc.version) {
                applied.push(false);
                continue;
            }
            writer.delete_term(Term::from_field_u64(self.fields.id, doc.id));
            writer.add_document(self.document(doc))?;
            pending.insert(doc.id, doc.version);
            applied.push(true);
        }
        self.commit(&mut writer, position)?;
        Ok(applied)
    }

    /// Replaces the whole index with `docs` (a rebuild) and commits with `position`. The first
    /// error in `docs` rolls everything back: the index stays as it was. Blocking.
    pub fn replace_all(
        &self,
        docs: impl IntoIterator<Item = anyhow::Result<ProductDoc>>,
        position: &IndexPosition,
    ) -> anyhow::Result<u64> {
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        writer.delete_all_documents()?;
        let mut n = 0;
        for doc in docs {
            let added = doc.and_then(|d| Ok(writer.add_document(self.document(&d))?));
            if let Err(e) = added {
                writer.rollback().context("roll the rebuild back")?;
                return Err(e);
            }
            n += 1;
        }
        self.commit(&mut writer, position)?;
        Ok(n)
    }

    fn commit(&self, writer: &mut IndexWriter, position: &IndexPosition) -> anyhow::Result<()> {
        let mut prepared = writer
            .prepare_commit()
            .context("prepare the index commit")?;
        prepared.set_payload(&serde_json::to_string(position)?);
        prepared.commit().context("commit the index")?;
        self.reader.reload().context("reload the index reader")?;
        Ok(())
    }

    fn document(&self, p: &ProductDoc) -> TantivyDocument {
        let f = &self.fields;
        let cents = |s: &str| Money::parse(s).map_or(0, |m| m.0.max(0) as u64);
        let mut d = TantivyDocument::default();
        d.add_u64(f.id, p.id);
        d.add_text(f.title, &p.title);
        d.add_text(f.title_en, &p.title_en);
        d.add_text(f.brand, &p.brand);
        d.add_text(f.category, &p.category);
        d.add_text(f.description, &p.description);
        d.add_u64(f.category_id, u64::from(p.category_id));
        d.add_u64(f.price, cents(&p.price));
        d.add_u64(f.list_price, cents(&p.list_price));
        d.add_u64(f.in_stock, u64::from(p.in_stock));
        d.add_u64(f.popularity, p.popularity);
        d.add_u64(f.active, u64::from(p.active));
        d.add_u64(f.flash, u64::from(p.is_flash_sale));
        d.add_u64(f.version, p.version);
        d
    }
}

/// The version of the live document of product `id` seen by `searcher`.
fn version_in(
    searcher: &tantivy::Searcher,
    fields: &Fields,
    id: u64,
) -> anyhow::Result<Option<u64>> {
    let term = TermQuery::new(
        Term::from_field_u64(fields.id, id),
        IndexRecordOption::Basic,
    );
    let top = searcher.search(&term, &TopDocs::with_limit(1))?;
    let Some((_, addr)) = top.first() else {
        return Ok(None);
    };
    let versions = searcher
        .segment_reader(addr.segment_ord)
        .fast_fields()
        .u64("version")?;
    Ok(versions.first(addr.doc_id))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn doc(id: u64, version: u64, price: &str) -> ProductDoc {
        ProductDoc {
            id,
            version,
            category_id: 3,
            category: "耳机音响 Audio".into(),
            title: format!("Anker 便携蓝牙耳机 {id}号"),
            title_en: format!("Anker Portable Bluetooth Earbuds #{id}"),
            brand: "Anker".into(),
            description: "正品保障 genuine".into(),
            price: price.into(),
            list_price: price.into(),
            is_flash_sale: false,
            active: true,
            in_stock: true,
            popularity: id,
        }
    }

    #[test]
    fn versions_decide_and_the_position_is_committed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let index = SearchIndex::open(dir.path()).expect("open");
        assert_eq!(index.position().expect("position"), None);
        let pos = |seq| IndexPosition {
            stream: "S".into(),
            stream_created: "t".into(),
            stream_seq: seq,
        };
        let a = index
            .apply(&[doc(1, 2, "10.00"), doc(2, 1, "20.00")], &pos(5))
            .expect("apply");
        assert_eq!(a, [true, true]);
        // An older and an equal version change nothing; a newer one replaces the document.
        let a = index
            .apply(
                &[doc(1, 1, "1.00"), doc(1, 2, "2.00"), doc(2, 3, "30.00")],
                &pos(8),
            )
            .expect("apply");
        assert_eq!(a, [false, false, true]);
        assert_eq!(index.num_docs(), 2);
        assert_eq!(index.version_of(1).expect("v"), Some(2));
        assert_eq!(index.version_of(2).expect("v"), Some(3));
        // Two versions of one product in one batch: the last one wins, once.
        let a = index
            .apply(&[doc(2, 4, "40.00"), doc(2, 5, "50.00")], &pos(9))
            .expect("apply");
        assert_eq!(a, [true, true]);
        assert_eq!(index.num_docs(), 2);
        assert_eq!(index.position().expect("position"), Some(pos(9)));

        // Reopened from disk: documents and position are there; the lock was released.
        drop(index);
        let index = SearchIndex::open(dir.path()).expect("reopen");
        assert_eq!(index.num_docs(), 2);
        assert_eq!(index.version_of(2).expect("v"), Some(5));
        assert_eq!(index.position().expect("position"), Some(pos(9)));
        // A second writer on the same directory is refused with a clear message.
        let err = SearchIndex::open(dir.path()).err().expect("locked");
        assert!(
            format!("{err:#}").contains("in use by another process"),
            "{err:#}"
        );
    }
}
