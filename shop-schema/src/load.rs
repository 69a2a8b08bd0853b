//! `peakgate-shop load --scenario peak`: a peak workload against the shop service and the
//! flash-sale oversell check. `--scenario search` runs searches only, and with the proxy's
//! metrics URL checks that they issued no SQL.
//!
//! Each of `concurrency` virtual users logs in as a seeded member, then loops until the end:
//! browse-heavy (listing pages, product detail with zipf-like popularity), some orders (with an
//! Idempotency-Key, one in ten retried with the same key: it must return the same order), order
//! history, payments and stock peeks. From a third of the run on, the flash sale of one SKU
//! opens and a third of all actions try to buy it.
//!
//! The summary: requests/s, p50/p99 per endpoint, errors by kind, and the oversell check on the
//! flash SKU: `sold == initial - remaining`, `remaining >= 0`, the order lines written for it
//! equal what was sold, and equal the successful buys the users saw.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::seed::{BRANDS, NOUNS, SEED_PASSWORD, member_email, normal_product_id};

/// The traffic mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Catalogue listing, search, product detail and order history; no orders, no flash sale.
    Browse,
    /// `GET /search` only, no login: the database must see no statement.
    Search,
    /// Mostly orders and payments, with some browsing; no flash sale.
    Checkout,
    /// The flash sale from the first second (most users buying the flash SKU).
    FlashSale,
    /// Browsing, ordering and paying, with the flash sale opening at `flash_at_s` (`peak` is
    /// the same).
    Mixed,
}

