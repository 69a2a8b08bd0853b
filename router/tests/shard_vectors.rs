//! Pinned shard placement: `tests/cases/shard_vectors.toml` holds, for a fixed map, the shard of
//! every listed key under each algorithm, the slot owners of the consistent-hash ring and the
//! shard of generated ids. Rows already written live where these say. If this test fails, this
//! build would put existing rows on other shards than the build that wrote them: it would move
//! rows. Change the vectors only on purpose, in a commit that says so; the file is written by the
//! ignored test `write_vectors` below. The consistent-hash and modulo vectors were cross-checked
//! against an independent implementation of the functions documented in `docs/sharding.md`.

use std::fmt::Write as _;
use std::path::PathBuf;

use peakgate_router::gene::{EPOCH_MS, IdParts};
use peakgate_router::ring::Algorithm;
use peakgate_router::{KeyValue, ShardMap, Slot, TableKind, TableRule};
use serde::Deserialize;

/// The map the vectors are computed with; written into the file so that it is self-contained.
const MAP: &str = r#"
[[tables]]
name = "v.hash"
shard_key = "k"
algorithm = "consistent_hash"

[[tables]]
name = "v.hash_string"
shard_key = "k"
key_type = "string"
algorithm = "consistent_hash"
virtual_nodes = 64

[[tables]]
name = "v.modulo"
shard_key = "k"
algorithm = "modulo"
shards = ["s2", "s0", "s3", "s1"]

[[tables]]
name = "v.modulo_string"
shard_key = "k"
key_type = "string"
algorithm = "modulo"

[[tables]]
name = "v.range"
shard_key = "k"
algorithm = "range"
ranges = [
  { shard = "s0", to = -1000 },
  { shard = "s1", from = -1000, to = 0 },
  { shard = "s2", from = 0, to = 1000000 },
  { shard = "s3", from = 1000000 },
]

[[tables]]
name = "v.gene"
shard_key = "k"
algorithm = "consistent_hash"
gene_column = "id"
"#;

/// The shards, in `[[shards]]` order.
const SHARDS: [&str; 4] = ["s0", "s1", "s2", "s3"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    map: String,
    shards: Vec<String>,
    /// Owner of each slot of `v.hash`, one character per slot: the shard's index in `shards`.
    hash_slot_owners: String,
    hash: Vec<KeyCase>,
    hash_string: Vec<KeyCase>,
    modulo: Vec<KeyCase>,
    modulo_string: Vec<KeyCase>,
    range: Vec<KeyCase>,
    gene: Vec<GeneCase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyCase {
    key: Key,
    /// The key's slot (hash-based algorithms only).
    slot: Option<u16>,
    shard: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GeneCase {
    /// The id, in decimal (ids above `i64::MAX` do not fit a TOML integer).
    id: String,
    shard: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
enum Key {
    Int(i64),
    Str(String),
}

impl Key {
    fn value(&self) -> KeyValue<'_> {
        match self {
            Key::Int(v) => KeyValue::Int(*v),
            Key::Str(s) => KeyValue::Bytes(s.as_bytes()),
        }
    }

    fn toml(&self) -> String {
        match self {
            Key::Int(v) => v.to_string(),
            Key::Str(s) => toml_string(s),
        }
    }
}

fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/cases/shard_vectors.toml")
}

fn shard_names() -> Vec<String> {
    SHARDS.iter().map(|s| s.to_string()).collect()
}

fn table<'m>(map: &'m ShardMap, name: &str) -> &'m TableRule {
    map.table(Some("v"), name).expect("table in the vector map")
}

/// The slot the table's algorithm uses for `key`, if it is hash-based.
fn slot_of(rule: &TableRule, key: &Key) -> Option<u16> {
    let TableKind::Sharded(s) = rule.kind() else {
        return None;
    };
    if !matches!(s.algorithm, Algorithm::ConsistentHash(_)) {
        return None;
    }
    peakgate_router::ring::with_key(s.key_type, key.value(), |k| k.slot().get()).ok()
}

