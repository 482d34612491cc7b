//! `[[outputs.influxdb]]`: one InfluxDB (or compatible) server, its API, credentials, batching,
//! TLS and spool limits, and the checks behind `vmtel check-config`.
//!
//! Secrets are never part of the configuration text: a token or password is named by an
//! environment variable (`token_env`, `password_env`) or a file (`token_file`,
//! `password_file`), read when the output starts, and never logged.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

use super::error::Error;
use crate::encode::Precision;

/// The write API an output speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum Api {
    /// InfluxDB 3: `POST /api/v3/write_lp?db=&precision=` with `Authorization: Bearer`.
    #[default]
    #[serde(rename = "v3")]
    V3,
    /// InfluxDB 2 (and VictoriaMetrics, InfluxDB 3's compatibility endpoint):
    /// `POST /api/v2/write?bucket=&org=&precision=` with `Authorization: Token`.
    #[serde(rename = "v2")]
    V2,
    /// InfluxDB 1.x: `POST /write?db=&precision=`, `Token` or basic authentication.
    #[serde(rename = "v1")]
    V1,
}

impl Api {
    /// `v3`, `v2` or `v1`.
    pub fn as_str(self) -> &'static str {
        match self {
            Api::V3 => "v3",
            Api::V2 => "v2",
            Api::V1 => "v1",
        }
    }
}

/// How hard the spool pushes each commit to disk (SQLite's `synchronous` in WAL mode).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpoolSync {
    /// Every commit is fsynced: accepted lines survive a power loss. One fsync per group
    /// commit (once per drained queue, not per line).
    #[default]
    Full,
    /// Commits survive a crash or `kill -9` of vmtel but the last ones may be lost on a power
    /// loss or kernel panic; fewer fsyncs.
    Normal,
}

/// One `[[outputs.influxdb]]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct InfluxOutput {
    /// A short name for logs, self-telemetry and the spool file (`[A-Za-z0-9._-]`).
    pub name: Option<String>,
    /// Base URL of the server, e.g. `https://influx.example.org:8181`.
    pub url: String,
    /// The write API (`v3` by default).
    #[serde(default)]
    pub api: Api,
    /// Database (v3 and v1).
    pub database: Option<String>,
    /// Bucket (v2).
    pub bucket: Option<String>,
    /// Organisation (v2; InfluxDB 2 needs it, InfluxDB 3 and VictoriaMetrics ignore it).
    pub org: Option<String>,
    /// Environment variable holding the token.
    pub token_env: Option<String>,
    /// File holding the token (surrounding whitespace is ignored).
    pub token_file: Option<PathBuf>,
    /// v1 basic authentication user name.
    pub username: Option<String>,
    /// Environment variable holding the v1 password.
    pub password_env: Option<String>,
    /// File holding the v1 password.
    pub password_file: Option<PathBuf>,
    /// Timestamp precision sent to this server; the global `precision` by default.
    pub precision: Option<Precision>,
    /// Compress request bodies with gzip (default true).
    #[serde(default = "yes")]
    pub gzip: bool,
    /// Most lines in one request (default 5000).
    #[serde(default = "default_batch_lines")]
    pub batch_max_lines: usize,
    /// Most bytes of line protocol (before compression) in one request (default 1 MiB).
    #[serde(default = "default_batch_bytes")]
    pub batch_max_bytes: ByteSize,
    /// How long lines wait for more to fill a request before it is sent anyway (default 1s).
    #[serde(default = "default_flush", with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Time allowed for one request, connection to response (default 10s).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// PEM file of the certificate authorities to trust instead of the built-in roots.
    pub tls_ca_file: Option<PathBuf>,
    /// Accept any server certificate (default false). Insecure: for tests only.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Create the database when the server says it is missing (v1, v3; default false).
    #[serde(default)]
    pub create_database: bool,
    /// Most bytes of line protocol the spool holds; the oldest batches are dropped beyond it
    /// (default 1 GiB).
    #[serde(default = "default_spool_size")]
    pub spool_max_size: ByteSize,
    /// Batches older than this are dropped from the spool (default: kept until sent).
    #[serde(default, with = "humantime_serde")]
    pub spool_max_age: Option<Duration>,
    /// `full` (default) or `normal`: see [`SpoolSync`].
    #[serde(default)]
    pub spool_sync: SpoolSync,
}

