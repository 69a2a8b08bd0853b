//! The hot SKU registry's counting side: heavy-hitter detection over the SKU keys statements
//! name. Space-Saving with `k` counters ([`SpaceSaving`]) finds every key above `N / k` in O(1)
//! per observation and fixed memory; [`ShardedCounter`] spreads it over per-thread shards so that
//! many sessions count at once without sharing a lock, and merges them with the same guarantee.
//!
//! Files: `hotspot/space_saving.rs` (the summary), `hotspot/sharded.rs` (its shards, merging).

mod sharded;
mod space_saving;

pub use sharded::{Estimate, SHARDS, ShardedCounter};
pub use space_saving::{Counter, SpaceSaving};
