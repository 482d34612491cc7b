//! `[web.source]`: where the dashboard reads from: the embedded history (default) or a central
//! InfluxDB 3 that many agents write to.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::deliver::influxdb::config::{has_userinfo, read_secret, Secret};

/// Which backend the dashboard reads.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// This agent's own history file (`[store]`).
    #[default]
    Embedded,
    /// An InfluxDB 3 server, queried with SQL over `/api/v3/query_sql`.
    Influxdb3,
}

/// `[web.source]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// `embedded` (default) or `influxdb3`.
    #[serde(default)]
    pub kind: SourceKind,
    /// Base URL of the InfluxDB 3 server, e.g. `http://influx.example.org:8181`.
    pub url: Option<String>,
    /// The database the agents write to.
    pub database: Option<String>,
    /// Environment variable holding the read token.
    pub token_env: Option<String>,
    /// File holding the read token (surrounding whitespace is ignored).
    pub token_file: Option<PathBuf>,
    /// PEM file of the certificate authorities to trust instead of the built-in roots.
    pub tls_ca_file: Option<PathBuf>,
    /// Accept any server certificate (default false). Insecure: for tests only.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Time allowed for one query, connection to last byte (default 10s).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            kind: SourceKind::Embedded,
            url: None,
            database: None,
            token_env: None,
            token_file: None,
            tls_ca_file: None,
            insecure_skip_verify: false,
            timeout: default_timeout(),
        }
    }
}

impl SourceConfig {
    /// The read token, if one is configured (errors name the option and the fix).
    pub fn token(&self) -> Result<Option<Secret>, String> {
        read_secret(
            "web.source.token",
            self.token_env.as_deref(),
            self.token_file.as_deref(),
        )
        .map_err(|e| e.to_string())
    }

    /// The URL without a trailing slash.
    pub fn base_url(&self) -> &str {
        self.url
            .as_deref()
            .unwrap_or("")
            .trim()
            .trim_end_matches('/')
    }

    /// Every problem with these options, phrased with a fix.
    pub fn problems(&self) -> Vec<String> {
        let k = "web.source";
        let mut p = Vec::new();
        if self.kind == SourceKind::Embedded {
            let set = [
                ("url", self.url.is_some()),
                ("database", self.database.is_some()),
                ("token_env", self.token_env.is_some()),
                ("token_file", self.token_file.is_some()),
                ("tls_ca_file", self.tls_ca_file.is_some()),
            ];
            for (name, is_set) in set {
                if is_set {
                    p.push(format!(
                        "{k}.{name} applies to kind = \"influxdb3\" only; remove it or set kind = \"influxdb3\""
                    ));
                }
            }
            return p;
        }
        let url = self.base_url();
        let https = url.starts_with("https://");
        if has_userinfo(url) {
            p.push(format!(
                "{k}.url holds a user name or password before '@'; remove it and set token_env or token_file"
            ));
        } else if url.is_empty() {
            p.push(format!(
                "{k}.url is not set; give the InfluxDB 3 server, e.g. url = \"http://127.0.0.1:8181\""
            ));
        } else if !(url.starts_with("http://") || https)
            || url.split("://").nth(1).is_none_or(str::is_empty)
        {
            p.push(format!(
                "{k}.url = {url:?} is not an http:// or https:// URL; use e.g. \"http://127.0.0.1:8181\""
            ));
        }
        match self.database.as_deref().map(str::trim) {
            None | Some("") => p.push(format!(
                "{k}.database is not set; name the database the agents write to, e.g. database = \"vmtel\""
            )),
            Some(_) => {}
        }
        if let Err(e) = self.token() {
            p.push(e);
        }
        if self.timeout < Duration::from_millis(100) {
            p.push(format!(
                "{k}.timeout is below 100ms; use e.g. timeout = \"10s\""
            ));
        }
        if !https && (self.tls_ca_file.is_some() || self.insecure_skip_verify) {
            p.push(format!(
                "{k}: tls_ca_file and insecure_skip_verify apply to https:// URLs only"
            ));
        }
        if self.tls_ca_file.is_some() {
            if let Err(e) = crate::deliver::influxdb::request::agent_with(
                self.tls_ca_file.as_deref(),
                self.insecure_skip_verify,
                self.timeout,
            ) {
                p.push(format!("{k}.{e}"));
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> SourceConfig {
        toml::from_str(s).expect("valid toml")
    }

    #[test]
    fn embedded_is_the_default_and_needs_nothing() {
        let c = SourceConfig::default();
        assert_eq!(c.kind, SourceKind::Embedded);
        assert!(c.problems().is_empty());
        let p = parse("url = \"http://h:8181\"").problems();
        assert!(p[0].contains("kind = \"influxdb3\""), "{p:?}");
    }

    #[test]
    fn influxdb3_needs_url_and_database_and_names_the_fix() {
        let p = parse("kind = \"influxdb3\"").problems();
        assert!(
            p.iter().any(|m| m.contains("web.source.url is not set")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|m| m.contains("web.source.database is not set")),
            "{p:?}"
        );
        let p = parse("kind = \"influxdb3\"\nurl = \"ftp://h\"\ndatabase = \"vmtel\"").problems();
        assert!(
            p.iter()
                .any(|m| m.contains("not an http:// or https:// URL")),
            "{p:?}"
        );
        let p = parse("kind = \"influxdb3\"\nurl = \"http://u:pw@h\"\ndatabase = \"d\"").problems();
        assert!(p.iter().any(|m| m.contains("before '@'")), "{p:?}");
        assert!(
            !p.iter().any(|m| m.contains("pw")),
            "the password is echoed: {p:?}"
        );
        let p = parse(
            "kind = \"influxdb3\"\nurl = \"http://h:8181\"\ndatabase = \"d\"\ntoken_env = \"VMTEL_TEST_SURELY_UNSET_READ\"",
        )
        .problems();
        assert!(
            p.iter()
                .any(|m| m.contains("VMTEL_TEST_SURELY_UNSET_READ is not set")),
            "{p:?}"
        );
        let ok = parse("kind = \"influxdb3\"\nurl = \"http://h:8181/\"\ndatabase = \"d\"");
        assert!(ok.problems().is_empty(), "{:?}", ok.problems());
        assert_eq!(ok.base_url(), "http://h:8181");
    }

    #[test]
    fn unknown_keys_and_kinds_are_refused() {
        assert!(toml::from_str::<SourceConfig>("kind = \"influxdb2\"").is_err());
        assert!(toml::from_str::<SourceConfig>("token = \"secret\"").is_err());
    }
}
