//! `balloon_period` against a real QEMU guest of the lab (docs/lab.md): a guest booted with a
//! balloon but no statistics period reports no guest memory statistics until vmtel sets one.
//!
//! Uses the lab's extra guest 21 (`scripts/lab extra up 21`), re-created without
//! `<stats period=.../>`, and removes it afterwards.

use std::process::Command;
use std::time::{Duration, Instant};

use vmtel::collect::{Collector, SourceSpec};

const EXTRA: &str = "21";

fn lab(args: &[&str]) -> String {
    let out = Command::new("scripts/lab")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run scripts/lab");
    assert!(
        out.status.success(),
        "scripts/lab {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn virsh(args: &[&str]) {
    let out = Command::new("virsh")
        .args(["-q", "-c", "qemu:///system"])
        .args(args)
        .output()
        .expect("run virsh");
    assert!(
        out.status.success(),
        "virsh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Removes the extra guest even when the test fails.
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("scripts/lab")
            .args(["extra", "down", EXTRA])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output();
    }
}

#[test]
fn balloon_period_enables_guest_memory_statistics() {
    vmtel::collect::quiet_libvirt_errors();
    lab(&["up", "3"]);
    let _cleanup = Cleanup;
    let out = lab(&["extra", "up", EXTRA]);
    // The row `extra up` prints: tab-separated, with a header line naming the columns.
    let mut rows = out.lines().filter(|l| l.contains('\t'));
    let header: Vec<&str> = rows.next().expect("header").split('\t').collect();
    let row: Vec<&str> = rows.next().expect("guest row").split('\t').collect();
    let col = |name: &str| {
        let i = header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no column {name} in {header:?}"));
        row[i].to_owned()
    };
    let (name, uuid, xml_path) = (col("name"), col("uuid"), col("xml"));

    // Boot the same guest again without a statistics period.
    let xml = std::fs::read_to_string(&xml_path).expect("guest XML");
    assert!(
        xml.contains("<stats period="),
        "the lab guest has a stats period"
    );
    let no_period: String = xml
        .lines()
        .filter(|l| !l.trim_start().starts_with("<stats period="))
        .collect::<Vec<_>>()
        .join("\n");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("guest.xml");
    std::fs::write(&path, no_period).expect("write XML");
    virsh(&["destroy", &name]);
    virsh(&["create", path.to_str().expect("utf-8 path")]);

    let spec = SourceSpec {
        uri: "qemu:///system".into(),
        host: None,
    };
    let usable = |c: &mut Collector| {
        let s = c.collect().expect("cycle");
        let d = s
            .domains
            .iter()
            .find(|d| d.uuid == uuid)
            .expect("the extra guest is collected");
        (d.mem.usable, d.mem.current)
    };

    // Without balloon_period: the balloon's size is known, guest statistics are not.
    let mut plain = Collector::new(spec.clone(), Duration::from_secs(300));
    let (u, current) = usable(&mut plain);
    assert_eq!(u, None, "no guest statistics without a period");
    assert!(current.is_some(), "balloon.current is there all the same");

    // With it: vmtel sets the period and guest statistics follow within a few periods.
    let mut with = Collector::new(spec, Duration::from_secs(300));
    with.set_balloon_period(Some(1));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if usable(&mut with).0.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "guest memory statistics did not appear within 60 s of setting the period"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}
