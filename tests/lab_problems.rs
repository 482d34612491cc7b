//! The problem rules on a real QEMU guest of the lab (docs/lab.md): a `vmtel run` on
//! `qemu:///system` with its dashboard; the lab's extra guest 22 is paused (the `paused`
//! problem appears, dated from the first cycle that saw it paused) and resumed (it clears);
//! then destroyed (the `vm_silent` problem appears: missing from its host's latest cycle) and
//! re-created (it clears); then its traffic is stopped by taking its first NIC's host tap down
//! (the frames the guest's workload sends are dropped: `nic_drops` appears) and started again
//! (the counters stop rising: it clears once the window has passed). The lab's regular guests
//! run their steady workload; their taps can count drops the guest never sees, so they are not
//! judged here.
//!
//! Swapping: the lab's extra guest 23 boots with a swap disk and 40 MiB of its 128 in tmpfs
//! (`LAB_SWAP_MIB`, docs/lab.md); shrinking its balloon to 64 MiB (`virsh setmem`) pushes part
//! of that out to swap (the guest's swap-out counter rises: `swapping` appears), and giving the
//! memory back ends the pressure (the counters stand still: it clears once the window passed).
//!
//! Uses `scripts/lab extra up 22` and `23`, one test at a time, and removes the guests afterwards.

#[path = "browser/harness.rs"]
mod web;

use std::process::Command;
use std::sync::{Mutex, MutexGuard};

use serde_json::Value;
use web::{now_ms, Vmtel};

const EXTRA: &str = "22";
const SWAP_EXTRA: &str = "23";

/// One test at a time: each runs a `vmtel run` on the whole lab and its own TCG guest, and the
/// machine's two cores are shared with the lab's regular guests.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn lab(args: &[&str]) -> String {
    lab_with(args, &[])
}

