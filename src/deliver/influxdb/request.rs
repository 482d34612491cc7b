//! The write request of each API: URL, query parameters, headers and (gzipped) body, and the
//! HTTP client with its TLS settings.
//!
//! | api | path | target | auth header |
//! |---|---|---|---|
//! | v3 | `/api/v3/write_lp` | `db=` | `Authorization: Bearer TOKEN` |
//! | v2 | `/api/v2/write` | `bucket=` (`org=`) | `Authorization: Token TOKEN` |
//! | v1 | `/write` | `db=` | `Authorization: Token TOKEN`, or `Basic` with username and password |
//!
//! Every request carries `precision=` (`s`, `ms`, `us`, `ns`), `Content-Type: text/plain;
//! charset=utf-8` and, with `gzip` on, `Content-Encoding: gzip`.

use std::io::Write as _;

use base64::Engine as _;
use flate2::write::GzEncoder;
use flate2::Compression;

use super::config::{has_userinfo, read_secret, Api, InfluxOutput, Secret};
use super::error::Error;
use crate::encode::Precision;

/// Where and how one output writes.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The write API.
    pub api: Api,
    /// Base URL without a trailing slash.
    pub base: String,
    /// Database (v1, v3) or bucket (v2).
    pub target: String,
    /// Organisation (v2).
    pub org: Option<String>,
    /// Precision lines are written to the spool with (a spooled row keeps its own; see
    /// [`Endpoint::write`]).
    pub precision: Precision,
    /// Gzip the body.
    pub gzip: bool,
    auth: Option<Secret>,
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The `Retry-After` header, if any.
    pub retry_after: Option<String>,
    /// The body (at most 1 MiB, lossy UTF-8).
    pub body: String,
}

/// Largest answer body read.
const ANSWER_LIMIT: u64 = 1 << 20;