fn yes() -> bool {
    true
}
fn default_batch_lines() -> usize {
    5000
}
fn default_batch_bytes() -> ByteSize {
    ByteSize::mib(1)
}
fn default_flush() -> Duration {
    Duration::from_secs(1)
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_spool_size() -> ByteSize {
    ByteSize::gib(1)
}

/// A secret read from the environment or a file. Its `Debug` output is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value that must never be logged.
    pub(crate) fn new(s: String) -> Secret {
        Secret(s)
    }

    /// The secret itself, for the `Authorization` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// True if `url` carries `user:password@` (or `user@`) before its host. Any `@` after the
/// scheme counts: a password may itself hold `/`, `?` or `#` (InfluxDB URLs have no `@`
/// otherwise).
pub fn has_userinfo(url: &str) -> bool {
    url.split_once("://")
        .is_some_and(|(_, rest)| rest.contains('@'))
}

/// `url` with everything between the scheme and the last `@` replaced by `***`, for labels
/// and messages.
pub fn without_userinfo(url: &str) -> std::borrow::Cow<'_, str> {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rfind('@') {
            Some(at) => format!("{scheme}://***{}", &rest[at..]).into(),
            None => url.into(),
        },
        None => url.into(),
    }
}

/// Reads a secret named by `env` or `file`; `key` is the option's place for messages
/// (`outputs.influxdb[0].token`). Never includes the secret in an error.
pub fn read_secret(
    key: &str,
    env: Option<&str>,
    file: Option<&Path>,
) -> Result<Option<Secret>, Error> {
    match (env, file) {
        (Some(_), Some(_)) => Err(Error::config(format!(
            "{key}_env and {key}_file are both set; keep one of them"
        ))),
        (Some(var), None) => match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => Ok(Some(Secret(v.trim().to_owned()))),
            Ok(_) => Err(Error::config(format!(
                "{key}_env = {var:?} but {var} is empty; export {var}=... in vmtel's environment"
            ))),
            Err(_) => Err(Error::config(format!(
                "{key}_env = {var:?} but {var} is not set; export {var}=... in vmtel's environment (e.g. EnvironmentFile= in the systemd unit)"
            ))),
        },
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(v) if !v.trim().is_empty() => Ok(Some(Secret(v.trim().to_owned()))),
            Ok(_) => Err(Error::config(format!(
                "{key}_file = {:?} is empty; write the secret into it",
                path.display().to_string()
            ))),
            Err(e) => Err(Error::config(format!(
                "{key}_file = {:?} cannot be read ({e}); check the path and that vmtel may read it",
                path.display().to_string()
            ))),
        },
        (None, None) => Ok(None),
    }
}

/// Characters allowed in an output's name (it becomes part of the spool file name).
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !s.starts_with('.')
}

/// FNV-1a, 64 bits: a hash that is stable across builds and Rust versions (spool file names
/// must not change when vmtel is upgraded).
fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

impl InfluxOutput {
    /// The database (v1, v3) or bucket (v2) written to.
    pub fn target(&self) -> &str {
        match self.api {
            Api::V2 => self.bucket.as_deref().unwrap_or(""),
            Api::V1 | Api::V3 => self.database.as_deref().unwrap_or(""),
        }
    }

    /// The name used in logs and `vmtel_internal` (`influxdb:NAME`, or the URL and target).
    pub fn display_name(&self) -> String {
        match &self.name {
            Some(n) => format!("influxdb:{n}"),
            None => format!(
                "influxdb:{}/{}",
                without_userinfo(&self.url).trim_end_matches('/'),
                self.target()
            ),
        }
    }

    /// The spool file's name inside `state_dir`: from `name`, else a hash of URL, API and target.
    pub fn spool_file_name(&self) -> String {
        match &self.name {
            Some(n) => format!("spool-{n}.sqlite"),
            None => {
                let h = fnv1a(&[
                    self.url.trim_end_matches('/'),
                    self.api.as_str(),
                    self.target(),
                    self.org.as_deref().unwrap_or(""),
                ]);
                format!("spool-{h:016x}.sqlite")
            }
        }
    }

