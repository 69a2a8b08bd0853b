//! The session's side of cross-shard transactions (`cross_shard_transactions = "xa"`): a
//! transaction the client opened with BEGIN / START TRANSACTION runs as one XA branch per shard it
//! touches; the session keeps one backend connection per branch (the current one in `pinned`, the
//! others parked) and COMMIT runs the protocol described in `crate::xa`.

use peakgate_router::Statement;
use peakgate_router::shard_map::CrossShardTransactions;
use tracing::warn;

use super::Session;
use crate::backend::{Error, PooledConn};
use crate::errors::ClientError;
use crate::metrics::METRICS;
use crate::protocol;
use crate::xa::{bqual, failpoint, xid};

/// An open XA transaction of a session.
pub(super) struct XaTxn {
    gtrid: crate::xa::Gtrid,
    /// Shards with a branch, in the order they joined (the first is the coordinator).
    shards: Vec<usize>,
    /// Branch connections not in `Session::pinned`.
    parked: Vec<(usize, PooledConn)>,
    /// The shard of the current branch (the one in `Session::pinned`).
    current: usize,
    /// A branch's connection was lost (its shard): the transaction can only roll back.
    lost: Option<String>,
}

impl Session {
    /// Whether a BEGIN of this session starts an XA transaction.
    pub(super) fn xa_mode(&self) -> bool {
        self.shared.shard_map().cross_shard_transactions() == CrossShardTransactions::Xa
    }

    /// Opens the transaction the client began on `c`, on shard `shard`: an XA branch in XA mode,
    /// else the client's own BEGIN text. The session then holds a transaction (a failure of the
    /// statement that follows loses it, see `lost.rs`).
    pub(super) async fn open_transaction(
        &mut self,
        c: &mut PooledConn,
        shard: usize,
        begin: &str,
    ) -> Result<(), Error> {
        if !self.xa_mode() {
            c.query(begin).await?;
            self.pins.in_txn = true;
            return Ok(());
        }
        let gtrid = self.shared.xa.begin();
        c.query(&format!(
            "XA START {}",
            xid(&gtrid.id, &self.bqual_of(shard))
        ))
        .await?;
        self.xa = Some(XaTxn {
            gtrid,
            shards: vec![shard],
            parked: Vec::new(),
            current: shard,
            lost: None,
        });
        self.pins.in_txn = true;
        Ok(())
    }

    fn bqual_of(&self, shard: usize) -> String {
        bqual(&self.shared.topology.shards[shard].name)
    }

    /// Makes `shard`'s branch the current one (starting it on first use). `false`: the client
    /// got an error and the statement does not run.
    pub(super) async fn xa_switch(
        &mut self,
        seq: u8,
        shard: usize,
    ) -> Result<bool, protocol::Error> {
        let Some(mut xa) = self.xa.take() else {
            return Ok(true);
        };
        let r = self.switch_branch(&mut xa, shard).await;
        self.xa = Some(xa);
        match r {
            Ok(()) => Ok(true),
            Err(e) => {
                self.send_error(seq, &e).await;
                Ok(false)
            }
        }
    }

    async fn switch_branch(&mut self, xa: &mut XaTxn, shard: usize) -> Result<(), ClientError> {
        if let Some(lost) = &xa.lost {
            return Err(lost_error(lost));
        }
        xa.current = shard;
        if let Some(c) = self.pinned.take() {
            let s = self.shard_of_addr(&c.addr);
            if s == shard {
                self.pinned = Some(c);
                return Ok(());
            }
            xa.parked.push((s, c));
        }
        if let Some(i) = xa.parked.iter().position(|(s, _)| *s == shard) {
            let (_, mut c) = xa.parked.swap_remove(i);
            // The session may have changed variables on another branch since.
            if let Err(e) = c.sync_to(&self.state).await {
                c.broken = true;
                xa.lost = Some(self.shared.topology.shards[shard].name.clone());
                let (code, state, msg) = crate::errors::from_backend(&e);
                return Err(ClientError::new(code, leak_state(&state), msg));
            }
            self.pinned = Some(c);
            return Ok(());
        }
        let inst = self.shared.topology.shards[shard].primary.clone();
        let mut c = self.pooled(&inst).await.map_err(|e| {
            let (code, state, msg) = crate::errors::from_backend(&e);
            ClientError::new(code, leak_state(&state), msg)
        })?;
        let start = format!("XA START {}", xid(&xa.gtrid.id, &self.bqual_of(shard)));
        if let Err(e) = c.query(&start).await {
            let (code, state, msg) = crate::errors::from_backend(&e);
            return Err(ClientError::new(code, leak_state(&state), msg));
        }
        xa.shards.push(shard);
        self.pinned = Some(c);
        self.pins.in_txn = true;
        Ok(())
    }

