//! Business and HTTP metrics of the shop service, rendered as Prometheus text on `/metrics`.
//!
//! Names (all `shop_*`):
//! - `shop_http_requests_total{endpoint,class}`: requests per route pattern and status class
//!   (`2xx`, `4xx`, `5xx`);
//! - `shop_http_request_duration_seconds{endpoint}`: latency histogram per route pattern;
//! - `shop_orders_total{kind}`: orders written (`normal`, `flash_sale`); `shop_order_revenue_total`
//!   their value in CNY; `shop_payments_total`;
//! - `shop_flash_sale_total{result}`: flash-sale attempts by result (`success`, `sold_out`,
//!   `failed`);
//! - `shop_idempotent_replays_total`: retried requests answered with their first result;
//! - `shop_cache_requests_total{result}` (`hit`, `miss`), `shop_cache_loads_total` (database loads
//!   after a miss), `shop_cache_coalesced_total` (misses that waited for another request's load
//!   instead of querying: single-flight), `shop_cache_errors_total` (Redis failures, served from
//!   the database), `shop_cache_hit_ratio`;
//! - `shop_page_views_total`, `shop_unique_visitors` (Redis HyperLogLog, today),
//!   `shop_conversion_rate` (orders / unique visitors), `shop_members_registered_total`,
//!   `shop_logins_total`;
//! - with `serve --search-index`, the index consumer's `shop_search_index_*` (see
//!   [`crate::search::sync::SearchStats`]).
//!
//! [`LagHistogram`] is the event-lag histogram shared by the back-office consumer and the
//! search index consumer.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Histogram bucket upper bounds, seconds.
const BUCKETS: &[f64] = &[
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
];

/// Per-endpoint counters and latency histogram.
#[derive(Default)]
pub struct EndpointStats {
    ok: AtomicU64,
    client_errors: AtomicU64,
    server_errors: AtomicU64,
    buckets: [AtomicU64; 12],
    sum_micros: AtomicU64,
}

/// The service's counters. Cheap to update from any task (atomics; the endpoint table is read
/// under a read lock and written once per new route).
#[derive(Default)]
pub struct Metrics {
    endpoints: RwLock<BTreeMap<String, Arc<EndpointStats>>>,
    pub orders_normal: AtomicU64,
    pub orders_flash: AtomicU64,
    pub revenue_cents: AtomicU64,
    pub payments: AtomicU64,
    pub flash_success: AtomicU64,
    pub flash_sold_out: AtomicU64,
    pub flash_failed: AtomicU64,
    pub idempotent_replays: AtomicU64,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    pub cache_loads: AtomicU64,
    pub cache_coalesced: AtomicU64,
    pub cache_errors: AtomicU64,
    pub page_views: AtomicU64,
    pub registrations: AtomicU64,
    pub logins: AtomicU64,
}

