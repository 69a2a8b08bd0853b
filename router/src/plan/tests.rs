use super::*;
use crate::Classifier;

struct R {
    eligible: bool,
    pos: GtidPos,
    load: u32,
}

impl ReplicaView for R {
    fn is_eligible(&self) -> bool {
        self.eligible
    }
    fn has_reached(&self, g: &Gtid) -> bool {
        self.pos.has_reached(g)
    }
    fn in_flight(&self) -> u32 {
        self.load
    }
}

fn r(eligible: bool, pos: &str, load: u32) -> R {
    R {
        eligible,
        pos: GtidPos::parse(pos),
        load,
    }
}

fn facts() -> SessionFacts<'static> {
    SessionFacts {
        user: "shop",
        autocommit: true,
        since_last_write_ms: None,
        last_gtid: None,
        tables: &[],
    }
}

fn go(
    sql: &str,
    f: &SessionFacts<'_>,
    reps: &[R],
    rep: &[R],
    p: &ReadPolicy,
) -> Result<Plan, PlanError> {
    let c = Classifier::new(16);
    plan(&c.classify(sql.as_bytes()), f, reps, rep, p, None)
}

fn target(sql: &str, reps: &[R]) -> (Target, Reason) {
    let p = go(sql, &facts(), reps, &[], &ReadPolicy::default()).expect("plan");
    (p.target, p.reason)
}

#[test]
fn plain_reads_go_to_the_least_busy_eligible_replica() {
    let reps = [r(true, "", 5), r(false, "", 0), r(true, "", 2)];
    assert_eq!(
        target("SELECT 1", &reps),
        (Target::Replica(2), Reason::Balanced)
    );
    assert_eq!(
        target("SELECT * FROM t WHERE id = 1", &reps[..1]),
        (Target::Replica(0), Reason::Balanced)
    );
}

#[test]
fn everything_but_plain_reads_goes_to_the_primary() {
    let reps = [r(true, "", 0)];
    for (sql, reason) in [
        ("INSERT INTO t VALUES (1)", Reason::NotRead),
        ("UPDATE t SET a = 1", Reason::NotRead),
        ("BEGIN", Reason::NotRead),
        ("START TRANSACTION READ WRITE", Reason::NotRead),
        ("COMMIT", Reason::NotRead),
        ("SET @a = 1", Reason::NotRead),
        ("SHOW TABLES", Reason::NotRead),
        ("CREATE TABLE t (a INT)", Reason::NotRead),
        ("SELECT * FROM t FOR UPDATE", Reason::LockingRead),
        ("SELECT * FROM t LOCK IN SHARE MODE", Reason::LockingRead),
        ("SELECT GET_LOCK('x', 1)", Reason::SideEffects),
        ("SELECT LAST_INSERT_ID()", Reason::SideEffects),
        ("SELECT @a := 1", Reason::SideEffects),
        ("SELECT a INTO @x FROM t LIMIT 1", Reason::SideEffects),
        (
            "SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 1",
            Reason::SideEffects,
        ),
        ("SELECT FOUND_ROWS()", Reason::SideEffects),
    ] {
        assert_eq!(target(sql, &reps), (Target::Primary, reason), "{sql}");
    }
    // Sequences: NEXT VALUE FOR writes.
    assert_eq!(target("SELECT NEXT VALUE FOR s", &reps).0, Target::Primary);
    assert_eq!(target("SELECT NEXTVAL(s)", &reps).0, Target::Primary);
}

#[test]
fn read_only_transactions_may_start_on_a_replica() {
    let reps = [r(true, "", 0)];
    assert_eq!(
        target("START TRANSACTION READ ONLY", &reps),
        (Target::Replica(0), Reason::ReadOnlyTransaction)
    );
    assert_eq!(
        target(
            "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
            &reps
        )
        .0,
        Target::Replica(0)
    );
}