    /// Every problem of this output; `i` is its index in `outputs.influxdb`.
    pub fn problems(&self, i: usize) -> Vec<String> {
        let k = format!("outputs.influxdb[{i}]");
        let mut p = Vec::new();
        if let Some(n) = &self.name {
            if !valid_name(n) {
                p.push(format!(
                    "{k}.name = {n:?} may only use letters, digits, '_', '-' and '.' (at most 64); e.g. name = \"central\""
                ));
            }
        }
        let url = self.url.trim();
        let https = url.starts_with("https://");
        if has_userinfo(url) {
            // The URL is not echoed: the part before '@' may be a password.
            p.push(format!(
                "{k}.url holds a user name or password before '@'; remove it from the URL and set username with password_env or password_file (api = \"v1\"), or token_env or token_file"
            ));
        } else if url.is_empty() {
            p.push(format!(
                "{k}.url is empty; set the server's address, e.g. url = \"http://127.0.0.1:8181\""
            ));
        } else if !(url.starts_with("http://") || https)
            || url
                .split("://")
                .nth(1)
                .is_none_or(|h| h.is_empty() || h.starts_with('/'))
        {
            p.push(format!(
                "{k}.url = {url:?} is not an http:// or https:// URL with a host, e.g. \"https://influx.example.org:8181\""
            ));
        } else if url.contains('?') || url.contains('#') {
            p.push(format!(
                "{k}.url = {url:?} has a query or fragment; give the base URL only (vmtel adds the write path and parameters)"
            ));
        }
        let empty = |o: &Option<String>| o.as_deref().is_some_and(|s| s.trim().is_empty());
        match self.api {
            Api::V3 | Api::V1 => {
                if self.database.is_none() || empty(&self.database) {
                    p.push(format!(
                        "{k}.database is not set; api = \"{}\" writes to a database, e.g. database = \"vmtel\"",
                        self.api.as_str()
                    ));
                }
                if self.bucket.is_some() || self.org.is_some() {
                    p.push(format!(
                        "{k}: bucket and org belong to api = \"v2\"; with api = \"{}\" use database",
                        self.api.as_str()
                    ));
                }
            }
            Api::V2 => {
                if self.bucket.is_none() || empty(&self.bucket) {
                    p.push(format!(
                        "{k}.bucket is not set; api = \"v2\" writes to a bucket, e.g. bucket = \"vmtel\""
                    ));
                }
                if empty(&self.org) {
                    p.push(format!("{k}.org is empty; set it or remove it"));
                }
                if self.database.is_some() {
                    p.push(format!(
                        "{k}.database belongs to api = \"v3\" or \"v1\"; with api = \"v2\" use bucket (and org)"
                    ));
                }
                if self.create_database {
                    p.push(format!(
                        "{k}.create_database is not supported with api = \"v2\" (buckets need an organisation ID); create the bucket on the server"
                    ));
                }
            }
        }
        let token = read_secret(
            &format!("{k}.token"),
            self.token_env.as_deref(),
            self.token_file.as_deref(),
        );
        if let Err(e) = &token {
            p.push(e.to_string());
        }
        let password = read_secret(
            &format!("{k}.password"),
            self.password_env.as_deref(),
            self.password_file.as_deref(),
        );
        if let Err(e) = &password {
            p.push(e.to_string());
        }
        let has_password = self.password_env.is_some() || self.password_file.is_some();
        if self.api != Api::V1 && (self.username.is_some() || has_password) {
            p.push(format!(
                "{k}: username and password are for api = \"v1\"; api = \"{}\" uses a token (token_env or token_file)",
                self.api.as_str()
            ));
        } else if self.username.is_some() != has_password {
            p.push(format!(
                "{k}: basic authentication needs both username and password_env (or password_file)"
            ));
        } else if self.username.is_some() && (self.token_env.is_some() || self.token_file.is_some())
        {
            p.push(format!(
                "{k}: set either a token or username and password, not both"
            ));
        }
        if self.batch_max_lines == 0 {
            p.push(format!(
                "{k}.batch_max_lines = 0 would send nothing; use e.g. 5000"
            ));
        }
        if self.batch_max_bytes.as_u64() < 1024 {
            p.push(format!(
                "{k}.batch_max_bytes = {} is too small; use at least \"1 KiB\", e.g. \"1 MiB\"",
                self.batch_max_bytes
            ));
        }
        if self.timeout < Duration::from_millis(100) {
            p.push(format!(
                "{k}.timeout is below 100ms; use e.g. timeout = \"10s\""
            ));
        }
        if self.spool_max_size.as_u64() < 1 << 20 {
            p.push(format!(
                "{k}.spool_max_size = {} is too small; use at least \"1 MiB\", e.g. \"1 GiB\"",
                self.spool_max_size
            ));
        } else if self.spool_max_size.as_u64() < self.batch_max_bytes.as_u64().saturating_mul(4) {
            p.push(format!(
                "{k}.spool_max_size = {} must hold at least 4 requests of batch_max_bytes = {}; raise it or lower batch_max_bytes",
                self.spool_max_size, self.batch_max_bytes
            ));
        }
        if self
            .spool_max_age
            .is_some_and(|a| a < Duration::from_secs(1))
        {
            p.push(format!(
                "{k}.spool_max_age is below 1s; remove it (keep until sent) or use e.g. \"7d\""
            ));
        }
        if !https && (self.tls_ca_file.is_some() || self.insecure_skip_verify) {
            p.push(format!(
                "{k}: tls_ca_file and insecure_skip_verify apply to https:// URLs only"
            ));
        }
        if self.tls_ca_file.is_some() {
            // The same TLS set-up the output builds at start (a file that is not PEM fails here).
            if let Err(e) = super::request::agent(self) {
                p.push(format!("{k}.{e}"));
            }
        }
        p
    }
}