fn lab_with(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new("scripts/lab")
        .args(args)
        .envs(env.iter().copied())
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
    let out = Command::new("timeout")
        .args(["120", "virsh", "-q", "-c", "qemu:///system"])
        .args(args)
        .output()
        .expect("run virsh");
    assert!(
        out.status.success(),
        "virsh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Removes the extra guest at the end, whatever happened.
struct Guest(&'static str);

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = Command::new("scripts/lab")
            .args(["extra", "down", self.0])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output();
    }
}

/// The problems of the guest `uuid` by rule.
fn rules_of(problems: &Value, uuid: &str) -> Vec<(String, i64)> {
    problems["problems"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|p| p["uuid"] == uuid)
                .map(|p| {
                    (
                        p["rule"].as_str().unwrap_or_default().to_owned(),
                        p["since_ms"].as_i64().unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn has(problems: &Value, uuid: &str, rule: &str) -> bool {
    rules_of(problems, uuid).iter().any(|(r, _)| r == rule)
}

/// The value of column `name` in the row `scripts/lab extra up` prints (tab-separated, after
/// a header line naming the columns).
fn column(row: &str, name: &str) -> String {
    let mut rows = row.lines().filter(|l| l.contains('\t'));
    let header: Vec<&str> = rows.next().expect("header").split('\t').collect();
    let cells: Vec<&str> = rows.next().expect("guest row").split('\t').collect();
    header
        .iter()
        .position(|h| *h == name)
        .and_then(|i| cells.get(i))
        .map(|c| (*c).to_owned())
        .unwrap_or_else(|| panic!("no column {name} in {header:?}"))
}

/// `vmtel run` on the lab with its dashboard: problems judged over a 30 s window, streaks of
/// 2 cycles.
fn agent() -> Vmtel {
    let tmp = tempfile::tempdir().expect("temp dir");
    let config = format!(
        "interval = \"1s\"\nstate_dir = \"{}\"\n[[sources]]\nuri = \"qemu:///system\"\n\
         [web]\nlisten = \"127.0.0.1:0\"\n[web.problems]\nwindow = \"30s\"\ncycles = 2\n",
        tmp.path().display()
    );
    std::fs::write(tmp.path().join("vmtel.toml"), config).expect("config");
    Vmtel::start_in(tmp, &["run", "--config", "vmtel.toml"], &[])
}

#[test]
fn paused_vanished_and_silenced_guests_become_problems_and_clear() {
    let _turn = one_at_a_time();
    // The regular guests first (idempotent), then the extra one.
    lab(&["up", "3"]);
    let row = lab(&["extra", "up", EXTRA]);
    let _guest = Guest(EXTRA);
    let (name, uuid) = (column(&row, "name"), column(&row, "uuid"));
    let tap = column(&row, "net0");
    let v = agent();

    let in_fleet = |f: &Value| {
        f["vms"].as_array().is_some_and(|a| {
            a.iter().any(|x| {
                x["uuid"] == uuid.as_str() && x["cpu_pct"].is_number() && x["current"] == true
            })
        })
    };
    v.wait_json(
        "/api/fleet",
        60,
        "the extra guest with CPU values",
        in_fleet,
    );
    let p = v.json("/api/problems");
    assert!(
        !has(&p, &uuid, "paused") && !has(&p, &uuid, "vm_silent"),
        "a running guest is no problem: {p}"
    );

    // Paused: a problem from the first cycle that saw it paused, until it runs again.
    let paused_at = now_ms();
    virsh(&["suspend", &uuid]);
    let p = v.wait_json("/api/problems", 60, "the paused problem", |p| {
        has(p, &uuid, "paused")
    });
    let since = rules_of(&p, &uuid)
        .into_iter()
        .find(|(r, _)| r == "paused")
        .map(|(_, s)| s)
        .expect("paused");
    // Cycles are stamped with the grid point before their read: at most one interval early.
    assert!(
        since >= paused_at - 1000 && since <= now_ms(),
        "paused since {since}, suspended at {paused_at}"
    );
    let row = p["problems"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|x| x["uuid"] == uuid.as_str() && x["rule"] == "paused")
        })
        .cloned()
        .expect("paused row");
    assert_eq!(row["name"], name.as_str(), "{row}");
    virsh(&["resume", &uuid]);
    v.wait_json("/api/problems", 60, "the paused problem to clear", |p| {
        !has(p, &uuid, "paused")
    });

    // Gone: missing from the host's latest cycle, a problem until it is back.
    virsh(&["destroy", &uuid]);
    v.wait_json("/api/problems", 60, "the vm_silent problem", |p| {
        has(p, &uuid, "vm_silent")
    });
    lab(&["extra", "up", EXTRA]);
    v.wait_json(
        "/api/problems",
        120,
        "the vm_silent problem to clear",
        |p| !has(p, &uuid, "vm_silent"),
    );
    v.wait_json(
        "/api/fleet",
        60,
        "the re-created guest in the fleet",
        in_fleet,
    );

    // Traffic stopped: the host side of its first NIC goes down, so what the guest sends is
    // dropped (the guest's tx drops, as libvirt reports a tap's counters from the guest's side).
    // Drops counted while the new guest's link came up must leave the window first.
    v.wait_json("/api/problems", 120, "no NIC drops before the test", |p| {
        !has(p, &uuid, "nic_drops")
    });
    let down_at = now_ms();
    let link = TapDown::new(&tap);
    let p = v.wait_json("/api/problems", 60, "the nic_drops problem", |p| {
        has(p, &uuid, "nic_drops")
    });
    let row = p["problems"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|x| x["uuid"] == uuid.as_str() && x["rule"] == "nic_drops")
        })
        .cloned()
        .expect("nic_drops row");
    assert!(
        row["value"].as_f64().is_some_and(|d| d >= 1.0),
        "drops counted: {row}"
    );
    let since = row["since_ms"].as_i64().unwrap_or_default();
    assert!(
        since >= down_at - 1000 && since <= now_ms(),
        "drops since {since}, tap down at {down_at}: {row}"
    );
    drop(link);
    v.wait_json(
        "/api/problems",
        120,
        "the nic_drops problem to clear once traffic flows again",
        |p| !has(p, &uuid, "nic_drops"),
    );
}

#[test]
fn a_guest_pushed_into_swap_becomes_a_problem_and_clears() {
    let _turn = one_at_a_time();
    lab(&["up", "3"]);
    let row = lab_with(&["extra", "up", SWAP_EXTRA], &[("LAB_SWAP_MIB", "128")]);
    let _guest = Guest(SWAP_EXTRA);
    let uuid = column(&row, "uuid");
    let v = agent();

    // Running with its memory to spare: the hog sits in RAM, nothing is swapped.
    v.wait_json("/api/fleet", 60, "the swap guest with CPU values", |f| {
        f["vms"].as_array().is_some_and(|a| {
            a.iter()
                .any(|x| x["uuid"] == uuid.as_str() && x["cpu_pct"].is_number())
        })
    });
    v.wait_json("/api/problems", 60, "no swapping before the test", |p| {
        !has(p, &uuid, "swapping")
    });

    // Half its memory taken back by the balloon: the guest pushes tmpfs pages out to swap.
    let shrunk_at = now_ms();
    let _memory = Balloon::shrink(&uuid, "64M", "128M");
    let p = v.wait_json("/api/problems", 120, "the swapping problem", |p| {
        has(p, &uuid, "swapping")
    });
    let row = p["problems"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|x| x["uuid"] == uuid.as_str() && x["rule"] == "swapping")
        })
        .cloned()
        .expect("swapping row");
    assert!(
        row["value"].as_f64().is_some_and(|k| k > 0.0),
        "KiB swapped counted: {row}"
    );
    let since = row["since_ms"].as_i64().unwrap_or_default();
    assert!(
        since >= shrunk_at - 1000 && since <= now_ms(),
        "swapping since {since}, balloon shrunk at {shrunk_at}: {row}"
    );

    // The memory back: nothing more goes to or comes from swap, and the problem clears.
    drop(_memory);
    v.wait_json(
        "/api/problems",
        120,
        "the swapping problem to clear once the pressure is gone",
        |p| !has(p, &uuid, "swapping"),
    );
}

/// Shrinks a guest's balloon, and gives the memory back when dropped (whatever happened).
struct Balloon {
    uuid: String,
    back: &'static str,
}

impl Balloon {
    fn shrink(uuid: &str, to: &str, back: &'static str) -> Balloon {
        virsh(&["setmem", uuid, to, "--live"]);
        Balloon {
            uuid: uuid.to_owned(),
            back,
        }
    }
}

impl Drop for Balloon {
    fn drop(&mut self) {
        let _ = Command::new("timeout")
            .args(["120", "virsh", "-q", "-c", "qemu:///system", "setmem"])
            .args([self.uuid.as_str(), self.back, "--live"])
            .output();
    }
}

/// Takes a host tap down, and up again when dropped (whatever happened).
struct TapDown(String);

impl TapDown {
    fn new(tap: &str) -> TapDown {
        ip_link(tap, "down");
        TapDown(tap.to_owned())
    }
}

impl Drop for TapDown {
    fn drop(&mut self) {
        ip_link(&self.0, "up");
    }
}

fn ip_link(tap: &str, state: &str) {
    let out = Command::new("ip")
        .args(["link", "set", tap, state])
        .output()
        .expect("run ip");
    assert!(
        out.status.success() || std::thread::panicking(),
        "ip link set {tap} {state}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