impl Scenario {
    pub fn parse(s: &str) -> Option<Scenario> {
        match s {
            "browse" => Some(Scenario::Browse),
            "search" => Some(Scenario::Search),
            "checkout" => Some(Scenario::Checkout),
            "flash-sale" => Some(Scenario::FlashSale),
            "mixed" | "peak" => Some(Scenario::Mixed),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Browse => "browse",
            Scenario::Search => "search",
            Scenario::Checkout => "checkout",
            Scenario::FlashSale => "flash-sale",
            Scenario::Mixed => "mixed",
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    pub scenario: Scenario,
    /// Second of the run when the flash sale opens (mixed); `None`: a third of the way in.
    pub flash_at_s: Option<u64>,
    pub base: String,
    pub seconds: u64,
    pub concurrency: usize,
    pub members: u64,
    pub products: u64,
    pub flash_sku: u64,
    pub flash_stock: i64,
    pub progress: bool,
    /// The proxy's admin `/metrics` URL: its statement counters are read before and after.
    pub proxy_metrics: Option<String>,
}

/// One endpoint's figures.
#[derive(Debug, Clone, Default)]
pub struct EndpointReport {
    pub requests: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// The flash sale's bookkeeping, read before and after.
#[derive(Debug, Clone, Default)]
pub struct FlashCheck {
    pub sku: u64,
    pub initial: i64,
    pub remaining: i64,
    /// `sku_stock.sold` after the run.
    pub sold_column: i64,
    /// Units in order lines of the SKU written during the run.
    pub order_units: i64,
    /// 201 answers the users saw.
    pub successes: u64,
    pub sold_out_answers: u64,
    /// Buys that got neither a 201 nor a sold-out (their outcome is unknown to the user).
    pub unknown: u64,
}

/// The run's summary.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub scenario: &'static str,
    pub seconds: f64,
    pub requests: u64,
    pub endpoints: BTreeMap<&'static str, EndpointReport>,
    pub errors: BTreeMap<String, u64>,
    pub idempotency_violations: u64,
    pub flash: FlashCheck,
    /// Statements the proxy counted during the run (`peakgate_statements_total`, every kind),
    /// when its metrics URL was given.
    pub proxy_statements: Option<u64>,
}

impl Report {
    /// Nothing oversold and every counter agrees.
    pub fn oversell_ok(&self) -> bool {
        let f = &self.flash;
        let sold = f.initial - f.remaining;
        f.remaining >= 0
            && f.sold_column == sold
            && f.order_units == sold
            && (f.unknown > 0 || f.successes as i64 == sold)
            && self.idempotency_violations == 0
    }

    /// A search-only run issued no statement through the proxy (true for other scenarios, and
    /// when the proxy was not asked).
    pub fn no_sql_ok(&self) -> bool {
        self.scenario != Scenario::Search.name() || self.proxy_statements.is_none_or(|n| n == 0)
    }

    /// The printed summary.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "\n== {} scenario: {:.1} s, {} requests, {:.0} requests/s",
            self.scenario,
            self.seconds,
            self.requests,
            self.requests as f64 / self.seconds.max(0.001)
        );
        let _ = writeln!(
            s,
            "{:<16} {:>9} {:>9} {:>8} {:>9} {:>9}",
            "endpoint", "requests", "req/s", "errors", "p50 ms", "p99 ms"
        );
        for (name, e) in &self.endpoints {
            let _ = writeln!(
                s,
                "{:<16} {:>9} {:>9.1} {:>8} {:>9.2} {:>9.2}",
                name,
                e.requests,
                e.requests as f64 / self.seconds.max(0.001),
                e.errors,
                e.p50_ms,
                e.p99_ms
            );
        }
        if self.errors.is_empty() {
            let _ = writeln!(s, "errors: none");
        } else {
            let _ = writeln!(s, "errors by kind:");
            for (k, n) in &self.errors {
                let _ = writeln!(s, "  {k}: {n}");
            }
        }
        if let Some(n) = self.proxy_statements {
            let verdict = if self.scenario != Scenario::Search.name() {
                ""
            } else if n == 0 {
                ": OK, search issued no SQL"
            } else {
                ": FAILED, a search-only run must issue none (is anything else using the proxy?)"
            };
            let _ = writeln!(
                s,
                "statements through the proxy during the run: {n}{verdict}"
            );
        }
        if self.scenario == Scenario::Search.name() {
            return s;
        }
        let f = &self.flash;
        let sold = f.initial - f.remaining;
        let _ = writeln!(
            s,
            "flash sale SKU {}: stock {} -> {} (sold {sold}); sold column {}; order units written {}; \
             successful buys seen {}; sold-out answers {}; unknown outcomes {}",
            f.sku,
            f.initial,
            f.remaining,
            f.sold_column,
            f.order_units,
            f.successes,
            f.sold_out_answers,
            f.unknown
        );
        let _ = writeln!(
            s,
            "idempotent retries that got a different order: {}",
            self.idempotency_violations
        );
        let _ = writeln!(
            s,
            "oversell check: {}",
            if self.oversell_ok() {
                "OK (never negative, sold == initial - remaining == order units == successful buys)"
            } else {
                "FAILED"
            }
        );
        s
    }
}

/// What one virtual user recorded.
#[derive(Default)]
struct Tally {
    latencies: BTreeMap<&'static str, Vec<u32>>,
    errors: BTreeMap<&'static str, u64>,
    error_kinds: BTreeMap<String, u64>,
    flash_ok: u64,
    flash_sold_out: u64,
    flash_unknown: u64,
    idempotency_violations: u64,
}

struct Shared {
    requests: AtomicU64,
    errors: AtomicU64,
    flash_ok: AtomicU64,
}

struct User {
    http: reqwest::Client,
    plan: Arc<LoadPlan>,
    token: String,
    rng: StdRng,
    tally: Tally,
    shared: Arc<Shared>,
    pending_orders: Vec<u64>,
}

/// Answer of one request: status (0 = transport failure) and JSON body.
struct Answer {
    status: u16,
    body: Value,
}

