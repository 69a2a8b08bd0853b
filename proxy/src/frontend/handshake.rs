//! Login: greeting, handshake response, `mysql_native_password` check (clients opening with
//! another plugin get an auth switch), database selection; and COM_CHANGE_USER.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tracing::{debug, info};

use super::{Next, Pins, Session};
use crate::config::Account;
use crate::errors::{ClientError, from_backend};
use crate::metrics::METRICS;
use crate::protocol::auth::{
    CACHING_SHA2_PASSWORD, NATIVE_PASSWORD, native_hash, sha2_cache_entry, verify_native,
    verify_sha2_fast,
};
use crate::protocol::constants::*;
use crate::protocol::handshake::{
    ChangeUser, Greeting, HandshakeResponse, encode_auth_switch, is_ssl_request,
};
use crate::protocol::response::encode_err;
use crate::protocol::tls::ClientStream;
use crate::protocol::{self, Framed};
use crate::server::Shared;
use crate::session_state::SessionState;

/// How long a client may take to log in.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) async fn login(
    shared: Arc<Shared>,
    client: Framed<ClientStream>,
    peer: SocketAddr,
    conn_id: u32,
) -> Option<Session> {
    match tokio::time::timeout(LOGIN_TIMEOUT, login_inner(shared, client, peer, conn_id)).await {
        Ok(Ok(Some((client, parts)))) => Some(parts.into_session(client)),
        Ok(Ok(None)) => None,
        Ok(Err(e)) => {
            debug!(error = %e, "login failed");
            None
        }
        Err(_) => {
            METRICS.error(1043);
            debug!("login timed out");
            None
        }
    }
}

/// Everything a session needs except the client stream (which the caller still owns).
struct LoggedIn {
    shared: Arc<Shared>,
    conn_id: u32,
    peer: SocketAddr,
    user: String,
    caps: u32,
    scramble: [u8; 20],
    state: SessionState,
    initial_state: SessionState,
}

impl LoggedIn {
    fn into_session(self, client: Framed<ClientStream>) -> Session {
        let pool = self.shared.pools.pool(
            self.shared.default_primary(),
            self.caps & VARIANT_CAPABILITIES,
        );
        Session {
            pool,
            handles: Vec::new(),
            last_write: None,
            last_gtids: Vec::new(),
            user_ryw: self.shared.user_writes(&self.user),
            deferred_begin: None,
            xa: None,
            lost: None,
            current_digest: None,
            current_digest_text: String::new(),
            statement_failed: false,
            statement_rows: 0,
            hot_sku: None,
            exec_db: None,
            warned_read: None,
            lane: super::lane::Lane::Main,
            hot_written: false,
            last_hot_write: None,
            hot_passes: Vec::new(),
            exec_limit: None,
            client,
            conn_id: self.conn_id,
            ctl: self.shared.sessions.register(self.conn_id, &self.user),
            peer: self.peer,
            user: self.user,
            caps: self.caps,
            scramble: self.scramble,
            state: self.state,
            initial_state: self.initial_state,
            multi_statements: self.caps & CLIENT_MULTI_STATEMENTS != 0,
            pinned: None,
            pins: Pins::default(),
            stmts: HashMap::new(),
            next_stmt_id: 1,
            shared: self.shared,
        }
    }
}

/// A printable scramble without NUL bytes (some clients treat the scramble as a C string).
fn new_scramble() -> [u8; 20] {
    let mut rng = rand::rng();
    let mut s = [0u8; 20];
    for b in &mut s {
        *b = rng.random_range(0x21u8..0x7f);
    }
    s
}

