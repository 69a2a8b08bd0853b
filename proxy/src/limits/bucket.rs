//! The token bucket of a `rate_limit` rule, as one `AtomicU64` (GCRA, the "virtual scheduling"
//! form of a token bucket): no lock, one compare-exchange per admitted statement.
//!
//! The state is the theoretical arrival time (TAT): when the bucket would be full again, in
//! nanoseconds since the owner's epoch. Admitting a statement moves it one interval (`1/qps`) later,
//! starting from now if it lies in the past (a full bucket does not fill further). A statement is
//! refused when that would put the TAT more than `burst` intervals ahead of now: exactly a bucket of
//! `burst` tokens refilled at `qps`, without a separate token count and timestamp that would need a
//! lock (or a 128-bit atomic) to change together.

use std::sync::atomic::{AtomicU64, Ordering};

/// A lock-free token bucket. Time comes in as nanoseconds since an epoch the caller picks.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    /// Nanoseconds per token (at least 1).
    interval_ns: u64,
    /// `burst * interval_ns`: how far ahead of now the TAT may run.
    capacity_ns: u64,
    /// Theoretical arrival time, nanoseconds since the epoch; 0 is a full bucket.
    tat: AtomicU64,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens refilled at `qps` per second. `qps` above 0 and `burst` at
    /// least 1 (validated in config); out-of-range values are clamped, never a panic.
    pub(crate) fn new(qps: f64, burst: u32) -> Self {
        let interval_ns = (1e9 / qps).clamp(1.0, u64::MAX as f64 / 2.0) as u64;
        let capacity_ns = interval_ns.saturating_mul(u64::from(burst.max(1)));
        Self {
            interval_ns,
            capacity_ns,
            tat: AtomicU64::new(0),
        }
    }

    /// Takes a token at `now_ns` if one is there.
    pub(crate) fn try_take(&self, now_ns: u64) -> bool {
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let next = tat.max(now_ns).saturating_add(self.interval_ns);
            if next - now_ns > self.capacity_ns {
                return false;
            }
            // Relaxed: the TAT is the only state; nothing else is published with it.
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(seen) => tat = seen,
            }
        }
    }

    /// Tokens left at `now_ns` (rounded down), for status pages.
    pub(crate) fn available(&self, now_ns: u64) -> u64 {
        let ahead = self.tat.load(Ordering::Relaxed).saturating_sub(now_ns);
        (self.capacity_ns - ahead.min(self.capacity_ns)) / self.interval_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn burst_at_once_then_the_rate() {
        let b = TokenBucket::new(10.0, 5);
        let t0 = 7 * SEC;
        assert_eq!(b.available(t0), 5);
        assert_eq!((0..8).filter(|_| b.try_take(t0)).count(), 5);
        assert_eq!(b.available(t0), 0);
        // One token per 100 ms.
        assert!(!b.try_take(t0 + SEC / 10 - 1));
        assert!(b.try_take(t0 + SEC / 10));
        assert!(!b.try_take(t0 + SEC / 10));
        // A long quiet spell refills to the burst, not beyond.
        let later = t0 + 60 * SEC;
        assert_eq!(b.available(later), 5);
        assert_eq!((0..20).filter(|_| b.try_take(later)).count(), 5);
    }

    #[test]
    fn offered_200_qps_admits_50_qps() {
        let b = TokenBucket::new(50.0, 1);
        // 200 statements per second for 10 seconds, evenly spaced.
        let admitted = (0..2000u64)
            .filter(|i| b.try_take(SEC + i * SEC / 200))
            .count();
        assert!((499..=501).contains(&admitted), "{admitted}");
    }

    #[test]
    fn fractional_rate() {
        let b = TokenBucket::new(0.5, 1);
        assert!(b.try_take(0));
        assert!(!b.try_take(SEC));
        assert!(b.try_take(2 * SEC));
    }

    #[test]
    fn threads_share_one_bucket() {
        let b = std::sync::Arc::new(TokenBucket::new(1.0, 1000));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || (0..500).filter(|_| b.try_take(SEC)).count())
            })
            .collect();
        let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(total, 1000);
    }
}
