//! The schema, declared once: every measurement vmtel writes and every field in it, with its
//! type, unit, counter or gauge, libvirt source, chart label and Prometheus name. The names are
//! the v2.0 telemetry module's (a contract with existing dashboards: `rd_req` next to `wr_reqs`
//! is deliberate).
//!
//! Everything that lists fields reads this table: the encoder writes each measurement's fields
//! in the table's order (the `write_fields` function of each measurement's module, generated
//! from the same rows, so writing costs no table lookup), the config's clash check
//! ([`FIELD_KEYS`]), `/metrics` (the `prom` column), the dashboard's chart legends (`label`),
//! and the field tables of `docs/metrics.md` ([`doc_table`]; a test fails when the page and the
//! table differ).

use crate::daemon::internal::{DeliveryCounters, SinkCounters, SourceCounters};
use crate::encode::line::Line;
use crate::model::{DiskStats, DomainSample, Features, NicStats, NodeStats};

/// How a field is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// An integer (`i` suffix; signed 64-bit, as InfluxDB 1.x has no unsigned type).
    Int,
    /// A float.
    Float,
}

impl Ty {
    /// The word the docs use.
    pub fn as_str(self) -> &'static str {
        match self {
            Ty::Int => "integer",
            Ty::Float => "float",
        }
    }
}

/// Whether a field only grows (until the VM or device restarts) or goes up and down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Grows; rates are its differences over time.
    Counter,
    /// A level.
    Gauge,
}

/// How a field is exported on `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prom {
    /// The metric's name (`_total` for counters, a unit suffix).
    pub name: &'static str,
    /// Its help text.
    pub help: &'static str,
    /// Factor from the stored value to the metric's unit (KiB to bytes, ns to seconds).
    pub scale: f64,
}

/// A field's value, typed as it is written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
}

/// One field of a measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Field {
    /// The field key.
    pub key: &'static str,
    /// How it is written.
    pub ty: Ty,
    /// Counter or gauge.
    pub kind: Kind,
    /// Its unit and meaning, as the docs say it.
    pub unit: &'static str,
    /// Where its value comes from (libvirt bulk key and fallback call, or a formula).
    pub source: &'static str,
    /// The legend of its line in the dashboard's charts, when it is charted.
    pub label: Option<&'static str>,
    /// Its `/metrics` export, if any.
    pub prom: Option<Prom>,
}

/// One measurement (for `vm_devices`, one device type).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measurement {
    /// The measurement name.
    pub name: &'static str,
    /// `nic` or `disk` for `vm_devices` lines.
    pub devtype: Option<&'static str>,
    /// Its fields, in the order they are written.
    pub fields: &'static [Field],
}

impl Measurement {
    /// The field `key`, if the measurement has it.
    pub fn field(&self, key: &str) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.key == key)
    }
}

/// Sums one optional counter over devices: `None` when no device reports it.
fn sum<T>(devices: &[T], get: impl Fn(&T) -> Option<u64>) -> Option<u64> {
    devices
        .iter()
        .filter_map(get)
        .fold(None, |acc: Option<u64>, v| {
            Some(acc.unwrap_or(0).saturating_add(v))
        })
}

macro_rules! opt {
    () => {
        None
    };
    ($v:expr) => {
        Some($v)
    };
}

macro_rules! prom {
    () => {
        None
    };
    ($name:literal, $help:literal, $scale:expr) => {
        Some(Prom {
            name: $name,
            help: $help,
            scale: $scale,
        })
    };
}

macro_rules! ty {
    (U64) => {
        Ty::Int
    };
    (I64) => {
        Ty::Int
    };
    (F64) => {
        Ty::Float
    };
}

macro_rules! value {
    (U64, $v:expr) => {
        $v.filter(|&v| v <= i64::MAX as u64)
            .map(|v| Value::Int(v as i64))
    };
    (I64, $v:expr) => {
        $v.map(Value::Int)
    };
    (F64, $v:expr) => {
        $v.filter(|v: &f64| v.is_finite()).map(Value::Float)
    };
}

macro_rules! write_field {
    ($line:ident, U64, $key:literal, $v:expr) => {
        $line.field_u64($crate::key!($key), $v)
    };
    ($line:ident, I64, $key:literal, $v:expr) => {
        $line.field_i64($crate::key!($key), $v)
    };
    ($line:ident, F64, $key:literal, $v:expr) => {
        $line.field_f64($crate::key!($key), $v)
    };
}