    /// A statement while the XA transaction lost a branch: refused until COMMIT / ROLLBACK.
    pub(super) fn xa_lost(&self) -> Option<ClientError> {
        self.xa
            .as_ref()
            .and_then(|x| x.lost.as_deref())
            .map(lost_error)
    }

    /// The backend connection of the current branch died.
    pub(super) fn xa_branch_lost(&mut self) {
        if let Some(x) = &mut self.xa {
            let name = &self.shared.topology.shards[x.current].name;
            x.lost.get_or_insert_with(|| name.to_string());
        }
    }

    /// COMMIT or ROLLBACK of the XA transaction; answers the client.
    pub(super) async fn xa_end(
        &mut self,
        seq: u8,
        stmt: &Statement,
    ) -> Result<(), protocol::Error> {
        let text = stmt.digest_text.to_ascii_lowercase();
        if text.contains("chain") || text.contains("release") {
            let e = ClientError::new(
                1235,
                "42000",
                "COMMIT / ROLLBACK AND CHAIN or RELEASE is not supported in a cross-shard (XA) transaction; \
                 the transaction is still open",
            );
            self.send_error(seq, &e).await;
            return Ok(());
        }
        let commit = stmt.keyword == "COMMIT";
        let Some(mut xa) = self.xa.take() else {
            return self.send_ok(seq).await;
        };
        let mut branches = std::mem::take(&mut xa.parked);
        if let Some(c) = self.pinned.take() {
            branches.push((self.shard_of_addr(&c.addr), c));
        }
        self.pins = super::Pins::default();
        self.deferred_begin = None;
        branches.sort_by_key(|(s, _)| xa.shards.iter().position(|x| x == s));
        let names: Vec<String> = branches
            .iter()
            .map(|(s, _)| self.shared.topology.shards[*s].name.clone())
            .collect();
        let bquals: Vec<String> = branches.iter().map(|(s, _)| self.bqual_of(*s)).collect();
        let g = xa.gtrid.id.clone();
        let mut run = XaRun {
            branches: branches.into_iter().map(|(_, c)| c).collect(),
            xids: bquals.iter().map(|b| xid(&g, b)).collect(),
            names,
        };
        let outcome = if !commit {
            run.rollback().await;
            METRICS.xa_rollbacks.inc();
            Ok(())
        } else if let Some(lost) = &xa.lost {
            run.rollback().await;
            METRICS.xa_failed.inc();
            Err(lost_error(lost))
        } else if run.branches.len() == 1 {
            run.one_phase().await
        } else {
            run.two_phase(&g, &self.shared).await
        };
        // Read-your-writes: the commits' GTIDs, per shard.
        for c in &mut run.branches {
            if let Some(gtid) = c.last_gtid.take() {
                let addr = c.addr.clone();
                self.note_answer(Some(gtid), None, &addr);
            }
        }
        drop(run);
        drop(xa);
        match outcome {
            Ok(()) => self.send_ok(seq).await,
            Err(e) => {
                self.send_error(seq, &e).await;
                Ok(())
            }
        }
    }

    /// The session ends or resets with an XA transaction open: its branches' connections are
    /// closed, which rolls back branches that were not prepared.
    pub(super) fn xa_abandon(&mut self) {
        if let Some(mut xa) = self.xa.take() {
            for (_, c) in &mut xa.parked {
                c.broken = true;
            }
            if let Some(c) = &mut self.pinned {
                c.broken = true;
            }
            METRICS.xa_rollbacks.inc();
        }
    }
}