#[test]
fn reads_with_autocommit_off_stay_on_the_primary() {
    let reps = [r(true, "", 0)];
    let f = SessionFacts {
        autocommit: false,
        ..facts()
    };
    let p = go("SELECT 1", &f, &reps, &[], &ReadPolicy::default()).expect("plan");
    assert_eq!(
        (p.target, p.reason),
        (Target::Primary, Reason::NoAutocommit)
    );
}

#[test]
fn hints_override() {
    let reps = [r(true, "", 0)];
    let rep = [r(true, "", 0)];
    let p = ReadPolicy::default();
    let f = facts();
    let t = |sql: &str| go(sql, &f, &reps, &rep, &p).expect("plan");
    assert_eq!(
        t("/* peakgate: route=primary */ SELECT 1").target,
        Target::Primary
    );
    assert_eq!(
        t("/* peakgate: route=primary */ SELECT 1").reason,
        Reason::Hint
    );
    assert_eq!(
        t("/* peakgate: route=replica */ SELECT 1").target,
        Target::Replica(0)
    );
    assert_eq!(
        t("SELECT /* peakgate: route=reporting */ 1").target,
        Target::Reporting(0)
    );
    // A hint cannot send a write to a replica.
    assert_eq!(
        t("/* peakgate: route=replica */ DELETE FROM t").target,
        Target::Primary
    );
}

#[test]
fn reporting_instances_never_take_oltp_reads() {
    let rep = [r(true, "", 0)];
    let p = go("SELECT 1", &facts(), &[], &rep, &ReadPolicy::default()).expect("plan");
    assert_eq!(p.target, Target::Primary);
    assert_eq!(p.reason, Reason::LagFallback);
    // A reporting read with no reporting instance left goes to a replica.
    let reps = [r(true, "", 0)];
    let down = [r(false, "", 0)];
    let p = go(
        "/* peakgate: route=reporting */ SELECT 1",
        &facts(),
        &reps,
        &down,
        &ReadPolicy::default(),
    )
    .expect("plan");
    assert_eq!(p.target, Target::Replica(0));
}

#[test]
fn rules_match_user_and_kind() {
    let rep = [r(true, "", 0)];
    let reps = [r(true, "", 0)];
    let policy = ReadPolicy {
        rules: vec![
            Rule {
                user: Some("report".into()),
                kind: None,
                tables: vec![],
                route: RouteHint::Reporting,
            },
            Rule {
                user: Some("admin".into()),
                kind: Some(StatementKind::Read),
                tables: vec![],
                route: RouteHint::Primary,
            },
        ],
        ..ReadPolicy::default()
    };
    let report = SessionFacts {
        user: "report",
        ..facts()
    };
    let admin = SessionFacts {
        user: "admin",
        ..facts()
    };
    let p = go("SELECT 1", &report, &reps, &rep, &policy).expect("plan");
    assert_eq!(
        (p.target, p.reason),
        (Target::Reporting(0), Reason::Reporting)
    );
    let p = go("SELECT 1", &admin, &reps, &rep, &policy).expect("plan");
    assert_eq!((p.target, p.reason), (Target::Primary, Reason::Rule));
    let p = go("SELECT 1", &facts(), &reps, &rep, &policy).expect("plan");
    assert_eq!(p.target, Target::Replica(0));
    // A hint beats a rule.
    let p = go(
        "/* peakgate: route=replica */ SELECT 1",
        &report,
        &reps,
        &rep,
        &policy,
    )
    .expect("plan");
    assert_eq!(p.target, Target::Replica(0));
}

#[test]
fn lag_fallback_primary_or_error() {
    let reps = [r(false, "", 0)];
    assert_eq!(
        target("SELECT 1", &reps),
        (Target::Primary, Reason::LagFallback)
    );
    let p = ReadPolicy {
        lag_fallback: LagFallback::Error,
        ..ReadPolicy::default()
    };
    assert_eq!(
        go("SELECT 1", &facts(), &reps, &[], &p),
        Err(PlanError::NoEligibleReplica)
    );
    // Writes are not affected.
    assert_eq!(
        go("DELETE FROM t", &facts(), &reps, &[], &p).map(|p| p.target),
        Ok(Target::Primary)
    );
}