impl Endpoint {
    /// The endpoint of `cfg`, reading its secrets; `global` is the precision lines are
    /// written with when the output sets none.
    pub fn new(cfg: &InfluxOutput, global: Precision) -> Result<Endpoint, Error> {
        if has_userinfo(&cfg.url) {
            return Err(Error::config("the url holds a user name or password before '@'; remove it and set username with password_env or password_file (api = \"v1\"), or token_env or token_file"));
        }
        let token = read_secret("token", cfg.token_env.as_deref(), cfg.token_file.as_deref())?;
        let password = read_secret(
            "password",
            cfg.password_env.as_deref(),
            cfg.password_file.as_deref(),
        )?;
        let auth = match (cfg.api, token, &cfg.username, password) {
            (Api::V3, Some(t), _, _) => Some(Secret::new(format!("Bearer {}", t.expose()))),
            (Api::V2 | Api::V1, Some(t), _, _) => {
                Some(Secret::new(format!("Token {}", t.expose())))
            }
            (Api::V1, None, Some(user), Some(pw)) => {
                let raw = format!("{user}:{}", pw.expose());
                Some(Secret::new(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(raw)
                )))
            }
            _ => None,
        };
        Ok(Endpoint {
            api: cfg.api,
            base: cfg.url.trim().trim_end_matches('/').to_owned(),
            target: cfg.target().to_owned(),
            org: cfg.org.clone(),
            precision: cfg.precision.unwrap_or(global),
            gzip: cfg.gzip,
            auth,
        })
    }

    /// The write URL's path (after the base).
    pub fn write_path(&self) -> &'static str {
        match self.api {
            Api::V3 => "/api/v3/write_lp",
            Api::V2 => "/api/v2/write",
            Api::V1 => "/write",
        }
    }

    /// The health endpoint: `/ping` (v1), `/health` (v2, v3).
    pub fn health_path(&self) -> &'static str {
        match self.api {
            Api::V1 => "/ping",
            Api::V2 | Api::V3 => "/health",
        }
    }

    /// The write request's query parameters, in order, for lines in `precision`.
    pub fn write_query(&self, precision: Precision) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        match self.api {
            Api::V3 | Api::V1 => q.push(("db", self.target.clone())),
            Api::V2 => {
                q.push(("bucket", self.target.clone()));
                if let Some(org) = &self.org {
                    q.push(("org", org.clone()));
                }
            }
        }
        q.push(("precision", precision.as_str().to_owned()));
        q
    }

    /// The `Authorization` header value, if any. Never log it.
    pub fn authorization(&self) -> Option<&str> {
        self.auth.as_ref().map(Secret::expose)
    }

    /// Sends one write of `lines` whose timestamps are in `precision`; `Err` means no HTTP
    /// answer (connection refused, timeout, TLS, ...).
    pub fn write(
        &self,
        agent: &ureq3::Agent,
        lines: &str,
        precision: Precision,
    ) -> Result<Answer, Error> {
        let body = if self.gzip {
            gzip(lines.as_bytes())
        } else {
            lines.as_bytes().to_vec()
        };
        let mut req = agent
            .post(format!("{}{}", self.base, self.write_path()))
            .header("Content-Type", "text/plain; charset=utf-8");
        for (k, v) in self.write_query(precision) {
            req = req.query(k, v);
        }
        if self.gzip {
            req = req.header("Content-Encoding", "gzip");
        }
        if let Some(a) = self.authorization() {
            req = req.header("Authorization", a);
        }
        answer(req.send(&body[..]))
    }

    /// A GET of `path` with `query` and the output's credentials (for `check-output`).
    pub fn get(
        &self,
        agent: &ureq3::Agent,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<Answer, Error> {
        let mut req = agent.get(format!("{}{path}", self.base));
        for (k, v) in query {
            req = req.query(*k, *v);
        }
        if let Some(a) = self.authorization() {
            req = req.header("Authorization", a);
        }
        answer(req.call())
    }

    /// A form POST of `path` with the output's credentials (v1 `CREATE DATABASE`).
    pub fn post_form(
        &self,
        agent: &ureq3::Agent,
        path: &str,
        form: &[(&str, &str)],
    ) -> Result<Answer, Error> {
        let mut req = agent.post(format!("{}{path}", self.base));
        if let Some(a) = self.authorization() {
            req = req.header("Authorization", a);
        }
        answer(req.send_form(form.iter().copied()))
    }

    /// A JSON POST of `path` with the output's credentials (v3 database creation).
    pub fn post_json(&self, agent: &ureq3::Agent, path: &str, json: &str) -> Result<Answer, Error> {
        let mut req = agent
            .post(format!("{}{path}", self.base))
            .header("Content-Type", "application/json");
        if let Some(a) = self.authorization() {
            req = req.header("Authorization", a);
        }
        answer(req.send(json))
    }
}

fn answer(r: Result<ureq3::http::Response<ureq3::Body>, ureq3::Error>) -> Result<Answer, Error> {
    let mut resp = r.map_err(|e| Error::transport(describe(e)))?;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = resp
        .body_mut()
        .with_config()
        .limit(ANSWER_LIMIT)
        .lossy_utf8(true)
        .read_to_string()
        .unwrap_or_default();
    Ok(Answer {
        status,
        retry_after,
        body,
    })
}

/// A transport error in words (no URL credentials: vmtel never puts any in URLs).
fn describe(e: ureq3::Error) -> String {
    match e {
        ureq3::Error::Timeout(t) => format!("no answer in time ({t})"),
        ureq3::Error::HostNotFound => "host not found (DNS)".into(),
        ureq3::Error::ConnectionFailed => "connection failed".into(),
        ureq3::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
            std::io::ErrorKind::ConnectionReset => "connection reset by the server".into(),
            _ => format!("I/O error: {io}"),
        },
        other => other.to_string(),
    }
}

/// `data` gzip-compressed (level 6: most of the gain for little CPU on line protocol).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::with_capacity(data.len() / 8 + 64), Compression::new(6));
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

/// The HTTP client of one output: its timeout, TLS roots, no redirects (they would drop the
/// body or leak credentials), HTTP errors as answers rather than errors.
pub fn agent(cfg: &InfluxOutput) -> Result<ureq3::Agent, Error> {
    agent_with(
        cfg.tls_ca_file.as_deref(),
        cfg.insecure_skip_verify,
        cfg.timeout,
    )
}

