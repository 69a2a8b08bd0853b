//! The hot SKU registry: which SKUs of the hot table (`sku_stock.sku_id` by default) are hot,
//! so that statements on their rows go to the dedicated hot instance, and detection of new ones.
//!
//! Start at [`HotRegistry`]. The model:
//! - **The hot set is the routing truth.** A SKU is hot when it is in the current [`HotSet`]: the
//!   configured `skus` from start, then whatever the admin adds or removes and detection's
//!   promotions the proxy has carried out. Readers load the set per statement from an
//!   [`ArcSwap`]: lock-free, O(1), no allocation ([`HotRegistry::is_hot`], [`HotRegistry::lookup`],
//!   or [`HotRegistry::snapshot`] to hold one set for a whole statement). Writers build a new set
//!   and swap it in; they are rare (admin calls, promotions), serialised by one mutex, and never
//!   on the statement path.
//! - **Detection proposes, the proxy disposes.** A SKU's row must be on the hot instance before
//!   its statements are routed there (and back home before they return), so [`HotRegistry::tick`]
//!   does not change the hot set: it returns [`HotEvent`]s. The proxy moves the row (copy under
//!   lock), then calls [`HotRegistry::apply`] to switch routing at that moment, or
//!   [`HotRegistry::abandon`] if the move failed. An event not carried out is not proposed again
//!   for `cool_down_ms`. The admin's [`HotRegistry::add`] / [`HotRegistry::remove`] likewise
//!   switch routing immediately: call them once the row is in place.
//! - **Counting.** The proxy calls [`HotRegistry::observe`] for each SKU key its statements name on
//!   the hot table. A hot SKU is counted exactly, in its entry of the hot set (one relaxed atomic
//!   add); any other goes to a heavy-hitter summary: Space-Saving with `top_k` counters in each
//!   of a few per-thread shards (`hotspot/sharded.rs` explains the contention story), O(1) and
//!   bounded memory however many distinct SKUs pass.
//! - **Rates and hysteresis.** Every tick (the proxy calls [`HotRegistry::tick`] about once a
//!   second) turns the counts since the previous tick into statements per second, then resets
//!   them: the window is one tick. A cold SKU whose *guaranteed* rate (Space-Saving's lower bound)
//!   reaches `min_qps` is proposed for promotion, at most `top_k` detected SKUs hot at once. A
//!   detected SKU whose exact rate stays below `min_qps * demote_ratio` for `cool_down_ms` without
//!   a break is proposed for demotion; one hovering around `min_qps` is neither. Configured and
//!   admin-added SKUs are never demoted by detection; an admin-removed SKU is not promoted again
//!   until the admin adds it.
//!
//! Files: `hotspot/settings.rs` (`[hotspot]` serde and validation), `hotspot/hot_set.rs` (the
//! snapshot), `hotspot/space_saving.rs` (the summary), `hotspot/sharded.rs` (its shards, merging).

mod hot_set;
mod settings;
mod sharded;
mod space_saving;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use arc_swap::ArcSwap;

pub use hot_set::{HotEntry, HotInstance, HotSet, HotSku, Origin};
pub use settings::{AutoDetect, BatchMode, HotQueue, HotspotSettings, MAX_TOP_K};

use settings::TableName;
pub use sharded::{Estimate, SHARDS, ShardedCounter};
pub use space_saving::{Counter, SpaceSaving};

use crate::shard_map::ConfigError;

/// What detection proposes; the proxy moves the row, then calls [`HotRegistry::apply`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HotEvent {
    /// A cold SKU ran at `qps` (at least `min_qps`) over the last tick: move its row to the hot instance.
    Promote {
        /// The SKU.
        sku: u64,
        /// Its guaranteed rate over the last tick.
        qps: u64,
    },
    /// A detected SKU has run below `min_qps * demote_ratio` for `cool_down_ms`: move its row home.
    Demote {
        /// The SKU.
        sku: u64,
        /// Its rate over the last tick.
        qps: u64,
    },
}

