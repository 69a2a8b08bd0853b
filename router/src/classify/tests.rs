//! Unit tests for the classifier: the cache, hostile input, and rules the golden file cannot show
//! (the bulk of the rules is in `tests/cases/classify.toml`).

use super::*;

#[test]
fn kind_names_round_trip() {
    for kind in StatementKind::ALL {
        assert_eq!(StatementKind::from_name(kind.as_str()), Some(kind));
        assert_eq!(kind.to_string(), kind.as_str());
    }
    assert_eq!(StatementKind::from_name("select"), None);
}

#[test]
fn cache_holds_one_verdict_per_digest_and_is_bounded() {
    let classifier = Classifier::new(2);
    classifier.classify(b"SELECT c FROM sbtest1 WHERE id=1");
    classifier.classify(b"select c from sbtest1 where id = 2");
    assert_eq!(classifier.cache_len(), 1);
    classifier.classify(b"DELETE FROM sbtest1 WHERE id=1");
    classifier.classify(b"BEGIN");
    assert_eq!(classifier.cache_len(), 2);
    // Zero capacity still caches one digest rather than failing.
    let tiny = Classifier::new(0);
    tiny.classify(b"SELECT 1");
    assert_eq!(tiny.cache_len(), 1);
}

#[test]
fn cached_answers_equal_fresh_ones() {
    let classifier = Classifier::new(16);
    let fresh = classifier.classify(b"SELECT * FROM t WHERE id = 1 LOCK IN SHARE MODE");
    let cached = classifier.classify(b"SELECT * FROM t WHERE id = 2 LOCK IN SHARE MODE");
    assert_eq!(fresh.digest, cached.digest);
    assert_eq!((fresh.kind, fresh.parsed), (cached.kind, cached.parsed));
    assert_eq!(cached.literals, vec![27..28]);
    assert!(cached.locking_read && !cached.parsed);
}

#[test]
fn lexer_only_scan_matches_classify_except_parsed() {
    let sql = b"/* peakgate: route=replica */ SELECT @a := 1 FROM t WHERE x IN (1, 2)";
    let scanned = scan(sql);
    let classified = Classifier::new(4).classify(sql);
    assert!(!scanned.parsed);
    assert_eq!(scanned.kind, classified.kind);
    assert_eq!(scanned.digest_text, classified.digest_text);
    assert_eq!(scanned.effects, classified.effects);
    assert_eq!(scanned.hints, classified.hints);
}

#[test]
fn invalid_utf8_is_classified_but_not_parsed() {
    let st = Classifier::new(4).classify(b"SELECT * FROM t WHERE name = '\xff\xfe'");
    assert_eq!(st.kind, StatementKind::Read);
    assert_eq!(st.keyword, "SELECT");
    assert!(!st.parsed);
    assert_eq!(st.digest_text, "select * from t where name = ?");
    let st = Classifier::new(4).classify(b"SELECT \xff FROM t");
    assert_eq!(st.digest_text, "select \u{fffd} from t");
}

/// Test threads have 2 MiB stacks, like tokio's workers: an overflow here aborts the test binary.
#[test]
fn hostile_nesting_does_not_overflow_the_stack() {
    let classifier = Classifier::new(64);
    let n = 100_000;
    let shapes = [
        format!("SELECT {}1{}", "(".repeat(n), ")".repeat(n)),
        format!("SELECT {}1", "-".repeat(n)),
        format!("SELECT {}1", "- ".repeat(n)),
        format!("SELECT {}1", "NOT ".repeat(n)),
        format!("SELECT {}", "CASE WHEN 1 THEN ".repeat(n)),
        format!(
            "SELECT * FROM t WHERE a IN {}1",
            "(SELECT a FROM t WHERE a IN ".repeat(n)
        ),
        format!("SELECT 1 {}", "UNION SELECT 1 ".repeat(n)),
        format!("SELECT {}1", "a + ".repeat(n)),
        format!("SELECT {}", "a + ".repeat(n)),
        format!("SELECT 1 FROM t WHERE {}x = 1", "x = 1 OR ".repeat(n)),
        format!("SELECT {}", "a IS NOT NULL AND ".repeat(n)),
        format!("SELECT x{}", " COLLATE utf8mb4_bin".repeat(n)),
        format!("SELECT j{}", "->'$.a'".repeat(n)),
        format!("SELECT {}", "f(".repeat(n)),
        format!("SELECT {}", "CAST(".repeat(n)),
        format!("SELECT {}", "'a' ".repeat(n)),
        format!("SELECT 1 FROM t0 {}", "JOIN t1 ON 1 ".repeat(n)),
        // Just under the operator limit: handed to sqlparser, which must cope (error path too).
        format!("SELECT 1 {}", "UNION SELECT 1 ".repeat(1_999)),
        format!("SELECT {}", "a + ".repeat(1_999)),
    ];
    for sql in shapes {
        let st = classifier.classify(sql.as_bytes());
        assert_eq!(st.keyword, "SELECT");
    }
}

#[test]
fn huge_statement_classifies_in_linear_time() {
    let row = "(1, 5018, '95869512341-81213437455-41452430128', '60564129435-89458233417'),";
    let sql = format!(
        "INSERT INTO sbtest1(id, k, c, pad) VALUES {}(1, 2, 'x', 'y')",
        row.repeat(50_000)
    );
    let started = std::time::Instant::now();
    let st = Classifier::new(4).classify(sql.as_bytes());
    assert_eq!(st.kind, StatementKind::Write);
    assert_eq!(
        st.digest_text,
        "insert into sbtest1(id, k, c, pad) values (?, ?, ?, ?), ..."
    );
    assert_eq!(st.literals.len(), 50_001 * 4);
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

#[test]
fn classifier_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Classifier>();
    assert_send_sync::<Statement>();
}