async fn login_inner(
    shared: Arc<Shared>,
    mut client: Framed<ClientStream>,
    peer: SocketAddr,
    conn_id: u32,
) -> Result<Option<(Framed<ClientStream>, LoggedIn)>, protocol::Error> {
    let scramble = new_scramble();
    let mut offered = PROXY_CAPABILITIES;
    if shared.tls.is_some() {
        offered |= CLIENT_SSL;
    }
    let greeting = Greeting {
        server_version: shared.server_version.clone(),
        connection_id: conn_id,
        scramble: scramble.to_vec(),
        capabilities: offered,
        collation: DEFAULT_COLLATION,
        status: SERVER_STATUS_AUTOCOMMIT,
        auth_plugin: NATIVE_PASSWORD.into(),
    };
    client.write_packet(0, &greeting.encode());
    client.flush().await?;
    let (mut seq, mut payload) = match client.read_packet(Some(1), 1 << 16).await {
        Ok(p) => p,
        Err(e @ (protocol::Error::Closed | protocol::Error::Io(_))) => return Err(e),
        Err(e) => {
            refuse(
                &mut client,
                2,
                1043,
                "08S01",
                &format!("Bad handshake: {e}"),
            )
            .await;
            return Ok(None);
        }
    };
    if is_ssl_request(&payload) {
        let Some(acceptor) = shared.tls.clone() else {
            let next = seq.wrapping_add(1);
            refuse(
                &mut client,
                next,
                1043,
                "08S01",
                "Bad handshake: TLS is not configured on this PeakGate listener",
            )
            .await;
            return Ok(None);
        };
        let (stream, leftover) = client.into_parts();
        let ClientStream::Plain(tcp) = stream else {
            return Err(protocol::Error::Malformed("second SSL request"));
        };
        let tls = acceptor
            .accept(crate::protocol::tls::Prefixed::new(leftover, tcp))
            .await?;
        client = Framed::new(ClientStream::Tls(Box::new(tls)));
        (seq, payload) = client
            .read_packet(Some(seq.wrapping_add(1)), 1 << 16)
            .await?;
    }
    let is_tls = client.get_ref().is_tls();
    let mut next = seq.wrapping_add(1);
    let resp = match HandshakeResponse::parse(&payload) {
        Ok(r) => r,
        Err(e) => {
            refuse(
                &mut client,
                next,
                1043,
                "08S01",
                &format!("Bad handshake: {e}"),
            )
            .await;
            return Ok(None);
        }
    };
    let user = String::from_utf8_lossy(&resp.user).into_owned();
    let account = shared.accounts.iter().find(|a| a.name == user).cloned();
    let plugin = resp.auth_plugin.as_deref().unwrap_or(NATIVE_PASSWORD);
    let verified = if plugin == CACHING_SHA2_PASSWORD && resp.capabilities & CLIENT_PLUGIN_AUTH != 0
    {
        let (ok, n) = caching_sha2(
            &shared,
            &mut client,
            account.as_ref(),
            &scramble,
            &resp.auth_response,
            next,
            is_tls,
        )
        .await?;
        next = n;
        ok
    } else {
        let mut answer = resp.auth_response.clone();
        if plugin != NATIVE_PASSWORD && resp.capabilities & CLIENT_PLUGIN_AUTH != 0 {
            // Another plugin (e.g. sha256_password): ask for mysql_native_password instead.
            client.write_packet(next, &encode_auth_switch(NATIVE_PASSWORD, &scramble));
            client.flush().await?;
            let (s, p) = client
                .read_packet(Some(next.wrapping_add(1)), 1 << 16)
                .await?;
            next = s.wrapping_add(1);
            answer = p.to_vec();
        }
        check_password(account.as_ref(), &scramble, &answer)
    };
    let caps = resp.capabilities & offered;
    if !verified {
        let using = if resp.auth_response.is_empty() {
            "NO"
        } else {
            "YES"
        };
        let msg = format!(
            "Access denied for user '{user}'@'{}' (using password: {using})",
            peer.ip()
        );
        info!(user, "access denied");
        refuse(&mut client, next, 1045, "28000", &msg).await;
        return Ok(None);
    }
    if account.as_ref().is_some_and(|a| a.require_tls) && !is_tls {
        let msg = format!(
            "Access denied for user '{user}'@'{}': this account requires TLS (connect with SSL)",
            peer.ip()
        );
        refuse(&mut client, next, 1045, "28000", &msg).await;
        return Ok(None);
    }
    let mut state = SessionState::default();
    if resp.collation != DEFAULT_COLLATION && resp.collation != 0 {
        // The handshake's collation is session state like any other: replay it.
        let id = resp.collation.to_string();
        for v in [
            "character_set_client",
            "character_set_results",
            "collation_connection",
        ] {
            state.sysvars.insert(v.into(), id.clone());
        }
    }
    let initial_state = state.clone();
    if let Some(db) = &resp.database {
        state.schema = Some(String::from_utf8_lossy(db).into_owned());
    }
    let parts = LoggedIn {
        shared,
        conn_id,
        peer,
        user,
        caps,
        scramble,
        state,
        initial_state,
    };
    if parts.state.schema.is_some() {
        // Check the database exists now, as a server would at login.
        let pool = parts
            .shared
            .pools
            .pool(parts.shared.default_primary(), caps & VARIANT_CAPABILITIES);
        // Login runs under a timeout: if it fires mid-command, the connection must not go back
        // to the pool with an unread answer, so it counts as broken until the check completes.
        let checked = match pool.get().await {
            Ok(mut c) => {
                c.broken = true;
                let r = c.sync_to(&parts.state).await;
                c.broken = r.is_err() && !matches!(r, Err(crate::backend::Error::Server { .. }));
                r
            }
            Err(e) => Err(e),
        };
        if let Err(e) = checked {
            let (code, state, msg) = from_backend(&e);
            METRICS.error(code);
            client.write_packet(next, &encode_err(code, &state, &msg));
            let _ = client.flush().await;
            return Ok(None);
        }
    }
    let ok = crate::protocol::response::simple_ok(SERVER_STATUS_AUTOCOMMIT, caps);
    client.write_packet(next, &ok);
    client.flush().await?;
    Ok(Some((client, parts)))
}