/// Declares measurements: for each, a module with `MEASUREMENT` (the table) and
/// `write_fields` (the encoder's field writer), both from the same rows.
macro_rules! measurements {
    ($(
        $(#[$doc:meta])*
        $module:ident = $name:literal $(devtype $devtype:literal)? for |$s:ident: $subject:ty| {
            $(
                $key:literal: $ty:ident $kind:ident, $unit:literal, $source:literal
                $(, label $label:literal)?
                $(, prom($pname:literal, $phelp:literal, $scale:expr))?
                => $get:expr;
            )*
        }
    )*) => {
        $(
            $(#[$doc])*
            pub mod $module {
                use super::*;

                /// This measurement's row of the schema.
                pub const MEASUREMENT: Measurement = Measurement {
                    name: $name,
                    devtype: opt!($($devtype)?),
                    fields: &[$(
                        Field {
                            key: $key,
                            ty: ty!($ty),
                            kind: Kind::$kind,
                            unit: $unit,
                            source: $source,
                            label: opt!($($label)?),
                            prom: prom!($($pname, $phelp, $scale)?),
                        },
                    )*],
                };

                /// Writes the fields of this measurement read from `subject`, in the table's
                /// order (a field without a value is left out).
                #[inline(always)]
                pub fn write_fields(line: &mut Line<'_>, $s: &$subject) {
                    $( write_field!(line, $ty, $key, $get); )*
                }

                /// Calls `each` with every field of `subject` that has a value, in the table's
                /// order, as [`write_fields`] writes them: an unsigned value above
                /// `i64::MAX` and a float that is not finite are left out (floats are not
                /// rounded here).
                pub fn for_each($s: &$subject, mut each: impl FnMut(&'static Field, Value)) {
                    let mut fields = MEASUREMENT.fields.iter();
                    $(
                        let field = fields.next();
                        if let (Some(f), Some(v)) = (field, value!($ty, $get)) {
                            each(f, v);
                        }
                    )*
                }
            }
        )*

        /// Every measurement: a VM's, in the order its lines are written, the host's, then vmtel's own.
        pub const MEASUREMENTS: &[Measurement] = &[$($module::MEASUREMENT),*];
    };
}

/// KiB to bytes.
const KIB: f64 = 1024.0;

measurements! {
    /// `vm_metrics`: basic VM metrics.
    vm_metrics = "vm_metrics" for |d: DomainSample| {
        "state": I64 Gauge, "`virDomainState` code: 1 running, 2 blocked, 3 paused, 4 shutting down, 5 shut off, 6 crashed, 7 suspended (PM)", "`state.state`; `virDomainGetInfo`",
            prom("vmtel_vm_state", "libvirt domain state (1 running, 3 paused, ...).", 1.0)
            => d.state;
        "cpus": U64 Gauge, "vCPUs online", "`vcpu.current`; `virDomainGetInfo.nrVirtCpu`",
            prom("vmtel_vm_vcpus", "Virtual CPUs online.", 1.0)
            => d.vcpu.current.map(u64::from);
        "cputime": U64 Counter, "ns, total CPU time of the VM (counter)", "`cpu.time`; `virDomainGetCPUStats`",
            prom("vmtel_vm_cpu_seconds_total", "CPU time used by the VM.", 1e-9)
            => d.cpu.time;
        "memmax": U64 Gauge, "KiB, maximum memory", "`balloon.maximum`; `virDomainGetInfo.maxMem`",
            prom("vmtel_vm_memory_max_bytes", "Maximum memory.", KIB)
            => d.mem.maximum;
        "mem": U64 Gauge, "KiB, current balloon size", "`balloon.current`; `virDomainGetInfo.memory`"
            => d.mem.current;
    }

    /// `vm_totals`: one line per VM with everything summed over its devices.
    vm_totals = "vm_totals" for |d: DomainSample| {
        "net_rxbytes": U64 Counter, "bytes (counter)", "Σ `net.N.rx.bytes`" => sum(&d.nics, |x| x.rx_bytes);
        "net_rxpackets": U64 Counter, "packets (counter)", "Σ `net.N.rx.pkts`" => sum(&d.nics, |x| x.rx_pkts);
        "net_rxerrors": U64 Counter, "errors (counter)", "Σ `net.N.rx.errs`" => sum(&d.nics, |x| x.rx_errs);
        "net_rxdrops": U64 Counter, "packets (counter)", "Σ `net.N.rx.drop`" => sum(&d.nics, |x| x.rx_drop);
        "net_txbytes": U64 Counter, "bytes (counter)", "Σ `net.N.tx.bytes`" => sum(&d.nics, |x| x.tx_bytes);
        "net_txpackets": U64 Counter, "packets (counter)", "Σ `net.N.tx.pkts`" => sum(&d.nics, |x| x.tx_pkts);
        "net_txerrors": U64 Counter, "errors (counter)", "Σ `net.N.tx.errs`" => sum(&d.nics, |x| x.tx_errs);
        "net_txdrops": U64 Counter, "packets (counter)", "Σ `net.N.tx.drop`" => sum(&d.nics, |x| x.tx_drop);
        "disk_rd_req": U64 Counter, "requests (counter)", "Σ `block.N.rd.reqs`" => sum(&d.disks, |x| x.rd_reqs);
        "disk_rd_bytes": U64 Counter, "bytes (counter)", "Σ `block.N.rd.bytes`" => sum(&d.disks, |x| x.rd_bytes);
        "disk_wr_reqs": U64 Counter, "requests (counter)", "Σ `block.N.wr.reqs`" => sum(&d.disks, |x| x.wr_reqs);
        "disk_wr_bytes": U64 Counter, "bytes (counter)", "Σ `block.N.wr.bytes`" => sum(&d.disks, |x| x.wr_bytes);
        "disk_errors": U64 Counter, "errors (counter)", "Σ `block.N.errors`" => sum(&d.disks, |x| x.errors);
        "memactual": U64 Gauge, "KiB, current balloon size", "`balloon.current`; `virDomainMemoryStats` ACTUAL_BALLOON",
            label "actual (balloon)",
            prom("vmtel_vm_memory_actual_bytes", "Current balloon size.", KIB)
            => d.mem.current;
        "memrss": U64 Gauge, "KiB, resident set of the QEMU process", "`balloon.rss`; RSS",
            label "rss (host)",
            prom("vmtel_vm_memory_rss_bytes", "Resident set size of the VM's process on the host.", KIB)
            => d.mem.rss;
        "memavailable": U64 Gauge, "KiB, memory the guest sees as total (guest stat)", "`balloon.available`; AVAILABLE",
            label "available (guest)",
            prom("vmtel_vm_memory_available_bytes", "Memory the guest sees as total.", KIB)
            => d.mem.available;
        "memusable": U64 Gauge, "KiB, memory usable without swapping (guest stat)", "`balloon.usable`; USABLE",
            label "usable (guest)",
            prom("vmtel_vm_memory_usable_bytes", "Memory usable by the guest without swapping.", KIB)
            => d.mem.usable;
        "memswap_in": U64 Counter, "KiB swapped in (guest stat, counter)", "`balloon.swap_in`; SWAP_IN",
            label "swap in (B/s)",
            prom("vmtel_vm_memory_swap_in_bytes_total", "Memory swapped in by the guest.", KIB)
            => d.mem.swap_in;
        "memswap_out": U64 Counter, "KiB swapped out (guest stat, counter)", "`balloon.swap_out`; SWAP_OUT",
            label "swap out (B/s)",
            prom("vmtel_vm_memory_swap_out_bytes_total", "Memory swapped out by the guest.", KIB)
            => d.mem.swap_out;
        "memmajor_fault": U64 Counter, "major page faults (guest stat, counter)", "`balloon.major_fault`; MAJOR_FAULT",
            label "major faults/s",
            prom("vmtel_vm_memory_major_faults_total", "Major page faults in the guest.", 1.0)
            => d.mem.major_fault;
        "memminor_fault": U64 Counter, "minor page faults (guest stat, counter)", "`balloon.minor_fault`; MINOR_FAULT",
            label "minor faults/s",
            prom("vmtel_vm_memory_minor_faults_total", "Minor page faults in the guest.", 1.0)
            => d.mem.minor_fault;
        "memdisk_cache": U64 Gauge, "KiB, reclaimable disk caches (guest stat)", "`balloon.disk_caches`; DISK_CACHES",
            prom("vmtel_vm_memory_disk_caches_bytes", "Guest disk caches that can be reclaimed.", KIB)
            => d.mem.disk_caches;
        "timeusr": U64 Counter, "ns, user CPU time (counter)", "`cpu.user`; `virDomainGetCPUStats` user_time",
            prom("vmtel_vm_cpu_user_seconds_total", "User CPU time used by the VM.", 1e-9)
            => d.cpu.user;
        "timesys": U64 Counter, "ns, system CPU time (counter)", "`cpu.system`; system_time",
            prom("vmtel_vm_cpu_system_seconds_total", "System CPU time used by the VM.", 1e-9)
            => d.cpu.system;
        "cpus": U64 Gauge, "vCPUs online", "as in `vm_metrics`" => d.vcpu.current.map(u64::from);
        "cputime": U64 Counter, "ns (counter)", "as in `vm_metrics`" => d.cpu.time;
        "state": I64 Gauge, "state code", "as in `vm_metrics`" => d.state;
        "vcpu_delay": U64 Counter, "ns, time the vCPUs waited for a host CPU, summed over vCPUs (counter): the steal time the guest sees; `cpu_steal_pct` is its rate", "`vcpu.N.delay` summed over the vCPUs (bulk `vcpu` group only)",
            prom("vmtel_vm_vcpu_delay_seconds_total", "Time the VM's vCPUs waited for a host CPU (steal).", 1e-9)
            => d.vcpu.delay_sum;
    }

    /// `vm_devices,devtype=nic`: one line per NIC (counters as the guest sees them).
    vm_devices_nic = "vm_devices" devtype "nic" for |n: NicStats| {
        "rxbytes": U64 Counter, "bytes (counter)", "`net.N.rx.bytes`",
            label "rx bytes/s",
            prom("vmtel_vm_network_receive_bytes_total", "Bytes received by the NIC.", 1.0)
            => n.rx_bytes;
        "rxpackets": U64 Counter, "packets (counter)", "`net.N.rx.pkts`",
            label "rx packets/s",
            prom("vmtel_vm_network_receive_packets_total", "Packets received by the NIC.", 1.0)
            => n.rx_pkts;
        "rxerrors": U64 Counter, "errors (counter)", "`net.N.rx.errs`",
            prom("vmtel_vm_network_receive_errors_total", "Receive errors of the NIC.", 1.0)
            => n.rx_errs;
        "rxdrops": U64 Counter, "packets (counter)", "`net.N.rx.drop`",
            prom("vmtel_vm_network_receive_drops_total", "Received packets dropped.", 1.0)
            => n.rx_drop;
        "txbytes": U64 Counter, "bytes (counter)", "`net.N.tx.bytes`",
            label "tx bytes/s",
            prom("vmtel_vm_network_transmit_bytes_total", "Bytes transmitted by the NIC.", 1.0)
            => n.tx_bytes;
        "txpackets": U64 Counter, "packets (counter)", "`net.N.tx.pkts`",
            label "tx packets/s",
            prom("vmtel_vm_network_transmit_packets_total", "Packets transmitted by the NIC.", 1.0)
            => n.tx_pkts;
        "txerrors": U64 Counter, "errors (counter)", "`net.N.tx.errs`",
            prom("vmtel_vm_network_transmit_errors_total", "Transmit errors of the NIC.", 1.0)
            => n.tx_errs;
        "txdrops": U64 Counter, "packets (counter)", "`net.N.tx.drop`",
            prom("vmtel_vm_network_transmit_drops_total", "Transmitted packets dropped.", 1.0)
            => n.tx_drop;
    }

    /// `vm_devices,devtype=disk`: one line per disk.
    vm_devices_disk = "vm_devices" devtype "disk" for |k: DiskStats| {
        "rd_req": U64 Counter, "requests (counter)", "`block.N.rd.reqs`",
            label "reads/s",
            prom("vmtel_vm_disk_reads_total", "Read requests to the disk.", 1.0)
            => k.rd_reqs;
        "rd_bytes": U64 Counter, "bytes (counter)", "`block.N.rd.bytes`",
            label "read bytes/s",
            prom("vmtel_vm_disk_read_bytes_total", "Bytes read from the disk.", 1.0)
            => k.rd_bytes;
        "wr_reqs": U64 Counter, "requests (counter)", "`block.N.wr.reqs`",
            label "writes/s",
            prom("vmtel_vm_disk_writes_total", "Write requests to the disk.", 1.0)
            => k.wr_reqs;
        "wr_bytes": U64 Counter, "bytes (counter)", "`block.N.wr.bytes`",
            label "write bytes/s",
            prom("vmtel_vm_disk_written_bytes_total", "Bytes written to the disk.", 1.0)
            => k.wr_bytes;
        "errors": U64 Counter, "errors (counter; QEMU 10 reports none, so it is usually absent)", "`block.N.errors`",
            prom("vmtel_vm_disk_errors_total", "I/O errors of the disk.", 1.0)
            => k.errors;
    }

    /// `vm_features`: rates and utilisation derived from consecutive samples.
    vm_features = "vm_features" for |f: Features| {
        "cpu_pct": F64 Gauge, "percent of the VM's vCPUs (0–100)", "Δ`cputime` / (Δt · `cpus`) · 100",
            label "total",
            prom("vmtel_vm_cpu_usage_percent", "CPU use over the last interval, percent of the VM's vCPUs.", 1.0)
            => f.cpu_pct;
        "cpu_usr_pct": F64 Gauge, "percent", "Δ`timeusr` / (Δt · `cpus`) · 100",
            label "user"
            => f.cpu_usr_pct;
        "cpu_sys_pct": F64 Gauge, "percent", "Δ`timesys` / (Δt · `cpus`) · 100",
            label "system"
            => f.cpu_sys_pct;
        "cpu_steal_pct": F64 Gauge, "percent", "Δ(Σ `vcpu.N.delay`) / (Δt · `cpus`) · 100: time vCPUs were runnable but waiting for a host CPU (bulk path only)",
            label "steal",
            prom("vmtel_vm_cpu_steal_percent", "Time vCPUs waited for a host CPU over the last interval, percent.", 1.0)
            => f.cpu_steal_pct;
        "mem_used_pct": F64 Gauge, "percent", "(`memavailable` − `memusable`) / `memavailable` · 100 (needs guest stats)",
            prom("vmtel_vm_memory_used_percent", "Guest memory in use, percent of what the guest sees.", 1.0)
            => f.mem_used_pct;
        "net_rx_bps": F64 Gauge, "bytes/s", "Σ Δ`rxbytes` / Δt" => f.net_rx_bps;
        "net_tx_bps": F64 Gauge, "bytes/s", "Σ Δ`txbytes` / Δt" => f.net_tx_bps;
        "net_rx_pps": F64 Gauge, "packets/s", "Σ Δ`rxpackets` / Δt" => f.net_rx_pps;
        "net_tx_pps": F64 Gauge, "packets/s", "Σ Δ`txpackets` / Δt" => f.net_tx_pps;
        "disk_rd_bps": F64 Gauge, "bytes/s", "Σ Δ`rd_bytes` / Δt" => f.disk_rd_bps;
        "disk_wr_bps": F64 Gauge, "bytes/s", "Σ Δ`wr_bytes` / Δt" => f.disk_wr_bps;
        "disk_rd_iops": F64 Gauge, "requests/s", "Σ Δ`rd_req` / Δt" => f.disk_rd_iops;
        "disk_wr_iops": F64 Gauge, "requests/s", "Σ Δ`wr_reqs` / Δt" => f.disk_wr_iops;
    }

    /// `vm_host`: one line per host per cycle, its capacity and use (tag `host` only).
    vm_host = "vm_host" for |n: NodeStats| {
        "cpus": U64 Gauge, "logical CPUs online", "`virNodeGetInfo.cpus` (read once per connection)",
            prom("vmtel_host_cpus", "Logical CPUs online on the host.", 1.0)
            => n.cpus;
        "mhz": U64 Gauge, "MHz, expected CPU frequency (left out when libvirt says 0, unknown)", "`virNodeGetInfo.mhz`" => n.mhz;
        "memtotal": U64 Gauge, "KiB, physical memory", "`virNodeGetMemoryStats` total; `virNodeGetInfo.memory`",
            prom("vmtel_host_memory_total_bytes", "Physical memory of the host.", KIB)
            => n.mem_total;
        "memfree": U64 Gauge, "KiB, free memory", "`virNodeGetMemoryStats` free; `virNodeGetFreeMemory`",
            prom("vmtel_host_memory_free_bytes", "Free memory of the host.", KIB)
            => n.mem_free;
        "membuffers": U64 Gauge, "KiB, kernel buffers", "`virNodeGetMemoryStats` buffers" => n.mem_buffers;
        "memcached": U64 Gauge, "KiB, page cache", "`virNodeGetMemoryStats` cached" => n.mem_cached;
        "cpu_user": U64 Counter, "ns, user CPU time summed over the host's CPUs (counter)", "`virNodeGetCPUStats` user",
            prom("vmtel_host_cpu_user_seconds_total", "User CPU time of the host, summed over its CPUs.", 1e-9)
            => n.cpu_user;
        "cpu_kernel": U64 Counter, "ns, kernel CPU time summed over the host's CPUs (counter)", "`virNodeGetCPUStats` kernel",
            prom("vmtel_host_cpu_kernel_seconds_total", "Kernel CPU time of the host, summed over its CPUs.", 1e-9)
            => n.cpu_kernel;
        "cpu_idle": U64 Counter, "ns, idle CPU time summed over the host's CPUs (counter)", "`virNodeGetCPUStats` idle",
            prom("vmtel_host_cpu_idle_seconds_total", "Idle CPU time of the host, summed over its CPUs.", 1e-9)
            => n.cpu_idle;
        "cpu_iowait": U64 Counter, "ns, CPU time waiting for I/O summed over the host's CPUs (counter)", "`virNodeGetCPUStats` iowait",
            prom("vmtel_host_cpu_iowait_seconds_total", "CPU time of the host waiting for I/O, summed over its CPUs.", 1e-9)
            => n.cpu_iowait;
    }

    /// `vmtel_internal,source=...`: one line per source per cycle (vmtel's own health). The
    /// docs print these tables with three columns (no source).
    internal_source = "vmtel_internal" for |s: SourceCounters| {
        "cycle_ns": U64 Gauge, "duration of the source's last cycle, ns", "" => Some(s.cycle_ns);
        "domains": U64 Gauge, "VMs in the last successful cycle", "" => Some(s.domains);
        "cycles": U64 Counter, "cycles run since start (counter)", "" => Some(s.cycles);
        "errors": U64 Counter, "failed cycles: connect or bulk call (counter)", "" => Some(s.errors);
        "skipped_ticks": U64 Counter, "ticks skipped because the previous cycle overran or the source was backing off (counter)", "" => Some(s.skipped_ticks);
        "late_cycles": U64 Counter, "cycles that finished after their deadline, the next grid point (counter)", "" => Some(s.late_cycles);
        "lines": U64 Counter, "records handed to the outputs, at most one line each: per VM `vm_metrics`, `vm_totals`, one per device and `vm_features`, and the host's `vm_host`; self-telemetry excluded (counter)", "" => Some(s.records);
        "connected": I64 Gauge, "1 while the libvirt connection is up, else 0", ""
            => Some(i64::from(s.connected));
    }

    /// `vmtel_internal,sink=...`: one line per output per cycle.
    internal_sink = "vmtel_internal" for |s: SinkCounters| {
        "sink_batches": U64 Counter, "batches written (counter)", "" => Some(s.batches);
        "sink_lines": U64 Counter, "lines written; for the history store, records stored (counter)", "" => Some(s.lines);
        "sink_bytes": U64 Counter, "bytes of line protocol written (0 for the history store) (counter)", "" => Some(s.bytes);
        "sink_dropped": U64 Counter, "batches dropped because the output's queue was full (counter)", "" => Some(s.dropped);
        "sink_errors": U64 Counter, "failed writes (counter)", "" => Some(s.errors);
    }

    /// The spool and delivery fields an InfluxDB output adds to its `vmtel_internal` line.
    internal_delivery = "vmtel_internal" for |d: DeliveryCounters| {
        "backlog_batches": U64 Gauge, "spooled batches waiting to be sent", "" => Some(d.backlog_batches);
        "backlog_bytes": U64 Gauge, "bytes of line protocol waiting to be sent", "" => Some(d.backlog_bytes);
        "oldest_age_ns": U64 Gauge, "age of the oldest waiting batch, ns (0 when nothing waits)", "" => Some(d.oldest_age_ns);
        "delivered_lines": U64 Counter, "lines the server stored (counter)", "" => Some(d.delivered_lines);
        "delivered_requests": U64 Counter, "write requests settled by the server (counter)", "" => Some(d.delivered_requests);
        "retried": U64 Counter, "failed requests retried later: outage, 401/403/404, 429, 5xx (counter)", "" => Some(d.retried);
        "dropped_lines": U64 Counter, "lines dropped because the spool was full (`spool_max_size`) or too old (`spool_max_age`), or from memory while the spool could not be written (counter)", "" => Some(d.dropped_lines);
        "memory_dropped_lines": U64 Counter, "of `dropped_lines`, those dropped from memory: the spool could not be written (disk full, I/O error) and 64 MiB were waiting (counter)", "" => Some(d.memory_dropped_lines);
        "rejected_lines": U64 Counter, "lines the server refused (bad line, field type conflict, a single line over its size limit); logged, never resent (counter)", "" => Some(d.rejected_lines);
    }
}

/// Tag keys vmtel writes itself.
pub const TAG_KEYS: &[&str] = &["host", "VMID", "name", "uuid", "devtype", "device"];

/// Number of distinct field keys in the schema.
const FIELD_KEY_COUNT: usize = count_distinct_keys();

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Whether the key at (`m`, `f`) appeared in an earlier position of the table.
const fn seen_before(m: usize, f: usize) -> bool {
    let key = MEASUREMENTS[m].fields[f].key;
    let mut i = 0;
    while i <= m {
        let fields = MEASUREMENTS[i].fields;
        let end = if i == m { f } else { fields.len() };
        let mut j = 0;
        while j < end {
            if str_eq(fields[j].key, key) {
                return true;
            }
            j += 1;
        }
        i += 1;
    }
    false
}

const fn count_distinct_keys() -> usize {
    let mut n = 0;
    let mut m = 0;
    while m < MEASUREMENTS.len() {
        let mut f = 0;
        while f < MEASUREMENTS[m].fields.len() {
            if !seen_before(m, f) {
                n += 1;
            }
            f += 1;
        }
        m += 1;
    }
    n
}

const fn distinct_keys() -> [&'static str; FIELD_KEY_COUNT] {
    let mut out = [""; FIELD_KEY_COUNT];
    let mut n = 0;
    let mut m = 0;
    while m < MEASUREMENTS.len() {
        let mut f = 0;
        while f < MEASUREMENTS[m].fields.len() {
            if !seen_before(m, f) {
                out[n] = MEASUREMENTS[m].fields[f].key;
                n += 1;
            }
            f += 1;
        }
        m += 1;
    }
    out
}

const FIELD_KEY_ARRAY: [&str; FIELD_KEY_COUNT] = distinct_keys();

/// Every field key vmtel writes, each once, in table order. A global tag may not reuse one:
/// InfluxDB 3 forbids a tag and a field with the same name in one table.
pub const FIELD_KEYS: &[&str] = &FIELD_KEY_ARRAY;

/// The measurement names, each once.
pub const MEASUREMENT_NAMES: &[&str] = &[
    "vm_metrics",
    "vm_totals",
    "vm_devices",
    "vm_features",
    "vm_host",
    "vmtel_internal",
];

/// The field table of `m` as the docs print it: one Markdown row per field, without the
/// header: `| field | type | unit | source |` (`docs/metrics.md`), or `| field | type |
/// meaning |` for fields without a source (`vmtel_internal`, `docs/running.md`).
pub fn doc_table(m: &Measurement) -> String {
    m.fields
        .iter()
        .map(|f| {
            if f.source.is_empty() {
                format!("| `{}` | {} | {} |\n", f.key, f.ty.as_str(), f.unit)
            } else {
                format!(
                    "| `{}` | {} | {} | {} |\n",
                    f.key,
                    f.ty.as_str(),
                    f.unit,
                    f.source
                )
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_within_a_measurement_and_need_no_escaping() {
        for m in MEASUREMENTS {
            for (i, f) in m.fields.iter().enumerate() {
                assert!(
                    !m.fields[..i].iter().any(|g| g.key == f.key),
                    "{} lists {} twice",
                    m.name,
                    f.key
                );
                assert!(
                    f.key
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                    "{}",
                    f.key
                );
                if let Some(p) = f.prom {
                    assert_eq!(
                        p.name.ends_with("_total"),
                        f.kind == Kind::Counter,
                        "{}: counters and only counters end in _total",
                        p.name
                    );
                }
            }
        }
        assert_eq!(
            FIELD_KEYS.len(),
            55 + 9 + 22,
            "vmtel_internal's errors is also a disk field; vm_host's cpus is also vm_metrics'"
        );
        for m in MEASUREMENTS {
            assert!(MEASUREMENT_NAMES.contains(&m.name));
        }
    }

    /// The rows of the Markdown table in `doc` that holds `first_row`.
    fn table_holding<'a>(doc: &'a str, first_row: &str) -> Option<Vec<&'a str>> {
        let lines: Vec<&str> = doc.lines().collect();
        let at = lines.iter().position(|l| *l == first_row)?;
        let start = (0..=at).rev().find(|&i| lines[i].starts_with("|---"))? + 1;
        Some(
            lines[start..]
                .iter()
                .take_while(|l| l.starts_with('|'))
                .copied()
                .collect(),
        )
    }

    #[test]
    fn docs_metrics_field_tables_are_the_schema() {
        let metrics = include_str!("../docs/metrics.md");
        let running = include_str!("../docs/running.md");
        for m in MEASUREMENTS {
            let doc = if m.name == "vmtel_internal" {
                running
            } else {
                metrics
            };
            let want = doc_table(m);
            let first = want.lines().next().unwrap_or("");
            let got = table_holding(doc, first).map(|rows| rows.join("\n") + "\n");
            assert_eq!(
                got.as_deref(),
                Some(want.as_str()),
                "docs: the field table of {}{} must be exactly:\n{want}",
                m.name,
                m.devtype
                    .map(|d| format!(" (devtype={d})"))
                    .unwrap_or_default()
            );
        }
    }

    /// `for_each` yields exactly the fields and values the encoder writes (the line-protocol
    /// parser reads the encoder's text back as the oracle).
    #[test]
    fn for_each_agrees_with_the_written_line() {
        use influxdb_line_protocol::{parse_lines, FieldValue};
        let mut d = DomainSample {
            name: "a".into(),
            uuid: "u".into(),
            state: Some(1),
            ..DomainSample::default()
        };
        d.cpu.time = Some(123_456_789_012);
        d.cpu.user = Some(u64::MAX); // above i64::MAX: left out by both
        d.mem.current = Some(2_097_152);
        d.nics.push(NicStats {
            name: "vnet0".into(),
            rx_bytes: Some(1_000),
            tx_drop: Some(0),
            ..NicStats::default()
        });
        d.nics.push(NicStats {
            name: "vnet1".into(),
            rx_bytes: Some(24),
            ..NicStats::default()
        });
        let f = Features {
            cpu_pct: Some(12.345_678_9),
            net_rx_bps: Some(f64::INFINITY),
            mem_used_pct: Some(0.0),
            ..Features::default()
        };
        let check = |m: &Measurement, text: String, got: Vec<(&str, Value)>| {
            let line = parse_lines(&text)
                .next()
                .expect("a line")
                .expect("valid line protocol");
            let want: Vec<(String, Value)> = line
                .field_set
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        FieldValue::I64(i) => Value::Int(*i),
                        FieldValue::F64(x) => Value::Float(*x),
                        other => panic!("{other:?}"),
                    };
                    (k.to_string(), v)
                })
                .collect();
            assert_eq!(want.len(), got.len(), "{}: {text}", m.name);
            for ((wk, wv), (gk, gv)) in want.iter().zip(&got) {
                assert_eq!(wk, gk, "{}", m.name);
                match (wv, gv) {
                    (Value::Float(a), Value::Float(b)) => assert!((a - b).abs() < 1e-6, "{wk}"),
                    _ => assert_eq!(wv, gv, "{wk}"),
                }
            }
        };
        let text = |write: &dyn Fn(&mut Line<'_>)| {
            let mut out = String::new();
            let mut line = Line::new(&mut out, "m");
            write(&mut line);
            line.finish(1);
            out
        };
        let mut got = Vec::new();
        vm_totals::for_each(&d, |f, v| got.push((f.key, v)));
        check(
            &vm_totals::MEASUREMENT,
            text(&|l| vm_totals::write_fields(l, &d)),
            got,
        );
        let mut got = Vec::new();
        vm_features::for_each(&f, |f, v| got.push((f.key, v)));
        check(
            &vm_features::MEASUREMENT,
            text(&|l| vm_features::write_fields(l, &f)),
            got,
        );
        let mut got = Vec::new();
        vm_devices_nic::for_each(&d.nics[0], |f, v| got.push((f.key, v)));
        check(
            &vm_devices_nic::MEASUREMENT,
            text(&|l| vm_devices_nic::write_fields(l, &d.nics[0])),
            got,
        );
    }

    #[test]
    fn prometheus_names_are_unique() {
        let mut names: Vec<&str> = MEASUREMENTS
            .iter()
            .flat_map(|m| m.fields.iter().filter_map(|f| f.prom.map(|p| p.name)))
            .collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n);
    }
}
