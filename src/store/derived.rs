//! `vm_features` from stored counters, computed when read (the store keeps counters only): the
//! same formulas as [`crate::derive`], over two rows of a VM and of its devices.

use super::compact::Rows;
use super::layout::{Kind, VMID};
use crate::model::Features;

/// The two newest rows of a series, if it has two.
pub struct Pair<'a> {
    rows: &'a Rows,
    cur: usize,
}

impl<'a> Pair<'a> {
    /// The last two rows of `rows` (None with fewer than two).
    pub fn last(rows: &'a Rows) -> Option<Pair<'a>> {
        (rows.len() >= 2).then(|| Pair {
            rows,
            cur: rows.len() - 1,
        })
    }

    fn get(&self, kind: Kind, key: &str, prev: bool) -> Option<i64> {
        let c = kind.column(key)?;
        self.rows.get(if prev { self.cur - 1 } else { self.cur }, c)
    }

    /// The increase of counter `key` (None if absent or if it went down).
    fn delta(&self, kind: Kind, key: &str) -> Option<u64> {
        let (a, b) = (self.get(kind, key, true)?, self.get(kind, key, false)?);
        u64::try_from(b.checked_sub(a)?).ok()
    }

    /// Seconds between the two rows.
    fn secs(&self) -> f64 {
        (self.rows.ts[self.cur] - self.rows.ts[self.cur - 1]) as f64 / 1000.0
    }

    /// The newer row's time.
    pub fn ts(&self) -> i64 {
        self.rows.ts[self.cur]
    }
}

/// The memory in use (percent of what the guest sees) of the latest row of a VM.
pub fn mem_used_pct(vm: &Rows) -> Option<f64> {
    let r = vm.len().checked_sub(1)?;
    let get = |k: &str| Kind::Vm.column(k).and_then(|c| vm.get(r, c));
    let (avail, usable) = (get("memavailable")?, get("memusable")?);
    (avail > 0 && usable <= avail).then(|| (avail - usable) as f64 / avail as f64 * 100.0)
}

/// The features of a VM from its last two rows and those of its NICs and disks (devices whose
/// two rows are not the VM's are left out). None when the VM has fewer than two rows, they are
/// not one interval apart, or it restarted between them (another `VMID`).
pub fn features(vm: &Rows, nics: &[&Rows], disks: &[&Rows]) -> Option<Features> {
    let p = Pair::last(vm)?;
    let secs = p.secs();
    if secs <= 0.0 || p.get(Kind::Vm, VMID, true) != p.get(Kind::Vm, VMID, false) {
        return None;
    }
    let cpus = p
        .get(Kind::Vm, "cpus", false)
        .filter(|&c| c > 0)
        .map(|c| c as f64);
    let cpu = |key: &str| {
        let d = p.delta(Kind::Vm, key)? as f64;
        Some(d / (secs * 1e9 * cpus?) * 100.0)
    };
    let same = |d: &Pair<'_>| d.ts() == p.ts() && (d.secs() - secs).abs() < 1e-9;
    let sum = |devices: &[&Rows], kind: Kind, key: &str| -> Option<f64> {
        let mut total: Option<u64> = None;
        for rows in devices {
            let Some(d) = Pair::last(rows).filter(same) else {
                continue;
            };
            if let Some(x) = d.delta(kind, key) {
                total = Some(total.unwrap_or(0).saturating_add(x));
            }
        }
        total.map(|t| t as f64 / secs)
    };
    Some(Features {
        cpu_pct: cpu("cputime"),
        cpu_usr_pct: cpu("timeusr"),
        cpu_sys_pct: cpu("timesys"),
        cpu_steal_pct: cpu("vcpu_delay"),
        mem_used_pct: mem_used_pct(vm),
        net_rx_bps: sum(nics, Kind::Nic, "rxbytes"),
        net_tx_bps: sum(nics, Kind::Nic, "txbytes"),
        net_rx_pps: sum(nics, Kind::Nic, "rxpackets"),
        net_tx_pps: sum(nics, Kind::Nic, "txpackets"),
        disk_rd_bps: sum(disks, Kind::Disk, "rd_bytes"),
        disk_wr_bps: sum(disks, Kind::Disk, "wr_bytes"),
        disk_rd_iops: sum(disks, Kind::Disk, "rd_req"),
        disk_wr_iops: sum(disks, Kind::Disk, "wr_reqs"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(rows: &[(i64, i64, i64)]) -> Rows {
        // (ts, VMID, cputime) with 2 vCPUs.
        let mut out = Rows::with_width(Kind::Vm.columns().len());
        for &(t, id, cpu) in rows {
            let mut row = vec![None; out.width];
            row[0] = Some(id);
            row[Kind::Vm.column("cpus").expect("cpus")] = Some(2);
            row[Kind::Vm.column("cputime").expect("cputime")] = Some(cpu);
            out.push(t, &row);
        }
        out
    }

    #[test]
    fn cpu_percent_is_the_counters_rate_over_the_vcpus() {
        // 10 s apart, 5 s of CPU over 2 vCPUs: 25 %.
        let f = features(&vm(&[(0, 1, 0), (10_000, 1, 5_000_000_000)]), &[], &[]).expect("f");
        assert_eq!(f.cpu_pct, Some(25.0));
        assert_eq!(f.net_rx_bps, None, "no NIC, no rate");
    }

    #[test]
    fn a_restart_or_a_counter_going_back_gives_no_rate() {
        assert!(features(&vm(&[(0, 1, 9), (10_000, 2, 5)]), &[], &[]).is_none());
        let f = features(&vm(&[(0, 1, 9), (10_000, 1, 5)]), &[], &[]).expect("f");
        assert_eq!(f.cpu_pct, None);
        assert!(features(&vm(&[(0, 1, 9)]), &[], &[]).is_none());
    }
}
