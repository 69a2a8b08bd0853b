//! Gene ids: 64-bit, time-ordered ids that carry their row's shard, so `WHERE id = ?` routes
//! without a lookup. Pure: the caller passes the clock in.
//!
//! # Layout
//! ```text
//!  63 | 62 ............. 22 | 21 ...... 12 | 11 .. 10 | 9 ....... 0
//!   0 | ms since EPOCH (41) | node_id (10) | seq (2)  | gene (10)
//! ```
//! - bit 63 is 0, so ids are positive in a signed BIGINT;
//! - 41 bits of milliseconds since [`EPOCH_MS`] (2025-01-01T00:00:00Z) last until 2094;
//! - `node_id` (`[sharding] node_id`, 0..=1023) keeps proxy instances apart;
//! - the gene is the [`Slot`] of the row's shard key (`member_id` for an order), so
//!   `shard_of(id) = shard_of_slot(id & 1023)` equals the shard of the key;
//! - the 2-bit sequence counts ids *per gene* within one millisecond. Two ids with different
//!   genes never collide, so a node issues up to 4 ids per millisecond for each of the 1024
//!   genes; only a fifth id for the same gene in the same millisecond has to wait.
//!
//! Ids are unique per node, and ordered by time at millisecond granularity: an id issued in a
//! later millisecond is larger; within one millisecond the order follows node, sequence, gene.
//! [`IdGenerator`] never lets its clock run backwards: if `now_ms` steps back, it keeps issuing at
//! the last millisecond it used until that millisecond's sequences run out.

use crate::error::Error;
use crate::ring::Slot;

/// The id epoch: 2025-01-01T00:00:00Z in Unix milliseconds.
pub const EPOCH_MS: u64 = 1_735_689_600_000;
/// Bits of milliseconds since [`EPOCH_MS`].
pub const TIME_BITS: u32 = 41;
/// Bits of node id.
pub const NODE_BITS: u32 = 10;
/// Bits of per-gene sequence within one millisecond.
pub const SEQUENCE_BITS: u32 = 2;
/// Bits of gene (the key's slot).
pub const GENE_BITS: u32 = Slot::BITS;
/// Largest node id.
pub const MAX_NODE_ID: u16 = (1 << NODE_BITS) - 1;

const SEQUENCE_SHIFT: u32 = GENE_BITS;
const NODE_SHIFT: u32 = SEQUENCE_SHIFT + SEQUENCE_BITS;
const TIME_SHIFT: u32 = NODE_SHIFT + NODE_BITS;
const SEQUENCES: u8 = 1 << SEQUENCE_BITS;

/// The fields of a gene id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdParts {
    /// Unix milliseconds.
    pub unix_ms: u64,
    /// Node id, 0..=1023.
    pub node_id: u16,
    /// Sequence within the millisecond and gene, 0..=3.
    pub sequence: u8,
    /// The shard key's slot.
    pub gene: Slot,
}

impl IdParts {
    /// Reads the fields of `id`.
    pub fn decode(id: u64) -> IdParts {
        IdParts {
            unix_ms: EPOCH_MS + ((id >> TIME_SHIFT) & ((1 << TIME_BITS) - 1)),
            node_id: ((id >> NODE_SHIFT) & u64::from(MAX_NODE_ID)) as u16,
            sequence: ((id >> SEQUENCE_SHIFT) & u64::from(SEQUENCES - 1)) as u8,
            gene: Slot::of_gene_id(id),
        }
    }

    /// The id with these fields, or an error when one does not fit its bits.
    pub fn encode(self) -> Result<u64, Error> {
        let elapsed = self
            .unix_ms
            .checked_sub(EPOCH_MS)
            .ok_or(Error::ClockBeforeEpoch)?;
        if elapsed >= 1 << TIME_BITS {
            return Err(Error::ClockPastEnd);
        }
        if self.node_id > MAX_NODE_ID {
            return Err(Error::NodeIdOutOfRange);
        }
        if self.sequence >= SEQUENCES {
            return Err(Error::SequenceOutOfRange);
        }
        Ok((elapsed << TIME_SHIFT)
            | (u64::from(self.node_id) << NODE_SHIFT)
            | (u64::from(self.sequence) << SEQUENCE_SHIFT)
            | u64::from(self.gene.get()))
    }
}

/// Per-gene sequence state.
#[derive(Clone, Copy, Debug, Default)]
struct GeneState {
    /// The millisecond `next` counts in.
    unix_ms: u64,
    /// The next sequence number in that millisecond.
    next: u8,
}