impl Metrics {
    /// Records one request of route pattern `endpoint`.
    pub fn observe(&self, endpoint: &str, status: u16, took: Duration) {
        let stats = {
            let read = self.endpoints.read().unwrap_or_else(|p| p.into_inner());
            read.get(endpoint).cloned()
        };
        let stats = match stats {
            Some(s) => s,
            None => {
                let mut w = self.endpoints.write().unwrap_or_else(|p| p.into_inner());
                w.entry(endpoint.to_string()).or_default().clone()
            }
        };
        match status {
            500.. => &stats.server_errors,
            400..500 => &stats.client_errors,
            _ => &stats.ok,
        }
        .fetch_add(1, Relaxed);
        let secs = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            stats.buckets[i].fetch_add(1, Relaxed);
        }
        stats
            .sum_micros
            .fetch_add(took.as_micros().min(u128::from(u64::MAX)) as u64, Relaxed);
    }

    /// hits / (hits + misses), 0 before the first request.
    pub fn cache_hit_ratio(&self) -> f64 {
        let h = self.cache_hits.load(Relaxed) as f64;
        let m = self.cache_misses.load(Relaxed) as f64;
        if h + m == 0.0 { 0.0 } else { h / (h + m) }
    }

    /// Prometheus text; `unique_visitors` comes from Redis (None when it could not be read).
    pub fn render(&self, unique_visitors: Option<u64>) -> String {
        let mut out = String::with_capacity(4096);
        let eps = self.endpoints.read().unwrap_or_else(|p| p.into_inner());
        out.push_str("# TYPE shop_http_requests_total counter\n");
        for (ep, s) in eps.iter() {
            for (class, v) in [
                ("2xx", &s.ok),
                ("4xx", &s.client_errors),
                ("5xx", &s.server_errors),
            ] {
                let _ = writeln!(
                    out,
                    "shop_http_requests_total{{endpoint=\"{ep}\",class=\"{class}\"}} {}",
                    v.load(Relaxed)
                );
            }
        }
        out.push_str("# TYPE shop_http_request_duration_seconds histogram\n");
        for (ep, s) in eps.iter() {
            let mut cum = 0;
            for (i, b) in BUCKETS.iter().enumerate() {
                cum += s.buckets[i].load(Relaxed);
                let _ = writeln!(
                    out,
                    "shop_http_request_duration_seconds_bucket{{endpoint=\"{ep}\",le=\"{b}\"}} {cum}"
                );
            }
            let count =
                s.ok.load(Relaxed) + s.client_errors.load(Relaxed) + s.server_errors.load(Relaxed);
            let _ = writeln!(
                out,
                "shop_http_request_duration_seconds_bucket{{endpoint=\"{ep}\",le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                out,
                "shop_http_request_duration_seconds_sum{{endpoint=\"{ep}\"}} {}",
                s.sum_micros.load(Relaxed) as f64 / 1e6
            );
            let _ = writeln!(
                out,
                "shop_http_request_duration_seconds_count{{endpoint=\"{ep}\"}} {count}"
            );
        }
        drop(eps);
        let orders = self.orders_normal.load(Relaxed) + self.orders_flash.load(Relaxed);
        let counters: [(&str, &str, u64); 16] = [
            (
                "shop_orders_total",
                "kind=\"normal\"",
                self.orders_normal.load(Relaxed),
            ),
            (
                "shop_orders_total",
                "kind=\"flash_sale\"",
                self.orders_flash.load(Relaxed),
            ),
            ("shop_payments_total", "", self.payments.load(Relaxed)),
            (
                "shop_flash_sale_total",
                "result=\"success\"",
                self.flash_success.load(Relaxed),
            ),
            (
                "shop_flash_sale_total",
                "result=\"sold_out\"",
                self.flash_sold_out.load(Relaxed),
            ),
            (
                "shop_flash_sale_total",
                "result=\"failed\"",
                self.flash_failed.load(Relaxed),
            ),
            (
                "shop_idempotent_replays_total",
                "",
                self.idempotent_replays.load(Relaxed),
            ),
            (
                "shop_cache_requests_total",
                "result=\"hit\"",
                self.cache_hits.load(Relaxed),
            ),
            (
                "shop_cache_requests_total",
                "result=\"miss\"",
                self.cache_misses.load(Relaxed),
            ),
            ("shop_cache_loads_total", "", self.cache_loads.load(Relaxed)),
            (
                "shop_cache_coalesced_total",
                "",
                self.cache_coalesced.load(Relaxed),
            ),
            (
                "shop_cache_errors_total",
                "",
                self.cache_errors.load(Relaxed),
            ),
            ("shop_page_views_total", "", self.page_views.load(Relaxed)),
            (
                "shop_members_registered_total",
                "",
                self.registrations.load(Relaxed),
            ),
            ("shop_logins_total", "", self.logins.load(Relaxed)),
            ("shop_orders_all_total", "", orders),
        ];
        let mut last = "";
        for (name, labels, v) in counters {
            if name != last {
                let _ = writeln!(out, "# TYPE {name} counter");
                last = name;
            }
            if labels.is_empty() {
                let _ = writeln!(out, "{name} {v}");
            } else {
                let _ = writeln!(out, "{name}{{{labels}}} {v}");
            }
        }
        let _ = writeln!(
            out,
            "# TYPE shop_order_revenue_total counter\nshop_order_revenue_total {}",
            self.revenue_cents.load(Relaxed) as f64 / 100.0
        );
        let _ = writeln!(
            out,
            "# TYPE shop_cache_hit_ratio gauge\nshop_cache_hit_ratio {:.4}",
            self.cache_hit_ratio()
        );
        if let Some(uv) = unique_visitors {
            let _ = writeln!(
                out,
                "# TYPE shop_unique_visitors gauge\nshop_unique_visitors {uv}"
            );
            let rate = if uv == 0 {
                0.0
            } else {
                orders as f64 / uv as f64
            };
            let _ = writeln!(
                out,
                "# TYPE shop_conversion_rate gauge\nshop_conversion_rate {rate:.4}"
            );
        }
        out
    }
}

