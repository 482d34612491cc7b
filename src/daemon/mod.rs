//! `vmtel run`: the long-running agent.
//!
//! The main thread keeps the schedule: at every wall-clock multiple of `interval` it sends a
//! tick to each source's worker ([`worker`]). Workers collect, derive and encode on their own
//! threads and hand batches to the sinks ([`crate::deliver::Hub`]), which write on theirs. So a
//! slow hypervisor delays only its own worker, and a slow sink delays nothing.
//!
//! Signals: SIGTERM and SIGINT stop ticking, give running cycles up to
//! [`SHUTDOWN_TIMEOUT`] to finish, flush the sinks and exit 0. SIGHUP re-reads the config file
//! and builds the new pipeline (secrets, TLS, spools, files, the state directory's lock) while
//! the running one goes on; only once that succeeded is the old one stopped (derived rates
//! restart). Otherwise the error is logged and the running pipeline is kept.
//!
//! One agent per state directory ([`lock`]).

pub mod internal;
pub mod lock;
pub mod schedule;
pub mod worker;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use crossbeam_channel::{after, select, Receiver};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use self::lock::StateLock;
use self::schedule::{next_tick, until};
use self::worker::{Tick, Worker, WorkerSettings};
use crate::collect::{self, wall_ns};
use crate::config::Config;
use crate::deliver::batch::Payload;
use crate::deliver::file::FileSink;
use crate::deliver::influxdb::InfluxSink;
use crate::deliver::stdout::StdoutSink;
use crate::deliver::{Batch, Hub, Sink};
use crate::serve::{Live, Prepared, SharedLive, WebServer};
use crate::store::{StoreSettings, StoreSink, StoreStatus};

/// How long a stop waits for running cycles, and then for the sinks to flush.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Builds the output sinks of `config`. Standard output is used when asked for, or when
/// nothing else keeps the lines (no output configured and the history store disabled).
pub fn sinks(config: &Config) -> Result<Vec<Box<dyn Sink>>> {
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    let encoder = config.encoder();
    if config.outputs.stdout || (config.outputs.is_empty() && !config.store.enabled) {
        sinks.push(Box::new(StdoutSink::new(encoder.clone())));
    }
    for f in &config.outputs.file {
        sinks.push(Box::new(FileSink::open(
            &f.path,
            f.max_size.as_u64(),
            f.keep,
            encoder.clone(),
        )?));
    }
    for o in &config.outputs.influxdb {
        sinks.push(Box::new(InfluxSink::start(o, &config.state_dir, &encoder)?));
    }
    Ok(sinks)
}

/// The running pipeline of one configuration: workers and sinks.
pub struct Pipeline {
    hub: Arc<Hub>,
    workers: Vec<Worker>,
    agent_host: String,
    interval: Duration,
    store: Option<Arc<StoreStatus>>,
    store_path: Option<PathBuf>,
}

impl Pipeline {
    /// Starts sinks and one worker per source.
    pub fn start(config: &Config) -> Result<Pipeline> {
        let mut all = sinks(config)?;
        let (store, store_path) = if config.store.enabled {
            let status = Arc::new(StoreStatus::default());
            let path = config.store_path();
            let mut sink = StoreSink::new(StoreSettings {
                path: path.clone(),
                retention_raw: config.store.retention_raw,
                retention_rollup: config.store.retention_rollup,
                max_size: config.store.max_size.as_u64(),
                status: Arc::clone(&status),
            });
            // Report a problem with the file at start-up; collection goes on either way.
            sink.open_now();
            all.push(Box::new(sink));
            (Some(status), Some(path))
        } else {
            (None, None)
        };
        let hub = Arc::new(Hub::start(all).context("cannot start the sinks")?);
        let agent_host = gethostname::gethostname().to_string_lossy().into_owned();
        let settings = WorkerSettings {
            device_cache_ttl: config.device_cache_ttl,
            balloon_period: config.balloon_period,
            agent_host: agent_host.clone(),
            interval: config.interval,
        };
        let workers = config
            .resolve_sources(&[])
            .into_iter()
            .map(|spec| Worker::start(spec, settings.clone(), Arc::clone(&hub)))
            .collect::<std::io::Result<Vec<_>>>()
            .context("cannot start a source worker")?;
        for w in &workers {
            tracing::info!(source = %w.uri, "collecting every {}", humantime::format_duration(config.interval));
        }
        Ok(Pipeline {
            hub,
            workers,
            agent_host,
            interval: config.interval,
            store,
            store_path,
        })
    }

    /// What the web server shows live: sources, sinks and the store's health.
    pub fn live(&self) -> Live {
        Live {
            store_path: self.store_path.clone(),
            store: self.store.clone(),
            sources: self
                .workers
                .iter()
                .map(|w| (w.uri.clone(), Arc::clone(&w.stats)))
                .collect(),
            sinks: self.hub.stats(),
            interval: self.interval,
        }
    }

    /// Sends one tick to every worker, and writes the sinks' self-telemetry.
    pub fn tick(&mut self, grid_ns: i64) {
        for w in &mut self.workers {
            w.tick(Tick { grid_ns });
        }
        let records = internal::sink_records(&self.agent_host, &self.hub.stats(), wall_ns());
        if !records.is_empty() {
            self.hub.send(Batch {
                // Part of the cycle the workers are starting: the history store writes it in
                // the same transaction as the first source's batches of this tick (one commit
                // per cycle), or with the next tick's if no source reports.
                end_of_cycle: false,
                source: "vmtel".into(),
                timestamp_ns: grid_ns,
                payload: Payload::Internal(records),
            });
        }
    }