impl User {
    async fn call(
        &mut self,
        name: &'static str,
        req: reqwest::RequestBuilder,
        ok: &[u16],
    ) -> Answer {
        let start = Instant::now();
        let res = req.send().await;
        let (status, body) = match res {
            Ok(r) => {
                let st = r.status().as_u16();
                (st, r.json::<Value>().await.unwrap_or(Value::Null))
            }
            Err(e) => {
                let kind = if e.is_timeout() {
                    "timeout"
                } else {
                    "transport"
                };
                *self
                    .tally
                    .error_kinds
                    .entry(format!("{name}: {kind}"))
                    .or_default() += 1;
                (0, Value::Null)
            }
        };
        let micros = start.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
        self.tally.latencies.entry(name).or_default().push(micros);
        self.shared.requests.fetch_add(1, Relaxed);
        if !ok.contains(&status) {
            *self.tally.errors.entry(name).or_default() += 1;
            self.shared.errors.fetch_add(1, Relaxed);
            if status != 0 {
                let kind = body["error"].as_str().unwrap_or("?").to_string();
                *self
                    .tally
                    .error_kinds
                    .entry(format!("{name}: {status} {kind}"))
                    .or_default() += 1;
            }
        }
        Answer { status, body }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.plan.base)
    }

    /// A product id, popular ones far more often (log-uniform rank: zipf-like with s = 1).
    fn popular_product(&mut self) -> u64 {
        let n = self.plan.products.max(1) as f64;
        let u: f64 = self.rng.random();
        let rank = ((n + 1.0).ln() * u).exp().floor().clamp(1.0, n) as u64;
        normal_product_id(rank)
    }

    async fn browse_list(&mut self) {
        let cat = self.rng.random_range(1..=12);
        let page = if self.rng.random_bool(0.8) {
            1
        } else {
            self.rng.random_range(2..=5)
        };
        let url = self.url(&format!("/products?category={cat}&page={page}"));
        let req = self.http.get(url).bearer_auth(&self.token);
        self.call("list", req, &[200]).await;
    }

    /// A search as a shopper types it: a brand, a product word (Chinese or English) or both,
    /// sometimes a category, a price range, in-stock only, another order or a later page.
    async fn search(&mut self) {
        let (brand, brand_en) = BRANDS[self.rng.random_range(0..BRANDS.len())];
        let (noun, noun_en) = NOUNS[self.rng.random_range(0..NOUNS.len())];
        let q = match self.rng.random_range(0..6) {
            0 => brand.to_string(),
            1 => noun.to_string(),
            2 => noun_en.to_lowercase(),
            3 => format!("{brand} {noun}"),
            4 => format!("{brand_en} {noun_en}"),
            _ => noun.chars().take(1).collect(),
        };
        let mut params = vec![("q", q)];
        if self.rng.random_bool(0.3) {
            params.push(("category", self.rng.random_range(1..=12).to_string()));
        }
        if self.rng.random_bool(0.2) {
            let lo = self.rng.random_range(10..=2000);
            params.push(("min_price", lo.to_string()));
            params.push(("max_price", (lo * 3).to_string()));
        }
        if self.rng.random_bool(0.2) {
            params.push(("in_stock", "true".into()));
        }
        let sort = ["relevance", "relevance", "relevance", "price", "popularity"];
        params.push(("sort", sort[self.rng.random_range(0..sort.len())].into()));
        if self.rng.random_bool(0.15) {
            params.push(("page", self.rng.random_range(2..=4).to_string()));
        }
        let Ok(url) = reqwest::Url::parse_with_params(&self.url("/search"), &params) else {
            return;
        };
        let req = self.http.get(url);
        self.call("search", req, &[200]).await;
    }

    async fn detail(&mut self) {
        let id = self.popular_product();
        let req = self
            .http
            .get(self.url(&format!("/products/{id}")))
            .bearer_auth(&self.token);
        self.call("detail", req, &[200]).await;
    }

    async fn order(&mut self) {
        let lines = self.rng.random_range(1..=3);
        let mut skus: Vec<u64> = (0..lines).map(|_| self.popular_product()).collect();
        skus.sort_unstable();
        skus.dedup();
        let items: Vec<Value> = skus
            .iter()
            .map(|s| json!({ "sku_id": s, "quantity": 1 }))
            .collect();
        let key = format!("load-{:016x}", self.rng.random::<u64>());
        let body = json!({ "items": items });
        let req = self
            .http
            .post(self.url("/orders"))
            .bearer_auth(&self.token)
            .header("idempotency-key", &key)
            .json(&body);
        let a = self.call("order", req, &[201, 409]).await;
        let Some(id) = a.body["order_id"].as_u64().filter(|_| a.status == 201) else {
            return;
        };
        self.pending_orders.push(id);
        if self.rng.random_bool(0.1) {
            let req = self
                .http
                .post(self.url("/orders"))
                .bearer_auth(&self.token)
                .header("idempotency-key", &key)
                .json(&body);
            let again = self.call("order_retry", req, &[201]).await;
            if again.status == 201 && again.body["order_id"].as_u64() != Some(id) {
                self.tally.idempotency_violations += 1;
            }
        }
    }

    async fn history(&mut self) {
        let req = self.http.get(self.url("/orders")).bearer_auth(&self.token);
        self.call("history", req, &[200]).await;
    }

    async fn pay(&mut self) {
        let Some(id) = self.pending_orders.pop() else {
            return self.history().await;
        };
        let req = self
            .http
            .post(self.url(&format!("/orders/{id}/pay")))
            .bearer_auth(&self.token)
            .json(&json!({ "method": "alipay" }));
        self.call("pay", req, &[200]).await;
    }

    async fn stock(&mut self) {
        let sku = self.plan.flash_sku;
        let req = self.http.get(self.url(&format!("/skus/{sku}/stock")));
        self.call("stock", req, &[200]).await;
    }

    async fn flash_buy(&mut self) {
        let sku = self.plan.flash_sku;
        let key = format!("flash-{:016x}", self.rng.random::<u64>());
        let req = self
            .http
            .post(self.url(&format!("/flash/{sku}/buy")))
            .bearer_auth(&self.token)
            .header("idempotency-key", key);
        let a = self.call("flash_buy", req, &[201, 409]).await;
        match a.status {
            201 => {
                self.tally.flash_ok += 1;
                self.shared.flash_ok.fetch_add(1, Relaxed);
            }
            409 if a.body["error"] == "sold_out" => self.tally.flash_sold_out += 1,
            _ => self.tally.flash_unknown += 1,
        }
    }
}

