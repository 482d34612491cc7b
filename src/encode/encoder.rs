//! The encoder: one host's cycle → line protocol, the measurements and fields in the order of
//! the schema table ([`crate::schema`]), whose generated `write_fields` functions write them.

use super::line::{escape_into, Line};
use super::Precision;
use crate::deliver::batch::{Batch, Internal, NodeRecord, Payload, Subject};
use crate::model::{DiskStats, DomainSample, Features, HostSample, NicStats};
use crate::schema::{
    internal_delivery, internal_sink, internal_source, vm_devices_disk, vm_devices_nic,
    vm_features, vm_host, vm_metrics, vm_totals,
};

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

impl Encoder {
    /// Appends every line of `batch` to `out` and returns how many lines were written.
    pub fn encode_batch(&self, batch: &Batch, out: &mut String) -> usize {
        match &batch.payload {
            Payload::Vms(chunk) => self.encode_host(&chunk.sample, &chunk.features, out),
            Payload::Node(node) => usize::from(self.encode_node(node, batch.timestamp_ns, out)),
            Payload::Internal(records) => records
                .iter()
                .map(|r| usize::from(self.encode_internal(r, batch.timestamp_ns, out)))
                .sum(),
        }
    }

    /// Appends the host's `vm_host` line stamped `timestamp_ns`; false if it had no field.
    pub fn encode_node(&self, node: &NodeRecord, timestamp_ns: i64, out: &mut String) -> bool {
        let mut line = Line::new(out, vm_host::MEASUREMENT.name);
        line.tag("host", &node.host);
        for (k, v) in &self.global_tags {
            line.tag(k, v);
        }
        vm_host::write_fields(&mut line, &node.stats);
        line.finish(self.precision.convert(timestamp_ns))
    }

    /// Appends one `vmtel_internal` line stamped `timestamp_ns`; false if it had no field.
    pub fn encode_internal(&self, record: &Internal, timestamp_ns: i64, out: &mut String) -> bool {
        let mut line = Line::new(out, "vmtel_internal");
        let (key, value) = record.subject.tag();
        line.tag("host", &record.host).tag(key, value);
        for (k, v) in &self.global_tags {
            line.tag(k, v);
        }
        match &record.subject {
            Subject::Source { counters, .. } => internal_source::write_fields(&mut line, counters),
            Subject::Sink {
                counters, delivery, ..
            } => {
                internal_sink::write_fields(&mut line, counters);
                if let Some(d) = delivery {
                    internal_delivery::write_fields(&mut line, d);
                }
            }
        }
        line.finish(self.precision.convert(timestamp_ns))
    }

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
        debug_assert!(crate::schema::MEASUREMENT_NAMES.contains(&measurement));
        let mut line = Line::new_escaped(out, measurement);
        line.raw_tags(ids.prefix);
        line
    }

    fn vm_metrics(&self, ids: &Ids, out: &mut String) -> bool {
        let mut line = self.start(out, vm_metrics::MEASUREMENT.name, ids);
        line.raw_tags(ids.global);
        vm_metrics::write_fields(&mut line, ids.dom);
        line.finish_with(ids.tail)
    }

    fn vm_totals(&self, ids: &Ids, out: &mut String) -> bool {
        let mut line = self.start(out, vm_totals::MEASUREMENT.name, ids);
        line.raw_tags(ids.global);
        vm_totals::write_fields(&mut line, ids.dom);
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
        vm_devices_nic::write_fields(&mut line, nic);
        line.finish_with(ids.tail)
    }

    fn disk_line(&self, ids: &Ids, disk: &DiskStats, out: &mut String) -> bool {
        let mut line = self.device_start(out, ids, ",devtype=disk", &disk.name);
        vm_devices_disk::write_fields(&mut line, disk);
        line.finish_with(ids.tail)
    }

    fn vm_features(&self, ids: &Ids, f: &Features, out: &mut String) -> bool {
        let mut line = self.start(out, vm_features::MEASUREMENT.name, ids);
        line.raw_tags(ids.global);
        vm_features::write_fields(&mut line, f);
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
