//! Sharding algorithms: the key hash and its byte encoding, slots, the consistent-hash ring with
//! virtual nodes, ranges and modulo. Everything here is part of the data-placement contract: a
//! change moves rows, and `tests/shard_vectors.rs` fails.
//!
//! # Keys and their bytes
//! A shard key is a [`KeyValue`]: an integer or bytes. Its canonical encoding, the only input of
//! the hash, is:
//! - an integer: its 64-bit two's-complement value, 8 bytes little-endian (`-1` is `ff ff ff ff
//!   ff ff ff ff`; `5_i64` and `5_u64` are the same bytes; an unsigned value above `i64::MAX` shares
//!   the bytes of a negative one, which only means the two land together);
//! - a string: its bytes exactly as given. No case folding, no trimming, no collation: `'ABC'`,
//!   `'abc'` and `'abc '` are three different keys, while a case-insensitive or PAD SPACE collation
//!   makes MySQL treat them as one row. String shard keys must therefore be stored in one canonical
//!   form (or use a `_bin` collation); the map cannot know a column's collation.
//!
//! Which of the two a value is depends on the table's [`KeyType`], not on how the client wrote it:
//! `member_id = '42'` and `member_id = 42` must land together (see [`KeyType`]).
//!
//! # The hash
//! `key_hash(bytes) = fmix64(fnv1a64(bytes))`: FNV-1a 64 (the digest hash, [`crate::digest`])
//! followed by MurmurHash3's 64-bit finaliser, which spreads FNV's weakly mixed bits over the
//! whole word. Both are fixed, published functions; `std::hash` is never used (its output may
//! change between Rust versions).
//!
//! # Slots and the ring
//! The hash space is cut into [`Slot::COUNT`] = 1024 equal slots: a key's slot is the top 10 bits
//! of its hash. `consistent_hash` maps *slots*, not raw hashes, to shards: each shard puts
//! `virtual_nodes` points on a 64-bit ring at `key_hash("{shard_name}#{i}")` for `i` in
//! `0..virtual_nodes`, and a slot belongs to the shard owning the slot's first point `slot << 54`
//! (the first virtual node at or after it, wrapping round). Working on slots is what lets a
//! generated id carry a key's shard in 10 bits (see [`crate::gene`]), and turns the lookup into one
//! index into a 1024-entry table ([`SlotTable`]). The ring depends on the shard names and the
//! virtual node count only, never on the order shards are listed in.
//!
//! # Range and modulo
//! `range` owns half-open `[from, to)` intervals of integer keys ([`RangeTable`]). `modulo` takes the
//! integer key's Euclidean remainder by the shard count (strings: `key_hash % n`) and picks the
//! shard at that position of the table's shard list ([`Modulo`]); reordering that list moves rows.

use crate::digest::fnv1a64;
use crate::error::Error;

/// Index of a shard in the proxy's `[[shards]]` list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardIdx(pub u16);

impl ShardIdx {
    /// The index as a `usize`.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// One of the 1024 slots of the hash space: the top 10 bits of a key's hash, and the low 10 bits
/// (the gene) of a generated id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slot(u16);

impl Slot {
    /// Bits in a slot number.
    pub const BITS: u32 = 10;
    /// Number of slots.
    pub const COUNT: usize = 1 << Self::BITS;

    /// The slot numbered `n`, if `n < 1024`.
    pub fn new(n: u16) -> Option<Slot> {
        (usize::from(n) < Self::COUNT).then_some(Slot(n))
    }

    /// The slot a key hash falls in: its top 10 bits.
    pub fn of_hash(hash: u64) -> Slot {
        // The shift leaves 10 bits, which always fit.
        Slot((hash >> (64 - Self::BITS)) as u16)
    }

    /// The slot carried in a generated id's low 10 bits.
    pub fn of_gene_id(id: u64) -> Slot {
        Slot((id & (Self::COUNT as u64 - 1)) as u16)
    }

    /// The slot number, `0..1024`.
    pub fn get(self) -> u16 {
        self.0
    }

