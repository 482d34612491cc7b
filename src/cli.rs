//! The `vmtel` command line.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::collect::{self, simulated, Collector, SourceSpec};
use crate::config::Config;
use crate::deliver::batch::NodeRecord;
use crate::derive::Deriver;
use crate::encode::Encoder;

/// Telemetry agent for KVM/libvirt hypervisors.
#[derive(Debug, Parser)]
#[command(name = "vmtel", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// vmtel's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Collect one cycle from every source and print it as line protocol on stdout.
    ///
    /// Takes two samples GAP apart so that the derived `vm_features` are present.
    Once {
        /// libvirt URI to read (repeatable); overrides the config's sources. Without any,
        /// $LIBVIRT_DEFAULT_URI or qemu:///system is used.
        #[arg(long = "uri", value_name = "URI")]
        uris: Vec<String>,
        /// Configuration file (TOML).
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Time between the two samples, e.g. 1s, 500ms.
        #[arg(long, default_value = "1s", value_parser = parse_gap)]
        gap: Duration,
        /// Read the built-in demo fleet (libvirt's test driver; no hypervisor needed) instead
        /// of the configured sources.
        #[arg(long, conflicts_with = "uris")]
        demo: bool,
    },
    /// Run the agent: collect every `interval` until SIGTERM/SIGINT; SIGHUP reloads the config.
    Run {
        /// Configuration file (TOML). Without one: defaults, $LIBVIRT_DEFAULT_URI or
        /// qemu:///system, lines to standard output.
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Run vmtel on a simulated fleet (3 hosts x 12 VMs that move like real ones, no hypervisor
    /// needed) with its history, the last hour back-filled, and its dashboard; print the URL.
    Demo {
        /// Address and port of the dashboard.
        #[arg(long, default_value = crate::serve::DEFAULT_LISTEN, value_name = "ADDR:PORT")]
        listen: String,
        /// Collection interval (short, so charts fill quickly).
        #[arg(long, default_value = "2s", value_parser = parse_interval)]
        interval: Duration,
        /// Keep the history in this directory (default: a temporary one, removed at exit).
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
    },
    /// Serve the dashboard and JSON API only, without collecting: for a central dashboard host
    /// reading the InfluxDB 3 the agents write to (`[web.source] kind = "influxdb3"`), or an
    /// agent's history file. Runs until SIGTERM/SIGINT.
    Serve {
        /// Configuration file (TOML): its `[web]` section (and `[store]`/`state_dir` for the
        /// embedded source).
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Check a configuration file and print every problem found, with where it is.
    CheckConfig {
        /// Configuration file (TOML).
        #[arg(value_name = "FILE")]
        config: PathBuf,
    },
    /// Check every `[[outputs.influxdb]]`: reachable, credentials accepted, database or
    /// bucket present. Writes nothing; exits 1 if an output cannot be written to.
    CheckOutput {
        /// Configuration file (TOML).
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{e}; expected a duration such as 2s or 10s"))?;
    if d < Duration::from_secs(1) {
        return Err("the interval must be at least 1s, e.g. 2s".into());
    }
    Ok(d)
}

fn parse_gap(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{e}; expected a duration such as 1s or 500ms"))?;
    if d.is_zero() {
        return Err("the gap must be longer than zero, e.g. 1s".into());
    }
    Ok(d)
}

/// Loads the config file, or the defaults when none is given.
pub fn load_config(path: Option<&PathBuf>) -> Result<Config> {
    match path {
        Some(p) => Ok(Config::load(p)?),
        None => Ok(Config::default()),
    }
}

/// Runs the command line; returns the process exit code.
pub fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Run { config: path } => {
            let config = load_config(path.as_ref())?;
            let _guard = crate::logging::init(&config.log, "info")?;
            crate::daemon::run(path, config)?;
            Ok(0)
        }
        Command::Demo {
            listen,
            interval,
            state_dir,
        } => demo(listen, interval, state_dir),
        Command::CheckConfig { config } => match Config::load(&config) {
            Ok(c) => {
                println!(
                    "{}: ok ({} source(s), interval {})",
                    config.display(),
                    c.resolve_sources(&[]).len(),
                    humantime::format_duration(c.interval)
                );
                Ok(0)
            }
            Err(e) => {
                for problem in e.problems() {
                    eprintln!("{problem}");
                }
                Ok(1)
            }
        },
        Command::Serve { config } => {
            let config = load_config(config.as_ref())?;
            let _guard = crate::logging::init(&config.log, "info")?;
            serve_only(&config)
        }
        Command::CheckOutput { config } => {
            let config = load_config(config.as_ref())?;
            check_outputs(&config)
        }
        Command::Once {
            uris,
            config,
            gap,
            demo,
        } => {
            let config = load_config(config.as_ref())?;
            let _guard = crate::logging::init(&config.log, "warn")?;
            if demo {
                let dir = tempfile::Builder::new()
                    .prefix("vmtel-demo-")
                    .tempdir()
                    .context("cannot create a temporary directory for the demo fleet")?;
                let sources = crate::demo::write_demo_fleet(dir.path())
                    .context("cannot write the demo fleet")?;
                return once(&config, &sources, gap);
            }
            once(&config, &config.resolve_sources(&uris), gap)
        }
    }
}

/// What one source produced in `vmtel once`.
struct OnceResult {
    lines: String,
    error: Option<String>,
}

fn once_source(spec: SourceSpec, config: &Config, encoder: &Encoder, gap: Duration) -> OnceResult {
    let mut collector = Collector::new(spec, config.device_cache_ttl);
    let mut deriver = Deriver::new();
    let mut lines = String::new();
    let first = collector.collect().map(|s| {
        deriver.update(&s);
    });
    if let Err(e) = first {
        return OnceResult {
            lines,
            error: Some(e.to_string()),
        };
    }
    std::thread::sleep(gap);
    match collector.collect() {
        Ok(sample) => {
            let features = deriver.update(&sample);
            encoder.encode_host(&sample, &features, &mut lines);
            if let Some(stats) = collector.node_stats() {
                let node = NodeRecord {
                    host: sample.host.clone(),
                    stats,
                };
                encoder.encode_node(&node, sample.timestamp_ns, &mut lines);
            }
            OnceResult { lines, error: None }
        }
        Err(e) => OnceResult {
            lines,
            error: Some(e.to_string()),
        },
    }
}

/// `vmtel once`: every source in parallel, lines in source order, errors on stderr.
pub fn once(config: &Config, sources: &[SourceSpec], gap: Duration) -> Result<i32> {
    collect::quiet_libvirt_errors();
    let encoder = Encoder {
        global_tags: config.global_tags(),
        precision: config.precision,
    };
    let results: Vec<OnceResult> = std::thread::scope(|scope| {
        let handles: Vec<_> = sources
            .iter()
            .map(|spec| {
                let encoder = &encoder;
                scope.spawn(move || once_source(spec.clone(), config, encoder, gap))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| OnceResult {
                    lines: String::new(),
                    error: Some("internal error: collection thread panicked".into()),
                })
            })
            .collect()
    });
    let mut stdout = std::io::stdout().lock();
    let mut failed = false;
    for r in &results {
        stdout
            .write_all(r.lines.as_bytes())
            .context("cannot write to stdout")?;
        if let Some(e) = &r.error {
            eprintln!("vmtel: {e}");
            failed = true;
        }
    }
    stdout.flush().context("cannot write to stdout")?;
    Ok(if failed { 1 } else { 0 })
}

