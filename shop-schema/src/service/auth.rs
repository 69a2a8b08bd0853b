//! Members: registration, login, sessions, and who is visiting.
//!
//! Registration takes a member id from `member_logins` (default shard; its UNIQUE email index is
//! the only place where "this email is taken" can be decided, since `members` is sharded by
//! member_id), then writes the profile on the member's shard. Passwords are salted SHA-256 (a
//! reference shop; a real one uses argon2 or scrypt). A login gives a random bearer token kept in
//! Redis with the member id.

use std::sync::atomic::Ordering::Relaxed;

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use mysql_async::prelude::Queryable;
use rand::Rng;
use redis::AsyncCommands;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{ApiError, AppState, JsonBody, Shop};
use crate::db::{ER_DUP_ENTRY, lit, server_code};

/// 16 random bytes as hex.
pub fn new_salt(rng: &mut impl Rng) -> String {
    let b: [u8; 16] = rng.random();
    hex(&b)
}

/// hex(SHA-256(salt || password)).
pub fn hash_password(salt: &str, password: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update(password.as_bytes());
    hex(&h.finalize())
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[derive(Deserialize)]
pub struct RegisterRequest {
    email: String,
    password: String,
    display_name: Option<String>,
}

#[derive(Deserialize)]
pub struct LoginRequest {
    email: String,
    password: String,
}

fn check_email(email: &str) -> Result<String, ApiError> {
    let e = email.trim().to_ascii_lowercase();
    let ok = e.len() <= 191
        && e.split_once('@')
            .is_some_and(|(u, d)| !u.is_empty() && d.contains('.') && !d.starts_with('.'))
        && !e.contains(char::is_whitespace);
    if ok {
        Ok(e)
    } else {
        Err(ApiError::BadRequest(format!(
            "email {email:?} is not an email address"
        )))
    }
}

/// `POST /members {email, password, display_name?}` -> 201 `{member_id, token}`.
pub async fn register(
    State(shop): State<AppState>,
    JsonBody(req): JsonBody<RegisterRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let email = check_email(&req.email)?;
    if req.password.chars().count() < 8 || req.password.len() > 128 {
        return Err(ApiError::BadRequest("password: 8 to 128 characters".into()));
    }
    let name = req.display_name.unwrap_or_else(|| email.clone());
    if name.chars().count() > 64 {
        return Err(ApiError::BadRequest(
            "display_name: at most 64 characters".into(),
        ));
    }
    let salt = new_salt(&mut rand::rng());
    let hash = hash_password(&salt, &req.password);
    let mut conn = shop.db.get_conn().await?;
    let taken = conn
        .query_drop(format!(
            "INSERT INTO member_logins (email, password_salt, password_hash) VALUES ({}, {}, {})",
            lit(&*email),
            lit(&*salt),
            lit(&*hash)
        ))
        .await;
    match taken {
        Err(e) if server_code(&e) == Some(ER_DUP_ENTRY) => {
            return Err(ApiError::Conflict(format!("{email} is already registered")));
        }
        other => other?,
    }
    let member_id = conn
        .last_insert_id()
        .ok_or_else(|| ApiError::Internal("no member id from member_logins".into()))?;
    conn.query_drop(format!(
        "INSERT INTO members (member_id, email, display_name) VALUES ({member_id}, {}, {})",
        lit(&*email),
        lit(&*name)
    ))
    .await?;
    shop.metrics.registrations.fetch_add(1, Relaxed);
    let token = new_session(&shop, member_id).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "member_id": member_id, "token": token })),
    ))
}

/// `POST /sessions {email, password}` -> `{member_id, token}`.
pub async fn login(
    State(shop): State<AppState>,
    JsonBody(req): JsonBody<LoginRequest>,
) -> Result<Json<Value>, ApiError> {
    let email = check_email(&req.email)?;
    let mut conn = shop.db.get_conn().await?;
    // The primary: a member who just registered logs in at once.
    let row: Option<(u64, String, String)> = conn
        .query_first(format!(
            "/* peakgate: route=primary */ SELECT member_id, password_salt, password_hash \
             FROM member_logins WHERE email = {}",
            lit(&*email)
        ))
        .await?;
    drop(conn);
    let Some((member_id, salt, hash)) = row else {
        return Err(ApiError::Unauthorized);
    };
    if hash_password(&salt, &req.password) != hash {
        return Err(ApiError::Unauthorized);
    }
    shop.metrics.logins.fetch_add(1, Relaxed);
    let token = new_session(&shop, member_id).await?;
    Ok(Json(json!({ "member_id": member_id, "token": token })))
}