    /// The slot's first point on the ring.
    pub fn start_point(self) -> u64 {
        u64::from(self.0) << (64 - Self::BITS)
    }
}

/// A shard key value as the statement carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyValue<'a> {
    /// A signed integer literal or parameter.
    Int(i64),
    /// An unsigned integer (a BIGINT UNSIGNED parameter above `i64::MAX`, or any unsigned one).
    UInt(u64),
    /// A string literal or parameter, its bytes as sent.
    Bytes(&'a [u8]),
}

/// What a shard key column holds, and so how a [`KeyValue`] is turned into canonical bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    /// An integer column. A string value is read as a decimal integer (ASCII whitespace around it, an
    /// optional sign, digits), as MySQL compares a string with an integer column; anything else
    /// is [`Error::KeyNotInteger`].
    Integer,
    /// A string column. An integer value is written in decimal and hashed as that text.
    String,
}

impl KeyType {
    /// The name used in the map file.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Integer => "integer",
            KeyType::String => "string",
        }
    }
}

/// A key in canonical form: an integer in `i64::MIN..=u64::MAX`, or bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key<'a> {
    /// An integer key.
    Int(i128),
    /// A string key.
    Bytes(&'a [u8]),
}

impl Key<'_> {
    /// The key's hash, over its canonical bytes (see the module doc).
    pub fn hash(self) -> u64 {
        match self {
            // Truncation to 64 bits is the documented encoding (two's complement).
            Key::Int(v) => key_hash(&(v as u64).to_le_bytes()),
            Key::Bytes(b) => key_hash(b),
        }
    }

    /// The key's slot.
    pub fn slot(self) -> Slot {
        Slot::of_hash(self.hash())
    }
}

/// Calls `f` with `key` in the canonical form `key_type` asks for. A closure, because an integer
/// key of a string column is written as decimal text into a buffer on this stack frame.
pub fn with_key<R>(
    key_type: KeyType,
    key: KeyValue<'_>,
    f: impl FnOnce(Key<'_>) -> R,
) -> Result<R, Error> {
    let mut buf = [0u8; 20];
    let key = match (key_type, key) {
        (KeyType::Integer, KeyValue::Int(v)) => Key::Int(i128::from(v)),
        (KeyType::Integer, KeyValue::UInt(v)) => Key::Int(i128::from(v)),
        (KeyType::Integer, KeyValue::Bytes(b)) => {
            Key::Int(parse_decimal(b).ok_or(Error::KeyNotInteger)?)
        }
        (KeyType::String, KeyValue::Int(v)) => Key::Bytes(write_decimal(i128::from(v), &mut buf)),
        (KeyType::String, KeyValue::UInt(v)) => Key::Bytes(write_decimal(i128::from(v), &mut buf)),
        (KeyType::String, KeyValue::Bytes(b)) => Key::Bytes(b),
    };
    Ok(f(key))
}

/// `fmix64(fnv1a64(bytes))`: the key hash.
pub fn key_hash(bytes: &[u8]) -> u64 {
    fmix64(fnv1a64(bytes))
}

/// MurmurHash3's 64-bit finaliser: a bijection that makes every output bit depend on every input bit.
pub fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// Reads a decimal integer in `i64::MIN..=u64::MAX`: ASCII whitespace around it, an optional sign, digits.
pub fn parse_decimal(bytes: &[u8]) -> Option<i128> {
    let text = bytes.trim_ascii();
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    let mut value: i128 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        value = value * 10 + i128::from(d - b'0');
    }
    let value = if negative { -value } else { value };
    (i128::from(i64::MIN)..=i128::from(u64::MAX))
        .contains(&value)
        .then_some(value)
}