#[test]
fn replica_reads_off_keeps_everything_on_the_primary() {
    let reps = [r(true, "", 0)];
    let p = ReadPolicy {
        replica_reads: false,
        ..ReadPolicy::default()
    };
    let got = go("SELECT 1", &facts(), &reps, &[], &p).expect("plan");
    assert_eq!(
        (got.target, got.reason),
        (Target::Primary, Reason::ReplicaReadsOff)
    );
    // Hints still work.
    let got = go(
        "/* peakgate: route=replica */ SELECT 1",
        &facts(),
        &reps,
        &[],
        &p,
    )
    .expect("plan");
    assert_eq!(got.target, Target::Replica(0));
}

#[test]
fn gtid_read_your_writes() {
    let g = Gtid::parse("11-3311-100").expect("gtid");
    let f = SessionFacts {
        last_gtid: Some(g),
        since_last_write_ms: Some(1),
        ..facts()
    };
    let p = ReadPolicy::default();
    // Replica 1 has the write, replica 0 (less busy) does not: replica 1.
    let reps = [r(true, "11-3311-99", 0), r(true, "0-1-5,11-3311-100", 3)];
    let got = go("SELECT 1", &f, &reps, &[], &p).expect("plan");
    assert_eq!(
        got,
        Plan {
            target: Target::Replica(1),
            reason: Reason::ReadYourWrites,
            wait_for: None
        }
    );
    // Nobody has it: wait on the least busy eligible replica.
    let reps = [
        r(true, "11-3311-99", 4),
        r(true, "11-3311-98", 3),
        r(false, "11-3311-200", 0),
    ];
    let got = go("SELECT 1", &f, &reps, &[], &p).expect("plan");
    assert_eq!(
        got,
        Plan {
            target: Target::Replica(1),
            reason: Reason::ReadYourWrites,
            wait_for: Some(g)
        }
    );
    // Other domains do not count.
    let reps = [r(true, "12-3312-500", 0)];
    assert_eq!(
        go("SELECT 1", &f, &reps, &[], &p).expect("plan").wait_for,
        Some(g)
    );
    // No waiting allowed: the primary.
    let nowait = ReadPolicy {
        read_your_writes: ReadYourWrites::Gtid { wait_ms: 0 },
        ..ReadPolicy::default()
    };
    let got = go("SELECT 1", &f, &reps, &[], &nowait).expect("plan");
    assert_eq!(
        (got.target, got.reason),
        (Target::Primary, Reason::RywPrimary)
    );
    // Off: any replica.
    let off = ReadPolicy {
        read_your_writes: ReadYourWrites::Off,
        ..ReadPolicy::default()
    };
    let got = go("SELECT 1", &f, &reps, &[], &off).expect("plan");
    assert_eq!((got.target, got.wait_for), (Target::Replica(0), None));
}

#[test]
fn sticky_primary_read_your_writes() {
    let reps = [r(true, "", 0)];
    let p = ReadPolicy {
        read_your_writes: ReadYourWrites::StickyPrimary { ms: 500 },
        ..ReadPolicy::default()
    };
    let recent = SessionFacts {
        since_last_write_ms: Some(499),
        ..facts()
    };
    let old = SessionFacts {
        since_last_write_ms: Some(500),
        ..facts()
    };
    let got = go("SELECT 1", &recent, &reps, &[], &p).expect("plan");
    assert_eq!(
        (got.target, got.reason),
        (Target::Primary, Reason::StickyPrimary)
    );
    assert_eq!(
        go("SELECT 1", &old, &reps, &[], &p).expect("plan").target,
        Target::Replica(0)
    );
}