async fn get_json(http: &reqwest::Client, url: String) -> anyhow::Result<Value> {
    let r = http.get(&url).send().await.with_context(|| url.clone())?;
    anyhow::ensure!(r.status().is_success(), "{url}: {}", r.status());
    Ok(r.json().await?)
}

/// Runs the plan and returns the summary.
pub async fn run(plan: &LoadPlan) -> anyhow::Result<Report> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(plan.concurrency)
        .timeout(Duration::from_secs(10))
        .build()?;
    let base = &plan.base;
    let sku = plan.flash_sku;

    // Search-only: no restock, no login, no stock check: nothing that writes or reads SQL.
    let search_only = plan.scenario == Scenario::Search;
    // The flash SKU gets its stock; what was sold of it before is counted out.
    let mut units_before = 0;
    if !search_only {
        let r = http
            .put(format!("{base}/admin/skus/{sku}/stock"))
            .json(&json!({ "stock": plan.flash_stock }))
            .send()
            .await
            .context("is the shop service running?")?;
        anyhow::ensure!(r.status().is_success(), "restock: {}", r.status());
        let before = get_json(&http, format!("{base}/admin/skus/{sku}/sales")).await?;
        units_before = before["units"].as_i64().unwrap_or(0);
    }

    // Log in every user first: the run measures shopping, not logging in.
    let mut users = Vec::with_capacity(plan.concurrency);
    let shared = Arc::new(Shared {
        requests: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        flash_ok: AtomicU64::new(0),
    });
    let shared_plan = Arc::new(plan.clone());
    for i in 0..plan.concurrency {
        let member = (i as u64 % plan.members.max(1)) + 1;
        if search_only {
            users.push(User {
                http: http.clone(),
                plan: shared_plan.clone(),
                token: String::new(),
                rng: StdRng::seed_from_u64(0x5eed ^ i as u64),
                tally: Tally::default(),
                shared: shared.clone(),
                pending_orders: Vec::new(),
            });
            continue;
        }
        let r = http
            .post(format!("{base}/sessions"))
            .json(&json!({ "email": member_email(member), "password": SEED_PASSWORD }))
            .send()
            .await?;
        anyhow::ensure!(
            r.status().is_success(),
            "login member{member}: {}",
            r.status()
        );
        let v: Value = r.json().await?;
        let token = v["token"].as_str().context("no token")?.to_string();
        users.push(User {
            http: http.clone(),
            plan: shared_plan.clone(),
            token,
            rng: StdRng::seed_from_u64(0x5eed ^ i as u64),
            tally: Tally::default(),
            shared: shared.clone(),
            pending_orders: Vec::new(),
        });
    }

    let statements_before = match &plan.proxy_metrics {
        Some(url) => Some(proxy_statements(&http, url).await?),
        None => None,
    };
    let start = Instant::now();
    let end = start + Duration::from_secs(plan.seconds);
    let flash_at = match plan.scenario {
        Scenario::FlashSale => start,
        Scenario::Mixed => start + Duration::from_secs(plan.flash_at_s.unwrap_or(plan.seconds / 3)),
        // Never during the run.
        Scenario::Browse | Scenario::Checkout | Scenario::Search => end + Duration::from_secs(3600),
    };
    let bar = if plan.progress {
        let b = indicatif::ProgressBar::new(plan.seconds);
        b.set_style(indicatif::ProgressStyle::with_template(
            "{elapsed:>4} [{bar:30}] {msg}",
        )?);
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let ticker = async {
        let mut last = 0;
        while Instant::now() < end {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let n = shared.requests.load(Relaxed);
            let phase = if Instant::now() >= flash_at {
                "flash sale open"
            } else {
                "browsing"
            };
            bar.set_position(start.elapsed().as_secs().min(plan.seconds));
            bar.set_message(format!(
                "{} req/s, {} errors, {} flash units sold ({phase})",
                n - last,
                shared.errors.load(Relaxed),
                shared.flash_ok.load(Relaxed)
            ));
            last = n;
        }
    };
    let handles: Vec<_> = users
        .into_iter()
        .map(|mut u| {
            tokio::spawn(async move {
                while Instant::now() < end {
                    let flash_open = Instant::now() >= flash_at;
                    let roll: f64 = u.rng.random();
                    let roll = if flash_open {
                        if roll < 0.33 {
                            u.flash_buy().await;
                            continue;
                        }
                        (roll - 0.33) / 0.67
                    } else {
                        roll
                    };
                    match u.plan.scenario {
                        Scenario::Browse => match roll {
                            r if r < 0.35 => u.browse_list().await,
                            r if r < 0.60 => u.search().await,
                            r if r < 0.95 => u.detail().await,
                            _ => u.history().await,
                        },
                        Scenario::Search => u.search().await,
                        Scenario::Checkout => match roll {
                            r if r < 0.20 => u.browse_list().await,
                            r if r < 0.40 => u.detail().await,
                            r if r < 0.75 => u.order().await,
                            r if r < 0.88 => u.pay().await,
                            _ => u.history().await,
                        },
                        Scenario::FlashSale if flash_open => {
                            if roll < 0.85 {
                                u.flash_buy().await
                            } else {
                                u.detail().await
                            }
                        }
                        _ => match roll {
                            r if r < 0.45 => u.browse_list().await,
                            r if r < 0.80 => u.detail().await,
                            r if r < 0.88 => u.order().await,
                            r if r < 0.93 => u.history().await,
                            r if r < 0.96 => u.pay().await,
                            _ => u.stock().await,
                        },
                    }
                }
                u.tally
            })
        })
        .collect();
    let work = async {
        let mut tallies = Vec::with_capacity(handles.len());
        for h in handles {
            tallies.push(h.await?);
        }
        anyhow::Ok(tallies)
    };
    let (tallies, ()) = tokio::join!(work, ticker);
    let tallies = tallies?;
    let seconds = start.elapsed().as_secs_f64();
    bar.finish_and_clear();

    let mut report = Report {
        scenario: plan.scenario.name(),
        seconds,
        requests: shared.requests.load(Relaxed),
        ..Default::default()
    };
    let mut all: BTreeMap<&'static str, Vec<u32>> = BTreeMap::new();
    let mut errors: BTreeMap<&'static str, u64> = BTreeMap::new();
    for t in tallies {
        for (k, mut v) in t.latencies {
            all.entry(k).or_default().append(&mut v);
        }
        for (k, n) in t.errors {
            *errors.entry(k).or_default() += n;
        }
        for (k, n) in t.error_kinds {
            *report.errors.entry(k).or_default() += n;
        }
        report.flash.successes += t.flash_ok;
        report.flash.sold_out_answers += t.flash_sold_out;
        report.flash.unknown += t.flash_unknown;
        report.idempotency_violations += t.idempotency_violations;
    }
    for (k, mut v) in all {
        v.sort_unstable();
        report.endpoints.insert(
            k,
            EndpointReport {
                requests: v.len() as u64,
                errors: errors.get(k).copied().unwrap_or(0),
                p50_ms: percentile(&v, 0.50),
                p99_ms: percentile(&v, 0.99),
            },
        );
    }
    if let (Some(url), Some(before)) = (&plan.proxy_metrics, statements_before) {
        report.proxy_statements = Some(proxy_statements(&http, url).await?.saturating_sub(before));
    }
    if search_only {
        return Ok(report);
    }
    let stock = get_json(&http, format!("{base}/skus/{sku}/stock")).await?;
    let after = get_json(&http, format!("{base}/admin/skus/{sku}/sales")).await?;
    report.flash.sku = sku;
    report.flash.initial = plan.flash_stock;
    report.flash.remaining = stock["stock"].as_i64().unwrap_or(-1);
    report.flash.sold_column = stock["sold"].as_i64().unwrap_or(-1);
    report.flash.order_units = after["units"].as_i64().unwrap_or(0) - units_before;
    Ok(report)
}