/// Writes `value` (in `i64::MIN..=u64::MAX`, at most 20 characters) in decimal into `buf`.
fn write_decimal(value: i128, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    let mut rest = value.unsigned_abs();
    loop {
        at -= 1;
        buf[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if value < 0 {
        at -= 1;
        buf[at] = b'-';
    }
    &buf[at..]
}

/// The consistent-hash ring: every shard's virtual nodes, sorted by point.
#[derive(Clone, Debug)]
pub struct Ring {
    points: Vec<(u64, ShardIdx)>,
}

impl Ring {
    /// A ring with `virtual_nodes` points per shard, at `key_hash("{name}#{i}")`. Equal points
    /// (never seen in practice) are ordered by shard name, so the ring depends on names only.
    pub fn new<'n>(
        shards: impl IntoIterator<Item = (ShardIdx, &'n str)>,
        virtual_nodes: u32,
    ) -> Ring {
        let mut points: Vec<(u64, &str, ShardIdx)> = Vec::new();
        for (idx, name) in shards {
            for i in 0..virtual_nodes {
                let label = format!("{name}#{i}");
                points.push((key_hash(label.as_bytes()), name, idx));
            }
        }
        points.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        Ring {
            points: points.into_iter().map(|(p, _, idx)| (p, idx)).collect(),
        }
    }

    /// The shard owning `point`: the first virtual node at or after it, wrapping round. None for
    /// an empty ring.
    pub fn owner(&self, point: u64) -> Option<ShardIdx> {
        let at = self.points.partition_point(|&(p, _)| p < point);
        self.points
            .get(at)
            .or_else(|| self.points.first())
            .map(|&(_, idx)| idx)
    }

    /// Virtual nodes on the ring.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether the ring has no virtual nodes.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Every slot's owner, precomputed. None for an empty ring.
    pub fn slot_table(&self) -> Option<SlotTable> {
        let owners = (0..Slot::COUNT as u16)
            .map(|n| self.owner(Slot(n).start_point()))
            .collect::<Option<Vec<_>>>()?;
        Some(SlotTable {
            owners: owners.into_boxed_slice(),
        })
    }
}

/// The owner of each of the 1024 slots: the consistent-hash lookup is one index.
#[derive(Clone, PartialEq, Eq)]
pub struct SlotTable {
    /// Exactly [`Slot::COUNT`] entries.
    owners: Box<[ShardIdx]>,
}

impl SlotTable {
    /// The shard owning `slot`.
    pub fn owner(&self, slot: Slot) -> ShardIdx {
        self.owners[usize::from(slot.0)]
    }

    /// Owners in slot order.
    pub fn owners(&self) -> &[ShardIdx] {
        &self.owners
    }

    /// How many slots `shard` owns.
    pub fn count(&self, shard: ShardIdx) -> usize {
        self.owners.iter().filter(|&&s| s == shard).count()
    }
}

/// Slots per shard rather than 1024 entries.
impl std::fmt::Debug for SlotTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut counts: Vec<(ShardIdx, usize)> = Vec::new();
        for &owner in self.owners.iter() {
            match counts.iter_mut().find(|(s, _)| *s == owner) {
                Some((_, n)) => *n += 1,
                None => counts.push((owner, 1)),
            }
        }
        counts.sort_unstable();
        f.debug_struct("SlotTable")
            .field("slots_per_shard", &counts)
            .finish()
    }
}

/// `consistent_hash`: key -> slot -> shard through the ring.
#[derive(Clone, Debug)]
pub struct ConsistentHash {
    shards: Vec<ShardIdx>,
    virtual_nodes: u32,
    slots: SlotTable,
}

impl ConsistentHash {
    /// The ring over `shards` (index and name), `virtual_nodes` points each. None when `shards` is
    /// empty or `virtual_nodes` is 0.
    pub fn new(shards: &[(ShardIdx, &str)], virtual_nodes: u32) -> Option<ConsistentHash> {
        let ring = Ring::new(shards.iter().copied(), virtual_nodes);
        Some(ConsistentHash {
            shards: shards.iter().map(|&(idx, _)| idx).collect(),
            virtual_nodes,
            slots: ring.slot_table()?,
        })
    }

    /// The shard of a slot.
    pub fn shard_of_slot(&self, slot: Slot) -> ShardIdx {
        self.slots.owner(slot)
    }

    /// The shards of the ring, as listed.
    pub fn shards(&self) -> &[ShardIdx] {
        &self.shards
    }

    /// Virtual nodes per shard.
    pub fn virtual_nodes(&self) -> u32 {
        self.virtual_nodes
    }

    /// The precomputed slot owners.
    pub fn slot_table(&self) -> &SlotTable {
        &self.slots
    }
}

/// `range`: contiguous half-open intervals `[from, to)` of integer keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeTable {
    /// `(from, shard)` in ascending `from`; each range ends where the next begins.
    starts: Vec<(i64, ShardIdx)>,
    /// End of the last range (exclusive); None = unbounded.
    end: Option<i64>,
}

