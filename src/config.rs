//! The TOML configuration file. `dist/vmtel.toml` is a commented sample with every option.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

use crate::collect::SourceSpec;
use crate::deliver::influxdb::config::{cross_problems, InfluxOutput};
use crate::encode::{GlobalTags, Precision, FIELD_KEYS, TAG_KEYS};

/// The longest collection interval accepted (a longer one is almost certainly a typo, and
/// would overflow the schedule's arithmetic long before it made sense).
pub const MAX_INTERVAL: Duration = Duration::from_secs(3600);

/// The URI used when neither the config, the command line nor `LIBVIRT_DEFAULT_URI` names one.
pub const DEFAULT_URI: &str = "qemu:///system";

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Collection interval.
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// How long a domain's device list (read from its XML) is cached by the per-domain fallback.
    #[serde(default = "default_ttl", with = "humantime_serde")]
    pub device_cache_ttl: Duration,
    /// Timestamp precision of written lines.
    #[serde(default)]
    pub precision: Precision,
    /// Tags added to every line.
    #[serde(default)]
    pub global_tags: toml::Table,
    /// libvirt sources.
    #[serde(default)]
    pub sources: Vec<Source>,
    /// When set (seconds), enable the guest balloon statistics period on running domains that
    /// have none, so guest memory statistics are not silently missing. Off by default.
    #[serde(default)]
    pub balloon_period: Option<u32>,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// Where lines go.
    #[serde(default)]
    pub outputs: Outputs,
    /// Directory of vmtel's durable state: the InfluxDB outputs' spools.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// `[store]`: the embedded history.
    #[serde(default)]
    pub store: crate::store::StoreConfig,
    /// `[web]`: the dashboard, JSON API and `/metrics`.
    #[serde(default)]
    pub web: crate::serve::WebConfig,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/vmtel")
}

/// `[log]`: where and how vmtel logs.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Level or filter (`error`, `warn`, `info`, `debug`, `vmtel=debug`); `RUST_LOG` overrides
    /// it. Default `info` for `vmtel run`.
    pub level: Option<String>,
    /// `text` (default) or `json` (one object per line).
    #[serde(default)]
    pub format: LogFormat,
    /// Also log to this file, rotated daily. Standard error is always logged to.
    pub file: Option<PathBuf>,
    /// Rotated log files to keep (default 7).
    pub max_files: Option<usize>,
}

/// Log line format.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// JSON objects, one per line.
    Json,
}

/// `[outputs]`: the sinks. With none configured, `vmtel run` writes to standard output.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct Outputs {
    /// Write line protocol to standard output.
    #[serde(default)]
    pub stdout: bool,
    /// `[[outputs.file]]`: line protocol files rotated by size.
    #[serde(default)]
    pub file: Vec<FileOutput>,
    /// `[[outputs.influxdb]]`: InfluxDB 3, 2 or 1.x servers, each with a durable spool.
    #[serde(default)]
    pub influxdb: Vec<InfluxOutput>,
}

impl Outputs {
    /// True when no output is configured.
    pub fn is_empty(&self) -> bool {
        !self.stdout && self.file.is_empty() && self.influxdb.is_empty()
    }
}

/// One `[[outputs.file]]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileOutput {
    /// File to append to.
    pub path: PathBuf,
    /// Rotate when the file would grow past this size (default "100 MiB").
    #[serde(default = "default_max_size")]
    pub max_size: ByteSize,
    /// Rotated files to keep (`PATH.1` ... `PATH.N`, default 5).
    #[serde(default = "default_keep")]
    pub keep: usize,
}

fn default_max_size() -> ByteSize {
    ByteSize::mib(100)
}

fn default_keep() -> usize {
    5
}

/// One `[[sources]]` entry.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// libvirt connection URI.
    pub uri: String,
    /// Overrides the `host` tag (libvirt's host name by default).
    pub host: Option<String>,
}

fn default_interval() -> Duration {
    Duration::from_secs(10)
}

fn default_ttl() -> Duration {
    Duration::from_secs(300)
}

impl Default for Config {
    fn default() -> Self {
        Config {
            interval: default_interval(),
            device_cache_ttl: default_ttl(),
            precision: Precision::default(),
            global_tags: toml::Table::new(),
            sources: Vec::new(),
            balloon_period: None,
            log: LogConfig::default(),
            outputs: Outputs::default(),
            state_dir: default_state_dir(),
            store: crate::store::StoreConfig::default(),
            web: crate::serve::WebConfig::default(),
        }
    }
}