/// An HTTP client with these TLS roots and timeout, no redirects, HTTP errors as answers (the
/// outputs' and the dashboard's InfluxDB 3 reader's).
pub fn agent_with(
    tls_ca_file: Option<&std::path::Path>,
    insecure_skip_verify: bool,
    timeout: std::time::Duration,
) -> Result<ureq3::Agent, Error> {
    use ureq3::tls::{Certificate, PemItem, RootCerts, TlsConfig};
    let mut tls = TlsConfig::builder().disable_verification(insecure_skip_verify);
    if let Some(ca) = tls_ca_file {
        let pem = std::fs::read(ca).map_err(|e| {
            Error::config(format!(
                "tls_ca_file {}: cannot read: {e}; give a PEM file of CA certificates",
                ca.display()
            ))
        })?;
        let certs: Vec<Certificate<'static>> = ureq3::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        if certs.is_empty() {
            return Err(Error::config(format!(
                "tls_ca_file {}: no PEM certificate in it; give the CA certificate(s) as PEM",
                ca.display()
            )));
        }
        tls = tls.root_certs(RootCerts::new_with_certs(&certs));
    }
    let config = ureq3::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(concat!("vmtel/", env!("CARGO_PKG_VERSION")))
        .tls_config(tls.build())
        .build();
    Ok(config.new_agent())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    fn output(extra: &str) -> InfluxOutput {
        toml::from_str(&format!("url = \"http://h:1/\"\n{extra}")).expect("valid")
    }

    #[test]
    fn each_api_has_its_path_query_and_auth() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tok = dir.path().join("t");
        std::fs::write(&tok, "abc\n").expect("write");
        let t = tok.display();
        let v3 = Endpoint::new(
            &output(&format!("database = \"d b\"\ntoken_file = \"{t}\"")),
            Precision::Seconds,
        )
        .expect("v3");
        assert_eq!(v3.base, "http://h:1");
        assert_eq!(v3.write_path(), "/api/v3/write_lp");
        assert_eq!(
            v3.write_query(v3.precision),
            vec![("db", "d b".to_owned()), ("precision", "s".to_owned())]
        );
        assert_eq!(v3.authorization(), Some("Bearer abc"));
        assert!(!format!("{v3:?}").contains("abc"), "{v3:?}");

        let v2 = Endpoint::new(
            &output(&format!(
                "api = \"v2\"\nbucket = \"b\"\norg = \"o\"\nprecision = \"ms\"\ntoken_file = \"{t}\""
            )),
            Precision::Seconds,
        )
        .expect("v2");
        assert_eq!(v2.write_path(), "/api/v2/write");
        assert_eq!(
            v2.write_query(v2.precision),
            vec![
                ("bucket", "b".to_owned()),
                ("org", "o".to_owned()),
                ("precision", "ms".to_owned())
            ]
        );
        assert_eq!(v2.authorization(), Some("Token abc"));

        let v1 = Endpoint::new(
            &output(&format!(
                "api = \"v1\"\ndatabase = \"d\"\nusername = \"u\"\npassword_file = \"{t}\""
            )),
            Precision::Nanos,
        )
        .expect("v1");
        assert_eq!(v1.write_path(), "/write");
        // base64("u:abc")
        assert_eq!(v1.authorization(), Some("Basic dTphYmM="));
        assert_eq!(
            v1.write_query(v1.precision)[1],
            ("precision", "ns".to_owned())
        );
    }

    #[test]
    fn gzip_round_trips() {
        let text = "m,t=a f=1i 1\n".repeat(1000);
        let z = gzip(text.as_bytes());
        assert!(z.len() < text.len() / 10);
        let mut out = String::new();
        flate2::read::GzDecoder::new(&z[..])
            .read_to_string(&mut out)
            .expect("gunzip");
        assert_eq!(out, text);
    }

    #[test]
    fn a_ca_file_without_certificates_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate").expect("write");
        let o = output(&format!(
            "database = \"d\"\ntls_ca_file = \"{}\"",
            ca.display()
        ));
        let e = agent(&o).unwrap_err();
        assert_eq!(e.kind(), super::super::ErrorKind::Config);
        assert!(e.to_string().contains("no PEM certificate"), "{e}");
    }
}