/// Issues gene ids for one node. Not thread-safe by itself: the proxy keeps one per instance
/// behind a lock, or one per worker with distinct node ids.
#[derive(Clone, Debug)]
pub struct IdGenerator {
    node_id: u16,
    /// The latest millisecond used; the generator's clock never goes below it.
    last_ms: u64,
    genes: Box<[GeneState]>,
}

impl IdGenerator {
    /// A generator for `node_id` (0..=1023).
    pub fn new(node_id: u16) -> Result<IdGenerator, Error> {
        if node_id > MAX_NODE_ID {
            return Err(Error::NodeIdOutOfRange);
        }
        Ok(IdGenerator {
            node_id,
            last_ms: 0,
            genes: vec![GeneState::default(); Slot::COUNT].into_boxed_slice(),
        })
    }

    /// The node id.
    pub fn node_id(&self) -> u16 {
        self.node_id
    }

    /// The next id for a row whose shard key falls in `gene`, at Unix time `now_ms`.
    /// [`Error::SequenceExhausted`] says when to ask again: the caller waits (or yields) and loops.
    pub fn next_id(&mut self, now_ms: u64, gene: Slot) -> Result<u64, Error> {
        let unix_ms = now_ms.max(self.last_ms);
        if unix_ms < EPOCH_MS {
            return Err(Error::ClockBeforeEpoch);
        }
        if unix_ms - EPOCH_MS >= 1 << TIME_BITS {
            return Err(Error::ClockPastEnd);
        }
        self.last_ms = unix_ms;
        let state = &mut self.genes[usize::from(gene.get())];
        if state.unix_ms != unix_ms {
            *state = GeneState { unix_ms, next: 0 };
        }
        if state.next >= SEQUENCES {
            return Err(Error::SequenceExhausted {
                retry_at_ms: unix_ms + 1,
            });
        }
        let sequence = state.next;
        state.next += 1;
        IdParts {
            unix_ms,
            node_id: self.node_id,
            sequence,
            gene,
        }
        .encode()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = EPOCH_MS + 1_000;

    fn slot(n: u16) -> Slot {
        Slot::new(n).unwrap()
    }

    #[test]
    fn layout_matches_the_documented_bits() {
        let id = IdParts {
            unix_ms: EPOCH_MS + 1,
            node_id: 1,
            sequence: 1,
            gene: slot(1),
        }
        .encode()
        .unwrap();
        assert_eq!(id, (1 << 22) | (1 << 12) | (1 << 10) | 1);
        let last = IdParts {
            unix_ms: EPOCH_MS + (1 << 41) - 1,
            node_id: 1023,
            sequence: 3,
            gene: slot(1023),
        };
        assert_eq!(last.encode().unwrap(), i64::MAX as u64);
        assert_eq!(IdParts::decode(i64::MAX as u64), last);
    }

    #[test]
    fn sequence_is_per_gene_and_per_millisecond() {
        let mut g = IdGenerator::new(7).unwrap();
        let ids: Vec<u64> = (0..4).map(|_| g.next_id(T, slot(5)).unwrap()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert!(matches!(
            g.next_id(T, slot(5)),
            Err(Error::SequenceExhausted { retry_at_ms }) if retry_at_ms == T + 1
        ));
        // Another gene still has its four.
        assert_eq!(IdParts::decode(g.next_id(T, slot(6)).unwrap()).sequence, 0);
        let next = g.next_id(T + 1, slot(5)).unwrap();
        assert!(next > ids[3]);
        assert_eq!(IdParts::decode(next).sequence, 0);
    }

    #[test]
    fn clock_never_runs_backwards() {
        let mut g = IdGenerator::new(0).unwrap();
        let a = g.next_id(T, slot(1)).unwrap();
        let b = g.next_id(T - 500, slot(1)).unwrap();
        assert!(b > a);
        assert_eq!(IdParts::decode(b).unix_ms, T);
    }

    #[test]
    fn out_of_range_inputs_are_errors() {
        assert!(matches!(
            IdGenerator::new(1024),
            Err(Error::NodeIdOutOfRange)
        ));
        let mut g = IdGenerator::new(0).unwrap();
        assert!(matches!(
            g.next_id(0, slot(0)),
            Err(Error::ClockBeforeEpoch)
        ));
        assert!(matches!(
            g.next_id(EPOCH_MS + (1 << 41), slot(0)),
            Err(Error::ClockPastEnd)
        ));
    }
}
