//! Device identity (a NIC's MAC address, a disk's source path) is not part of the line-protocol
//! schema, so the workers hand it to the store here: each cycle they record what they know, and
//! the store sink writes what changed into its `devices` table.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Mutex;

use crate::model::{DomainSample, HostSample};

/// What identifies one device beyond its name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceIdentity {
    /// `nic` or `disk`, as the `devtype` tag.
    pub devtype: &'static str,
    /// The `device` tag.
    pub device: String,
    /// MAC address (NICs), where known.
    pub mac: Option<String>,
    /// Source path (disks), where known.
    pub path: Option<String>,
}

/// Key: `(host, uuid)`.
type Key = (String, String);

/// The identities of a VM's devices, NICs first.
fn identities(dom: &DomainSample) -> Vec<DeviceIdentity> {
    let nics = dom.nics.iter().map(|n| DeviceIdentity {
        devtype: "nic",
        device: n.name.clone(),
        mac: n.mac.clone(),
        path: None,
    });
    let disks = dom.disks.iter().map(|d| DeviceIdentity {
        devtype: "disk",
        device: d.name.clone(),
        mac: None,
        path: d.path.clone(),
    });
    nics.chain(disks).collect()
}

/// A fingerprint of the devices of `dom` (their order, names, MACs and paths), no allocation.
fn fingerprint(seed: &RandomState, dom: &DomainSample) -> u64 {
    let mut h = seed.build_hasher();
    for n in &dom.nics {
        ("nic", n.name.as_str(), n.mac.as_deref()).hash(&mut h);
    }
    for d in &dom.disks {
        ("disk", d.name.as_str(), d.path.as_deref()).hash(&mut h);
    }
    (dom.nics.len(), dom.disks.len()).hash(&mut h);
    h.finish()
}

/// The latest known identity of every device, with the entries changed since the last
/// [`DeviceBook::take_changed`].
///
/// Per VM it keeps only 24 bytes (keyed hashes of its UUID and of its devices' identity, and the
/// cycle it was last recorded in), so that a VM whose devices did not change costs nothing more;
/// the identities themselves are held only from a change until the store takes them.
#[derive(Debug, Default)]
pub struct DeviceBook {
    inner: Mutex<Book>,
}

#[derive(Debug, Default)]
struct Book {
    seed: RandomState,
    /// Per source: hash of the UUID → (fingerprint of the devices, cycle last recorded). By
    /// source, not host name: two sources may report the same host.
    known: HashMap<String, HostBook>,
    changed: Vec<(Key, Vec<DeviceIdentity>)>,
}

#[derive(Debug, Default)]
struct HostBook {
    vms: HashMap<u64, (u64, u32)>,
    cycle: u32,
}

impl DeviceBook {
    /// Records the devices of every VM in `sample`, read from `source` (a whole cycle, or one
    /// chunk of it). Allocates only for VMs whose devices changed since they were last recorded.
    pub fn record(&self, source: &str, sample: &HostSample) {
        let Ok(mut guard) = self.inner.lock() else {
            return;
        };
        let book = &mut *guard;
        if !book.known.contains_key(source) {
            book.known.insert(source.to_owned(), HostBook::default());
        }
        let Some(host) = book.known.get_mut(source) else {
            return;
        };
        let cycle = host.cycle;
        for dom in &sample.domains {
            let uuid = book.seed.hash_one(dom.uuid.as_str());
            let devices = fingerprint(&book.seed, dom);
            if host.vms.insert(uuid, (devices, cycle)).map(|(fp, _)| fp) == Some(devices) {
                continue;
            }
            book.changed
                .push(((sample.host.clone(), dom.uuid.clone()), identities(dom)));
        }
        // Bound memory when nothing drains the book (no store configured).
        if book.changed.len() > 100_000 {
            book.changed.clear();
        }
    }

    /// Ends `source`'s cycle: VMs not recorded since the previous call are forgotten (a VM
    /// that comes back is recorded as changed).
    pub fn end_cycle(&self, source: &str) {
        let Ok(mut book) = self.inner.lock() else {
            return;
        };
        if let Some(h) = book.known.get_mut(source) {
            let cycle = h.cycle;
            h.vms.retain(|_, (_, c)| *c == cycle);
            h.cycle = cycle.wrapping_add(1);
        }
    }

    /// The entries changed since the last call: `((host, uuid), devices)`.
    pub fn take_changed(&self) -> Vec<((String, String), Vec<DeviceIdentity>)> {
        self.inner
            .lock()
            .map(|mut b| std::mem::take(&mut b.changed))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NicStats;

    fn vm(uuid: &str, mac: &str) -> DomainSample {
        DomainSample {
            uuid: uuid.into(),
            nics: vec![NicStats {
                name: "vnet0".into(),
                mac: Some(mac.into()),
                ..NicStats::default()
            }],
            ..DomainSample::default()
        }
    }

    fn chunk(vms: Vec<DomainSample>) -> HostSample {
        HostSample {
            host: "h".into(),
            timestamp_ns: 0,
            domains: vms,
        }
    }

    fn changed_uuids(book: &DeviceBook) -> Vec<String> {
        let mut u: Vec<_> = book
            .take_changed()
            .into_iter()
            .map(|((_, u), _)| u)
            .collect();
        u.sort();
        u
    }

    #[test]
    fn a_cycle_in_chunks_reports_only_what_changed() {
        let book = DeviceBook::default();
        let cycle = |mac_b: &str| {
            book.record("s1", &chunk(vec![vm("a", "m1")]));
            book.record("s1", &chunk(vec![vm("b", mac_b)]));
            book.end_cycle("s1");
        };
        cycle("m2");
        assert_eq!(changed_uuids(&book), ["a", "b"], "first sight");
        cycle("m2");
        assert!(
            changed_uuids(&book).is_empty(),
            "nothing changed, in either chunk"
        );
        cycle("m3");
        assert_eq!(changed_uuids(&book), ["b"], "b's MAC changed");
        // A VM missing from a cycle is forgotten; when it comes back it is new again.
        book.record("s1", &chunk(vec![vm("a", "m1")]));
        book.end_cycle("s1");
        assert!(changed_uuids(&book).is_empty());
        cycle("m3");
        assert_eq!(changed_uuids(&book), ["b"]);
    }

    #[test]
    fn two_sources_with_one_host_name_keep_their_own_cycles() {
        let book = DeviceBook::default();
        let both = || {
            book.record("qemu", &chunk(vec![vm("a", "m1")]));
            book.end_cycle("qemu");
            book.record("lxc", &chunk(vec![vm("c", "m9")]));
            book.end_cycle("lxc");
        };
        both();
        assert_eq!(changed_uuids(&book), ["a", "c"]);
        both();
        both();
        assert!(changed_uuids(&book).is_empty(), "nothing changed");
    }
}
