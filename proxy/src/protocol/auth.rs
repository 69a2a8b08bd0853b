//! Password scrambles: `mysql_native_password` (client side for backends, server side for clients)
//! and `caching_sha2_password` fast-auth verification.

use sha1::{Digest, Sha1};
use sha2::Sha256;

pub const NATIVE_PASSWORD: &str = "mysql_native_password";
pub const CACHING_SHA2_PASSWORD: &str = "caching_sha2_password";

/// The stored form of a password: SHA1(SHA1(password)), as `PASSWORD()` prints it after the `*`.
pub type NativeHash = [u8; 20];

/// SHA1(SHA1(password)).
pub fn native_hash(password: &[u8]) -> NativeHash {
    let stage1 = Sha1::digest(password);
    Sha1::digest(stage1).into()
}

/// Parses `*6BB4837EB74329105EE4568DDA7DC67ED2CA2AD9` (the `PASSWORD()` format).
pub fn parse_native_hash(text: &str) -> Option<NativeHash> {
    let hex = text.strip_prefix('*')?;
    if hex.len() != 40 {
        return None;
    }
    let mut out = [0u8; 20];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Formats a hash as `PASSWORD()` does.
pub fn format_native_hash(hash: &NativeHash) -> String {
    let mut s = String::with_capacity(41);
    s.push('*');
    for b in hash {
        s.push_str(&format!("{b:02X}"));
    }
    s
}

/// The client's answer to `scramble`: SHA1(pw) XOR SHA1(scramble + SHA1(SHA1(pw))).
pub fn native_scramble(password: &[u8], scramble: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let stage1 = Sha1::digest(password);
    let stage2 = Sha1::digest(stage1);
    let mut h = Sha1::new();
    h.update(scramble);
    h.update(stage2);
    let mix = h.finalize();
    stage1.iter().zip(mix.iter()).map(|(a, b)| a ^ b).collect()
}

/// Checks a client's `mysql_native_password` answer against the stored hash without knowing the password.
pub fn verify_native(stored: &NativeHash, scramble: &[u8], answer: &[u8]) -> bool {
    if answer.len() != 20 {
        return false;
    }
    let mut h = Sha1::new();
    h.update(scramble);
    h.update(stored);
    let mix = h.finalize();
    let stage1: Vec<u8> = answer.iter().zip(mix.iter()).map(|(a, b)| a ^ b).collect();
    let candidate: [u8; 20] = Sha1::digest(&stage1).into();
    constant_time_eq(&candidate, stored)
}

/// SHA256(SHA256(password)), the value `caching_sha2_password` fast auth checks against.
pub fn sha2_cache_entry(password: &[u8]) -> [u8; 32] {
    Sha256::digest(Sha256::digest(password)).into()
}

/// Checks a `caching_sha2_password` fast-auth answer: SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) + nonce).
pub fn verify_sha2_fast(cached: &[u8; 32], nonce: &[u8], answer: &[u8]) -> bool {
    if answer.len() != 32 {
        return false;
    }
    let mut h = Sha256::new();
    h.update(cached);
    h.update(nonce);
    let mix = h.finalize();
    let stage1: Vec<u8> = answer.iter().zip(mix.iter()).map(|(a, b)| a ^ b).collect();
    let candidate: [u8; 32] = Sha256::digest(&stage1).into();
    constant_time_eq(&candidate, cached)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_function_vector() {
        // SELECT PASSWORD('shop') on MariaDB.
        let h = native_hash(b"shop");
        let s = format_native_hash(&h);
        assert_eq!(parse_native_hash(&s), Some(h));
        assert_eq!(
            format_native_hash(&native_hash(b"root")),
            "*81F5E21E35407D884A6CD4A731AEBFB6AF209E1B"
        );
    }

    #[test]
    fn native_scramble_verifies() {
        let scramble = b"abcdefghijklmnopqrst";
        let answer = native_scramble(b"secret", scramble);
        assert!(verify_native(&native_hash(b"secret"), scramble, &answer));
        assert!(!verify_native(&native_hash(b"other"), scramble, &answer));
        assert!(!verify_native(
            &native_hash(b"secret"),
            scramble,
            &answer[..19]
        ));
    }

    #[test]
    fn sha2_fast_auth_verifies() {
        let nonce = b"0123456789abcdefghij";
        let pw = b"secret";
        let s1 = Sha256::digest(pw);
        let s2 = Sha256::digest(s1);
        let mut h = Sha256::new();
        h.update(s2);
        h.update(nonce);
        let mix = h.finalize();
        let answer: Vec<u8> = s1.iter().zip(mix.iter()).map(|(a, b)| a ^ b).collect();
        assert!(verify_sha2_fast(&sha2_cache_entry(pw), nonce, &answer));
        assert!(!verify_sha2_fast(
            &sha2_cache_entry(b"nope"),
            nonce,
            &answer
        ));
    }

    #[test]
    fn bad_hash_text_is_rejected() {
        assert!(parse_native_hash("6BB4").is_none());
        assert!(parse_native_hash("*ZZ").is_none());
        assert!(parse_native_hash("*é6BB4837EB74329105EE4568DDA7DC67ED2CA2A").is_none());
    }
}
