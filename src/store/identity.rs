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
/// Per VM it keeps only 16 bytes (keyed hashes of its UUID and of its devices' identity), so
/// that a VM whose devices did not change costs nothing more; the identities themselves are
/// held only from a change until the store takes them.
#[derive(Debug, Default)]
pub struct DeviceBook {
    inner: Mutex<Book>,
}

#[derive(Debug, Default)]
struct Book {
    seed: RandomState,
    /// host → hash of the UUID → fingerprint of the devices.
    known: HashMap<String, HashMap<u64, u64>>,
    changed: Vec<(Key, Vec<DeviceIdentity>)>,
}

impl DeviceBook {
    /// Records the devices of every VM in `sample`. Beyond a list of the VMs present, allocates
    /// only for VMs whose devices changed since the previous call.
    pub fn record(&self, sample: &HostSample) {
        let Ok(mut guard) = self.inner.lock() else {
            return;
        };
        let book = &mut *guard;
        if !book.known.contains_key(&sample.host) {
            book.known.insert(sample.host.clone(), HashMap::new());
        }
        let Some(known) = book.known.get_mut(&sample.host) else {
            return;
        };
        let mut present = Vec::with_capacity(sample.domains.len());
        for dom in &sample.domains {
            let uuid = book.seed.hash_one(dom.uuid.as_str());
            let devices = fingerprint(&book.seed, dom);
            present.push(uuid);
            if known.insert(uuid, devices) == Some(devices) {
                continue;
            }
            book.changed
                .push(((sample.host.clone(), dom.uuid.clone()), identities(dom)));
        }
        if known.len() > present.len() {
            present.sort_unstable();
            known.retain(|u, _| present.binary_search(u).is_ok());
        }
        // Bound memory when nothing drains the book (no store configured).
        if book.changed.len() > 100_000 {
            book.changed.clear();
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