impl HotEvent {
    /// The SKU the event is about.
    pub fn sku(&self) -> u64 {
        match *self {
            HotEvent::Promote { sku, .. } | HotEvent::Demote { sku, .. } => sku,
        }
    }
}

/// One hot SKU as `/status` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HotSkuStatus {
    /// The SKU.
    pub sku: u64,
    /// Why it is hot.
    pub origin: Origin,
    /// Statements per second over the last tick (0 before the first full tick).
    pub qps: u64,
    /// Detected SKUs: since when (ms, the caller's clock) it has been cooling, if it is.
    pub cooling_since_ms: Option<u64>,
}

/// The hot SKU registry (see the module doc). Share it behind an `Arc`; every method takes `&self`.
#[derive(Debug)]
pub struct HotRegistry {
    settings: HotspotSettings,
    /// `settings.table`, split once.
    table: TableName,
    hot: ArcSwap<HotSet>,
    /// Cold SKUs' counts; `None` when detection is off.
    counter: Option<ShardedCounter>,
    control: Mutex<Control>,
}

/// State only writers and the tick touch.
#[derive(Debug, Default)]
struct Control {
    /// The previous tick; `None` before the first.
    last_tick_ms: Option<u64>,
    /// Proposed and not yet applied or abandoned: SKU -> when proposed.
    pending: HashMap<u64, u64>,
    /// Detected hot SKUs below the demotion rate: SKU -> start of the first cool window.
    cooling_since: HashMap<u64, u64>,
    /// Removed by the admin: detection leaves them cold.
    suppressed: HashSet<u64>,
    /// Hot SKUs' rates over the last tick.
    qps: HashMap<u64, u64>,
    /// Reused by every tick.
    merged: HashMap<u64, Estimate>,
}

impl HotRegistry {
    /// A registry with the configured SKUs hot, or every mistake in `settings`.
    pub fn new(settings: HotspotSettings) -> Result<HotRegistry, Vec<ConfigError>> {
        let errs = settings.validate();
        if !errs.is_empty() {
            return Err(errs);
        }
        let set = HotSet::new(
            settings
                .skus
                .iter()
                .map(|&sku| HotSku::new(sku, Origin::Configured, HotInstance(0)))
                .collect(),
        );
        let counter = settings
            .auto_detect
            .as_ref()
            .map(|a| ShardedCounter::new(a.top_k));
        Ok(HotRegistry {
            table: TableName::new(&settings.table),
            settings,
            hot: ArcSwap::from_pointee(set),
            counter,
            control: Mutex::new(Control::default()),
        })
    }

    /// The settings it was built from.
    pub fn settings(&self) -> &HotspotSettings {
        &self.settings
    }

    /// Whether `table` (as written in the statement) is the hot table.
    #[inline]
    pub fn is_table(&self, table: &str) -> bool {
        self.table.matches(table)
    }

    /// Whether rows of `table` with this SKU are hot. Lock-free, O(1), no allocation.
    #[inline]
    pub fn is_hot(&self, table: &str, sku: u64) -> bool {
        self.is_table(table) && self.hot.load().contains(sku)
    }

    /// Why and where the SKU is hot, if it is. Lock-free, O(1), no allocation.
    #[inline]
    pub fn lookup(&self, table: &str, sku: u64) -> Option<HotEntry> {
        if !self.is_table(table) {
            return None;
        }
        self.hot.load().get(sku).map(|h| h.entry)
    }

    /// The current hot set, to answer several lookups of one statement from one consistent set.
    pub fn snapshot(&self) -> Arc<HotSet> {
        self.hot.load_full()
    }

    /// Counts one statement naming `sku` on the hot table. O(1), no allocation; cheap enough for
    /// every statement (see `benches/hotspot.rs`).
    #[inline]
    pub fn observe(&self, sku: u64) {
        if let Some(h) = self.hot.load().get(sku) {
            h.add_hit();
        } else if let Some(c) = &self.counter {
            c.observe(sku);
        }
    }

