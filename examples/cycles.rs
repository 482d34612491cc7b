//! Runs N collection cycles (collect → derive → encode) against one libvirt URI and prints how
//! many lines each produced. Used by `scripts/leakcheck` under valgrind to show that a loop of
//! cycles does not leak (bulk stats records are freed, per-domain handles released).
//!
//! Usage: `cargo run --example cycles -- URI|demo CYCLES` (`demo`: the built-in demo fleet's
//! first host, on libvirt's test driver).

use std::time::Duration;

use vmtel::collect::{Collector, SourceSpec};
use vmtel::derive::Deriver;
use vmtel::encode::Encoder;

fn main() {
    let mut args = std::env::args().skip(1);
    let uri = args.next().unwrap_or_else(|| "test:///default".into());
    let cycles: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(10);
    vmtel::collect::quiet_libvirt_errors();
    let dir = tempfile::tempdir().expect("temporary directory");
    let spec = if uri == "demo" {
        let sources = vmtel::demo::write_demo_fleet(dir.path()).expect("demo fleet");
        sources.into_iter().next().expect("one demo host")
    } else {
        SourceSpec { uri, host: None }
    };
    let mut collector = Collector::new(spec, Duration::from_secs(300));
    let mut deriver = Deriver::new();
    let encoder = Encoder::default();
    let mut out = String::new();
    let mut total = 0;
    for _ in 0..cycles {
        match collector.collect() {
            Ok(sample) => {
                let features = deriver.update(&sample);
                out.clear();
                total += encoder.encode_host(&sample, &features, &mut out);
            }
            Err(e) => {
                eprintln!("cycles: {e}");
                std::process::exit(1);
            }
        }
    }
    println!("{cycles} cycles, {total} lines");
}
