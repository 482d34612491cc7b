//! Who may use the web server.
//!
//! * By default it listens on loopback only. A token-less loopback server answers only
//!   requests whose `Host` is a loopback name or address (`localhost`, `127.0.0.1`, `[::1]`,
//!   the configured address): a DNS-rebinding page, whose requests carry its own host name,
//!   cannot read `/api/` or `/metrics`.
//! * A non-loopback `listen` refuses to start unless a token of at least
//!   [`MIN_TOKEN_LEN`] characters is configured (`auth_token_env` or `auth_token_file`) or
//!   `insecure = true` says so explicitly.
//! * With a token, every request (pages, `/api/`, `/metrics`) needs either the header
//!   `Authorization: Bearer TOKEN` or the session cookie that the `/login` form sets: a random
//!   session id (not the token) that expires after [`SESSION_TTL`], `HttpOnly`,
//!   `SameSite=Strict`, and `Secure` behind TLS. Only `/login` and the static `/assets/` are
//!   open. After [`FREE_FAILURES`] failed sign-ins in a row (form entries or wrong bearer
//!   tokens), sign-in pauses (429 with `Retry-After`), doubling per further failure up to
//!   [`MAX_PAUSE`]; the right bearer token still passes.
//!
//! The token itself never appears in logs, errors or `--help`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Result;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::pages::PAGE_HEADERS;
use super::{AppState, WebConfig};

/// Shortest token accepted for a non-loopback `listen`.
pub const MIN_TOKEN_LEN: usize = 16;
/// How long a sign-in lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Most sessions kept (the oldest goes first).
const MAX_SESSIONS: usize = 1024;
/// Failed sign-ins in a row before sign-in pauses.
pub const FREE_FAILURES: u32 = 5;
/// The first pause, doubled per further failure.
const FIRST_PAUSE: Duration = Duration::from_secs(5);
/// The longest pause.
pub const MAX_PAUSE: Duration = Duration::from_secs(300);
/// The session cookie's name.
const COOKIE: &str = "vmtel_session";

/// The access token. Its `Debug` output is redacted.
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// A token from its text (surrounding white space removed).
    pub fn new(text: &str) -> Option<Token> {
        let t = text.trim();
        (!t.is_empty()).then(|| Token(t.to_owned()))
    }

    /// Compares in time independent of where the first difference is.
    pub fn matches(&self, candidate: &str) -> bool {
        let a = self.0.as_bytes();
        let b = candidate.as_bytes();
        let mut diff = a.len() ^ b.len();
        for (i, x) in a.iter().enumerate() {
            diff |= usize::from(x ^ b.get(i).copied().unwrap_or(0));
        }
        diff == 0
    }

    /// Its length in characters.
    pub fn len(&self) -> usize {
        self.0.chars().count()
    }

    /// Never true (an empty token is not a token); for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Why `token` is too weak to expose the dashboard beyond loopback, with the fix.
pub fn weak_token_problem(token: &Token) -> Option<String> {
    (token.len() < MIN_TOKEN_LEN).then(|| {
        format!(
            "the web token has {} characters; a non-loopback web.listen needs at least {MIN_TOKEN_LEN}: generate one, e.g. `openssl rand -hex 24`",
            token.len()
        )
    })
}

/// Sign-in sessions, and the throttle on failed sign-ins.
#[derive(Debug, Default)]
pub struct Sessions {
    inner: Mutex<SessionState>,
}

#[derive(Debug, Default)]
struct SessionState {
    /// Session id (hex) → when it expires.
    live: HashMap<String, Instant>,
    /// Failed sign-ins since the last success.
    failures: u32,
    /// No sign-in is checked before this.
    paused_until: Option<Instant>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, SessionState> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new session id, valid for [`SESSION_TTL`]; `None` if the system has no randomness.
    pub fn create(&self, now: Instant) -> Option<String> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).ok()?;
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut s = self.lock();
        s.live.retain(|_, exp| *exp > now);
        if s.live.len() >= MAX_SESSIONS {
            if let Some(oldest) = s
                .live
                .iter()
                .min_by_key(|(_, e)| **e)
                .map(|(k, _)| k.clone())
            {
                s.live.remove(&oldest);
            }
        }
        s.live.insert(id.clone(), now + SESSION_TTL);
        Some(id)
    }

    /// True if `id` is a live session.
    pub fn valid(&self, id: &str, now: Instant) -> bool {
        self.lock().live.get(id).is_some_and(|exp| *exp > now)
    }

    /// How long sign-in is still paused at `now`, if it is.
    pub fn paused(&self, now: Instant) -> Option<Duration> {
        self.lock()
            .paused_until
            .map(|t| t.saturating_duration_since(now))
            .filter(|d| !d.is_zero())
    }

    /// Records a failed sign-in; returns the pause that starts now, if one does.
    pub fn failed(&self, now: Instant) -> Option<Duration> {
        let mut s = self.lock();
        s.failures = s.failures.saturating_add(1);
        let over = s.failures.checked_sub(FREE_FAILURES)?;
        let pause = FIRST_PAUSE
            .saturating_mul(1u32 << over.min(16))
            .min(MAX_PAUSE);
        s.paused_until = Some(now + pause);
        Some(pause)
    }

    /// Records a successful sign-in.
    pub fn succeeded(&self) {
        let mut s = self.lock();
        s.failures = 0;
        s.paused_until = None;
    }
}