/// `caching_sha2_password` as MySQL 8 does it: fast auth against the cache when the user has
/// logged in before; otherwise full authentication, which needs the cleartext password and so
/// TLS. Without TLS and without a cache entry the client is switched to mysql_native_password.
/// Returns whether the user is verified and the next sequence id.
async fn caching_sha2(
    shared: &Shared,
    client: &mut Framed<ClientStream>,
    account: Option<&Account>,
    scramble: &[u8; 20],
    answer: &[u8],
    mut next: u8,
    is_tls: bool,
) -> Result<(bool, u8), protocol::Error> {
    let Some(account) = account else {
        return Ok((false, next));
    };
    let cached = shared
        .sha2_cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&account.name)
        .copied();
    if let Some(entry) = cached
        && verify_sha2_fast(&entry, scramble, answer)
    {
        client.write_packet(next, &[0x01, 0x03]);
        return Ok((true, next.wrapping_add(1)));
    }
    if !is_tls {
        client.write_packet(next, &encode_auth_switch(NATIVE_PASSWORD, scramble));
        client.flush().await?;
        let (s, p) = client
            .read_packet(Some(next.wrapping_add(1)), 1 << 16)
            .await?;
        return Ok((
            verify_native(&account.hash, scramble, &p),
            s.wrapping_add(1),
        ));
    }
    // Full authentication over TLS: the client sends its password in clear (NUL-terminated).
    client.write_packet(next, &[0x01, 0x04]);
    client.flush().await?;
    let (s, p) = client
        .read_packet(Some(next.wrapping_add(1)), 1 << 16)
        .await?;
    next = s.wrapping_add(1);
    let password = p.strip_suffix(&[0]).unwrap_or(&p);
    let ok = native_hash(password) == account.hash;
    if ok {
        shared
            .sha2_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(account.name.clone(), sha2_cache_entry(password));
    }
    Ok((ok, next))
}

fn check_password(account: Option<&Account>, scramble: &[u8], answer: &[u8]) -> bool {
    match account {
        Some(a) => verify_native(&a.hash, scramble, answer),
        None => false,
    }
}

async fn refuse(client: &mut Framed<ClientStream>, seq: u8, code: u16, state: &str, msg: &str) {
    METRICS.error(code);
    client.write_packet(seq, &encode_err(code, state, msg));
    let _ = client.flush().await;
}

/// COM_CHANGE_USER: log in again as another user on the same connection; the session starts over.
pub(super) async fn change_user(
    s: &mut Session,
    seq: u8,
    body: &[u8],
) -> Result<Next, protocol::Error> {
    let req = match ChangeUser::parse(body, s.caps) {
        Ok(r) => r,
        Err(e) => {
            let ce = ClientError::new(1043, "08S01", format!("Bad handshake: COM_CHANGE_USER {e}"));
            s.send_error(seq, &ce).await;
            return Ok(Next::Close);
        }
    };
    let user = String::from_utf8_lossy(&req.user).into_owned();
    let account = s.shared.accounts.iter().find(|a| a.name == user).cloned();
    let mut next = seq;
    let mut answer = req.auth_response.clone();
    let plugin = req.auth_plugin.as_deref().unwrap_or(NATIVE_PASSWORD);
    if plugin != NATIVE_PASSWORD || !check_password(account.as_ref(), &s.scramble, &answer) {
        // Ask again with a fresh scramble, as servers do after COM_CHANGE_USER.
        s.scramble = new_scramble();
        s.client
            .write_packet(next, &encode_auth_switch(NATIVE_PASSWORD, &s.scramble));
        s.client.flush().await?;
        let (sq, p) = s
            .client
            .read_packet(Some(next.wrapping_add(1)), 1 << 16)
            .await?;
        next = sq.wrapping_add(1);
        answer = p.to_vec();
    }
    if !check_password(account.as_ref(), &s.scramble, &answer) {
        let msg = format!(
            "Access denied for user '{user}'@'{}' (using password: YES)",
            s.peer.ip()
        );
        s.send_error(next, &ClientError::new(1045, "28000", msg))
            .await;
        return Ok(Next::Close);
    }
    s.reset_session(false).await;
    s.user_ryw = s.shared.user_writes(&user);
    s.ctl.set_user(&user);
    s.user = user;
    if let Some(c) = req.collation
        && c != DEFAULT_COLLATION
        && c != 0
    {
        let id = c.to_string();
        for v in [
            "character_set_client",
            "character_set_results",
            "collation_connection",
        ] {
            s.initial_state.sysvars.insert(v.into(), id.clone());
            s.state.sysvars.insert(v.into(), id.clone());
        }
    }
    s.state.schema = req
        .database
        .map(|d| String::from_utf8_lossy(&d).into_owned());
    if s.state.schema.is_some() {
        let checked = match s.pool.get().await {
            Ok(mut c) => c.sync_to(&s.state).await,
            Err(e) => Err(e),
        };
        if let Err(e) = checked {
            let (code, state, msg) = from_backend(&e);
            s.state.schema = None;
            s.send_error_raw(next, code, &state, &msg).await?;
            return Ok(Next::Continue);
        }
    }
    s.send_ok(next).await?;
    Ok(Next::Continue)
}
