//! The seed's measurements, tags and fields.

use super::line::{escape_into, Line};
use super::Precision;
use crate::key;
use crate::model::{DiskStats, DomainSample, Features, HostSample, NicStats};

/// Every field key vmtel writes, in all measurements. A global tag may not reuse one: InfluxDB 3
/// forbids a tag and a field with the same name in one table.
pub const FIELD_KEYS: &[&str] = &[
    "state",
    "cpus",
    "cputime",
    "memmax",
    "mem",
    "net_rxbytes",
    "net_rxpackets",
    "net_rxerrors",
    "net_rxdrops",
    "net_txbytes",
    "net_txpackets",
    "net_txerrors",
    "net_txdrops",
    "disk_rd_req",
    "disk_rd_bytes",
    "disk_wr_reqs",
    "disk_wr_bytes",
    "disk_errors",
    "memactual",
    "memrss",
    "memavailable",
    "memusable",
    "memswap_in",
    "memswap_out",
    "memmajor_fault",
    "memminor_fault",
    "memdisk_cache",
    "timeusr",
    "timesys",
    "rxbytes",
    "rxpackets",
    "rxerrors",
    "rxdrops",
    "txbytes",
    "txpackets",
    "txerrors",
    "txdrops",
    "rd_req",
    "rd_bytes",
    "wr_reqs",
    "wr_bytes",
    "errors",
    "cpu_pct",
    "cpu_usr_pct",
    "cpu_sys_pct",
    "cpu_steal_pct",
    "mem_used_pct",
    "net_rx_bps",
    "net_tx_bps",
    "net_rx_pps",
    "net_tx_pps",
    "disk_rd_bps",
    "disk_wr_bps",
    "disk_rd_iops",
    "disk_wr_iops",
];

/// The measurements vmtel writes for VMs (none needs escaping).
pub const MEASUREMENTS: &[&str] = &["vm_metrics", "vm_totals", "vm_devices", "vm_features"];

/// Tag keys vmtel writes itself.
pub const TAG_KEYS: &[&str] = &["host", "VMID", "name", "uuid", "devtype", "device"];

/// Extra tags added to every line (`[global_tags]` in the config), in a fixed order.
pub type GlobalTags = Vec<(String, String)>;

/// Writes samples as line protocol.
#[derive(Debug, Clone, Default)]
pub struct Encoder {
    /// Tags added to every line after the measurement's own tags.
    pub global_tags: GlobalTags,
    /// Timestamp precision.
    pub precision: Precision,
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

impl Encoder {
    /// Appends every line of one host's cycle to `out` and returns how many lines were written.
    ///
    /// `features[i]` holds the derived values of `sample.domains[i]`, when there are any.
    pub fn encode_host(
        &self,
        sample: &HostSample,
        features: &[Option<Features>],
        out: &mut String,
    ) -> usize {
        // What every line of this call shares, escaped once: the end of the line (timestamp and
        // newline), the host tag and the global tags.
        let mut tail = String::with_capacity(24);
        tail.push(' ');
        tail.push_str(itoa::Buffer::new().format(self.precision.convert(sample.timestamp_ns)));
        tail.push('\n');
        let mut global = String::new();
        for (k, v) in &self.global_tags {
            Line::new(&mut global, "").tag(k, v);
        }
        let mut prefix = String::with_capacity(256);
        Line::new(&mut prefix, "").tag("host", &sample.host);
        let host_len = prefix.len();
        let mut lines = 0;
        out.reserve(sample.domains.len() * 2200);
        for (i, dom) in sample.domains.iter().enumerate() {
            prefix.truncate(host_len);
            if let Some(id) = dom.id {
                prefix.push_str(",VMID=");
                itoap::write_to_string(&mut prefix, id);
            }
            if !dom.name.is_empty() {
                prefix.push_str(",name=");
                escape_into(&mut prefix, &dom.name);
            }
            if !dom.uuid.is_empty() {
                prefix.push_str(",uuid=");
                escape_into(&mut prefix, &dom.uuid);
            }
            let ids = Ids {
                prefix: &prefix,
                global: &global,
                tail: &tail,
                dom,
            };
            lines += usize::from(self.vm_metrics(&ids, out));
            lines += usize::from(self.vm_totals(&ids, out));
            for nic in &dom.nics {
                lines += usize::from(self.nic_line(&ids, nic, out));
            }
            for disk in &dom.disks {
                lines += usize::from(self.disk_line(&ids, disk, out));
            }
            if let Some(Some(f)) = features.get(i) {
                lines += usize::from(self.vm_features(&ids, f, out));
            }
        }
        lines
    }

    /// `measurement` is one of vmtel's own names, which need no escaping.
    fn start<'b>(&self, out: &'b mut String, measurement: &'static str, ids: &Ids) -> Line<'b> {
        debug_assert!(MEASUREMENTS.contains(&measurement));
        let mut line = Line::new_escaped(out, measurement);
        line.raw_tags(ids.prefix);
        line
    }

    fn vm_metrics(&self, ids: &Ids, out: &mut String) -> bool {
        let d = ids.dom;
        let mut line = self.start(out, "vm_metrics", ids);
        line.raw_tags(ids.global);
        line.field_i64(key!("state"), d.state)
            .field_u64(key!("cpus"), d.vcpu.current.map(u64::from))
            .field_u64(key!("cputime"), d.cpu.time)
            .field_u64(key!("memmax"), d.mem.maximum)
            .field_u64(key!("mem"), d.mem.current);
        line.finish_with(ids.tail)
    }