async fn new_session(shop: &Shop, member_id: u64) -> Result<String, ApiError> {
    let b: [u8; 24] = rand::rng().random();
    let token = hex(&b);
    let mut r = shop.redis.clone();
    r.set_ex::<_, _, ()>(
        shop.key(&format!("session:{token}")),
        member_id,
        shop.cfg.session_ttl.as_secs().max(1),
    )
    .await?;
    Ok(token)
}

/// The logged-in member of a request (`Authorization: Bearer <token>`).
#[derive(Debug, Clone, Copy)]
pub struct Member(pub u64);

impl FromRequestParts<AppState> for Member {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, shop: &AppState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 128)
            .ok_or(ApiError::Unauthorized)?;
        let mut r = shop.redis.clone();
        let id: Option<u64> = r.get(shop.key(&format!("session:{token}"))).await?;
        id.map(Member).ok_or(ApiError::Unauthorized)
    }
}

/// Who is looking at the catalogue, for the unique-visitor count: `X-Visitor-Id`, else the
/// bearer token's first characters, else "anonymous".
pub fn visitor_of(headers: &axum::http::HeaderMap) -> String {
    if let Some(v) = headers.get("x-visitor-id").and_then(|v| v.to_str().ok()) {
        return v.chars().take(64).collect();
    }
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map_or_else(
            || "anonymous".into(),
            |t| t.chars().rev().take(16).collect(),
        )
}

/// Today's HyperLogLog key of visitors.
pub fn visitors_key(shop: &Shop) -> String {
    let day = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400);
    shop.key(&format!("uv:{day}"))
}

/// Today's unique visitors (PFCOUNT), `None` when Redis does not answer.
pub async fn unique_visitors(shop: &Shop) -> Option<u64> {
    let mut r = shop.redis.clone();
    r.pfcount(visitors_key(shop)).await.ok()
}

/// Counts a page view and its visitor (best effort: Redis trouble only costs the count).
pub async fn page_view(shop: &Shop, headers: &axum::http::HeaderMap) {
    shop.metrics.page_views.fetch_add(1, Relaxed);
    let mut r = shop.redis.clone();
    if r.pfadd::<_, _, ()>(visitors_key(shop), visitor_of(headers))
        .await
        .is_err()
    {
        shop.metrics.cache_errors.fetch_add(1, Relaxed);
    }
}

/// Notes that `member` just wrote, so their reads go to the primary for a while.
pub async fn mark_write(shop: &Shop, member: u64) {
    let mut r = shop.redis.clone();
    let ms = shop.cfg.ryw_window.as_millis().max(1) as u64;
    if r.pset_ex::<_, _, ()>(shop.key(&format!("ryw:{member}")), 1, ms)
        .await
        .is_err()
    {
        shop.metrics.cache_errors.fetch_add(1, Relaxed);
    }
}

/// The hint that a member's own read needs: `route=primary` inside the read-your-writes window
/// (and when Redis cannot tell), nothing otherwise.
pub async fn own_read_hint(shop: &Shop, member: u64) -> &'static str {
    let mut r = shop.redis.clone();
    match r
        .exists::<_, bool>(shop.key(&format!("ryw:{member}")))
        .await
    {
        Ok(false) => "",
        _ => "/* peakgate: route=primary */ ",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_their_salt() {
        let a = hash_password("00ff", "secret123");
        assert_eq!(a.len(), 64);
        assert_eq!(a, hash_password("00ff", "secret123"));
        assert_ne!(a, hash_password("00fe", "secret123"));
    }

    #[test]
    fn emails_are_checked_and_lowercased() {
        assert_eq!(check_email(" A@B.cn ").ok().as_deref(), Some("a@b.cn"));
        for bad in ["", "a", "a@b", "@b.cn", "a b@c.cn", "a@.cn"] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
    }
}
