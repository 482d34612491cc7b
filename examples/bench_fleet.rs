//! Loads a simulated fleet's recent history into an InfluxDB 3 server, as many agents would
//! have written it: `--hosts` hosts × `--vms` VMs (one NIC and one disk each) of `vmtel::sim`
//! (heavy-tailed, bursty, a few VMs in trouble: steal, swapping, NIC drops, paused), one cycle
//! every `--interval` seconds over the last `--hours` hours, through the real decoder, deriver
//! and encoder, posted gzip-compressed to `/api/v3/write_lp` in `s` precision.
//!
//! Then it catches up with the clock (the cycles that fell due while it loaded) and prints one
//! JSON object: lines, bytes, seconds, first and last time. With `--follow` it goes on writing
//! one cycle at each grid point of the wall clock, as the agents would, until it is stopped.
//!
//! `bench/fleet` times the dashboard's API and pages on it through `vmtel serve`.
//!
//! Usage: `bench_fleet --url URL --database DB [--hosts N] [--vms N] [--hours H]
//! [--interval S] [--seed K] [--follow]`.

#[path = "../bench/common.rs"]
mod common;

use std::io::Write as _;
use std::time::{Duration, Instant};

use common::arg;
use vmtel::collect::bulk::Decoder;
use vmtel::deliver::batch::NodeRecord;
use vmtel::derive::Deriver;
use vmtel::encode::Encoder;
use vmtel::model::HostSample;
use vmtel::sim::{host_name, SimFleet, SimOptions};

/// Line protocol per request, before compression.
const BATCH_BYTES: usize = 8 << 20;

fn post(agent: &ureq3::Agent, url: &str, body: &str) {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(body.as_bytes()).expect("gzip");
    let data = gz.finish().expect("gzip");
    for attempt in 0..5 {
        match agent
            .post(url)
            .header("Content-Encoding", "gzip")
            .header("Content-Type", "text/plain; charset=utf-8")
            .send(&data[..])
        {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => {
                let status = r.status();
                let text = r.into_body().read_to_string().unwrap_or_default();
                panic!("write answered {status}: {text}");
            }
            Err(e) if attempt < 4 => {
                eprintln!("write failed ({e}); retrying");
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => panic!("write failed: {e}"),
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let text = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_else(|| panic!("{name} is required"))
    };
    let url = text("--url");
    let database = text("--database");
    let hosts: usize = arg(&args, "--hosts", 1000);
    let vms: usize = arg(&args, "--vms", 10);
    let hours: f64 = arg(&args, "--hours", 1.0);
    let interval: u64 = arg(&args, "--interval", 10);
    let seed: u64 = arg(&args, "--seed", 1);
    let cycles = (hours * 3600.0 / interval as f64).round() as i64;
    let write_url = format!(
        "{}/api/v3/write_lp?db={database}&precision=second&no_sync=true",
        url.trim_end_matches('/')
    );
    let agent: ureq3::Agent = ureq3::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(300)))
        .http_status_as_error(false)
        .build()
        .into();

    let mut fleet = SimFleet::new(SimOptions {
        seed,
        hosts,
        vms_per_host: vms,
        reboot_every_days: Some(14.0),
        devices: Some((1, 1)),
    });
    let encoder = Encoder {
        global_tags: Vec::new(),
        precision: vmtel::encode::Precision::Seconds,
    };
    let mut decoders: Vec<Decoder> = (0..hosts).map(|_| Decoder::new()).collect();
    let mut derivers: Vec<Deriver> = (0..hosts).map(|_| Deriver::new()).collect();
    let step_ns = interval as i64 * 1_000_000_000;
    let now = vmtel::collect::wall_ns();
    let end = now - now.rem_euclid(step_ns);
    let start = end - cycles * step_ns;
    let (mut lines, mut bytes) = (0usize, 0usize);
    let mut buf = String::with_capacity(BATCH_BYTES + (1 << 20));
    let mut features = Vec::new();
    let t0 = Instant::now();
    let follow = args.iter().any(|a| a == "--follow");
    let mut c = 0i64;
    let mut reported = false;
    loop {
        c += 1;
        let t = start + c * step_ns;
        if c > cycles {
            // Past the loaded span: the cycles that fell due since, then (with --follow) one
            // per grid point of the clock.
            let now = vmtel::collect::wall_ns();
            if t > now {
                if !buf.is_empty() {
                    bytes += buf.len();
                    post(&agent, &write_url, &buf);
                    buf.clear();
                }
                if !reported {
                    reported = true;
                    println!(
                        "{}",
                        serde_json::json!({
                            "hosts": hosts,
                            "vms_per_host": vms,
                            "cycles": c - 1,
                            "interval_s": interval,
                            "lines": lines,
                            "bytes": bytes,
                            "seconds": t0.elapsed().as_secs_f64(),
                            "first_ms": (start + step_ns) / 1_000_000,
                            "last_ms": (t - step_ns) / 1_000_000,
                        })
                    );
                }
                if !follow {
                    break;
                }
                std::thread::sleep(Duration::from_nanos(u64::try_from(t - now).unwrap_or(0)));
            }
        }
        fleet.step(t, Duration::from_secs(interval));
        for h in 0..hosts {
            let mut sample = HostSample {
                host: host_name(h),
                timestamp_ns: t,
                domains: Vec::with_capacity(vms),
            };
            let mono = u64::try_from(t - start).unwrap_or(0);
            for i in h * vms..(h + 1) * vms {
                sample
                    .domains
                    .push(fleet.sample(i, t, mono, &mut decoders[h]));
            }
            derivers[h].begin_cycle();
            derivers[h].update_chunk(&sample.domains, &mut features);
            derivers[h].end_cycle();
            lines += encoder.encode_host(&sample, &features, &mut buf);
            let node = NodeRecord {
                host: sample.host,
                stats: fleet.node(h),
            };
            lines += usize::from(encoder.encode_node(&node, t, &mut buf));
            if buf.len() >= BATCH_BYTES || (c > cycles && h + 1 == hosts) {
                bytes += buf.len();
                post(&agent, &write_url, &buf);
                buf.clear();
            }
        }
        if c % 60 == 0 && c <= cycles {
            eprintln!(
                "  {c} of {cycles} cycles, {lines} lines, {:.0} s",
                t0.elapsed().as_secs_f64()
            );
        }
    }
}
