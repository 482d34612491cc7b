//! Who may use the web server.
//!
//! * By default it listens on loopback only.
//! * A non-loopback `listen` refuses to start unless a token is configured
//!   (`auth_token_env` or `auth_token_file`) or `insecure = true` says so explicitly.
//! * With a token, every request (pages, `/api/`, `/metrics`) needs either the header
//!   `Authorization: Bearer TOKEN` or the `vmtel_token` cookie that the `/login` form sets
//!   (HttpOnly, SameSite=Strict). Only `/login` and the static `/assets/` are open.
//!
//! The token itself never appears in logs, errors or `--help`.

use std::net::SocketAddr;

use anyhow::Result;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::{AppState, WebConfig};

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

    fn cookie_value(&self) -> String {
        hex(&self.0)
    }
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
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

fn presented(headers: &HeaderMap, token: &Token) -> bool {
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
    let want = token.cookie_value();
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix("vmtel_token="))
        .any(|v| Token(want.clone()).matches(v))
}

/// Middleware: with a token configured, rejects requests that do not present it.
pub async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(token) = &state.token else {
        return next.run(req).await;
    };
    let path = req.uri().path();
    if path == "/login" || path.starts_with("/assets/") || presented(req.headers(), token) {
        return next.run(req).await;
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

const LOGIN: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>vmtel: sign in</title><link rel="stylesheet" href="/assets/app.css"></head>
<body><main class="login"><h1>vmtel</h1>
<p>This dashboard requires the access token configured for it (<code>[web] auth_token_env</code> or <code>auth_token_file</code>).</p>
<form method="post" action="/login"><label>Token <input type="password" name="token" autocomplete="current-password" autofocus></label>
<button type="submit">Sign in</button></form>MESSAGE</main></body></html>
"#;

/// `GET /login`: the sign-in form.
pub async fn login_form() -> Html<String> {
    Html(LOGIN.replace("MESSAGE", ""))
}

/// The sign-in form's fields.
#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
}

/// `POST /login`: sets the session cookie when the token is right.
pub async fn login(State(state): State<AppState>, Form(form): Form<LoginForm>) -> Response {
    let Some(token) = &state.token else {
        return Redirect::to("/").into_response();
    };
    if !token.matches(form.token.trim()) {
        return (
            StatusCode::UNAUTHORIZED,
            Html(LOGIN.replace(
                "MESSAGE",
                "<p class=\"error\">That token is not the configured one. Try again.</p>",
            )),
        )
            .into_response();
    }
    (
        StatusCode::SEE_OTHER,
        [
            (
                header::SET_COOKIE,
                format!(
                    "vmtel_token={}; HttpOnly; SameSite=Strict; Path=/",
                    token.cookie_value()
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
}
