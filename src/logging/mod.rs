//! Logging setup: `tracing` to standard error (journald picks it up), optionally also to a file
//! rotated daily, as text or JSON. `RUST_LOG` overrides the configured level. Identical
//! warnings and errors are rate limited ([`ratelimit`]); a lasting condition is reported when it
//! begins, changes and ends ([`episode`]); recurring events are summarised ([`tally`]).

pub mod episode;
pub mod ratelimit;
pub mod tally;

use std::io::IsTerminal;

use anyhow::{Context, Result};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

use self::ratelimit::RateLimit;
use crate::config::{LogConfig, LogFormat};

/// An identical warning or error is logged at most once per this window.
pub const REPEAT_WINDOW: std::time::Duration = std::time::Duration::from_secs(300);

/// Keeps the file writer alive; logs written to the file are flushed when it is dropped.
pub struct LogGuard {
    _file: Option<WorkerGuard>,
}

fn filter(level: &str) -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level))
}

/// Installs the global subscriber. `default_level` applies when neither `RUST_LOG` nor
/// `log.level` is set.
pub fn init(config: &LogConfig, default_level: &str) -> Result<LogGuard> {
    let level = config.level.as_deref().unwrap_or(default_level);
    let json = config.format == LogFormat::Json;
    let ansi = std::io::stderr().is_terminal();
    let stderr = if json {
        fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_filter(filter(level))
            .boxed()
    } else {
        fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .with_filter(filter(level))
            .boxed()
    };
    let mut guard = None;
    let file_layer = match &config.file {
        None => None,
        Some(path) => {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            let name = path
                .file_name()
                .context("log.file has no file name")?
                .to_string_lossy()
                .into_owned();
            let appender = RollingFileAppender::builder()
                .rotation(Rotation::DAILY)
                .filename_prefix(name)
                .max_log_files(config.max_files.unwrap_or(7).max(1))
                .build(dir)
                .with_context(|| format!("cannot open log file {}", path.display()))?;
            let (writer, g) = tracing_appender::non_blocking(appender);
            guard = Some(g);
            let layer = fmt::layer().with_writer(writer).with_ansi(false);
            Some(if json {
                layer.json().with_filter(filter(level)).boxed()
            } else {
                layer.with_filter(filter(level)).boxed()
            })
        }
    };
    tracing_subscriber::registry()
        .with(stderr.with_filter(RateLimit::new(REPEAT_WINDOW)))
        .with(file_layer.map(|l| l.with_filter(RateLimit::new(REPEAT_WINDOW))))
        .try_init()
        .context("logging was already initialised")?;
    Ok(LogGuard { _file: guard })
}