impl RangeTable {
    /// Contiguous ranges given by their starts (ascending) and the end of the last (exclusive, None
    /// for unbounded). None if the starts are not strictly ascending or the end is not above the
    /// last start.
    pub fn new(starts: Vec<(i64, ShardIdx)>, end: Option<i64>) -> Option<RangeTable> {
        let ascending = starts.windows(2).all(|w| w[0].0 < w[1].0);
        let end_ok = match (starts.last(), end) {
            (Some(&(last, _)), Some(end)) => end > last,
            (Some(_), None) => true,
            (None, _) => false,
        };
        (ascending && end_ok).then_some(RangeTable { starts, end })
    }

    /// The shard whose range holds `key`, None outside every range.
    pub fn shard_of(&self, key: i128) -> Option<ShardIdx> {
        if self.end.is_some_and(|end| key >= i128::from(end)) {
            return None;
        }
        let at = self
            .starts
            .partition_point(|&(from, _)| i128::from(from) <= key);
        at.checked_sub(1).map(|i| self.starts[i].1)
    }

    /// The ranges as `(from, to, shard)`, `to` None for unbounded.
    pub fn ranges(&self) -> impl Iterator<Item = (i64, Option<i64>, ShardIdx)> + '_ {
        self.starts.iter().enumerate().map(|(i, &(from, shard))| {
            let to = self.starts.get(i + 1).map(|&(next, _)| next).or(self.end);
            (from, to, shard)
        })
    }
}

/// `modulo`: integer keys by Euclidean remainder, string keys by `key_hash % n`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Modulo {
    shards: Vec<ShardIdx>,
}

impl Modulo {
    /// Modulo over `shards`, in that order. None when `shards` is empty.
    pub fn new(shards: Vec<ShardIdx>) -> Option<Modulo> {
        (!shards.is_empty()).then_some(Modulo { shards })
    }

    /// The shard of `key`.
    pub fn shard_of(&self, key: Key<'_>) -> ShardIdx {
        let n = self.shards.len();
        let at = match key {
            Key::Int(v) => v.rem_euclid(n as i128) as usize,
            Key::Bytes(b) => (key_hash(b) % n as u64) as usize,
        };
        self.shards[at]
    }

    /// The shards, in modulo order.
    pub fn shards(&self) -> &[ShardIdx] {
        &self.shards
    }
}

/// A sharded table's algorithm, resolved.
#[derive(Clone, Debug)]
pub enum Algorithm {
    /// Slot-based consistent hashing.
    ConsistentHash(ConsistentHash),
    /// Integer ranges.
    Range(RangeTable),
    /// Remainder by shard count.
    Modulo(Modulo),
}

