//! Tests of [`Limits`]: matching, decisions, counters, run-time changes, the runtime file.

use std::time::{Duration, Instant};

use peakgate_router::{RouteHint, StatementKind};

use super::*;

fn rules(text: &str) -> Vec<RuleConfig> {
    #[derive(serde::Deserialize)]
    struct File {
        rules: Vec<RuleConfig>,
    }
    toml::from_str::<File>(text).unwrap().rules
}

fn limits(text: &str) -> Limits {
    Limits::new(rules(text)).unwrap()
}

fn query() -> Query<'static> {
    Query {
        user: "shop",
        schema: Some("shop"),
        tables: &["orders"],
        kind: StatementKind::Read,
        digest: 0x1234,
        hints: &[],
    }
}

fn refusal(d: Decision) -> Refusal {
    match d {
        Decision::Deny(r) => r,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn deny_rule(name: &str, matcher: &str) -> String {
    format!("[[rules]]\nname = \"{name}\"\n{matcher}\ndeny = {{}}\n")
}

#[test]
fn no_rules_allow_everything() {
    let l = Limits::default();
    assert!(matches!(l.check(&query()), Decision::Allow));
    assert_eq!(l.priority(&query()), Priority::Normal);
    assert!(l.snapshot().is_empty());
    // Priority-only rules never decide.
    let l = limits("[[rules]]\nname = \"p\"\npriority = \"critical\"\n");
    assert!(matches!(l.check(&query()), Decision::Allow));
    assert_eq!(l.snapshot()[0].hits, 0);
}

#[test]
fn each_match_field() {
    let digest = peakgate_router::classify::scan(b"SELECT * FROM orders WHERE id = 7");
    let digest_hex = format!("digest = \"{:016x}\"", digest.digest);
    let cases: [(&str, Query<'_>, Query<'_>); 9] = [
        (
            "user = \"bi\"",
            Query {
                user: "bi",
                ..query()
            },
            query(),
        ),
        (
            "schema = \"shop\"",
            query(),
            Query {
                schema: Some("other"),
                ..query()
            },
        ),
        (
            "schema = \"shop\"",
            query(),
            Query {
                schema: None,
                ..query()
            },
        ),
        (
            "table = \"reviews\"",
            Query {
                tables: &["orders", "shop.reviews"],
                ..query()
            },
            query(),
        ),
        (
            "table = \"shop.reviews\"",
            Query {
                tables: &["reviews"],
                ..query()
            },
            Query {
                tables: &["reviews"],
                schema: Some("archive"),
                ..query()
            },
        ),
        (
            "kind = \"WRITE\"",
            Query {
                kind: StatementKind::Write,
                ..query()
            },
            query(),
        ),
        (
            &digest_hex,
            Query {
                digest: digest.digest,
                ..query()
            },
            query(),
        ),
        (
            "digest = \"select * from orders where id = 123\"",
            Query {
                digest: digest.digest,
                ..query()
            },
            query(),
        ),
        (
            "hint = \"flow = reviews\"",
            Query {
                hints: &[("route", "replica"), ("FLOW", "Reviews")],
                ..query()
            },
            Query {
                hints: &[("flow", "checkout")],
                ..query()
            },
        ),
    ];
    for (matcher, hit, miss) in cases {
        let l = limits(&deny_rule("r", matcher));
        assert!(
            matches!(l.check(&hit), Decision::Deny(_)),
            "{matcher} should match {hit:?}"
        );
        assert!(
            matches!(l.check(&miss), Decision::Allow),
            "{matcher} should not match {miss:?}"
        );
    }
}

#[test]
fn every_field_must_match_and_first_rule_decides() {
    let l = limits(&format!(
        "{}{}{}",
        deny_rule("writes-to-reviews", "table = \"reviews\"\nkind = \"write\""),
        "[[rules]]\nname = \"bi\"\nuser = \"bi\"\nroute = \"reporting\"\n",
        deny_rule("all", ""),
    ));
    let reviews_read = Query {
        tables: &["reviews"],
        user: "bi",
        ..query()
    };
    match l.check(&reviews_read) {
        Decision::Route { rule, route } => {
            assert_eq!((&*rule, route), ("bi", RouteHint::Reporting));
        }
        other => panic!("{other:?}"),
    }
    let reviews_write = Query {
        kind: StatementKind::Write,
        ..reviews_read
    };
    assert_eq!(&*refusal(l.check(&reviews_write)).rule, "writes-to-reviews");
    assert_eq!(&*refusal(l.check(&query())).rule, "all");
    let hits: Vec<u64> = l.snapshot().iter().map(|r| r.hits).collect();
    assert_eq!(hits, [1, 1, 1]);
}

#[test]
fn deny_codes_and_messages() {
    let l = limits(
        r#"
[[rules]]
name = "reviews-off"
table = "reviews"
deny = { code = 1142, sqlstate = "42000", message = "Reviews are closed during the sale" }

[[rules]]
name = "switch"
deny = {}
"#,
    );
    let r = refusal(l.check(&Query {
        tables: &["reviews"],
        ..query()
    }));
    assert_eq!((r.code, &*r.sqlstate), (1142, "42000"));
    assert_eq!(
        &*r.message,
        "Reviews are closed during the sale (PeakGate rule \"reviews-off\")"
    );
    let r = refusal(l.check(&query()));
    assert_eq!(
        r.to_string(),
        "ERROR 1290 (HY000): PeakGate rule \"switch\" refuses this statement (feature switched off)"
    );
    let s = l.snapshot();
    assert_eq!((s[0].hits, s[0].refused, s[1].refused), (1, 1, 1));
}

#[test]
fn rate_limit_admits_the_rate_and_names_the_rule() {
    let l = limits(
        "[[rules]]\nname = \"search\"\nkind = \"read\"\nrate_limit = { qps = 50, burst = 5 }\n",
    );
    let t0 = Instant::now();
    let write = Query {
        kind: StatementKind::Write,
        ..query()
    };
    // 200 qps offered for 4 s: the burst plus 50 per second get through.
    let mut admitted = 0;
    for i in 0..800u32 {
        let now = t0 + Duration::from_millis(5) * i;
        match l.check_at(&query(), now) {
            Decision::Allow => admitted += 1,
            Decision::Deny(r) => {
                assert_eq!((r.code, &*r.sqlstate), (RATE_LIMIT_CODE, "42000"));
                assert_eq!(
                    &*r.message,
                    "PeakGate rule \"search\": more than 50 statements per second (burst 5); retry later"
                );
            }
            other => panic!("{other:?}"),
        }
        // Other traffic is not limited.
        assert!(matches!(l.check_at(&write, now), Decision::Allow));
    }
    assert!((200..=205).contains(&admitted), "{admitted}");
    let s = &l.snapshot_at(t0 + Duration::from_secs(4))[0];
    assert_eq!((s.hits, s.refused), (800, 800 - admitted));
    assert!(s.tokens.is_some_and(|t| t <= 1), "{s:?}");
    // A quiet spell fills the bucket to the burst.
    assert_eq!(
        l.snapshot_at(t0 + Duration::from_secs(60))[0].tokens,
        Some(5)
    );
}

#[test]
fn route_and_delay_are_counted() {
    let l = limits(
        "[[rules]]\nname = \"slow\"\nuser = \"crawler\"\ndelay_ms = 250\n\
         [[rules]]\nname = \"primary\"\nkind = \"read\"\nroute = \"primary\"\n",
    );
    match l.check(&Query {
        user: "crawler",
        ..query()
    }) {
        Decision::Delay { rule, duration } => {
            assert_eq!((&*rule, duration), ("slow", Duration::from_millis(250)));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        l.check(&query()),
        Decision::Route {
            route: RouteHint::Primary,
            ..
        }
    ));
    let s = l.snapshot();
    assert_eq!((s[0].delayed, s[1].routed), (1, 1));
}

fn admission(l: &Limits) -> Admission {
    match l.check(&query()) {
        Decision::Wait(a) => a,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn concurrency_limit_queue_and_timeout() {
    let l = limits(
        "[[rules]]\nname = \"reports\"\nmax_concurrency = { limit = 2, queue = 1, timeout_ms = 100 }\n",
    );
    let a = admission(&l).admit().await.unwrap();
    let b = admission(&l).admit().await.unwrap();
    // The third waits; the fourth finds the queue full.
    let waiter = tokio::spawn(admission(&l).admit());
    tokio::task::yield_now().await;
    assert_eq!(l.snapshot()[0].queued, Some(1));
    let r = admission(&l).admit().await.unwrap_err();
    assert_eq!((r.code, &*r.sqlstate), (1205, "HY000"));
    assert_eq!(
        &*r.message,
        "PeakGate rule \"reports\": too many concurrent statements (2 running, 1 waiting); retry later"
    );
    // A slot given back goes to the waiter.
    drop(a);
    let c = waiter.await.unwrap().unwrap();
    assert_eq!(l.snapshot()[0].in_flight, Some(2));
    // Nobody gives one back: the next waiter times out after 100 ms (virtual time).
    let started = tokio::time::Instant::now();
    let r = admission(&l).admit().await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_millis(100));
    assert_eq!(
        &*r.message,
        "PeakGate rule \"reports\": too many concurrent statements, no slot within 100 ms; retry later"
    );
    drop((b, c));
    let s = &l.snapshot()[0];
    assert_eq!((s.hits, s.waited, s.refused), (5, 2, 2));
    assert_eq!((s.in_flight, s.queued), (Some(0), Some(0)));
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_wait_leaves_the_queue() {
    let l = limits(
        "[[rules]]\nname = \"one\"\nmax_concurrency = { limit = 1, queue = 1, timeout_ms = 1000 }\n",
    );
    let _held = admission(&l).admit().await.unwrap();
    let waiting = tokio::spawn(admission(&l).admit());
    tokio::task::yield_now().await;
    assert_eq!(l.snapshot()[0].queued, Some(1));
    waiting.abort();
    let _ = waiting.await;
    assert_eq!(l.snapshot()[0].queued, Some(0));
}

#[test]
fn replacing_rules_keeps_counters_and_state_by_name() {
    let text = "[[rules]]\nname = \"rl\"\nrate_limit = { qps = 1, burst = 1 }\n";
    let l = limits(&format!("{text}{}", deny_rule("gone", "user = \"x\"")));
    let t = Instant::now() + Duration::from_secs(1);
    assert!(matches!(l.check_at(&query(), t), Decision::Allow));
    assert!(matches!(l.check_at(&query(), t), Decision::Deny(_)));
    // Same name, same settings: counters and the empty bucket stay.
    l.replace_rules(rules(text)).unwrap();
    assert!(matches!(l.check_at(&query(), t), Decision::Deny(_)));
    assert_eq!(l.snapshot()[0].hits, 3);
    assert_eq!(l.snapshot().len(), 1);
    // New settings: a new bucket, same counters.
    l.replace_rules(rules(&text.replace("burst = 1", "burst = 2")))
        .unwrap();
    assert!(matches!(l.check_at(&query(), t), Decision::Allow));
    assert_eq!(l.snapshot()[0].refused, 2);
    // An invalid list changes nothing.
    let e = l
        .replace_rules(rules(&text.replace("qps = 1", "qps = -1")))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "rules[0].rate_limit.qps: -1 is not a rate above 0 and at most 1e9"
    );
    assert_eq!(l.rules()[0].rate_limit.unwrap().burst, Some(2));
}

#[test]
fn switching_rules_on_and_off() {
    let l = limits(&deny_rule("reviews", "table = \"reviews\""));
    let q = Query {
        tables: &["reviews"],
        ..query()
    };
    assert!(matches!(l.check(&q), Decision::Deny(_)));
    l.set_enabled("reviews", false).unwrap();
    assert!(matches!(l.check(&q), Decision::Allow));
    assert!(!l.snapshot()[0].enabled);
    l.set_enabled("reviews", true).unwrap();
    assert!(matches!(l.check(&q), Decision::Deny(_)));
    assert_eq!(l.snapshot()[0].hits, 2);
    assert!(matches!(
        l.set_enabled("nope", true),
        Err(Error::NoSuchRule(_))
    ));
    let mut slow = rules(&deny_rule("reviews", "table = \"reviews\""))[0].clone();
    slow.deny = None;
    slow.delay_ms = Some(10);
    l.upsert_rule(slow).unwrap();
    assert!(matches!(l.check(&q), Decision::Delay { .. }));
    assert_eq!(l.snapshot()[0].hits, 3);
    l.upsert_rule(rules(&deny_rule("other", ""))[0].clone())
        .unwrap();
    assert_eq!(l.rules().len(), 2);
    l.remove_rule("reviews").unwrap();
    assert_eq!(l.rules()[0].name, "other");
    assert!(l.remove_rule("reviews").is_err());
}

#[test]
fn priority_from_the_first_matching_rule() {
    let l = limits(
        "[[rules]]\nname = \"checkout\"\nhint = \"flow=checkout\"\npriority = \"critical\"\n\
         [[rules]]\nname = \"bulk\"\nuser = \"etl\"\npriority = \"normal\"\ndelay_ms = 5\n",
    );
    let checkout = Query {
        hints: &[("flow", "checkout")],
        ..query()
    };
    assert_eq!(l.priority(&checkout), Priority::Critical);
    assert_eq!(l.priority(&query()), Priority::Normal);
    assert!(matches!(l.check(&checkout), Decision::Allow));
    l.set_enabled("checkout", false).unwrap();
    assert_eq!(l.priority(&checkout), Priority::Normal);
}

#[test]
fn metrics_text() {
    let l = limits(&format!(
        "{}{}",
        deny_rule("off", ""),
        "[[rules]]\nname = \"slots\"\nmax_concurrency = { limit = 3 }\n"
    ));
    let _ = l.check(&query());
    let mut out = String::new();
    l.render_metrics(&mut out);
    assert!(
        out.contains("# TYPE peakgate_limit_rule_hits_total counter\n"),
        "{out}"
    );
    assert!(
        out.contains("peakgate_limit_rule_refused_total{rule=\"off\"} 1\n"),
        "{out}"
    );
    assert!(
        out.contains("peakgate_limit_rule_in_flight{rule=\"slots\"} 0\n"),
        "{out}"
    );
    assert!(
        !out.contains("peakgate_limit_rule_in_flight{rule=\"off\"}"),
        "{out}"
    );
    let json = serde_json::to_value(l.snapshot()).unwrap();
    assert_eq!(json[0]["action"], "deny");
    assert_eq!(json[1]["in_flight"], 0);
}

fn temp_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "peakgate-limits-{}-{name}.toml",
        std::process::id()
    ))
}

