//! Delivery throughput to a real InfluxDB 1.x (Debian's `influxd`, started here on loopback):
//! lines/s through an `[[outputs.influxdb]]` (spool + sender, v1 API), with and without gzip,
//! and vmtel's CPU time and peak RSS. Also the spool's own append rate (group commits with
//! `synchronous=FULL`) and its file size after draining.
//!
//! Not a test: run `bench/delivery` (release build), which writes docs/performance-delivery.md.
//! Usage: cargo run --release --example bench_delivery -- [LINES]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vmtel::deliver::influxdb::spool::{NewRow, Spool, SpoolOptions};
use vmtel::deliver::influxdb::{DeliveryStats, InfluxOutput, InfluxSink};
use vmtel::deliver::text::TextSink;
use vmtel::deliver::Sink;
use vmtel::encode::Encoder;

const VMS: usize = 100;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot pick a free port: {e}"))
}

struct Influxd(Child);

impl Drop for Influxd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_influxd(dir: &Path) -> (Influxd, String) {
    let (http, rpc) = (free_port(), free_port());
    let d = |s: &str| dir.join(s).display().to_string();
    let conf = format!(
        "reporting-enabled = false\nbind-address = \"127.0.0.1:{rpc}\"\n[meta]\n dir = '{}'\n logging-enabled = false\n\
         [data]\n dir = '{}'\n wal-dir = '{}'\n query-log-enabled = false\n\
         [http]\n bind-address = \"127.0.0.1:{http}\"\n log-enabled = false\n\
         [logging]\n level = \"error\"\n suppress-logo = true\n[monitor]\n store-enabled = false\n",
        d("meta"),
        d("data"),
        d("wal")
    );
    std::fs::write(dir.join("influxdb.conf"), conf).expect("write influxdb.conf");
    let child = Command::new("influxd")
        .arg("-config")
        .arg(dir.join("influxdb.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start influxd ({e}); run scripts/deps test"));
    let url = format!("http://127.0.0.1:{http}");
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(2))
        .build();
    let deadline = Instant::now() + Duration::from_secs(30);
    while agent.get(&format!("{url}/ping")).call().is_err() {
        assert!(Instant::now() < deadline, "influxd did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
    (Influxd(child), url)
}

/// One cycle of `VMS` VMs in vmtel's schema (6 lines per VM), at second `t`.
fn cycle(t: i64) -> String {
    let mut s = String::new();
    for vm in 0..VMS {
        let id =
            format!("host=hv01,VMID={vm},name=vm-{vm:03},uuid=5eed0000-0000-4000-8000-{vm:012}");
        let x = t * 1000 + vm as i64;
        s.push_str(&format!(
            "vm_metrics,{id} state=1i,cpus=4i,cputime={x}i,memmax=8388608i,mem=8388608i {t}\n"
        ));
        s.push_str(&format!("vm_totals,{id} net_rxbytes={x}i,net_txbytes={x}i,disk_rd_bytes={x}i,disk_wr_bytes={x}i,memactual=8388608i,memrss=4194304i,timeusr={x}i,timesys={x}i,cpus=4i,cputime={x}i,state=1i {t}\n"));
        s.push_str(&format!("vm_devices,{id},devtype=nic,device=vnet{vm} rxbytes={x}i,rxpackets={x}i,rxerrors=0i,rxdrops=0i,txbytes={x}i,txpackets={x}i,txerrors=0i,txdrops=0i {t}\n"));
        s.push_str(&format!("vm_devices,{id},devtype=disk,device=vda rd_req={x}i,rd_bytes={x}i,wr_reqs={x}i,wr_bytes={x}i,errors=0i {t}\n"));
        s.push_str(&format!("vm_devices,{id},devtype=disk,device=vdb rd_req={x}i,rd_bytes={x}i,wr_reqs={x}i,wr_bytes={x}i,errors=0i {t}\n"));
        s.push_str(&format!("vm_features,{id} cpu_pct=12.5,mem_used_pct=50.0,net_rx_bps=1234.5,net_tx_bps=4321.5,disk_rd_bps=100.25,disk_wr_bps=200.75 {t}\n"));
    }
    s
}

/// CPU seconds (user + system) of process `pid` ("self" for this one).
fn cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn main() {
    let lines: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(600_000);
    let cycles = (lines / (VMS * 6)).max(1);
    let batches: Vec<String> = (0..cycles)
        .map(|c| cycle(1_700_000_000 + c as i64))
        .collect();
    let total_lines = cycles * VMS * 6;
    let total_bytes: usize = batches.iter().map(String::len).sum();
    println!("# {total_lines} lines in {cycles} cycles of {VMS} VMs, {:.1} MiB of line protocol ({} bytes/line)\n", total_bytes as f64 / 1048576.0, total_bytes / total_lines);

    // The spool alone: how fast batches are accepted (one group commit per 10 cycles).
    let tmp = tempfile::tempdir().expect("tempdir");
    let stats = Arc::new(DeliveryStats::default());
    let opts = SpoolOptions {
        max_bytes: 1 << 34,
        max_age: None,
        sync: Default::default(),
    };
    let (mut spool, _) = Spool::open(&tmp.path().join("s.sqlite"), opts, stats).expect("spool");
    let (t0, c0) = (Instant::now(), cpu_secs("self"));
    for group in batches.chunks(10) {
        let rows: Vec<NewRow<'_>> = group
            .iter()
            .map(|b| NewRow {
                created_ns: 1,
                body: b,
                lines: (VMS * 6) as u64,
                precision: vmtel::encode::Precision::Seconds,
            })
            .collect();
        spool.append(&rows).expect("append");
    }
    let (secs, cpu) = (t0.elapsed().as_secs_f64(), cpu_secs("self") - c0);
    println!("| spool append (synchronous=FULL, 10 cycles per commit) | {:.0} lines/s | {:.0} MiB/s | CPU {:.2} s |\n", total_lines as f64 / secs, total_bytes as f64 / 1048576.0 / secs, cpu);
    drop(spool);

    println!("| gzip | lines/s | MiB/s of line protocol | wall s | vmtel CPU s | influxd CPU s | vmtel peak RSS MiB | spool file after drain |");
    println!("|---|---|---|---|---|---|---|---|");
    for gzip in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (influxd, url) = start_influxd(dir.path());
        let agent = ureq::AgentBuilder::new().build();
        agent
            .post(&format!("{url}/query"))
            .send_form(&[("q", "CREATE DATABASE bench")])
            .expect("create database");
        let cfg: InfluxOutput = toml::from_str(&format!(
            "name = \"bench\"\napi = \"v1\"\nurl = \"{url}\"\ndatabase = \"bench\"\ngzip = {gzip}\nflush_interval = \"0s\"\nspool_max_size = \"16 GiB\"\n"
        ))
        .expect("config");
        let state = dir.path().join("state");
        let (t0, c0, s0) = (
            Instant::now(),
            cpu_secs("self"),
            cpu_secs(&influxd.0.id().to_string()),
        );
        let mut sink = InfluxSink::start(&cfg, &state, &Encoder::default()).expect("sink");
        let stats = sink.delivery_stats().expect("stats");
        for b in &batches {
            sink.write_lines(b).expect("write");
            sink.flush().expect("flush");
        }
        let deadline = Instant::now() + Duration::from_secs(1800);
        while stats.delivered_lines.load(Ordering::Relaxed) < total_lines as u64 {
            assert!(Instant::now() < deadline, "not delivered in 30 min");
            assert_eq!(
                stats.retried.load(Ordering::Relaxed),
                0,
                "a request failed; see the log"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let secs = t0.elapsed().as_secs_f64();
        let cpu = cpu_secs("self") - c0;
        let server_cpu = cpu_secs(&influxd.0.id().to_string()) - s0;
        // Let the sender delete the last rows and compact.
        let deadline = Instant::now() + Duration::from_secs(30);
        while stats.backlog_batches.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(sink);
        let spool_size: u64 = std::fs::read_dir(&state)
            .map(|d| {
                d.filter_map(|e| e.ok()?.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        println!(
            "| {} | {:.0} | {:.1} | {:.2} | {:.2} | {:.2} | {:.0} | {} KiB |",
            if gzip { "on" } else { "off" },
            total_lines as f64 / secs,
            total_bytes as f64 / 1048576.0 / secs,
            secs,
            cpu,
            server_cpu,
            peak_rss_mib(),
            spool_size / 1024
        );
        drop(influxd);
    }
}
