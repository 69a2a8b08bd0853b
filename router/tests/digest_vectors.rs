//! Pinned digest test vectors. The digest (normalisation + FNV-1a 64) keys caches, metrics and
//! logs across proxy versions: if one of these fails, the digest changed. Change the vectors only
//! on purpose, and say so in the commit. The hashes were cross-checked against an independent
//! FNV-1a 64 implementation over the digest text.

use peakgate_router::Classifier;
use peakgate_router::digest::fnv1a64;

/// `(sql, digest_text, digest)`.
const VECTORS: &[(&str, &str, u64)] = &[
    (
        "SELECT c FROM sbtest1 WHERE id=?",
        "select c from sbtest1 where id = ?",
        0xe5d6_27bf_f667_0a06,
    ),
    (
        "SELECT c FROM sbtest1 WHERE id=5004",
        "select c from sbtest1 where id = ?",
        0xe5d6_27bf_f667_0a06,
    ),
    (
        "SELECT c FROM sbtest1 WHERE id BETWEEN ? AND ?",
        "select c from sbtest1 where id between ? and ?",
        0xad49_3297_3daa_b1a5,
    ),
    (
        "UPDATE sbtest1 SET k=k+1 WHERE id=?",
        "update sbtest1 set k = k + ? where id = ?",
        0x5362_9977_4257_2f1f,
    ),
    (
        "INSERT INTO sbtest1 (id, k, c, pad) VALUES (?, ?, ?, ?)",
        "insert into sbtest1(id, k, c, pad) values (?, ?, ?, ?)",
        0x5b40_5427_4ea3_498c,
    ),
    (
        "UPDATE sku_stock SET stock = stock - 1 WHERE sku_id = 1001 AND stock >= 1",
        "update sku_stock set stock = stock - ? where sku_id = ? and stock >= ?",
        0x9ef2_8711_65f3_29a0,
    ),
    (
        "SELECT sku_id, stock FROM sku_stock WHERE sku_id IN (1001, 1002, 1003)",
        "select sku_id, stock from sku_stock where sku_id in (...)",
        0x3d0b_9cb2_f407_0c56,
    ),
    ("BEGIN", "begin", 0x9a84_8d5e_6672_b3de),
    ("/* only a comment */", "", 0xcbf2_9ce4_8422_2325),
];

#[test]
fn digests_match_the_pinned_vectors() {
    let classifier = Classifier::new(16);
    for &(sql, text, digest) in VECTORS {
        let st = classifier.classify(sql.as_bytes());
        assert_eq!(st.digest_text, text, "digest text of {sql:?}");
        assert_eq!(
            st.digest, digest,
            "digest of {sql:?} is {:#018x}",
            st.digest
        );
        assert_eq!(fnv1a64(text.as_bytes()), digest, "FNV-1a 64 of {text:?}");
    }
}
