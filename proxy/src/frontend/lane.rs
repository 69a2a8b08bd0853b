//! The sale lane. In a flash sale hundreds of sessions write one hot row through the hot-row
//! queue; on the proxy's runtime their tasks sit in the same run queues as everyone else's, so a
//! normal checkout statement waits behind them (measured: normal point-select p99 through the
//! proxy 9-19x its idle value during a sale, while the same select sent to the shard primary
//! directly stayed at 1-2x). Sessions that write hot rows through the queue therefore move to a
//! runtime of their own (`hotspot.lane_threads` threads) and come back once they stop
//! (`hotspot.lane_linger_ms` after their last queued write, at the end of a statement that was
//! not one).
//!
//! A session moves only between statements and only when it holds nothing connection-bound (no
//! pinned backend connection, transaction, XA branch or held-back BEGIN). Its client socket moves
//! with it (registered with the I/O driver of the runtime it now runs on; a TLS session's socket
//! stays with the proxy's runtime, whose driver goes on waking it). Backend connections are always
//! opened on the proxy's runtime (`backend::pool`), so a normal session never depends on the sale
//! lane's threads to hear from its server; the hot-row queue's workers run on the lane.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::runtime::{Handle, Runtime};

/// Which runtime a session runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    Main,
    Sale,
}

/// The sale lane's runtime and what the sessions need to move between it and the proxy's.
pub struct SaleLane {
    rt: Option<Runtime>,
    sale: Handle,
    main: Handle,
    pub linger: Duration,
    /// Sessions on the sale lane now (for `/status`).
    sessions: AtomicU64,
    /// Moves onto the sale lane so far.
    moves: AtomicU64,
}

impl SaleLane {
    /// Starts the lane's runtime, its threads at nice `nice`; `main` is the proxy's own runtime.
    pub fn start(threads: usize, linger_ms: u64, nice: i32, main: Handle) -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("peakgate-sale")
            .on_thread_start(move || {
                // PRIO_PROCESS of "the caller" is the calling thread on Linux. Lowering one's
                // own priority needs no privilege; if it fails the lane runs at normal priority.
                if nice > 0 && rustix::process::setpriority_process(None, nice).is_err() {
                    tracing::warn!(nice, "could not lower the sale lane's priority");
                }
            })
            .enable_all()
            .build()?;
        Ok(Self {
            sale: rt.handle().clone(),
            rt: Some(rt),
            main,
            linger: Duration::from_millis(linger_ms),
            sessions: AtomicU64::new(0),
            moves: AtomicU64::new(0),
        })
    }

    pub fn handle(&self, lane: Lane) -> &Handle {
        match lane {
            Lane::Main => &self.main,
            Lane::Sale => &self.sale,
        }
    }

    /// Counts a session moving to `to`.
    pub fn moved(&self, to: Lane) {
        match to {
            Lane::Sale => {
                self.sessions.fetch_add(1, Ordering::Relaxed);
                self.moves.fetch_add(1, Ordering::Relaxed);
            }
            Lane::Main => {
                self.sessions.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// (sessions on the lane now, moves onto it so far).
    pub fn counts(&self) -> (u64, u64) {
        (
            self.sessions.load(Ordering::Relaxed),
            self.moves.load(Ordering::Relaxed),
        )
    }
}

impl Drop for SaleLane {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which is not allowed inside the proxy's own runtime.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}