/// The branches of one XA transaction at its end, the coordinator first.
struct XaRun {
    branches: Vec<PooledConn>,
    xids: Vec<String>,
    names: Vec<String>,
}

impl XaRun {
    /// `XA END` + `XA ROLLBACK` on every branch; a branch that does not answer is dropped (its
    /// server rolls back a branch that was not prepared when the connection closes; a prepared one
    /// is rolled back by recovery, as no commit decision exists).
    async fn rollback(&mut self) {
        for (c, x) in self.branches.iter_mut().zip(&self.xids) {
            let _ = c.query(&format!("XA END {x}")).await;
            match c.query(&format!("XA ROLLBACK {x}")).await {
                Ok(_) => {}
                // Nothing to roll back (read-only or already gone).
                Err(Error::Server { ref err, .. }) if err.code == 1397 || err.code == 1402 => {}
                Err(e) => {
                    warn!(xid = %x, error = %e, "XA ROLLBACK failed; the connection is dropped");
                    c.broken = true;
                }
            }
        }
    }

    async fn one_phase(&mut self) -> Result<(), ClientError> {
        let (c, x) = (&mut self.branches[0], &self.xids[0]);
        let r = match c.query(&format!("XA END {x}")).await {
            Ok(_) => c.query(&format!("XA COMMIT {x} ONE PHASE")).await,
            Err(e) => Err(e),
        };
        match r {
            Ok(_) => {
                METRICS.xa_one_phase.inc();
                Ok(())
            }
            Err(e) => {
                let err = self.branch_error(0, &e);
                self.rollback().await;
                METRICS.xa_failed.inc();
                Err(err)
            }
        }
    }

    async fn two_phase(
        &mut self,
        gtrid: &str,
        shared: &crate::server::Shared,
    ) -> Result<(), ClientError> {
        // Phase 1: the decision record in the coordinator's branch, then END + PREPARE everywhere.
        let log = format!(
            "INSERT INTO peakgate.xa_log (gtrid) VALUES ({})",
            crate::session_state::quote_str(gtrid.as_bytes())
        );
        if let Err(e) = self.branches[0].query(&log).await {
            let err = self.branch_error(0, &e);
            self.rollback().await;
            METRICS.xa_failed.inc();
            return Err(err);
        }
        for i in 0..self.branches.len() {
            let x = self.xids[i].clone();
            let c = &mut self.branches[i];
            let r = match c.query(&format!("XA END {x}")).await {
                Ok(_) => c.query(&format!("XA PREPARE {x}")).await,
                Err(e) => Err(e),
            };
            if let Err(e) = r {
                let err = self.branch_error(i, &e);
                self.rollback().await;
                METRICS.xa_failed.inc();
                return Err(err);
            }
        }
        failpoint("xa-after-prepare").await;
        // Phase 2: the coordinator's commit is the decision.
        let x0 = self.xids[0].clone();
        match self.branches[0].query(&format!("XA COMMIT {x0}")).await {
            Ok(_) => {}
            Err(e @ Error::Server { .. }) => {
                let err = self.branch_error(0, &e);
                self.rollback().await;
                METRICS.xa_failed.inc();
                return Err(err);
            }
            Err(e) => {
                // The answer was lost: whether the coordinator committed is in its log row.
                self.branches[0].broken = true;
                match decided(shared, &self.names[0], gtrid).await {
                    Some(true) => {}
                    Some(false) => {
                        let err = self.branch_error(0, &e);
                        self.rollback_detached(shared, 0).await;
                        METRICS.xa_failed.inc();
                        return Err(err);
                    }
                    None => {
                        METRICS.xa_failed.inc();
                        return Err(ClientError::new(
                            1180,
                            "HY000",
                            format!(
                                "Got error during COMMIT: shard {} did not answer the commit of XA transaction {gtrid}; \
                                 its outcome is unknown until the shard is back, when PeakGate's XA recovery makes \
                                 every shard agree (all committed or all rolled back)",
                                self.names[0]
                            ),
                        ));
                    }
                }
            }
        }
        failpoint("xa-after-commit-decision").await;
        let mut all = true;
        for i in 1..self.branches.len() {
            let x = self.xids[i].clone();
            match self.branches[i].query(&format!("XA COMMIT {x}")).await {
                Ok(_) => {}
                // A read-only branch: its PREPARE already ended it.
                Err(Error::Server { ref err, .. }) if err.code == 1402 => {}
                Err(e) => {
                    // Decided: recovery commits this branch when its shard answers again.
                    warn!(xid = %x, error = %e, "XA COMMIT of a prepared branch failed; recovery will commit it");
                    self.branches[i].broken = true;
                    all = false;
                }
            }
        }
        if all {
            let _ = self.branches[0]
                .query(&format!(
                    "DELETE FROM peakgate.xa_log WHERE gtrid = {}",
                    crate::session_state::quote_str(gtrid.as_bytes())
                ))
                .await;
        }
        METRICS.xa_two_phase.inc();
        Ok(())
    }