    /// Closes the window since the previous tick: rates, then detection's proposals. `now_ms` is
    /// the caller's monotonic clock in milliseconds. The first tick only opens a window; a tick at
    /// the same millisecond as the previous does nothing; a clock going back opens a new window.
    pub fn tick(&self, now_ms: u64) -> Vec<HotEvent> {
        let mut ctl = self.lock_control();
        let ctl = &mut *ctl;
        let set = self.hot.load_full();
        let last = match ctl.last_tick_ms {
            Some(last) if now_ms == last => return Vec::new(),
            Some(last) if now_ms > last => Some(last),
            _ => None,
        };
        let hits: Vec<(u64, Origin, u64)> = set
            .iter()
            .map(|h| (h.sku, h.entry.origin, h.take_hits()))
            .collect();
        if let Some(c) = &self.counter {
            c.drain(&mut ctl.merged);
        }
        ctl.last_tick_ms = Some(now_ms);
        let Some(last) = last else {
            return Vec::new();
        };
        let elapsed = now_ms - last;
        let rate = |count: u64| qps(count, elapsed);
        ctl.qps = hits.iter().map(|&(sku, _, n)| (sku, rate(n))).collect();

        let Some(auto) = &self.settings.auto_detect else {
            return Vec::new();
        };
        ctl.pending
            .retain(|_, &mut at| now_ms.saturating_sub(at) < auto.cool_down_ms.max(1));
        let mut events = Vec::new();

        // Demotions: detected SKUs, judged on their exact counts.
        ctl.cooling_since.retain(|sku, _| {
            set.get(*sku)
                .is_some_and(|h| h.entry.origin == Origin::Detected)
        });
        let cool_below = auto.min_qps as f64 * auto.demote_ratio;
        for &(sku, origin, n) in &hits {
            if origin != Origin::Detected {
                continue;
            }
            if (n as f64) * 1000.0 >= cool_below * elapsed as f64 {
                ctl.cooling_since.remove(&sku);
                continue;
            }
            let since = *ctl.cooling_since.entry(sku).or_insert(last);
            if now_ms - since >= auto.cool_down_ms && !ctl.pending.contains_key(&sku) {
                ctl.pending.insert(sku, now_ms);
                events.push(HotEvent::Demote { sku, qps: rate(n) });
            }
        }

        // Promotions: cold SKUs whose lower bound alone reaches min_qps, busiest first.
        let detected = hits.iter().filter(|h| h.1 == Origin::Detected).count();
        let proposed = ctl
            .pending
            .keys()
            .filter(|sku| !set.contains(**sku))
            .count();
        let room = auto.top_k.saturating_sub(detected + proposed);
        let mut candidates: Vec<Estimate> = ctl
            .merged
            .values()
            .filter(|e| {
                u128::from(e.lower) * 1000 >= u128::from(auto.min_qps) * u128::from(elapsed)
                    && !set.contains(e.key)
                    && !ctl.suppressed.contains(&e.key)
                    && !ctl.pending.contains_key(&e.key)
            })
            .copied()
            .collect();
        candidates.sort_by(|a, b| b.lower.cmp(&a.lower).then(a.key.cmp(&b.key)));
        for e in candidates.into_iter().take(room) {
            ctl.pending.insert(e.key, now_ms);
            events.push(HotEvent::Promote {
                sku: e.key,
                qps: rate(e.lower),
            });
        }
        events
    }

    /// Carries out a proposal once the proxy has moved the row: a promoted SKU becomes hot
    /// (detected), a demoted one cold (if still detected; the admin may have pinned it meanwhile).
    /// Returns whether routing changed.
    pub fn apply(&self, event: &HotEvent) -> bool {
        let mut ctl = self.lock_control();
        ctl.pending.remove(&event.sku());
        match *event {
            HotEvent::Promote { sku, .. } => self.insert(&mut ctl, sku, Origin::Detected),
            HotEvent::Demote { sku, .. } => {
                let detected = self
                    .hot
                    .load()
                    .get(sku)
                    .is_some_and(|h| h.entry.origin == Origin::Detected);
                detected && self.delete(&mut ctl, sku)
            }
        }
    }