/// `vmtel check-output`: one block per InfluxDB output; exit code 1 if any cannot be written to.
pub fn check_outputs(config: &Config) -> Result<i32> {
    let mut failed = false;
    let read = &config.web.source;
    if read.kind == crate::serve::source::SourceKind::Influxdb3 {
        let result = crate::serve::source::influxdb3::InfluxDb3::new(read, config.interval)
            .map_err(crate::serve::source::QueryError::Unavailable)
            .and_then(|s| s.check());
        match result {
            Ok(found) => println!("web.source (read): ok\n  {found}"),
            Err(e) => {
                println!("web.source (read): FAILED\n  {e}");
                failed = true;
            }
        }
    }
    if config.outputs.influxdb.is_empty() {
        println!("no [[outputs.influxdb]] configured: no output to check");
        return Ok(i32::from(failed));
    }
    for o in &config.outputs.influxdb {
        let r = crate::deliver::influxdb::check::check(o, config.precision);
        println!("{}: {}", r.name, if r.ok { "ok" } else { "FAILED" });
        for f in &r.findings {
            println!("  {f}");
        }
        failed |= !r.ok;
    }
    Ok(i32::from(failed))
}

/// `vmtel serve`: the web server alone, until SIGTERM or SIGINT.
fn serve_only(config: &Config) -> Result<i32> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    if !config.web.enabled {
        anyhow::bail!(
            "[web] enabled = false: `vmtel serve` would serve nothing; remove it or set enabled = true"
        );
    }
    let live = crate::serve::Live {
        store_path: config.store.enabled.then(|| config.store_path()),
        interval: config.interval,
        ..Default::default()
    };
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .context("cannot install the signal handlers")?;
    let server = crate::serve::WebServer::start(
        &config.web,
        std::sync::Arc::new(std::sync::RwLock::new(live)),
    )?;
    if let Some(sig) = signals.forever().next() {
        tracing::info!("signal {sig}: stopping the dashboard");
    }
    server.stop(Duration::from_secs(5));
    Ok(0)
}