    /// Rolls back every branch from connections of the pool, the one at `lost` being gone.
    async fn rollback_detached(&mut self, shared: &crate::server::Shared, lost: usize) {
        for i in 0..self.branches.len() {
            let x = self.xids[i].clone();
            let r = if i == lost {
                let addr = self.branches[i].addr.clone();
                match shared.pools.pool(&addr, 0).get().await {
                    Ok(mut c) => c.query(&format!("XA ROLLBACK {x}")).await.map(|_| ()),
                    Err(e) => Err(e),
                }
            } else {
                self.branches[i]
                    .query(&format!("XA ROLLBACK {x}"))
                    .await
                    .map(|_| ())
            };
            if let Err(e) = r {
                warn!(xid = %x, error = %e, "XA ROLLBACK failed; recovery will roll the branch back");
            }
        }
    }

    /// The client's error for a failure on branch `i`.
    fn branch_error(&mut self, i: usize, e: &Error) -> ClientError {
        if !matches!(e, Error::Server { .. }) {
            self.branches[i].broken = true;
        }
        let (code, _, msg) = crate::errors::from_backend(e);
        ClientError::new(
            1402,
            "XA100",
            format!(
                "XA_RBROLLBACK: the cross-shard transaction was rolled back on every shard: shard {} failed: {msg} ({code})",
                self.names[i]
            ),
        )
    }
}

/// Whether the coordinator's log row for `gtrid` exists on shard `name` (`None`: no answer).
async fn decided(shared: &crate::server::Shared, name: &str, gtrid: &str) -> Option<bool> {
    let shard = shared.topology.shards.iter().find(|s| *s.name == *name)?;
    let mut c = shared.pools.pool(&shard.primary.addr, 0).get().await.ok()?;
    match c
        .query(&format!(
            "SELECT 1 FROM peakgate.xa_log WHERE gtrid = {}",
            crate::session_state::quote_str(gtrid.as_bytes())
        ))
        .await
        .ok()?
    {
        crate::backend::conn::Reply::Rows { rows, .. } => Some(!rows.is_empty()),
        crate::backend::conn::Reply::Ok { .. } => Some(false),
    }
}

fn lost_error(shard: &str) -> ClientError {
    ClientError::new(
        1402,
        "XA100",
        format!(
            "XA_RBROLLBACK: the cross-shard transaction lost its connection to shard {shard}; it can only \
             roll back (ROLLBACK, or COMMIT, which rolls back)"
        ),
    )
}

/// `ClientError` wants a static SQLSTATE: the common ones, else the generic one.
fn leak_state(state: &str) -> &'static str {
    match state {
        "08S01" => "08S01",
        "08004" => "08004",
        "HY000" => "HY000",
        "42000" => "42000",
        "23000" => "23000",
        "40001" => "40001",
        "XAE07" => "XAE07",
        "XAE09" => "XAE09",
        _ => "HY000",
    }
}