/// Why `addr` may not be served as configured, with the fix.
pub fn exposure_problem(addr: SocketAddr, has_token: bool, insecure: bool) -> Option<String> {
    if addr.ip().is_loopback() || has_token || insecure {
        return None;
    }
    Some(format!(
        "web.listen = \"{addr}\" is reachable from other machines but no token is configured: set web.auth_token_env (an environment variable holding the token) or web.auth_token_file, or set web.insecure = true to serve without authentication"
    ))
}

/// Reads the token from the configured environment variable or file.
pub fn resolve_token(config: &WebConfig) -> Result<Option<Token>> {
    if let Some(var) = &config.auth_token_env {
        let value = std::env::var(var).unwrap_or_default();
        return match Token::new(&value) {
            Some(t) => Ok(Some(t)),
            None => anyhow::bail!(
                "web.auth_token_env = {var:?}, but that environment variable is not set or empty: export it with the token, or remove web.auth_token_env"
            ),
        };
    }
    if let Some(path) = &config.auth_token_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!(
                "cannot read web.auth_token_file {}: {e}; create it (one line: the token, readable by vmtel only) or remove the option",
                path.display()
            )
        })?;
        let first = text.lines().next().unwrap_or("");
        return match Token::new(first) {
            Some(t) => Ok(Some(t)),
            None => anyhow::bail!(
                "web.auth_token_file {} is empty; write the token on its first line",
                path.display()
            ),
        };
    }
    Ok(None)
}

fn presented(headers: &HeaderMap, token: &Token, sessions: &Sessions) -> bool {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some(t) = v.strip_prefix("Bearer ") {
            if token.matches(t.trim()) {
                return true;
            }
        }
    }
    let now = Instant::now();
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| {
            c.trim()
                .strip_prefix(COOKIE)
                .and_then(|r| r.strip_prefix('='))
        })
        .any(|id| sessions.valid(id, now))
}

/// Middleware: with a token configured, rejects requests that do not present it.
pub async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(token) = &state.token else {
        return next.run(req).await;
    };
    let path = req.uri().path();
    if path == "/login"
        || path.starts_with("/assets/")
        || presented(req.headers(), token, &state.sessions)
    {
        return next.run(req).await;
    }
    // A wrong bearer token is a failed sign-in like a wrong form entry: guesses through the
    // API are throttled too (the right token still passes while sign-in is paused).
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer "));
    if bearer {
        let now = Instant::now();
        let pause = match state.sessions.paused(now) {
            Some(p) => Some(p),
            None => state.sessions.failed(now),
        };
        if let Some(pause) = pause {
            let secs = pause.as_secs().max(1).to_string();
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, secs)],
                "too many wrong tokens: try again later\n",
            )
                .into_response();
        }
    }
    if path.starts_with("/api/") || path == "/metrics" {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "this vmtel requires a token: send the header \"Authorization: Bearer TOKEN\"\n",
        )
            .into_response();
    }
    Redirect::to("/login").into_response()
}

/// True if `host` (a `Host` header: name or address, optional port) names this machine's
/// loopback or the address served.
pub fn loopback_host(host: &str, served: SocketAddr) -> bool {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':')
            .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
            .map_or(host, |(name, _)| name)
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match name.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback() || ip == served.ip(),
        Err(_) => false,
    }
}

/// Middleware: a token-less server on loopback answers only requests addressed to a loopback
/// host (a DNS-rebinding page sends its own name). Requests without `Host` (not a browser)
/// pass.
pub async fn check_host(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if state.token.is_some() || !state.addr.ip().is_loopback() {
        return next.run(req).await;
    }
    let host = req
        .headers()
        .get(header::HOST)
        .map(|h| h.to_str().unwrap_or("\u{fffd}"));
    match host {
        Some(h) if !loopback_host(h, state.addr) => (
            StatusCode::MISDIRECTED_REQUEST,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!(
                "this dashboard answers only requests to a loopback address: open http://{}/ (requests naming another host are refused, against DNS rebinding)\n",
                state.addr
            ),
        )
            .into_response(),
        _ => next.run(req).await,
    }
}

const LOGIN: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>vmtel: sign in</title><link rel="stylesheet" href="/assets/app.css"></head>
<body><main class="login"><h1>vmtel</h1>
<p>This dashboard requires the access token configured for it (<code>[web] auth_token_env</code> or <code>auth_token_file</code>).</p>
<form method="post" action="/login"><label>Token <input type="password" name="token" autocomplete="current-password" autofocus></label>
<button type="submit">Sign in</button></form>MESSAGE</main></body></html>
"#;