#[test]
fn runtime_file_round_trip() {
    let path = temp_path("round-trip");
    let text = r#"
[[rules]]
name = "rl"
digest = "select * from products where title like ?"
rate_limit = { qps = 2.5 }

[[rules]]
name = "reviews"
enabled = false
table = "shop.reviews"
kind = "write"
priority = "normal"
deny = { code = 1142, sqlstate = "42000", message = "closed \"today\"" }

[[rules]]
name = "slots"
max_concurrency = { limit = 2, queue = 8, timeout_ms = 250 }

[[rules]]
name = "rep"
hint = "report=yes"
route = "reporting"
"#;
    let l = limits(text);
    assert!(!l.load_runtime(&path).unwrap());
    l.save(&path).unwrap();
    let restarted = Limits::default();
    assert!(restarted.load_runtime(&path).unwrap());
    assert_eq!(restarted.rules(), rules(text));
    assert_eq!(read_runtime_file(&path).unwrap().unwrap(), rules(text));
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn broken_runtime_file_changes_nothing() {
    let path = temp_path("broken");
    let l = limits(&deny_rule("keep", ""));
    std::fs::write(&path, "[[rules]]\nname = \"x\"\ndelay_ms = 0\n").unwrap();
    let e = l.load_runtime(&path).unwrap_err().to_string();
    assert!(
        e.ends_with("rules[0].delay_ms: 0 is not in 1..=60000 (line 3)"),
        "{e}"
    );
    std::fs::write(&path, "[[rules]]\nname = \"x\"\ndelay = 5\n").unwrap();
    let e = l.load_runtime(&path).unwrap_err().to_string();
    assert!(
        e.contains("unknown field `delay`") && e.contains("line 3"),
        "{e}"
    );
    assert_eq!(l.rules()[0].name, "keep");
    std::fs::remove_file(&path).unwrap();
}