/// `vmtel demo`: the daemon on the built-in demo fleet, with history and dashboard.
fn demo(listen: String, interval: Duration, state_dir: Option<PathBuf>) -> Result<i32> {
    let _guard = crate::logging::init(&crate::config::LogConfig::default(), "info")?;
    let tmp = tempfile::Builder::new()
        .prefix("vmtel-demo-")
        .tempdir()
        .context("cannot create a temporary directory for the demo")?;
    let state = match state_dir {
        Some(d) => {
            std::fs::create_dir_all(&d)
                .with_context(|| format!("cannot create --state-dir {}", d.display()))?;
            std::fs::canonicalize(&d)
                .with_context(|| format!("cannot resolve --state-dir {}", d.display()))?
        }
        None => tmp.path().join("state"),
    };
    let mut config = Config {
        interval,
        state_dir: state.clone(),
        ..Config::default()
    };
    config.sources = (1..=simulated::DEMO_HOSTS)
        .map(|n| crate::config::Source {
            uri: simulated::demo_uri(n),
            host: None,
        })
        .collect();
    config.web.listen = listen;
    let problems = config.problems();
    if !problems.is_empty() {
        anyhow::bail!("{}", problems.join("; "));
    }
    // The dashboard is the point of the demo: a busy port is an error here.
    let addr = crate::serve::Prepared::check(&config.web)?.addr();
    drop(std::net::TcpListener::bind(addr).with_context(|| {
        format!("cannot listen on {addr}: pick a free port, e.g. --listen 127.0.0.1:8081")
    })?);
    println!(
        "vmtel demo: a SIMULATED fleet of {} hosts with {} VMs each (no hypervisor is read), \
         collecting every {}; history in {}",
        simulated::DEMO_HOSTS,
        simulated::DEMO_VMS,
        humantime::format_duration(interval),
        config.store_path().display()
    );
    let _ = std::io::stdout().flush();
    let cycles = backfill_demo(&config)?;
    // Port 0 is chosen when the server binds: its log line ("dashboard at ...") has it.
    let open = if addr.port() == 0 {
        "open the address of the \"dashboard at\" line below".to_owned()
    } else {
        format!("open http://{}/", config.web.listen)
    };
    println!(
        "vmtel demo: back-filled the last hour ({cycles} cycles per host); {open} (Ctrl-C stops)"
    );
    let _ = std::io::stdout().flush();
    crate::daemon::run(None, config)?;
    Ok(0)
}

/// Writes the last hour of the demo's simulated hosts into the history store, through the
/// decoder and the store sink as a live cycle goes, and leaves the sources for the collectors
/// to continue from. Returns the cycles written per host.
fn backfill_demo(config: &Config) -> Result<usize> {
    use crate::deliver::batch::{Batch, Payload, VmChunk};
    use crate::deliver::Sink;
    use crate::store::{StoreSettings, StoreSink, StoreStatus};

    if !config.store.enabled {
        return Ok(0);
    }
    let status = std::sync::Arc::new(StoreStatus::default());
    let mut store = StoreSink::new(StoreSettings {
        path: config.store_path(),
        retention_raw: config.store.retention_raw,
        retention_rollup: config.store.retention_rollup,
        max_size: config.store.max_size.as_u64(),
        status,
    });
    // The hour at 10 s steps (or the interval, if longer): what a chart of an hour shows.
    let step = config.interval.max(Duration::from_secs(10));
    let step_ns = i64::try_from(step.as_nanos()).unwrap_or(i64::MAX);
    let now = collect::wall_ns();
    let to = now - now.rem_euclid(step_ns);
    let from = to - 3_600_000_000_000 + step_ns;
    let mut sources = Vec::new();
    for n in 1..=simulated::DEMO_HOSTS {
        sources.push(simulated::SimSource::open(&simulated::demo_uri(n))?);
    }
    // A cycle at a time, every host: the store commits at each cycle's last batch.
    let mut cycles = 0;
    let mut failed = None;
    simulated::backfill(&mut sources, from, to, step, |uri, sample, node, last| {
        if failed.is_some() {
            return;
        }
        cycles += usize::from(last);
        let ts = sample.timestamp_ns;
        let host = sample.host.clone();
        let vms = Batch {
            source: uri.to_owned(),
            timestamp_ns: ts,
            payload: Payload::Vms(VmChunk::new(sample, Vec::new(), None)),
            end_of_cycle: false,
        };
        let node = Batch {
            source: uri.to_owned(),
            timestamp_ns: ts,
            payload: Payload::Node(NodeRecord { host, stats: node }),
            end_of_cycle: last,
        };
        for b in [vms, node] {
            if let Err(e) = store.write(&b) {
                failed = Some(e);
                return;
            }
        }
    });
    if let Some(e) = failed {
        anyhow::bail!(
            "cannot back-fill the demo's history in {}: {e}",
            config.store_path().display()
        );
    }
    store
        .flush()
        .with_context(|| format!("cannot write {}", config.store_path().display()))?;
    drop(store);
    for s in sources {
        simulated::prepare(s);
    }
    Ok(cycles)
}