/// A configuration problem, with where it is and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {error}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error (not a `source`: the message already includes it).
        error: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped options.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What the parser said, with line and column.
        message: String,
    },
    /// The options parse but make no sense together.
    #[error("invalid config file {path}: {}", problems.join("; "))]
    Invalid {
        /// The file.
        path: String,
        /// Every problem found.
        problems: Vec<String>,
    },
}

impl ConfigError {
    /// Every problem as a separate line prefixed with the file name.
    pub fn problems(&self) -> Vec<String> {
        match self {
            ConfigError::Invalid { path, problems } => {
                problems.iter().map(|p| format!("{path}: {p}")).collect()
            }
            other => vec![other.to_string()],
        }
    }
}

/// Where a TOML error is (line, column, key) and what is wrong, without the value: a secret
/// pasted into the file by mistake (`token = "..."`) must not reach a terminal or a log.
fn describe_parse_error(text: &str, e: &toml::de::Error) -> String {
    let mut out = String::new();
    let mut secret = false;
    if let Some(span) = e.span() {
        let start = span.start.min(text.len());
        let before = text.get(..start).unwrap_or("");
        let line_no = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        out.push_str(&format!("line {line_no}, column {column}"));
        let line = text[line_start..].lines().next().unwrap_or("");
        if let Some((key, _)) = line.split_once('=') {
            let key = key.trim();
            let table = before[..line_start]
                .lines()
                .rev()
                .map(str::trim)
                .find(|l| l.starts_with('['))
                .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim());
            match table {
                Some(t) if !key.is_empty() => out.push_str(&format!(", key {t}.{key}")),
                _ if !key.is_empty() => out.push_str(&format!(", key {key}")),
                _ => {}
            }
            secret = ["token", "password"].contains(&key);
        }
        out.push_str(": ");
    }
    out.push_str(&redact_values(e.message().trim_end()));
    if secret {
        out.push_str(" (secrets do not go in the file: use token_file or token_env, password_file or password_env)");
    }
    out.replace('\n', " ")
}