impl Algorithm {
    /// The name used in the map file.
    pub fn name(&self) -> &'static str {
        match self {
            Algorithm::ConsistentHash(_) => "consistent_hash",
            Algorithm::Range(_) => "range",
            Algorithm::Modulo(_) => "modulo",
        }
    }

    /// Whether two algorithms place every key on the same shard (so rows of two tables with equal
    /// keys are always together).
    pub fn same_placement(&self, other: &Algorithm) -> bool {
        match (self, other) {
            (Algorithm::ConsistentHash(a), Algorithm::ConsistentHash(b)) => a.slots == b.slots,
            (Algorithm::Range(a), Algorithm::Range(b)) => a == b,
            (Algorithm::Modulo(a), Algorithm::Modulo(b)) => a == b,
            _ => false,
        }
    }

    /// The shard of a canonical key.
    pub fn shard_of(&self, key: Key<'_>) -> Result<ShardIdx, Error> {
        match (self, key) {
            (Algorithm::ConsistentHash(ch), key) => Ok(ch.shard_of_slot(key.slot())),
            (Algorithm::Range(r), Key::Int(v)) => r.shard_of(v).ok_or(Error::KeyOutOfRange),
            (Algorithm::Range(_), Key::Bytes(_)) => Err(Error::KeyNotInteger),
            (Algorithm::Modulo(m), key) => Ok(m.shard_of(key)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fmix64_reference_values() {
        assert_eq!(fmix64(0), 0);
        // fmix64 is a bijection: distinct inputs, distinct outputs.
        assert_ne!(fmix64(1), fmix64(2));
    }

    #[test]
    fn decimal_roundtrip_and_limits() {
        let mut buf = [0u8; 20];
        for v in [
            0i128,
            7,
            -1,
            i128::from(i64::MIN),
            i128::from(u64::MAX),
            1_000_000,
        ] {
            let text = write_decimal(v, &mut buf).to_vec();
            assert_eq!(text, v.to_string().into_bytes());
            assert_eq!(parse_decimal(&text), Some(v));
        }
        assert_eq!(parse_decimal(b"  +42 "), Some(42));
        assert_eq!(parse_decimal(b"18446744073709551616"), None);
        assert_eq!(parse_decimal(b"-9223372036854775809"), None);
        for bad in [&b""[..], b"-", b"4 2", b"0x10", b"1e3", b"12a"] {
            assert_eq!(parse_decimal(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn integer_and_string_forms_of_one_key_agree() {
        let slot = |t, k| with_key(t, k, |k| k.slot()).unwrap();
        assert_eq!(
            slot(KeyType::Integer, KeyValue::Int(42)),
            slot(KeyType::Integer, KeyValue::Bytes(b"42"))
        );
        assert_eq!(
            slot(KeyType::Integer, KeyValue::Int(42)),
            slot(KeyType::Integer, KeyValue::UInt(42))
        );
        assert_eq!(
            slot(KeyType::String, KeyValue::Int(-7)),
            slot(KeyType::String, KeyValue::Bytes(b"-7"))
        );
        assert!(matches!(
            with_key(KeyType::Integer, KeyValue::Bytes(b"x"), |_| ()),
            Err(Error::KeyNotInteger)
        ));
    }

    #[test]
    fn ring_wraps_and_slot_table_matches_owner() {
        let ch = ConsistentHash::new(&[(ShardIdx(0), "s0"), (ShardIdx(1), "s1")], 16).unwrap();
        let ring = Ring::new([(ShardIdx(0), "s0"), (ShardIdx(1), "s1")], 16);
        assert_eq!(ring.len(), 32);
        for n in 0..Slot::COUNT as u16 {
            let slot = Slot::new(n).unwrap();
            assert_eq!(Some(ch.shard_of_slot(slot)), ring.owner(slot.start_point()));
        }
        let last = ring.points.last().unwrap().0;
        assert_eq!(ring.owner(last.wrapping_add(1)), Some(ring.points[0].1));
        assert!(ConsistentHash::new(&[], 16).is_none());
        assert!(ConsistentHash::new(&[(ShardIdx(0), "s0")], 0).is_none());
    }

    #[test]
    fn ring_ignores_listing_order() {
        let a = Ring::new([(ShardIdx(0), "s0"), (ShardIdx(1), "s1")], 64);
        let b = Ring::new([(ShardIdx(1), "s1"), (ShardIdx(0), "s0")], 64);
        assert_eq!(a.slot_table(), b.slot_table());
    }

    #[test]
    fn ranges_are_half_open() {
        let r = RangeTable::new(vec![(0, ShardIdx(0)), (100, ShardIdx(1))], Some(200)).unwrap();
        assert_eq!(r.shard_of(-1), None);
        assert_eq!(r.shard_of(0), Some(ShardIdx(0)));
        assert_eq!(r.shard_of(99), Some(ShardIdx(0)));
        assert_eq!(r.shard_of(100), Some(ShardIdx(1)));
        assert_eq!(r.shard_of(199), Some(ShardIdx(1)));
        assert_eq!(r.shard_of(200), None);
        let open = RangeTable::new(vec![(i64::MIN, ShardIdx(0))], None).unwrap();
        assert_eq!(open.shard_of(i128::from(u64::MAX)), Some(ShardIdx(0)));
        assert!(RangeTable::new(vec![(5, ShardIdx(0)), (5, ShardIdx(1))], None).is_none());
        assert!(RangeTable::new(vec![(5, ShardIdx(0))], Some(5)).is_none());
    }

    #[test]
    fn modulo_is_euclidean() {
        let m = Modulo::new(vec![ShardIdx(2), ShardIdx(0), ShardIdx(1)]).unwrap();
        assert_eq!(m.shard_of(Key::Int(0)), ShardIdx(2));
        assert_eq!(m.shard_of(Key::Int(4)), ShardIdx(0));
        assert_eq!(m.shard_of(Key::Int(-1)), ShardIdx(1));
        assert!(Modulo::new(Vec::new()).is_none());
    }
}
