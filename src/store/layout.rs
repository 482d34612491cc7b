//! What the history store keeps of a typed cycle: series of six kinds (a VM, a NIC, a disk, a
//! source, a sink, a host), each with a fixed list of integer columns taken from the schema table
//! ([`crate::schema`]).
//!
//! * A VM's row: its libvirt ID (`VMID`, which changes when it restarts), then the `vm_metrics`
//!   fields, then the `vm_totals` fields that are the VM's own values. The sums over devices
//!   (`net_*`, `disk_*` of `vm_totals`) are not stored: they are the sums of the device rows,
//!   recomputed when read. `vm_features` are not stored either: they are rates of the stored
//!   counters, computed when read ([`super::derived`]).
//! * A NIC's or a disk's row: the fields of `vm_devices` for that device type.
//! * A source's or a sink's row: the fields of its `vmtel_internal` line.
//! * A host's row: the fields of its `vm_host` line.
//!
//! A column only ever gets appended to its kind's list, so chunks written by an older vmtel
//! (fewer columns) read back with the new columns empty.

use std::sync::LazyLock;

use crate::schema::{
    self, internal_delivery, internal_sink, internal_source, vm_devices_disk, vm_devices_nic,
    vm_host, vm_metrics, vm_totals, Field, Measurement, Value,
};

/// What a series is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// One VM (tags `host`, `uuid`; the name kept beside).
    Vm,
    /// One NIC of a VM.
    Nic,
    /// One disk of a VM.
    Disk,
    /// One source's `vmtel_internal` record.
    Source,
    /// One sink's `vmtel_internal` record.
    Sink,
    /// One host's `vm_host` record (key and device empty).
    Host,
}

impl Kind {
    /// Every kind, in code order.
    pub const ALL: [Kind; 6] = [
        Kind::Vm,
        Kind::Nic,
        Kind::Disk,
        Kind::Source,
        Kind::Sink,
        Kind::Host,
    ];

    /// The number stored in the `series` table.
    pub fn code(self) -> i64 {
        match self {
            Kind::Vm => 0,
            Kind::Nic => 1,
            Kind::Disk => 2,
            Kind::Source => 3,
            Kind::Sink => 4,
            Kind::Host => 5,
        }
    }

    /// The kind of a stored code.
    pub fn from_code(code: i64) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.code() == code)
    }

    /// The kind's columns.
    pub fn columns(self) -> &'static [Column] {
        let all = &*COLUMNS;
        match self {
            Kind::Vm => &all.vm,
            Kind::Nic => &all.nic,
            Kind::Disk => &all.disk,
            Kind::Source => &all.source,
            Kind::Sink => &all.sink,
            Kind::Host => &all.host,
        }
    }

    /// The index of column `key`, if the kind has it.
    pub fn column(self, key: &str) -> Option<usize> {
        self.columns().iter().position(|c| c.key == key)
    }

    /// The measurements whose fields fill this kind's columns, in order.
    fn measurements(self) -> &'static [&'static Measurement] {
        match self {
            Kind::Vm => &[&vm_metrics::MEASUREMENT, &vm_totals::MEASUREMENT],
            Kind::Nic => &[&vm_devices_nic::MEASUREMENT],
            Kind::Disk => &[&vm_devices_disk::MEASUREMENT],
            Kind::Source => &[&internal_source::MEASUREMENT],
            Kind::Sink => &[&internal_sink::MEASUREMENT, &internal_delivery::MEASUREMENT],
            Kind::Host => &[&vm_host::MEASUREMENT],
        }
    }
}

/// One stored column.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Column {
    /// The field key (`VMID` for a VM's ID).
    pub key: &'static str,
    /// The schema's field, if the column is one (all but `VMID`).
    pub field: Option<&'static Field>,
    /// True for counters (roll-ups keep their last value per minute; gauges keep min, max and
    /// the average).
    pub counter: bool,
}

/// The key of a VM's libvirt ID column.
pub const VMID: &str = "VMID";

struct Columns {
    vm: Vec<Column>,
    nic: Vec<Column>,
    disk: Vec<Column>,
    source: Vec<Column>,
    sink: Vec<Column>,
    host: Vec<Column>,
    /// Per measurement ([`slot_key`]) and field index: the column of the kind.
    slots: Vec<(SlotKey, Vec<Option<usize>>)>,
}