/// Lag histogram bucket upper bounds, seconds.
const LAG_BUCKETS: [f64; 11] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// A histogram of event lags (an event's time to the moment its effect is visible), and the
/// last lag seen.
#[derive(Default, Debug)]
pub struct LagHistogram {
    buckets: [AtomicU64; 11],
    count: AtomicU64,
    sum_ms: AtomicU64,
    /// Lag of the last event observed, milliseconds.
    pub last_ms: AtomicU64,
}

impl LagHistogram {
    pub fn observe(&self, ms: u64) {
        let secs = ms as f64 / 1000.0;
        for (i, le) in LAG_BUCKETS.iter().enumerate() {
            if secs <= *le {
                self.buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_ms.fetch_add(ms, Relaxed);
        self.last_ms.store(ms, Relaxed);
    }

    /// Events observed.
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// Prometheus text: the histogram `{base}_lag_seconds` (cumulative buckets) and the gauge
    /// `{base}_last_lag_seconds`.
    pub fn render(&self, out: &mut String, base: &str, help: &str) {
        let _ = writeln!(
            out,
            "# HELP {base}_lag_seconds {help}\n# TYPE {base}_lag_seconds histogram"
        );
        for (i, le) in LAG_BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{base}_lag_seconds_bucket{{le=\"{le}\"}} {}",
                self.buckets[i].load(Relaxed)
            );
        }
        let count = self.count();
        let _ = writeln!(
            out,
            "{base}_lag_seconds_bucket{{le=\"+Inf\"}} {count}\n\
             {base}_lag_seconds_sum {:.3}\n\
             {base}_lag_seconds_count {count}\n\
             # TYPE {base}_last_lag_seconds gauge\n\
             {base}_last_lag_seconds {:.3}",
            self.sum_ms.load(Relaxed) as f64 / 1000.0,
            self.last_ms.load(Relaxed) as f64 / 1000.0,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_histogram_is_cumulative() {
        let h = LagHistogram::default();
        h.observe(30);
        h.observe(700);
        let mut text = String::new();
        h.render(&mut text, "x_pipeline", "help");
        assert!(text.contains("x_pipeline_lag_seconds_bucket{le=\"0.05\"} 1\n"));
        assert!(text.contains("x_pipeline_lag_seconds_bucket{le=\"1\"} 2\n"));
        assert!(text.contains("x_pipeline_lag_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("x_pipeline_lag_seconds_count 2\n"));
        assert!(text.contains("x_pipeline_last_lag_seconds 0.700\n"));
    }

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        m.observe("/products/{id}", 200, Duration::from_millis(3));
        m.observe("/products/{id}", 404, Duration::from_millis(30));
        m.cache_hits.fetch_add(3, Relaxed);
        m.cache_misses.fetch_add(1, Relaxed);
        let text = m.render(Some(4));
        assert!(
            text.contains("shop_http_requests_total{endpoint=\"/products/{id}\",class=\"4xx\"} 1")
        );
        assert!(text.contains(
            "shop_http_request_duration_seconds_bucket{endpoint=\"/products/{id}\",le=\"0.005\"} 1"
        ));
        assert!(
            text.contains(
                "shop_http_request_duration_seconds_count{endpoint=\"/products/{id}\"} 2"
            )
        );
        assert!(text.contains("shop_cache_hit_ratio 0.7500"));
        assert!(text.contains("shop_unique_visitors 4"));
    }
}