    /// Stops ticking, waits up to `timeout` for running cycles, then up to `timeout` for the
    /// sinks to flush.
    pub fn stop(mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let threads: Vec<_> = self.workers.iter_mut().filter_map(Worker::stop).collect();
        for t in threads {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
        for w in &self.workers {
            if w.is_busy() {
                tracing::warn!(source = %w.uri, "cycle still running at shutdown: abandoned");
            }
        }
        let late = self.hub.shutdown(timeout);
        for name in late {
            tracing::warn!(sink = %name, "sink did not finish writing within {}s", timeout.as_secs());
        }
    }
}

fn signal_channel() -> Result<Receiver<i32>> {
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .context("cannot install signal handlers")?;
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if tx.send(sig).is_err() {
                    break;
                }
            }
        })
        .context("cannot start the signal thread")?;
    Ok(rx)
}

/// Starts libvirt's event loop (for keepalive) when a source is remote; it costs CPU on every
/// libvirt call, so local-only agents go without.
fn event_loop_if_remote(config: &Config) -> Result<()> {
    if config
        .resolve_sources(&[])
        .iter()
        .any(|s| collect::is_remote_uri(&s.uri))
    {
        collect::start_event_loop()?;
    }
    Ok(())
}

/// The lock of `config`'s state directory if it uses one: `held` is kept when it is that
/// directory's already. Another agent holding it is an error; a directory that cannot be
/// written is one only for the InfluxDB outputs' spools (the history store reports its own
/// failure and collection goes on without it, as before the lock).
fn lock_state_dir(config: &Config, held: Option<StateLock>) -> Result<Option<StateLock>> {
    if !config.uses_state_dir() {
        return Ok(None);
    }
    match held {
        Some(l) if l.dir() == config.state_dir => Ok(Some(l)),
        _ => match StateLock::acquire(&config.state_dir) {
            Ok(l) => Ok(Some(l)),
            Err(e @ lock::LockError::Io { .. }) if config.outputs.influxdb.is_empty() => {
                tracing::warn!("{e}");
                Ok(None)
            }
            Err(e) => Err(e.into()),
        },
    }
}

/// Loads `path` and builds its pipeline while the running one goes on.
fn prepare_reload(
    path: &std::path::Path,
    held: &Option<StateLock>,
) -> Result<(Config, Pipeline, Option<StateLock>)> {
    let new = Config::load(path)?;
    // A lock on another directory is taken now; the same directory's stays with `held`.
    let lock = match held {
        Some(l) if new.uses_state_dir() && l.dir() == new.state_dir => None,
        _ => lock_state_dir(&new, None)?,
    };
    event_loop_if_remote(&new)?;
    let pipeline = Pipeline::start(&new)?;
    Ok((new, pipeline, lock))
}

/// Runs the agent until SIGTERM or SIGINT. `config_path` is re-read on SIGHUP.
pub fn run(config_path: Option<PathBuf>, mut config: Config) -> Result<()> {
    collect::quiet_libvirt_errors();
    let mut lock = lock_state_dir(&config, None)?;
    event_loop_if_remote(&config)?;
    let signals = signal_channel()?;
    // A web configuration that would expose data without a token stops start-up; a port that
    // cannot be bound only costs the dashboard (logged), not collection.
    let web = if config.web.enabled {
        Some(Prepared::check(&config.web)?)
    } else {
        None
    };
    let mut pipeline = Pipeline::start(&config)?;
    let live: SharedLive = Arc::new(RwLock::new(pipeline.live()));
    let web = match web.map(|w| WebServer::serve(w, Arc::clone(&live))) {
        Some(Ok(w)) => Some(w),
        Some(Err(e)) => {
            tracing::error!("{e:#}; collecting without the dashboard");
            None
        }
        None => None,
    };
    tracing::info!("vmtel {} running", env!("CARGO_PKG_VERSION"));
    loop {
        let now = wall_ns();
        let next = next_tick(now, pipeline.interval);
        select! {
            recv(signals) -> sig => match sig {
                Ok(SIGHUP) => {
                    let Some(path) = &config_path else {
                        tracing::warn!("SIGHUP: no config file to reload (started without --config)");
                        continue;
                    };
                    tracing::info!("SIGHUP: reloading {}", path.display());
                    match prepare_reload(path, &lock) {
                        Ok((new, next, new_lock)) => {
                            std::mem::replace(&mut pipeline, next).stop(SHUTDOWN_TIMEOUT);
                            if new.web != config.web {
                                tracing::warn!("SIGHUP: [web] changes take effect at the next restart");
                            }
                            if !new.uses_state_dir() || new_lock.is_some() {
                                lock = new_lock;
                            }
                            config = new;
                            if let Ok(mut l) = live.write() {
                                *l = pipeline.live();
                            }
                        }
                        Err(e) => tracing::error!("SIGHUP: {e:#}; keeping the running configuration"),
                    }
                }
                Ok(sig) => {
                    tracing::info!("signal {sig}: finishing the current cycle and flushing outputs");
                    break;
                }
                Err(_) => break,
            },
            recv(after(until(now, next))) -> _ => pipeline.tick(next),
        }
    }
    pipeline.stop(SHUTDOWN_TIMEOUT);
    if let Some(web) = web {
        web.stop(Duration::from_secs(1));
    }
    tracing::info!("vmtel stopped");
    Ok(())
}