/// What tells measurements apart: name, device type and first field (the three
/// `vmtel_internal` parts share a name).
type SlotKey = (&'static str, Option<&'static str>, &'static str);

fn slot_key(m: &Measurement) -> SlotKey {
    (m.name, m.devtype, m.fields.first().map_or("", |f| f.key))
}

/// True for a `vm_totals` field that sums device counters (recomputed from the device rows).
pub fn is_device_sum(f: &Field) -> bool {
    f.source.starts_with('Σ')
}

static COLUMNS: LazyLock<Columns> = LazyLock::new(|| {
    let mut slots = Vec::new();
    let mut build = |kind: Kind, first: Option<Column>| {
        let mut cols: Vec<Column> = first.into_iter().collect();
        for m in kind.measurements() {
            let mut map = Vec::with_capacity(m.fields.len());
            for f in m.fields {
                if m.name == vm_totals::MEASUREMENT.name && is_device_sum(f) {
                    map.push(None);
                    continue;
                }
                let at = match cols.iter().position(|c| c.key == f.key) {
                    Some(i) => i,
                    None => {
                        cols.push(Column {
                            key: f.key,
                            field: Some(f),
                            counter: f.kind == schema::Kind::Counter,
                        });
                        cols.len() - 1
                    }
                };
                map.push(Some(at));
            }
            slots.push((slot_key(m), map));
        }
        cols
    };
    let vmid = Column {
        key: VMID,
        field: None,
        counter: false,
    };
    let vm = build(Kind::Vm, Some(vmid));
    let nic = build(Kind::Nic, None);
    let disk = build(Kind::Disk, None);
    let source = build(Kind::Source, None);
    let sink = build(Kind::Sink, None);
    let host = build(Kind::Host, None);
    Columns {
        vm,
        nic,
        disk,
        source,
        sink,
        host,
        slots,
    }
});

/// Fills a row of a kind's columns from a measurement's typed values.
pub struct RowFiller<'a> {
    slots: &'a [Option<usize>],
    fields: &'static [Field],
    cursor: usize,
}

impl RowFiller<'static> {
    /// A filler for the fields of `m` (which must be one of the kind's measurements).
    pub fn new(m: &'static Measurement) -> RowFiller<'static> {
        let key = slot_key(m);
        let slots = COLUMNS
            .slots
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, s)| s.as_slice())
            .unwrap_or(&[]);
        RowFiller {
            slots,
            fields: m.fields,
            cursor: 0,
        }
    }
}

impl RowFiller<'_> {
    /// Puts `value` of `field` into `row` (fields come in the table's order, as the schema's
    /// `for_each` calls them).
    pub fn put(&mut self, row: &mut [Option<i64>], field: &'static Field, value: Value) {
        while self.cursor < self.fields.len() && self.fields[self.cursor].key != field.key {
            self.cursor += 1;
        }
        let Some(Some(col)) = self.slots.get(self.cursor) else {
            return;
        };
        if let (Some(slot), Value::Int(v)) = (row.get_mut(*col), value) {
            *slot = Some(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_the_schemas_fields_without_device_sums_or_features() {
        let vm: Vec<&str> = Kind::Vm.columns().iter().map(|c| c.key).collect();
        assert_eq!(vm[0], VMID);
        for f in vm_metrics::MEASUREMENT.fields {
            assert!(vm.contains(&f.key), "{}", f.key);
        }
        for f in vm_totals::MEASUREMENT.fields {
            assert_eq!(vm.contains(&f.key), !is_device_sum(f), "{}", f.key);
        }
        let distinct: std::collections::HashSet<&&str> = vm.iter().collect();
        assert_eq!(distinct.len(), vm.len(), "no column twice");
        for kind in Kind::ALL {
            for c in kind.columns() {
                if let Some(f) = c.field {
                    assert_eq!(f.ty, schema::Ty::Int, "{} is stored as an integer", f.key);
                }
            }
            assert_eq!(Kind::from_code(kind.code()), Some(kind));
        }
        assert_eq!(
            Kind::Nic.columns().len(),
            vm_devices_nic::MEASUREMENT.fields.len()
        );
    }

    #[test]
    fn a_filler_puts_each_value_in_its_column() {
        let mut d = crate::model::DomainSample::default();
        d.cpu.time = Some(7);
        d.mem.rss = Some(9);
        d.state = Some(1);
        let mut row = vec![None; Kind::Vm.columns().len()];
        let mut fill = RowFiller::new(&vm_metrics::MEASUREMENT);
        vm_metrics::for_each(&d, |f, v| fill.put(&mut row, f, v));
        let mut fill = RowFiller::new(&vm_totals::MEASUREMENT);
        vm_totals::for_each(&d, |f, v| fill.put(&mut row, f, v));
        let at = |k| row[Kind::Vm.column(k).expect(k)];
        assert_eq!(at("cputime"), Some(7));
        assert_eq!(at("memrss"), Some(9));
        assert_eq!(at("state"), Some(1));
        assert_eq!(at("memmax"), None);
    }
}
