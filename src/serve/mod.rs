//! The web server: dashboard pages, the JSON API under `/api/`, and `/metrics`.
//!
//! * [`auth`]: who may connect: loopback by default; a non-loopback `listen` needs a token
//!   (or an explicit `insecure = true`); the token check on every request.
//! * [`conn`]: the accept loop: timeouts for idle and half-sent connections, a connection cap.
//! * [`api`]: the JSON API the pages use (documented in `docs/api.md`).
//! * [`pages`]: the HTML pages and their assets (our JS/CSS, and uPlot bundled at build time).
//! * [`help`]: the troubleshooting guide, served as a page; the links from errors to it.
//! * [`metrics`]: the Prometheus text exposition.
//!
//! The collection daemon is thread-based; the server runs a single-threaded tokio runtime on a
//! thread of its own and reads the history file through read-only SQLite connections, so it
//! never takes a lock the collection path holds.

pub mod api;
pub mod auth;
pub mod conn;
pub mod help;
pub mod metrics;
pub mod pages;
pub mod source;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::daemon::internal::SourceStats;
use crate::deliver::SinkStats;
use crate::store::StoreStatus;

/// `[web]`: the dashboard, JSON API and `/metrics`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    /// Serve at all (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Address and port (default `127.0.0.1:8080`).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Name of an environment variable holding the access token.
    pub auth_token_env: Option<String>,
    /// A file holding the access token (its first line).
    pub auth_token_file: Option<PathBuf>,
    /// Serve a non-loopback address without a token (default false).
    #[serde(default)]
    pub insecure: bool,
    /// Mark the sign-in cookie `Secure` (for a dashboard behind a TLS proxy). Also set when
    /// the proxy sends `X-Forwarded-Proto: https`.
    #[serde(default)]
    pub secure_cookie: bool,
    /// `[web.source]`: where the dashboard reads from (default: the embedded history).
    #[serde(default)]
    pub source: source::SourceConfig,
    /// `[web.problems]`: the problem rules' thresholds.
    #[serde(default)]
    pub problems: source::problems::ProblemsConfig,
}

fn yes() -> bool {
    true
}

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

fn default_listen() -> String {
    DEFAULT_LISTEN.into()
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            enabled: true,
            listen: default_listen(),
            auth_token_env: None,
            auth_token_file: None,
            insecure: false,
            secure_cookie: false,
            source: source::SourceConfig::default(),
            problems: source::problems::ProblemsConfig::default(),
        }
    }
}

impl WebConfig {
    /// Every problem with these options, phrased with a fix.
    pub fn problems(&self) -> Vec<String> {
        if !self.enabled {
            return Vec::new();
        }
        let mut p = Vec::new();
        match self.listen.parse::<SocketAddr>() {
            Err(_) => p.push(format!(
                "web.listen = {:?} is not an address and port; use e.g. \"127.0.0.1:8080\"",
                self.listen
            )),
            Ok(addr) => {
                if let Some(problem) = auth::exposure_problem(addr, self.has_token(), self.insecure)
                {
                    p.push(problem);
                }
                if !addr.ip().is_loopback() {
                    // The same check as at start: the token must be long enough to expose.
                    if let Ok(Some(t)) = auth::resolve_token(self) {
                        if let Some(problem) = auth::weak_token_problem(&t) {
                            p.push(problem);
                        }
                    }
                }
            }
        }
        if self.auth_token_env.is_some() && self.auth_token_file.is_some() {
            p.push("web.auth_token_env and web.auth_token_file are both set; keep one".into());
        }
        p.extend(self.source.problems());
        p.extend(self.problems.problems());
        if self.auth_token_env.as_deref().is_some_and(str::is_empty) {
            p.push(
                "web.auth_token_env is empty; name an environment variable, e.g. \"VMTEL_TOKEN\""
                    .into(),
            );
        }
        p
    }

    /// True when a token source is configured.
    pub fn has_token(&self) -> bool {
        self.auth_token_env.is_some() || self.auth_token_file.is_some()
    }
}

/// What the pages show that is not in the store: the running pipeline's live counters.
#[derive(Debug, Default)]
pub struct Live {
    /// The history file, when the store is enabled.
    pub store_path: Option<PathBuf>,
    /// The store's health.
    pub store: Option<Arc<StoreStatus>>,
    /// Each source's URI and counters.
    pub sources: Vec<(String, Arc<SourceStats>)>,
    /// Each sink's name and counters.
    pub sinks: Vec<(String, Arc<SinkStats>)>,
    /// Collection interval.
    pub interval: Duration,
}

/// Shared between the daemon (which replaces it when the pipeline restarts) and the server.
pub type SharedLive = Arc<RwLock<Live>>;