/// Integer keys: edge values, small values, powers of two and ten, and some arbitrary ones.
fn int_keys() -> Vec<Key> {
    let mut keys: Vec<i64> = vec![
        0,
        1,
        -1,
        2,
        -2,
        i64::MIN,
        i64::MIN + 1,
        i64::MAX,
        i64::MAX - 1,
        i64::from(i32::MIN),
        i64::from(i32::MAX),
        i64::from(u32::MAX),
        -999,
        -1000,
        -1001,
        999_999,
        1_000_000,
        1_000_001,
        42,
        4_294_967_296,
        9_007_199_254_740_993,
        -9_007_199_254_740_993,
        1_234_567_890_123,
        987_654_321,
    ];
    keys.extend(3..=20);
    keys.extend((1..=18).map(|e| 10i64.pow(e)));
    keys.extend((21..=62).step_by(7).map(|b| 1i64 << b));
    let mut keys: Vec<Key> = keys.into_iter().map(Key::Int).collect();
    // Decimal strings for an integer column: read as the integers they spell.
    for s in ["42", " 42 ", "-1", "+7", "18446744073709551615", "0"] {
        keys.push(Key::Str(s.into()));
    }
    keys
}

/// String keys: empty, case and space variants, unicode, digits, control characters, a long one.
fn string_keys() -> Vec<Key> {
    let mut keys: Vec<String> = [
        "",
        "a",
        "A",
        "b",
        "abc",
        "ABC",
        "abc ",
        " abc",
        "Abc",
        "member-1",
        "member-2",
        "member-10",
        "ü",
        "u\u{308}",
        "日本語",
        "🦀",
        "naïve",
        "Straße",
        "strasse",
        "STRASSE",
        "0",
        "1",
        "42",
        "-1",
        "00",
        "0.0",
        "\t",
        "\u{0}",
        "a\u{0}b",
        "\\",
        "\"",
        "SKU-1001",
        "SKU-1002",
        "sku-1001",
        "user@example.com",
        "ÅÄÖ",
        "åäö",
        "ﬁ",
        "Ω",
        "Ω",
        "x y",
        "x  y",
        "null",
        "NULL",
        "true",
        "-",
        "#",
        "%",
        "*",
        "'",
        "shop.members",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    keys.push("k".repeat(300));
    keys.push("long-key-".repeat(40));
    keys.into_iter().map(Key::Str).collect()
}

/// Gene ids: the extremes of the layout and ids of several keys, times and nodes.
fn gene_ids(map: &ShardMap) -> Vec<u64> {
    let rule = table(map, "gene");
    let mut ids = vec![0, 1, 1023, 1024, 1025, i64::MAX as u64, u64::MAX, 1 << 63];
    for (i, key) in int_keys().iter().take(40).enumerate() {
        let gene = map
            .gene_for(rule, key.value())
            .expect("gene of a vector key");
        let parts = IdParts {
            unix_ms: EPOCH_MS + (i as u64) * 86_400_123,
            node_id: (i as u16 * 37) % 1024,
            sequence: (i % 4) as u8,
            gene,
        };
        ids.push(parts.encode().expect("vector id fits"));
    }
    ids.extend((0..Slot::COUNT as u64).step_by(97));
    ids
}

fn load_map(text: &str) -> ShardMap {
    ShardMap::from_toml(text, &shard_names(), None)
        .unwrap_or_else(|errs| panic!("vector map: {errs:?}"))
}

fn shard_of(map: &ShardMap, rule: &TableRule, key: &Key) -> String {
    match map.shard_for(rule, key.value()) {
        Ok(s) => map.shard_name(s).to_string(),
        Err(e) => format!("error: {e}"),
    }
}

fn owners(map: &ShardMap) -> String {
    let TableKind::Sharded(s) = table(map, "hash").kind() else {
        panic!("v.hash is sharded");
    };
    let Algorithm::ConsistentHash(ch) = &s.algorithm else {
        panic!("v.hash is consistent_hash");
    };
    ch.slot_table()
        .owners()
        .iter()
        .map(|o| char::from(b'0' + o.0 as u8))
        .collect()
}

#[test]
fn placement_matches_the_pinned_vectors() {
    let text = std::fs::read_to_string(path()).expect("read shard_vectors.toml");
    let file: File = toml::from_str(&text).expect("parse shard_vectors.toml");
    assert_eq!(file.map.trim(), MAP.trim(), "the vector map itself changed");
    assert_eq!(file.shards, shard_names());
    let map = load_map(&file.map);
    let mut moved = Vec::new();
    if owners(&map) != file.hash_slot_owners {
        moved.push("v.hash: slot owners differ".to_string());
    }
    let sections = [
        ("hash", &file.hash),
        ("hash_string", &file.hash_string),
        ("modulo", &file.modulo),
        ("modulo_string", &file.modulo_string),
        ("range", &file.range),
    ];
    for (name, cases) in sections {
        assert!(cases.len() >= 50, "{name}: only {} vectors", cases.len());
        let rule = table(&map, name);
        for case in cases.iter() {
            let shard = shard_of(&map, rule, &case.key);
            let slot = slot_of(rule, &case.key);
            if shard != case.shard || slot != case.slot {
                moved.push(format!(
                    "v.{name} key {}: pinned {} (slot {:?}), now {shard} (slot {slot:?})",
                    case.key.toml(),
                    case.shard,
                    case.slot
                ));
            }
        }
    }
    let rule = table(&map, "gene");
    assert!(
        file.gene.len() >= 50,
        "gene: only {} vectors",
        file.gene.len()
    );
    for case in &file.gene {
        let id: u64 = case.id.parse().expect("decimal id");
        let shard = map
            .shard_of_gene_id(rule, id)
            .map(|s| map.shard_name(s).to_string())
            .unwrap_or_else(|e| format!("error: {e}"));
        if shard != case.shard {
            moved.push(format!("gene id {id}: pinned {}, now {shard}", case.shard));
        }
    }
    assert!(
        moved.is_empty(),
        "this build would move rows; {} vectors changed:\n{}",
        moved.len(),
        moved.join("\n")
    );
}

/// The lists of keys the file pins are still the ones this file generates (so a key removed from
/// the generator is noticed too).
#[test]
fn the_file_is_what_the_generator_writes() {
    let text = std::fs::read_to_string(path()).expect("read shard_vectors.toml");
    assert!(
        text == render(),
        "shard_vectors.toml differs from the generator's output"
    );
}

fn render() -> String {
    let map = load_map(MAP);
    let mut out = String::new();
    out.push_str(
        "# Pinned shard placement: which shard each key lands on for the map below. Checked by\n\
         # tests/shard_vectors.rs; a change here means a build that moves existing rows. Written by\n\
         # `cargo test -p peakgate-router --test shard_vectors -- --ignored write_vectors`:\n\
         # regenerate only on purpose, and say so in the commit.\n\n",
    );
    let _ = writeln!(out, "shards = [{}]", SHARDS.map(toml_string).join(", "));
    let _ = writeln!(out, "map = '''{MAP}'''\n");
    let _ = writeln!(
        out,
        "# Owner of each of the 1024 slots of v.hash: index into shards.\nhash_slot_owners = \"{}\"\n",
        owners(&map)
    );
    let sections = [
        ("hash", int_keys()),
        ("hash_string", string_keys()),
        ("modulo", int_keys()),
        ("modulo_string", string_keys()),
        ("range", int_keys()),
    ];
    for (name, keys) in sections {
        let rule = table(&map, name);
        let _ = writeln!(out, "{name} = [");
        for key in &keys {
            let slot = slot_of(rule, key)
                .map(|s| format!(", slot = {s}"))
                .unwrap_or_default();
            let shard = shard_of(&map, rule, key);
            let _ = writeln!(
                out,
                "  {{ key = {}{slot}, shard = {} }},",
                key.toml(),
                toml_string(&shard)
            );
        }
        let _ = writeln!(out, "]\n");
    }
    let rule = table(&map, "gene");
    let _ = writeln!(out, "gene = [");
    for id in gene_ids(&map) {
        let shard = map
            .shard_of_gene_id(rule, id)
            .map(|s| map.shard_name(s).to_string())
            .unwrap_or_else(|e| format!("error: {e}"));
        let _ = writeln!(
            out,
            "  {{ id = \"{id}\", shard = {} }},",
            toml_string(&shard)
        );
    }
    out.push_str("]\n");
    out
}

#[test]
#[ignore = "writes tests/cases/shard_vectors.toml; run only to change placement on purpose"]
fn write_vectors() {
    std::fs::write(path(), render()).expect("write shard_vectors.toml");
}