/// Problems that involve several outputs: duplicate names or spool files.
pub fn cross_problems(outputs: &[InfluxOutput]) -> Vec<String> {
    let mut p = Vec::new();
    for (i, a) in outputs.iter().enumerate() {
        for (j, b) in outputs.iter().enumerate().take(i) {
            if a.name.is_some() && a.name == b.name {
                p.push(format!(
                    "outputs.influxdb[{i}].name = {:?} is also the name of outputs.influxdb[{j}]; names must differ",
                    a.name.as_deref().unwrap_or("")
                ));
            } else if a.spool_file_name() == b.spool_file_name() {
                p.push(format!(
                    "outputs.influxdb[{i}] writes to the same server and target as outputs.influxdb[{j}]; give them different names (name = \"...\") if both are wanted"
                ));
            }
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> InfluxOutput {
        toml::from_str(s).expect("valid output")
    }

    #[test]
    fn defaults() {
        let o = parse("url = \"http://h:8181\"\ndatabase = \"d\"\n");
        assert_eq!(o.api, Api::V3);
        assert!(o.gzip);
        assert_eq!(o.batch_max_lines, 5000);
        assert_eq!(o.flush_interval, Duration::from_secs(1));
        assert_eq!(o.spool_sync, SpoolSync::Full);
        assert!(!o.insecure_skip_verify && !o.create_database);
        assert!(o.problems(0).is_empty(), "{:?}", o.problems(0));
    }

    #[test]
    fn problems_name_the_key_and_the_fix() {
        let o = parse(
            "url = \"ftp://h\"\napi = \"v2\"\ndatabase = \"d\"\ntoken_env = \"VMTEL_TEST_SURELY_UNSET\"\n\
             batch_max_lines = 0\ninsecure_skip_verify = true\nname = \"a b\"\n",
        );
        let p = o.problems(3).join("\n");
        for want in [
            "outputs.influxdb[3].name",
            "outputs.influxdb[3].url = \"ftp://h\"",
            "outputs.influxdb[3].bucket is not set",
            "outputs.influxdb[3].database belongs to",
            "outputs.influxdb[3].token_env = \"VMTEL_TEST_SURELY_UNSET\" but VMTEL_TEST_SURELY_UNSET is not set",
            "batch_max_lines = 0",
            "https:// URLs only",
        ] {
            assert!(p.contains(want), "missing {want:?} in:\n{p}");
        }
    }

    #[test]
    fn secrets_come_from_files_and_are_redacted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("token");
        std::fs::write(&f, "s3cr3t\n").expect("write");
        let s = read_secret("t", None, Some(&f)).expect("ok").expect("some");
        assert_eq!(s.expose(), "s3cr3t");
        assert!(!format!("{s:?}").contains("s3cr3t"));
        let e = read_secret("t", None, Some(&dir.path().join("missing"))).unwrap_err();
        assert_eq!(e.kind(), super::super::ErrorKind::Config);
        let e = e.to_string();
        assert!(e.contains("t_file") && e.contains("missing"), "{e}");
    }

    #[test]
    fn spool_names_are_stable_and_distinct() {
        let a = parse("url = \"http://h:8181/\"\ndatabase = \"d\"\n");
        let b = parse("url = \"http://h:8181\"\ndatabase = \"d\"\n");
        let c = parse("url = \"http://h:8181\"\ndatabase = \"e\"\n");
        assert_eq!(a.spool_file_name(), b.spool_file_name());
        assert_ne!(a.spool_file_name(), c.spool_file_name());
        // Pinned: a changed hash would orphan existing spools on upgrade.
        assert_eq!(fnv1a(&["a"]), 0x089b_e207_b544_f1e4);
        let dup = cross_problems(&[a, b]);
        assert_eq!(dup.len(), 1, "{dup:?}");
    }
}