/// `message` with the values serde quotes replaced by `...`: the quoted value after `string`,
/// `integer`, `floating point`, `boolean`, `character` or `variant` (field names and the lists
/// of expected values stay).
fn redact_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    const VALUE_KINDS: [(&str, char); 6] = [
        ("string \"", '"'),
        ("integer `", '`'),
        ("floating point `", '`'),
        ("boolean `", '`'),
        ("character `", '`'),
        ("variant `", '`'),
    ];
    loop {
        let next = VALUE_KINDS
            .iter()
            .filter_map(|(k, close)| rest.find(k).map(|i| (i + k.len(), *close)))
            .min();
        let Some((open, close)) = next else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..open]);
        let body = &rest[open..];
        // The closing delimiter, skipping escaped quotes inside a string. A backquoted value
        // is printed raw, so it may hold backquotes itself: it ends at the "`, expected" serde
        // puts after it when there is one.
        if close == '`' {
            if let Some(i) = body.find("`, expected") {
                out.push_str("...`");
                rest = &body[i + 1..];
                continue;
            }
        }
        let mut end = None;
        let mut escaped = false;
        for (i, c) in body.char_indices() {
            if escaped {
                escaped = false;
            } else if c == '\\' && close == '"' {
                escaped = true;
            } else if c == close {
                end = Some(i);
                break;
            }
        }
        out.push_str("...");
        match end {
            Some(i) => {
                out.push(close);
                rest = &body[i + close.len_utf8()..];
            }
            None => return out,
        }
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: shown.clone(),
            error,
        })?;
        Self::parse(&text, &shown)
    }

    /// Parses and validates config text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            message: describe_parse_error(text, &e),
        })?;
        let problems = config.problems();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: origin.to_owned(),
                problems,
            })
        }
    }

    /// Every semantic problem of this configuration.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.interval < Duration::from_secs(1) {
            p.push(format!(
                "interval = {:?} is below the 1s minimum; use e.g. interval = \"10s\"",
                humantime::format_duration(self.interval).to_string()
            ));
        } else if self.interval > MAX_INTERVAL {
            p.push(format!(
                "interval = {:?} is above the 1h maximum; use e.g. interval = \"10s\"",
                humantime::format_duration(self.interval).to_string()
            ));
        }
        for (i, s) in self.sources.iter().enumerate() {
            if s.uri.trim().is_empty() {
                p.push(format!(
                    "sources[{i}].uri is empty; set it to a libvirt URI such as \"qemu:///system\""
                ));
            } else if !s.uri.contains(":/") {
                p.push(format!(
                    "sources[{i}].uri = {:?} is not a libvirt URI; expected e.g. \"qemu:///system\" or \"qemu+ssh://user@host/system\"",
                    s.uri
                ));
            }
            if s.host.as_deref().is_some_and(|h| h.trim().is_empty()) {
                p.push(format!(
                    "sources[{i}].host is empty; remove it to use libvirt's host name"
                ));
            }
        }
        if self.balloon_period == Some(0) {
            p.push(
                "balloon_period = 0 is not a period; remove it (off) or set seconds, e.g. 10"
                    .into(),
            );
        }
        for (i, f) in self.outputs.file.iter().enumerate() {
            if f.path.as_os_str().is_empty() {
                p.push(format!("outputs.file[{i}].path is empty; set a file path"));
            } else if let Some(dir) = f.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                if !dir.is_dir() {
                    p.push(format!(
                        "outputs.file[{i}].path = {:?}: the directory {:?} does not exist; create it or choose another path",
                        f.path.display().to_string(),
                        dir.display().to_string()
                    ));
                }
            }
            if f.max_size.as_u64() < 4096 {
                p.push(format!(
                    "outputs.file[{i}].max_size = {} is too small; use at least \"4 KiB\", e.g. \"100 MiB\"",
                    f.max_size
                ));
            }
        }
        for (i, o) in self.outputs.influxdb.iter().enumerate() {
            p.extend(o.problems(i));
        }
        p.extend(cross_problems(&self.outputs.influxdb));
        if !self.outputs.influxdb.is_empty() && !self.state_dir.is_absolute() {
            p.push(format!(
                "state_dir = {:?} is not an absolute path; use e.g. state_dir = \"/var/lib/vmtel\"",
                self.state_dir.display().to_string()
            ));
        }
        if self.store.enabled {
            p.extend(self.store.problems());
        }
        p.extend(self.web.problems());
        let streak = self
            .interval
            .saturating_mul(self.web.problems.cycles.max(1));
        if self.web.enabled && streak > self.web.problems.window {
            p.push(format!(
                "web.problems: {} cycles of interval {} do not fit in window = {}, so the steal and memory rules could never fire; raise window or lower cycles",
                self.web.problems.cycles,
                humantime::format_duration(self.interval),
                humantime::format_duration(self.web.problems.window)
            ));
        }
        if self.log.max_files == Some(0) {
            p.push("log.max_files = 0 would delete every log file; use 1 or more".into());
        }
        if let Some(level) = &self.log.level {
            if let Err(e) = tracing_subscriber::EnvFilter::try_new(level) {
                p.push(format!(
                    "log.level = {level:?} is not a level or filter ({e}); use error, warn, info or debug"
                ));
            }
        }
        for (k, v) in &self.global_tags {
            if k.is_empty() {
                p.push("global_tags has an empty key; give the tag a name".into());
            } else if k.chars().any(|c| c.is_control() || c == '\\') {
                p.push(format!(
                    "global_tags.{k:?} contains a control character or backslash; use letters, digits, '_' or '-'"
                ));
            } else if k == "time" {
                p.push("global_tags.time: InfluxDB reserves the key \"time\"; rename it".into());
            }
            if TAG_KEYS.contains(&k.as_str()) {
                p.push(format!(
                    "global_tags.{k} clashes with a tag vmtel writes itself; rename it"
                ));
            } else if FIELD_KEYS.contains(&k.as_str()) {
                p.push(format!(
                    "global_tags.{k} clashes with a field of the same name (InfluxDB 3 rejects that); rename it"
                ));
            }
            match v {
                toml::Value::String(s) if s.is_empty() => {
                    p.push(format!("global_tags.{k} is empty; a tag needs a value"))
                }
                toml::Value::String(_) => {}
                _ => p.push(format!(
                    "global_tags.{k} must be a string, e.g. {k} = \"value\""
                )),
            }
        }
        p
    }

    /// True when something is kept in `state_dir`: an InfluxDB output's spool, or the history
    /// at its default place.
    pub fn uses_state_dir(&self) -> bool {
        !self.outputs.influxdb.is_empty() || (self.store.enabled && self.store.path.is_none())
    }

    /// The history file: `[store] path`, else `history.db` in `state_dir`.
    pub fn store_path(&self) -> PathBuf {
        self.store.file(&self.state_dir)
    }

    /// The encoder of the text outputs: the global tags and the global precision (an InfluxDB
    /// output may override the precision).
    pub fn encoder(&self) -> crate::encode::Encoder {
        crate::encode::Encoder {
            global_tags: self.global_tags(),
            precision: self.precision,
        }
    }

    /// The global tags in key order.
    pub fn global_tags(&self) -> GlobalTags {
        self.global_tags
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
            .collect()
    }

    /// The sources to collect from: `uris` (from the command line) if any, else the config's,
    /// else `LIBVIRT_DEFAULT_URI`, else [`DEFAULT_URI`].
    pub fn resolve_sources(&self, uris: &[String]) -> Vec<SourceSpec> {
        if !uris.is_empty() {
            return uris
                .iter()
                .map(|u| SourceSpec {
                    uri: u.clone(),
                    host: None,
                })
                .collect();
        }
        if !self.sources.is_empty() {
            return self
                .sources
                .iter()
                .map(|s| SourceSpec {
                    uri: s.uri.clone(),
                    host: s.host.clone(),
                })
                .collect();
        }
        let uri = std::env::var("LIBVIRT_DEFAULT_URI")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| DEFAULT_URI.to_owned());
        vec![SourceSpec { uri, host: None }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_config_is_valid() {
        let text = include_str!("../dist/vmtel.toml");
        let c = Config::parse(text, "dist/vmtel.toml").expect("sample parses");
        assert!(!c.sources.is_empty());
    }

    #[test]
    fn sample_dashboard_sections_are_valid_uncommented() {
        let text = include_str!("../dist/vmtel.toml");
        let start = text
            .find("# [web.source]")
            .expect("the sample has [web.source]");
        let uncommented: String = text[start..]
            .lines()
            .filter(|l| {
                l.starts_with("# ")
                    && !l.starts_with("# What")
                    && !l.starts_with("# Where")
                    && !l.starts_with("# many")
            })
            .map(|l| l.trim_start_matches("# ").to_owned() + "\n")
            .collect();
        // The sample's files do not exist here: a token file of our own, no CA file.
        let dir = tempfile::tempdir().expect("tempdir");
        let token = dir.path().join("read.token");
        std::fs::write(&token, "a-read-token").expect("write");
        let uncommented = uncommented
            .replace(
                "/etc/vmtel/influxdb3-read.token",
                &token.display().to_string(),
            )
            .lines()
            .filter(|l| !l.starts_with("tls_ca_file"))
            .map(|l| l.to_owned() + "\n")
            .collect::<String>();
        let head = text[..start].replace("[web]\n", "");
        let c = Config::parse(&format!("{head}[web]\n{uncommented}"), "sample")
            .unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
        assert_eq!(
            c.web.source.kind,
            crate::serve::source::SourceKind::Influxdb3
        );
        assert_eq!(c.web.problems.cycles, 3);
    }

    #[test]
    fn problem_streaks_must_fit_in_their_window() {
        let e = Config::parse(
            "interval = \"5m\"\n[web.problems]\nwindow = \"10m\"\ncycles = 3\n",
            "f.toml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("do not fit in window"), "{e}");
        Config::parse(
            "interval = \"5m\"\n[web.problems]\nwindow = \"15m\"\ncycles = 3\n",
            "f.toml",
        )
        .expect("3 cycles of 5m fit in 15m");
    }

    #[test]
    fn defaults() {
        let c = Config::parse("", "x").expect("empty config is valid");
        assert_eq!(c.interval, Duration::from_secs(10));
        assert_eq!(c.device_cache_ttl, Duration::from_secs(300));
        assert_eq!(c.precision, Precision::Seconds);
    }

    #[test]
    fn unknown_option_names_line() {
        let e = Config::parse("interval = \"10s\"\nintervall = 3\n", "f.toml").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("f.toml"), "{msg}");
        assert!(msg.contains("intervall"), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
    }

    #[test]
    fn bad_duration_and_values() {
        let e = Config::parse("interval = \"10 parsecs\"", "f").unwrap_err();
        assert!(e.to_string().contains("interval"), "{e}");
        let e = Config::parse(
            "interval = \"0s\"\n[global_tags]\nhost = \"x\"\ncpus = \"y\"\ntime = \"t\"\n\"\" = \"e\"\n\"a\\tb\" = \"c\"\nn = 1\n[[sources]]\nuri = \"nope\"\n",
            "f",
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("interval"), "{msg}");
        assert!(msg.contains("global_tags.host"), "{msg}");
        assert!(
            msg.contains("global_tags.cpus clashes with a field"),
            "{msg}"
        );
        assert!(msg.contains("global_tags.n must be a string"), "{msg}");
        assert!(msg.contains("sources[0].uri"), "{msg}");
    }

    #[test]
    fn cli_uris_override_config() {
        let c = Config::parse(
            "[[sources]]\nuri = \"test:///default\"\nhost = \"h\"\n",
            "f",
        )
        .expect("valid");
        let s = c.resolve_sources(&["qemu:///system".into()]);
        assert_eq!(s[0].uri, "qemu:///system");
        let s = c.resolve_sources(&[]);
        assert_eq!(s[0].host.as_deref(), Some("h"));
    }

    proptest::proptest! {
        /// Whatever key a secret is pasted under, and whatever it looks like, a parse error
        /// names the line and key but never shows the value.
        #[test]
        fn parse_errors_never_show_the_value(
            secret in "[A-Za-z0-9+/_.-]{12,40}",
            place in 0usize..8,
        ) {
            let text = match place {
                0 => format!("token = \"{secret}\"\n"),
                1 => format!("interval = \"{secret}\"\n"),
                2 => format!("precision = \"a`{secret}\"\n"),
                3 => format!("[web]\nenabled = \"{secret}\"\n"),
                4 => format!("[[outputs.influxdb]]\nurl = \"http://h:1\"\ndatabase = \"d\"\ntoken = \"{secret}\"\n"),
                5 => format!("[[outputs.influxdb]]\nurl = \"http://h:1\"\ndatabase = \"d\"\ntimeout = \"{secret}\"\n"),
                6 => format!("balloon_period = \"{secret}\"\n"),
                _ => format!("[log]\nmax_files = \"{secret}\"\n"),
            };
            let Err(e) = Config::parse(&text, "f") else {
                return Err(proptest::test_runner::TestCaseError::fail(format!("{text} parsed")));
            };
            let msg = e.to_string();
            proptest::prop_assert!(!msg.contains(&secret), "{}", msg);
            proptest::prop_assert!(msg.contains("line "), "{}", msg);
            proptest::prop_assert!(msg.contains("key "), "{}", msg);
        }
    }

    #[test]
    fn userinfo_is_found_and_hidden() {
        use crate::deliver::influxdb::config::{has_userinfo, without_userinfo};
        assert!(has_userinfo("http://admin:secret@h:8181"));
        assert!(has_userinfo("https://user@h/"));
        // A password holding '/', '?' or '#' is still found and hidden.
        for url in [
            "http://admin:pa/ss@h:1",
            "http://admin:pa?ss@h:1",
            "http://admin:pa#ss@h:1",
        ] {
            assert!(has_userinfo(url), "{url}");
            assert_eq!(without_userinfo(url), "http://***@h:1");
            let e = Config::parse(
                &format!("[[outputs.influxdb]]\nurl = \"{url}\"\ndatabase = \"d\"\n"),
                "f",
            )
            .unwrap_err()
            .to_string();
            assert!(!e.contains("ss@") && e.contains("password_env"), "{e}");
        }
        assert!(!has_userinfo("http://h:8181/x"));
        assert_eq!(
            without_userinfo("http://admin:secret@h:8181/x"),
            "http://***@h:8181/x"
        );
        let e = Config::parse(
            "[[outputs.influxdb]]\nurl = \"http://admin:secret@h:8181\"\ndatabase = \"d\"\n",
            "f",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("password_env") && !e.contains("secret"), "{e}");
    }
}