/// A running web server.
pub struct WebServer {
    /// The address it listens on.
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// A checked web configuration: address parsed, token read, exposure allowed.
#[derive(Debug)]
pub struct Prepared {
    addr: SocketAddr,
    token: Option<auth::Token>,
    secure_cookie: bool,
    source: source::SourceConfig,
    problems: source::problems::ProblemsConfig,
}

impl Prepared {
    /// Checks `config`: the address parses, the token (if configured) can be read, and a
    /// non-loopback address has a token or `insecure = true`. Errors name the fix.
    pub fn check(config: &WebConfig) -> Result<Prepared> {
        let addr: SocketAddr = config.listen.parse().with_context(|| {
            format!(
                "web.listen = {:?} is not an address and port; use e.g. \"127.0.0.1:8080\"",
                config.listen
            )
        })?;
        let token = auth::resolve_token(config)?;
        if let Some(problem) = auth::exposure_problem(addr, token.is_some(), config.insecure) {
            anyhow::bail!("{problem}");
        }
        if let Some(problem) = token
            .as_ref()
            .filter(|_| !addr.ip().is_loopback())
            .and_then(auth::weak_token_problem)
        {
            anyhow::bail!("{problem}");
        }
        if let Some(problem) = config
            .source
            .problems()
            .into_iter()
            .chain(config.problems.problems())
            .next()
        {
            anyhow::bail!("{problem}");
        }
        if !addr.ip().is_loopback() && token.is_none() {
            tracing::warn!(%addr, "serving a non-loopback address WITHOUT authentication (web.insecure = true)");
        }
        Ok(Prepared {
            addr,
            token,
            secure_cookie: config.secure_cookie,
            source: config.source.clone(),
            problems: config.problems.clone(),
        })
    }

    /// The address to bind.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl WebServer {
    /// Checks `config` and serves it (see [`Prepared::check`] and [`WebServer::serve`]).
    pub fn start(config: &WebConfig, live: SharedLive) -> Result<WebServer> {
        WebServer::serve(Prepared::check(config)?, live)
    }

    /// Binds the address (errors name it and the fix) and serves on a thread of its own.
    pub fn serve(prepared: Prepared, live: SharedLive) -> Result<WebServer> {
        let Prepared {
            addr,
            token,
            secure_cookie,
            source,
            problems,
        } = prepared;
        let source =
            source::Source::from_config(&source, Arc::clone(&live)).map_err(anyhow::Error::msg)?;
        let listener = TcpListener::bind(addr).with_context(|| {
            format!("cannot listen on {addr} for the dashboard: set [web] listen to a free address, or [web] enabled = false")
        })?;
        listener
            .set_nonblocking(true)
            .context("cannot configure the dashboard socket")?;
        let addr = listener.local_addr().context("dashboard socket")?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let source_info = source.info();
        let app = router(
            live,
            Arc::new(source),
            Arc::new(problems),
            token,
            addr,
            secure_cookie,
        );
        let thread = std::thread::Builder::new()
            .name("web".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!("cannot start the web server's runtime: {e}");
                        return;
                    }
                };
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!("cannot use the dashboard socket: {e}");
                            return;
                        }
                    };
                    conn::serve(listener, app, rx).await;
                });
            })
            .context("cannot start the web server thread")?;
        tracing::info!(
            "dashboard at http://{addr}/ (reading {})",
            source_info.location
        );
        Ok(WebServer {
            addr,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// Stops serving (open connections are given up to `timeout`).
    pub fn stop(mut self, timeout: Duration) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let deadline = std::time::Instant::now() + timeout;
            while !t.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

/// State every handler gets.
#[derive(Clone)]
pub struct AppState {
    /// The live view.
    pub live: SharedLive,
    /// Where the pages' data comes from.
    pub source: Arc<source::Source>,
    /// The problem rules' thresholds.
    pub problems: Arc<source::problems::ProblemsConfig>,
    /// The access token, when one is required.
    pub token: Option<Arc<auth::Token>>,
    /// Sign-in sessions and the failed-sign-in throttle.
    pub sessions: Arc<auth::Sessions>,
    /// The address served; on a token-less loopback server, requests must name a loopback
    /// host (against DNS rebinding).
    pub addr: SocketAddr,
    /// Mark the session cookie `Secure`.
    pub secure_cookie: bool,
}

fn router(
    live: SharedLive,
    source: Arc<source::Source>,
    problems: Arc<source::problems::ProblemsConfig>,
    token: Option<auth::Token>,
    addr: SocketAddr,
    secure_cookie: bool,
) -> axum::Router {
    use axum::routing::get;
    let state = AppState {
        live,
        source,
        problems,
        token: token.map(Arc::new),
        sessions: Arc::new(auth::Sessions::default()),
        addr,
        secure_cookie,
    };
    axum::Router::new()
        .route("/", get(pages::page))
        .route("/fleet", get(pages::page))
        .route("/problems", get(pages::page))
        .route("/top", get(pages::page))
        .route("/vm/{host}/{uuid}", get(pages::page))
        .route("/agent", get(pages::page))
        .route(help::PATH, get(help::page))
        .route("/login", get(auth::login_form).post(auth::login))
        .route("/assets/{file}", get(pages::asset))
        .route("/api/fleet", get(api::fleet))
        .route("/api/hosts", get(api::hosts))
        .route("/api/problems", get(api::problems))
        .route("/api/top", get(api::top))
        .route("/api/vm", get(api::vm))
        .route("/api/agent", get(api::agent))
        .route("/api/status", get(api::status))
        .route("/metrics", get(metrics::metrics))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::check_host,
        ))
        .layer(axum::middleware::from_fn(conn::request_timeout))
        .with_state(state)
}
