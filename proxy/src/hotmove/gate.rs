//! The per-SKU gate a row move closes. Every statement that names a SKU of the hot table holds a
//! [`Pass`] for that SKU while it runs (a transaction: until it ends); a move [`MoveGates::close`]s
//! the gate, which makes new statements wait, and waits for the passes out to come back.
//!
//! States of one SKU's gate (an entry exists only while it is not plain "open, unused"):
//! - open, `active` passes out: statements enter freely;
//! - closing / closed (`moving`): new statements wait for it to open (bounded), the move waits for
//!   `active` to reach 0 (bounded; past it the gate opens again and the move is refused);
//! - open again when the [`Closed`] guard drops: waiters enter and see the routing the move left.
//!
//! Entries live in a few striped maps, so statements on different SKUs rarely share a lock and
//! memory is bounded by the SKUs in use at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Stripes of the gate table (a power of two).
const STRIPES: usize = 64;

/// Every SKU's gate.
#[derive(Debug)]
pub struct MoveGates {
    stripes: Box<[Mutex<HashMap<u64, Entry>>]>,
}

#[derive(Debug, Default)]
struct Entry {
    /// Passes out.
    active: u32,
    /// A move holds (or is closing) the gate.
    moving: bool,
    /// Woken when the gate opens again.
    opened: Arc<Notify>,
    /// Woken when the last pass comes back while moving.
    drained: Arc<Notify>,
}

/// Held by a statement (or transaction) using a SKU; gives the SKU back when dropped.
#[derive(Debug)]
pub struct Pass {
    gates: Arc<MoveGates>,
    sku: u64,
}

impl Pass {
    /// The SKU it is for.
    pub fn sku(&self) -> u64 {
        self.sku
    }
}

/// A closed gate: no statement uses the SKU until it drops.
#[derive(Debug)]
pub struct Closed {
    gates: Arc<MoveGates>,
    sku: u64,
}

/// Why a gate could not be closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseError {
    /// Another move holds it.
    Moving,
    /// Statements or transactions still held passes when the wait ended.
    Busy { active: u32 },
}

impl MoveGates {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            stripes: (0..STRIPES).map(|_| Mutex::new(HashMap::new())).collect(),
        })
    }

    fn stripe(&self, sku: u64) -> MutexGuard<'_, HashMap<u64, Entry>> {
        // Fibonacci hashing spreads consecutive SKUs over the stripes.
        let i = (sku.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize % STRIPES;
        // The maps hold counters only; a panic elsewhere leaves them usable.
        self.stripes[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A pass for `sku`; waits up to `wait` while a move holds its gate. `Err` when the gate
    /// stayed closed that long. The bool says whether it had to wait.
    pub async fn enter(self: &Arc<Self>, sku: u64, wait: Duration) -> Result<(Pass, bool), ()> {
        let deadline = Instant::now() + wait;
        let mut waited = false;
        loop {
            let opened = {
                let mut map = self.stripe(sku);
                let e = map.entry(sku).or_default();
                if !e.moving {
                    e.active += 1;
                    let pass = Pass {
                        gates: self.clone(),
                        sku,
                    };
                    return Ok((pass, waited));
                }
                e.opened.clone()
            };
            waited = true;
            // Registered before the lock is re-taken below, so an opening in between is not missed.
            let notified = opened.notified();
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, notified).await.is_err() {
                // One last look: the gate may have opened as the wait ended.
                let mut map = self.stripe(sku);
                let e = map.entry(sku).or_default();
                if !e.moving {
                    e.active += 1;
                    return Ok((
                        Pass {
                            gates: self.clone(),
                            sku,
                        },
                        true,
                    ));
                }
                return Err(());
            }
        }
    }

    /// Closes `sku`'s gate: new statements wait from now on; then waits up to `drain` for the
    /// passes out to come back. On `Err` the gate is open again as before.
    pub async fn close(self: &Arc<Self>, sku: u64, drain: Duration) -> Result<Closed, CloseError> {
        let drained = {
            let mut map = self.stripe(sku);
            let e = map.entry(sku).or_default();
            if e.moving {
                return Err(CloseError::Moving);
            }
            e.moving = true;
            e.drained.clone()
        };
        let closed = Closed {
            gates: self.clone(),
            sku,
        };
        let deadline = Instant::now() + drain;
        loop {
            // A permit stored by a pass dropped since the last look ends this wait at once.
            let notified = drained.notified();
            let active = self.stripe(sku).get(&sku).map_or(0, |e| e.active);
            if active == 0 {
                return Ok(closed);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, notified).await.is_err() {
                let active = self.stripe(sku).get(&sku).map_or(0, |e| e.active);
                if active == 0 {
                    return Ok(closed);
                }
                // Dropping `closed` opens the gate again.
                return Err(CloseError::Busy { active });
            }
        }
    }

    /// Passes out for `sku` now (for `/status`).
    pub fn active(&self, sku: u64) -> u32 {
        self.stripe(sku).get(&sku).map_or(0, |e| e.active)
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        let mut map = self.gates.stripe(self.sku);
        if let Some(e) = map.get_mut(&self.sku) {
            e.active = e.active.saturating_sub(1);
            if e.active == 0 {
                if e.moving {
                    e.drained.notify_one();
                } else {
                    map.remove(&self.sku);
                }
            }
        }
    }
}

impl Drop for Closed {
    fn drop(&mut self) {
        let mut map = self.gates.stripe(self.sku);
        if let Some(e) = map.get_mut(&self.sku) {
            e.moving = false;
            e.opened.notify_waiters();
            if e.active == 0 {
                map.remove(&self.sku);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test(start_paused = true)]
    async fn a_move_waits_for_passes_and_new_statements_wait_for_the_move() {
        let g = MoveGates::new();
        let (held, waited) = g.enter(7, MS).await.expect("open");
        assert!(!waited);
        let g2 = g.clone();
        let mover = tokio::spawn(async move { g2.close(7, 1000 * MS).await });
        tokio::time::sleep(10 * MS).await;
        assert!(!mover.is_finished(), "the move waits for the pass out");
        // A new statement now waits behind the move.
        let g3 = g.clone();
        let late = tokio::spawn(async move { g3.enter(7, 5000 * MS).await.map(|p| p.1) });
        tokio::time::sleep(10 * MS).await;
        assert!(!late.is_finished());
        drop(held);
        let closed = mover.await.expect("task").expect("closed once drained");
        tokio::time::sleep(10 * MS).await;
        assert!(!late.is_finished(), "still closed during the move");
        assert_eq!(g.active(7), 0);
        drop(closed);
        assert_eq!(late.await.expect("task"), Ok(true), "entered after waiting");
        // Other SKUs never wait.
        assert!(g.enter(8, MS).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_move_past_its_drain_time_is_refused_and_the_gate_opens() {
        let g = MoveGates::new();
        let (held, _) = g.enter(7, MS).await.expect("open");
        let g2 = g.clone();
        let waiter = tokio::spawn(async move { g2.enter(7, 5000 * MS).await.is_ok() });
        assert_eq!(
            g.close(7, 100 * MS).await.map(|_| ()),
            Err(CloseError::Busy { active: 1 })
        );
        assert!(
            waiter.await.expect("task"),
            "waiters go on after a refused move"
        );
        drop(held);
        let closed = g.close(7, MS).await.expect("free now");
        assert_eq!(g.close(7, MS).await.map(|_| ()), Err(CloseError::Moving));
        // A statement that waits too long is refused.
        assert!(g.enter(7, 50 * MS).await.is_err());
        drop(closed);
        assert!(g.stripe(7).is_empty(), "no entry left behind");
    }
}