/// The sign-in page, with `error` (plain text) under the form.
fn login_page(status: StatusCode, error: Option<&str>) -> Response {
    let message = error.map_or_else(String::new, |e| {
        let escaped = e
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        format!("<p class=\"error\">{escaped}</p>")
    });
    (
        status,
        PAGE_HEADERS,
        Html(LOGIN.replace("MESSAGE", &message)),
    )
        .into_response()
}

/// `GET /login`: the sign-in form.
pub async fn login_form() -> Response {
    login_page(StatusCode::OK, None)
}

/// The sign-in form's fields.
#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
}

fn paused_page(pause: Duration) -> Response {
    let secs = pause.as_secs().max(1);
    let mut r = login_page(
        StatusCode::TOO_MANY_REQUESTS,
        Some(&format!("Too many failed sign-ins: try again in {secs} s.")),
    );
    if let Ok(v) = header::HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// `POST /login`: sets a session cookie when the token is right.
pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let Some(token) = &state.token else {
        return Redirect::to("/").into_response();
    };
    let now = Instant::now();
    if let Some(pause) = state.sessions.paused(now) {
        return paused_page(pause);
    }
    if !token.matches(form.token.trim()) {
        if let Some(pause) = state.sessions.failed(now) {
            tracing::warn!(
                "{FREE_FAILURES} or more failed dashboard sign-ins in a row: sign-in paused for {} s",
                pause.as_secs()
            );
            return paused_page(pause);
        }
        return login_page(
            StatusCode::UNAUTHORIZED,
            Some("That token is not the configured one. Try again."),
        );
    }
    state.sessions.succeeded();
    let Some(id) = state.sessions.create(now) else {
        return login_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            Some("No randomness available for a session; use the Authorization header."),
        );
    };
    let behind_tls = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    let secure = if state.secure_cookie || behind_tls {
        "; Secure"
    } else {
        ""
    };
    (
        StatusCode::SEE_OTHER,
        [
            (
                header::SET_COOKIE,
                format!(
                    "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
                    SESSION_TTL.as_secs()
                ),
            ),
            (header::LOCATION, "/".to_owned()),
        ],
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_open_other_addresses_need_a_token() {
        let lo: SocketAddr = "127.0.0.1:8080".parse().unwrap_or_else(|_| unreachable!());
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap_or_else(|_| unreachable!());
        let v6: SocketAddr = "[::1]:8080".parse().unwrap_or_else(|_| unreachable!());
        assert!(exposure_problem(lo, false, false).is_none());
        assert!(exposure_problem(v6, false, false).is_none());
        assert!(exposure_problem(any, false, false).is_some());
        assert!(exposure_problem(any, true, false).is_none());
        assert!(exposure_problem(any, false, true).is_none());
    }

    #[test]
    fn token_compare_and_redaction() {
        let t = Token::new(" s3cret\n").expect("token");
        assert!(t.matches("s3cret"));
        assert!(!t.matches("s3cre"));
        assert!(!t.matches("s3cret!"));
        assert!(!format!("{t:?}").contains("s3cret"));
    }

    #[test]
    fn loopback_hosts_only() {
        let served: SocketAddr = "127.0.0.1:8080".parse().unwrap_or_else(|_| unreachable!());
        for ok in [
            "127.0.0.1:8080",
            "127.0.0.1",
            "localhost:8080",
            "LOCALHOST",
            "[::1]:8080",
            "127.9.9.9:1",
        ] {
            assert!(loopback_host(ok, served), "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "evil.example",
            "localhost.evil.example",
            "10.0.0.1:8080",
            "[::2]:8080",
            "",
        ] {
            assert!(!loopback_host(bad, served), "{bad}");
        }
    }

    #[test]
    fn sessions_are_random_expire_and_failures_pause_sign_in() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let a = s.create(t0).expect("session");
        let b = s.create(t0).expect("session");
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert!(s.valid(&a, t0 + Duration::from_secs(60)));
        assert!(!s.valid(&a, t0 + SESSION_TTL + Duration::from_secs(1)));
        assert!(!s.valid("not-a-session", t0));
        for _ in 1..FREE_FAILURES {
            assert_eq!(s.failed(t0), None);
        }
        assert_eq!(s.failed(t0), Some(FIRST_PAUSE));
        assert!(s.paused(t0).is_some());
        assert_eq!(s.paused(t0 + FIRST_PAUSE), None);
        assert_eq!(s.failed(t0), Some(FIRST_PAUSE * 2));
        for _ in 0..40 {
            s.failed(t0);
        }
        assert_eq!(s.paused(t0), Some(MAX_PAUSE));
        s.succeeded();
        assert_eq!(s.paused(t0), None);
    }

    #[test]
    fn short_tokens_are_weak() {
        assert!(weak_token_problem(&Token::new("short").expect("t")).is_some());
        assert!(weak_token_problem(&Token::new(&"x".repeat(16)).expect("t")).is_none());
    }
}