#[test]
fn a_failed_instance_is_excluded_on_retry() {
    let c = Classifier::new(4);
    let s = c.classify(b"SELECT 1");
    let reps = [r(true, "", 0), r(true, "", 5)];
    let p = plan(
        &s,
        &facts(),
        &reps,
        &[],
        &ReadPolicy::default(),
        Some(Target::Replica(0)),
    )
    .expect("plan");
    assert_eq!(p.target, Target::Replica(1));
    let p = plan(
        &s,
        &facts(),
        &reps[..1],
        &[],
        &ReadPolicy::default(),
        Some(Target::Replica(0)),
    )
    .expect("plan");
    assert_eq!((p.target, p.reason), (Target::Primary, Reason::LagFallback));
}

#[test]
fn gtid_parsing() {
    assert_eq!(
        Gtid::parse("0-1-100"),
        Some(Gtid {
            domain: 0,
            server: 1,
            seq: 100
        })
    );
    assert_eq!(Gtid::parse(""), None);
    assert_eq!(Gtid::parse("0-1"), None);
    assert_eq!(Gtid::parse("a-1-2"), None);
    let pos = GtidPos::parse("0-1-5,11-3311-9");
    assert!(pos.has_reached(&Gtid {
        domain: 11,
        server: 3311,
        seq: 9
    }));
    assert!(pos.has_reached(&Gtid {
        domain: 11,
        server: 7,
        seq: 8
    }));
    assert!(!pos.has_reached(&Gtid {
        domain: 11,
        server: 3311,
        seq: 10
    }));
    assert!(!pos.has_reached(&Gtid {
        domain: 2,
        server: 1,
        seq: 1
    }));
    assert!(GtidPos::parse("").is_empty());
}

#[test]
fn lag_gate_hold_down() {
    let mut g = LagGate::default();
    assert!(!g.is_eligible());
    // First good reading at start-up: eligible at once.
    assert!(g.observe(0, Some(10), 500, 1000));
    assert!(g.observe(100, Some(500), 500, 1000));
    // Over the limit: out at once.
    assert!(!g.observe(200, Some(501), 500, 1000));
    // Back under: out until it has stayed under for the hold-down period.
    assert!(!g.observe(300, Some(10), 500, 1000));
    assert!(!g.observe(1200, Some(10), 500, 1000));
    // A bad reading in between restarts the clock.
    assert!(!g.observe(1250, None, 500, 1000));
    assert!(!g.observe(1300, Some(10), 500, 1000));
    assert!(!g.observe(2299, Some(10), 500, 1000));
    assert!(g.observe(2300, Some(10), 500, 1000));
    g.force_out();
    assert!(!g.is_eligible());
    assert!(!g.observe(2400, Some(1), 500, 1000));
    assert!(g.observe(3400, Some(1), 500, 1000));
}

#[test]
fn gtid_position_keeps_the_highest_per_domain_and_prints() {
    let pos = GtidPos::parse("11-3311-9,0-1-5,11-3311-7");
    assert_eq!(pos.to_string(), "0-1-5,11-3311-9");
}

#[test]
fn rules_match_tables() {
    let rep = [r(true, "", 0)];
    let reps = [r(true, "", 0)];
    let policy = ReadPolicy {
        rules: vec![Rule {
            user: None,
            kind: Some(StatementKind::Read),
            tables: vec!["order_archive".into(), "shop.sales_daily".into()],
            route: RouteHint::Reporting,
        }],
        ..ReadPolicy::default()
    };
    for (tables, want) in [
        (vec!["shop.order_archive".to_string()], Target::Reporting(0)),
        (
            vec!["shop.sales_daily".to_string(), "shop.x".to_string()],
            Target::Reporting(0),
        ),
        (vec!["other.sales_daily".to_string()], Target::Replica(0)),
        (vec!["shop.orders".to_string()], Target::Replica(0)),
        (vec![], Target::Replica(0)),
    ] {
        let f = SessionFacts {
            tables: &tables,
            ..facts()
        };
        assert_eq!(
            go("SELECT 1", &f, &reps, &rep, &policy)
                .expect("plan")
                .target,
            want,
            "{tables:?}"
        );
    }
}
