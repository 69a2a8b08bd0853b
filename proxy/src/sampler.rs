//! The status page's time series: once a second the sampler records the proxy's statements per
//! second, the p99 statement latency of that second and the open client connections, and keeps
//! the last [`CAPACITY`] seconds for `GET /status/series`.
//!
//! Everything is derived from the process-wide counters in `metrics` (deltas between two
//! ticks), so the hot path does no extra work for the page.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tracing::{Instrument, info_span};

use crate::metrics::{BUCKETS_US, METRICS};

/// Seconds of history kept.
pub const CAPACITY: usize = 300;

/// One second of the proxy's life.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Point {
    /// End of the second, Unix seconds.
    pub t: u64,
    /// Statements per second.
    pub qps: f64,
    /// Estimated 99th percentile statement latency, milliseconds; `None` when no statement ended.
    pub p99_ms: Option<f64>,
    /// Client connections open at the end of the second.
    pub clients: i64,
}

/// The last [`CAPACITY`] points, oldest first.
#[derive(Default)]
pub struct Series {
    points: Mutex<VecDeque<Point>>,
}

impl Series {
    /// A copy of the points, oldest first.
    pub fn snapshot(&self) -> Vec<Point> {
        self.lock().iter().copied().collect()
    }

    fn push(&self, p: Point) {
        let mut points = self.lock();
        if points.len() == CAPACITY {
            points.pop_front();
        }
        points.push_back(p);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Point>> {
        // A push or a copy cannot leave the deque half-changed.
        self.points.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The counters a point is the difference of.
struct Totals {
    at: Instant,
    statements: u64,
    buckets: [u64; BUCKETS_US.len()],
    count: u64,
}

impl Totals {
    fn now() -> Self {
        let (buckets, count) = METRICS.latency.snapshot();
        Self {
            at: Instant::now(),
            statements: METRICS.statements.iter().map(|c| c.get()).sum(),
            buckets,
            count,
        }
    }

    /// The point for the time from `earlier` to `self`.
    fn since(&self, earlier: &Totals, t: u64) -> Point {
        let secs = self.at.duration_since(earlier.at).as_secs_f64().max(1e-3);
        let buckets: [u64; BUCKETS_US.len()] =
            std::array::from_fn(|i| self.buckets[i].saturating_sub(earlier.buckets[i]));
        let count = self.count.saturating_sub(earlier.count);
        Point {
            t,
            qps: self.statements.saturating_sub(earlier.statements) as f64 / secs,
            p99_ms: quantile_ms(&buckets, count, 0.99),
            clients: METRICS.client_connections.get(),
        }
    }
}

/// Estimates quantile `q` (0..1) of `count` observations spread over histogram buckets (counts
/// per bucket, bounds in `BUCKETS_US`) in milliseconds: the bucket holding the rank is found
/// and the value interpolated linearly inside it, as Prometheus' `histogram_quantile` does.
/// Observations over the last bound report the last bound. `None` without observations.
pub fn quantile_ms(buckets: &[u64; BUCKETS_US.len()], count: u64, q: f64) -> Option<f64> {
    // The counters are read one by one while statements end, so `count` may trail the buckets.
    let total = count.max(buckets.iter().sum());
    if total == 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let mut below = 0u64;
    let mut lower = 0u64;
    for (&n, &upper) in buckets.iter().zip(&BUCKETS_US) {
        if n > 0 && (below + n) as f64 >= rank {
            let within = ((rank - below as f64) / n as f64).clamp(0.0, 1.0);
            return Some((lower as f64 + (upper - lower) as f64 * within) / 1e3);
        }
        below += n;
        lower = upper;
    }
    Some(lower as f64 / 1e3)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Starts the sampler (a task named `sampler`); it stops when `shutdown` turns true.
pub fn spawn(mut shutdown: watch::Receiver<bool>) -> Arc<Series> {
    let series = Arc::new(Series::default());
    let out = series.clone();
    tokio::spawn(
        async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            let mut last = Totals::now();
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    changed = shutdown.changed() => {
                        if changed.is_err() || *shutdown.borrow() {
                            return;
                        }
                        continue;
                    }
                }
                let now = Totals::now();
                series.push(now.since(&last, unix_now()));
                last = now;
            }
        }
        .instrument(info_span!("sampler")),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buckets(pairs: &[(usize, u64)]) -> [u64; BUCKETS_US.len()] {
        let mut b = [0; BUCKETS_US.len()];
        for &(i, n) in pairs {
            b[i] = n;
        }
        b
    }

    #[test]
    fn no_observations_no_quantile() {
        assert_eq!(quantile_ms(&buckets(&[]), 0, 0.99), None);
    }

    #[test]
    fn quantile_interpolates_inside_the_bucket() {
        // 100 observations in (0.1 ms, 0.25 ms]: p99 at 99% of the way through that bucket.
        let b = buckets(&[(1, 100)]);
        let p99 = quantile_ms(&b, 100, 0.99).expect("observations");
        assert!((p99 - (0.1 + 0.15 * 0.99)).abs() < 1e-9, "{p99}");
        // 98 fast, 2 in (2.5 ms, 5 ms]: p99 lands halfway through the slow bucket.
        let b = buckets(&[(0, 98), (5, 2)]);
        let p99 = quantile_ms(&b, 100, 0.99).expect("observations");
        assert!((p99 - 3.75).abs() < 1e-9, "{p99}");
    }

    #[test]
    fn overflow_reports_the_last_bound() {
        let b = buckets(&[(0, 1)]);
        assert_eq!(quantile_ms(&b, 100, 0.99), Some(30_000.0));
    }

    #[test]
    fn trailing_count_still_gives_a_quantile() {
        let b = buckets(&[(3, 10)]);
        let p = quantile_ms(&b, 9, 0.5).expect("observations");
        assert!((0.5..=1.0).contains(&p), "{p}");
    }

    #[test]
    fn series_keeps_the_last_capacity_points() {
        let s = Series::default();
        for t in 0..(CAPACITY as u64 + 5) {
            s.push(Point {
                t,
                qps: 1.0,
                p99_ms: None,
                clients: 0,
            });
        }
        let points = s.snapshot();
        assert_eq!(points.len(), CAPACITY);
        assert_eq!(points.first().map(|p| p.t), Some(5));
        assert_eq!(points.last().map(|p| p.t), Some(CAPACITY as u64 + 4));
    }
}
