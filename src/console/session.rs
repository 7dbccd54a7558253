//! Console sessions: an API token exchanged for a random session id in a cookie, a CSRF
//! token per session, and the throttle of failed sign-ins.
//!
//! Sessions live in the daemon's memory only: a restart signs everyone out (tokens are
//! loaded at start too, so a session never outlives the token's configuration). The map
//! is keyed by the SHA-256 of the session id, so a lookup's timing says nothing about the
//! id, and it holds at most [`MAX_SESSIONS`] (the one expiring first makes room).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::api::Principal;

/// How long a session lasts from sign-in.
pub const LIFETIME: Duration = Duration::from_hours(8);
/// Sessions held at once.
pub const MAX_SESSIONS: usize = 10_000;
/// Failed sign-ins from one address within [`THROTTLE_WINDOW`] before further attempts
/// from it are refused until the window has passed.
pub const MAX_FAILURES: u32 = 5;
pub const THROTTLE_WINDOW: Duration = Duration::from_mins(5);
/// The session cookie's name.
pub const COOKIE: &str = "acctd_session";
/// The sign-in form's CSRF cookie (double submit: no session exists yet).
pub const SIGN_IN_COOKIE: &str = "acctd_sign_in";

/// 32 random bytes as 64 lowercase hex digits, from the operating system's generator.
///
/// # Panics
/// The operating system has no random source (the daemon cannot run safely then).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).expect("the operating system's random source");
    let mut out = String::with_capacity(64);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Whether two secrets are equal, compared in constant time.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A signed-in user.
#[derive(Clone, Debug)]
pub struct Session {
    pub principal: Principal,
    /// The token every form of this session carries.
    pub csrf: String,
    expires: Instant,
}

/// The sessions of this process.
#[derive(Default)]
pub struct Sessions(Mutex<HashMap<[u8; 32], Session>>);

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    /// Starts a session; returns its id (the cookie's value).
    pub fn start(&self, principal: Principal) -> String {
        let id = random_token();
        let now = Instant::now();
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS {
            if let Some(first) = map.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k) {
                map.remove(&first);
            }
        }
        map.insert(
            key(&id),
            Session {
                principal,
                csrf: random_token(),
                expires: now + LIFETIME,
            },
        );
        id
    }

    /// The live session of an id.
    pub fn get(&self, id: &str) -> Option<Session> {
        let map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(&key(id))
            .filter(|s| s.expires > Instant::now())
            .cloned()
    }

    /// Ends a session (sign-out).
    pub fn end(&self, id: &str) {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.remove(&key(id));
    }
}

/// Failed sign-ins by client address.
#[derive(Default)]
pub struct Throttle(Mutex<HashMap<IpAddr, (u32, Instant)>>);

impl Throttle {
    /// How long `ip` must wait before trying again, if it must.
    pub fn wait(&self, ip: IpAddr) -> Option<Duration> {
        let map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (failures, since) = map.get(&ip)?;
        let left = THROTTLE_WINDOW.checked_sub(since.elapsed())?;
        (*failures >= MAX_FAILURES).then_some(left)
    }

    /// Counts a failed sign-in from `ip`.
    pub fn failed(&self, ip: IpAddr) {
        let now = Instant::now();
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.retain(|_, (_, since)| now.duration_since(*since) < THROTTLE_WINDOW);
        let entry = map.entry(ip).or_insert((0, now));
        entry.0 += 1;
    }

    /// Forgets the failures of `ip` (a successful sign-in).
    pub fn succeeded(&self, ip: IpAddr) {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.remove(&ip);
    }
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, scoped to the console, `Secure` when
/// the request came over TLS.
pub fn cookie(name: &str, value: &str, max_age: Duration, secure: bool) -> String {
    format!(
        "{name}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}{}",
        max_age.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// A cookie's value from a request's `Cookie` headers.
pub fn read_cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Role;

    #[test]
    fn sessions_start_find_and_end() {
        let sessions = Sessions::default();
        let id = sessions.start(Principal {
            name: "ops".into(),
            role: Role::Admin,
        });
        assert_eq!(id.len(), 64);
        let session = sessions.get(&id).unwrap();
        assert_eq!(session.principal.name, "ops");
        assert_ne!(session.csrf, id);
        assert!(sessions.get(&random_token()).is_none());
        sessions.end(&id);
        assert!(sessions.get(&id).is_none());
    }

    #[test]
    fn the_sixth_failure_within_the_window_waits() {
        let throttle = Throttle::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..MAX_FAILURES {
            assert!(throttle.wait(ip).is_none());
            throttle.failed(ip);
        }
        assert!(throttle.wait(ip).is_some());
        assert!(throttle.wait("10.0.0.2".parse().unwrap()).is_none());
        throttle.succeeded(ip);
        assert!(throttle.wait(ip).is_none());
    }

    #[test]
    fn cookies_are_read_among_others() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            axum::http::header::COOKIE,
            "a=1; acctd_session=abc; b=2".parse().unwrap(),
        );
        assert_eq!(read_cookie(&headers, COOKIE), Some("abc"));
        assert_eq!(read_cookie(&headers, "c"), None);
        assert!(cookie("x", "y", LIFETIME, true).ends_with("Max-Age=28800; Secure"));
    }
}