    /// Drops a proposal the proxy could not carry out; the next tick may propose it again.
    pub fn abandon(&self, event: &HotEvent) {
        self.lock_control().pending.remove(&event.sku());
    }

    /// Admin: makes `sku` hot (its row must already be on the hot instance), pinned: detection never
    /// demotes it. A detected SKU becomes pinned. Returns whether routing changed.
    pub fn add(&self, sku: u64) -> bool {
        let mut ctl = self.lock_control();
        ctl.suppressed.remove(&sku);
        ctl.pending.remove(&sku);
        ctl.cooling_since.remove(&sku);
        let current = self.hot.load().get(sku).map(|h| h.entry.origin);
        match current {
            None => self.insert(&mut ctl, sku, Origin::Manual),
            Some(Origin::Detected) => {
                self.replace(|hot| {
                    hot.into_iter()
                        .map(|h| {
                            if h.sku == sku {
                                let hits = h.take_hits();
                                HotSku::new(sku, Origin::Manual, h.entry.instance).with_hits(hits)
                            } else {
                                h
                            }
                        })
                        .collect()
                });
                false
            }
            Some(_) => false,
        }
    }

    /// Admin: makes `sku` cold whatever its origin (its row must already be back home), and keeps
    /// detection from promoting it again until [`Self::add`]. Returns whether routing changed.
    pub fn remove(&self, sku: u64) -> bool {
        let mut ctl = self.lock_control();
        ctl.suppressed.insert(sku);
        ctl.pending.remove(&sku);
        self.delete(&mut ctl, sku)
    }

    /// Every hot SKU with its origin and last rate, ascending by SKU.
    pub fn status(&self) -> Vec<HotSkuStatus> {
        let ctl = self.lock_control();
        self.hot
            .load()
            .iter()
            .map(|h| HotSkuStatus {
                sku: h.sku,
                origin: h.entry.origin,
                qps: ctl.qps.get(&h.sku).copied().unwrap_or(0),
                cooling_since_ms: ctl.cooling_since.get(&h.sku).copied(),
            })
            .collect()
    }

    /// Heap bytes of the detection counters; fixed at construction (0 when detection is off).
    pub fn counter_heap_bytes(&self) -> usize {
        self.counter.as_ref().map_or(0, ShardedCounter::heap_bytes)
    }

    fn lock_control(&self) -> MutexGuard<'_, Control> {
        // Control holds no invariant a panic could break halfway that matters more than staying up.
        self.control.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds `sku` with `origin` if absent; returns whether it was added. Caller holds the control lock.
    fn insert(&self, _ctl: &mut Control, sku: u64, origin: Origin) -> bool {
        if self.hot.load().contains(sku) {
            return false;
        }
        self.replace(|mut hot| {
            hot.push(HotSku::new(sku, origin, HotInstance(0)));
            hot
        });
        true
    }

    /// Removes `sku` if present; returns whether it was. Caller holds the control lock.
    fn delete(&self, ctl: &mut Control, sku: u64) -> bool {
        if !self.hot.load().contains(sku) {
            return false;
        }
        ctl.cooling_since.remove(&sku);
        ctl.qps.remove(&sku);
        self.replace(|hot| hot.into_iter().filter(|h| h.sku != sku).collect());
        true
    }

    /// Builds the next set from copies of the current entries (hits carried over) and swaps it in.
    /// Observations landing on the old set after the copy are lost: a few counts, once per change.
    fn replace(&self, edit: impl FnOnce(Vec<HotSku>) -> Vec<HotSku>) {
        let old = self.hot.load_full();
        let copies = old
            .iter()
            .map(|h| HotSku::new(h.sku, h.entry.origin, h.entry.instance).with_hits(h.take_hits()))
            .collect();
        self.hot.store(Arc::new(HotSet::new(edit(copies))));
    }
}

/// Statements per second from a count over `elapsed_ms` (> 0).
fn qps(count: u64, elapsed_ms: u64) -> u64 {
    u64::try_from(u128::from(count) * 1000 / u128::from(elapsed_ms.max(1))).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