    fn vm_totals(&self, ids: &Ids, out: &mut String) -> bool {
        let d = ids.dom;
        let (n, k) = (&d.nics, &d.disks);
        let mut line = self.start(out, "vm_totals", ids);
        line.raw_tags(ids.global);
        line.field_u64(key!("net_rxbytes"), sum(n, |x| x.rx_bytes))
            .field_u64(key!("net_rxpackets"), sum(n, |x| x.rx_pkts))
            .field_u64(key!("net_rxerrors"), sum(n, |x| x.rx_errs))
            .field_u64(key!("net_rxdrops"), sum(n, |x| x.rx_drop))
            .field_u64(key!("net_txbytes"), sum(n, |x| x.tx_bytes))
            .field_u64(key!("net_txpackets"), sum(n, |x| x.tx_pkts))
            .field_u64(key!("net_txerrors"), sum(n, |x| x.tx_errs))
            .field_u64(key!("net_txdrops"), sum(n, |x| x.tx_drop))
            .field_u64(key!("disk_rd_req"), sum(k, |x| x.rd_reqs))
            .field_u64(key!("disk_rd_bytes"), sum(k, |x| x.rd_bytes))
            .field_u64(key!("disk_wr_reqs"), sum(k, |x| x.wr_reqs))
            .field_u64(key!("disk_wr_bytes"), sum(k, |x| x.wr_bytes))
            .field_u64(key!("disk_errors"), sum(k, |x| x.errors))
            .field_u64(key!("memactual"), d.mem.current)
            .field_u64(key!("memrss"), d.mem.rss)
            .field_u64(key!("memavailable"), d.mem.available)
            .field_u64(key!("memusable"), d.mem.usable)
            .field_u64(key!("memswap_in"), d.mem.swap_in)
            .field_u64(key!("memswap_out"), d.mem.swap_out)
            .field_u64(key!("memmajor_fault"), d.mem.major_fault)
            .field_u64(key!("memminor_fault"), d.mem.minor_fault)
            .field_u64(key!("memdisk_cache"), d.mem.disk_caches)
            .field_u64(key!("timeusr"), d.cpu.user)
            .field_u64(key!("timesys"), d.cpu.system)
            .field_u64(key!("cpus"), d.vcpu.current.map(u64::from))
            .field_u64(key!("cputime"), d.cpu.time)
            .field_i64(key!("state"), d.state);
        line.finish_with(ids.tail)
    }

    fn device_start<'b>(
        &self,
        out: &'b mut String,
        ids: &Ids,
        devtype: &'static str,
        device: &str,
    ) -> Line<'b> {
        let mut line = self.start(out, "vm_devices", ids);
        line.raw_tags(devtype)
            .tag_with_key(",device=", device)
            .raw_tags(ids.global);
        line
    }

    fn nic_line(&self, ids: &Ids, nic: &NicStats, out: &mut String) -> bool {
        let mut line = self.device_start(out, ids, ",devtype=nic", &nic.name);
        line.field_u64(key!("rxbytes"), nic.rx_bytes)
            .field_u64(key!("rxpackets"), nic.rx_pkts)
            .field_u64(key!("rxerrors"), nic.rx_errs)
            .field_u64(key!("rxdrops"), nic.rx_drop)
            .field_u64(key!("txbytes"), nic.tx_bytes)
            .field_u64(key!("txpackets"), nic.tx_pkts)
            .field_u64(key!("txerrors"), nic.tx_errs)
            .field_u64(key!("txdrops"), nic.tx_drop);
        line.finish_with(ids.tail)
    }

    fn disk_line(&self, ids: &Ids, disk: &DiskStats, out: &mut String) -> bool {
        let mut line = self.device_start(out, ids, ",devtype=disk", &disk.name);
        line.field_u64(key!("rd_req"), disk.rd_reqs)
            .field_u64(key!("rd_bytes"), disk.rd_bytes)
            .field_u64(key!("wr_reqs"), disk.wr_reqs)
            .field_u64(key!("wr_bytes"), disk.wr_bytes)
            .field_u64(key!("errors"), disk.errors);
        line.finish_with(ids.tail)
    }

    fn vm_features(&self, ids: &Ids, f: &Features, out: &mut String) -> bool {
        let mut line = self.start(out, "vm_features", ids);
        line.raw_tags(ids.global);
        line.field_f64(key!("cpu_pct"), f.cpu_pct)
            .field_f64(key!("cpu_usr_pct"), f.cpu_usr_pct)
            .field_f64(key!("cpu_sys_pct"), f.cpu_sys_pct)
            .field_f64(key!("cpu_steal_pct"), f.cpu_steal_pct)
            .field_f64(key!("mem_used_pct"), f.mem_used_pct)
            .field_f64(key!("net_rx_bps"), f.net_rx_bps)
            .field_f64(key!("net_tx_bps"), f.net_tx_bps)
            .field_f64(key!("net_rx_pps"), f.net_rx_pps)
            .field_f64(key!("net_tx_pps"), f.net_tx_pps)
            .field_f64(key!("disk_rd_bps"), f.disk_rd_bps)
            .field_f64(key!("disk_wr_bps"), f.disk_wr_bps)
            .field_f64(key!("disk_rd_iops"), f.disk_rd_iops)
            .field_f64(key!("disk_wr_iops"), f.disk_wr_iops);
        line.finish_with(ids.tail)
    }
}

/// The identity tags every line of one VM carries.
struct Ids<'a> {
    prefix: &'a str,
    /// The global tags, escaped.
    global: &'a str,
    /// A space, the timestamp and a newline.
    tail: &'a str,
    dom: &'a DomainSample,
}