/// The sum of the proxy's `peakgate_statements_total` (every kind) at its admin `/metrics`.
async fn proxy_statements(http: &reqwest::Client, url: &str) -> anyhow::Result<u64> {
    let r = http
        .get(url)
        .send()
        .await
        .with_context(|| format!("proxy metrics at {url}"))?;
    anyhow::ensure!(r.status().is_success(), "{url}: {}", r.status());
    Ok(statements_in(&r.text().await?))
}

/// `peakgate_statements_total{kind=...}` summed over kinds, from Prometheus text.
fn statements_in(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("peakgate_statements_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// The `q` quantile (0..=1) of sorted microseconds, in milliseconds.
fn percentile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    f64::from(sorted[i]) / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_sorted_samples() {
        let v: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }

    #[test]
    fn proxy_statements_add_up_every_kind() {
        let text = "# TYPE peakgate_statements_total counter\n\
                    peakgate_statements_total{kind=\"read\"} 7\n\
                    peakgate_statements_total{kind=\"write\"} 3\n\
                    peakgate_statements_total_other 100\n";
        assert_eq!(statements_in(text), 10);
        let mut r = Report {
            scenario: "search",
            proxy_statements: Some(0),
            ..Default::default()
        };
        assert!(r.no_sql_ok());
        r.proxy_statements = Some(2);
        assert!(!r.no_sql_ok());
        r.scenario = "browse";
        assert!(r.no_sql_ok());
    }

    #[test]
    fn the_check_catches_oversell() {
        let mut r = Report {
            flash: FlashCheck {
                sku: 1001,
                initial: 20,
                remaining: 0,
                sold_column: 20,
                order_units: 20,
                successes: 20,
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(r.oversell_ok());
        r.flash.order_units = 21;
        assert!(!r.oversell_ok());
        r.flash.order_units = 20;
        r.flash.remaining = -1;
        assert!(!r.oversell_ok());
    }
}
