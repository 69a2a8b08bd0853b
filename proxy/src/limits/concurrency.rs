//! The slots of a `max_concurrency` rule: a tokio semaphore (fair, first come first served) with a
//! bounded count of waiters and a wait timeout.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{Refusal, RuleCounters};

/// Slots and wait queue of one rule.
#[derive(Debug)]
pub(crate) struct ConcurrencyLimit {
    slots: Arc<Semaphore>,
    limit: u32,
    queue: u32,
    timeout: Duration,
    /// Statements waiting for a slot now.
    waiting: AtomicU32,
    /// Sent when the queue is full (built once, cloned per refusal).
    queue_full: Refusal,
    /// Sent when the wait timed out.
    timed_out: Refusal,
}

/// ER_LOCK_WAIT_TIMEOUT: clients and drivers already treat it as "retry the statement".
pub const CONCURRENCY_CODE: u16 = 1205;
/// SQLSTATE of [`CONCURRENCY_CODE`].
pub const CONCURRENCY_SQLSTATE: &str = "HY000";

impl ConcurrencyLimit {
    pub(crate) fn new(rule: &Arc<str>, limit: u32, queue: u32, timeout_ms: u64) -> Self {
        let refusal = |message: String| Refusal {
            rule: rule.clone(),
            code: CONCURRENCY_CODE,
            sqlstate: CONCURRENCY_SQLSTATE.into(),
            message: message.into(),
        };
        Self {
            slots: Arc::new(Semaphore::new(limit as usize)),
            limit,
            queue,
            timeout: Duration::from_millis(timeout_ms),
            waiting: AtomicU32::new(0),
            queue_full: refusal(format!(
                "PeakGate rule \"{rule}\": too many concurrent statements ({limit} running, {queue} waiting); retry later"
            )),
            timed_out: refusal(format!(
                "PeakGate rule \"{rule}\": too many concurrent statements, no slot within {timeout_ms} ms; retry later"
            )),
        }
    }

    /// Statements holding a slot now.
    pub(crate) fn in_flight(&self) -> u32 {
        let free = u32::try_from(self.slots.available_permits()).unwrap_or(u32::MAX);
        self.limit.saturating_sub(free)
    }

    /// Statements waiting for a slot now.
    pub(crate) fn waiting(&self) -> u32 {
        self.waiting.load(Ordering::Relaxed)
    }
}

/// A statement that needs a slot of a `max_concurrency` rule: [`Admission::admit`] waits for one
/// (no wait when one is free) and gives the [`Permit`] to hold until the answer is sent.
#[derive(Debug)]
#[must_use = "a statement under max_concurrency must be admitted before it runs"]
pub struct Admission {
    pub(crate) limit: Arc<ConcurrencyLimit>,
    pub(crate) counters: Arc<RuleCounters>,
}

/// A slot of a `max_concurrency` rule, given back when dropped.
#[derive(Debug)]
pub struct Permit {
    _slot: OwnedSemaphorePermit,
}

impl Admission {
    /// The name of the rule that asks for the slot.
    pub fn rule(&self) -> &str {
        &self.limit.queue_full.rule
    }

    /// A slot now, or after waiting in the rule's queue; a [`Refusal`] (ERR 1205) when the queue is
    /// full or no slot came within the timeout. Dropping the future leaves the queue.
    pub async fn admit(self) -> Result<Permit, Refusal> {
        let limit = &self.limit;
        if let Ok(slot) = limit.slots.clone().try_acquire_owned() {
            return Ok(Permit { _slot: slot });
        }
        let queued = limit
            .waiting
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < limit.queue).then_some(n + 1)
            });
        if queued.is_err() {
            self.counters.refused.inc();
            return Err(limit.queue_full.clone());
        }
        let _in_queue = LeaveQueue(&limit.waiting);
        self.counters.waited.inc();
        match tokio::time::timeout(limit.timeout, limit.slots.clone().acquire_owned()).await {
            Ok(Ok(slot)) => Ok(Permit { _slot: slot }),
            // The semaphore is never closed; treated as a timeout all the same.
            Ok(Err(_)) | Err(_) => {
                self.counters.refused.inc();
                Err(limit.timed_out.clone())
            }
        }
    }
}

/// Leaves the wait queue when the wait ends, however it ends (cancelled included).
struct LeaveQueue<'a>(&'a AtomicU32);

impl Drop for LeaveQueue<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
