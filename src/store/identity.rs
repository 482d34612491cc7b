//! Device identity (a NIC's MAC address, a disk's source path) is not part of the line-protocol
//! schema, so the workers hand it to the store here: each cycle they record what they know, and
//! the store sink writes what changed into its `devices` table.

use std::collections::{HashMap, HashSet};
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

/// True when `devs` describes exactly the devices of `dom` (no allocation).
fn same(devs: &[DeviceIdentity], dom: &DomainSample) -> bool {
    let nics = dom
        .nics
        .iter()
        .map(|n| ("nic", n.name.as_str(), n.mac.as_deref(), None));
    let disks = dom
        .disks
        .iter()
        .map(|d| ("disk", d.name.as_str(), None, d.path.as_deref()));
    devs.len() == dom.nics.len() + dom.disks.len()
        && devs
            .iter()
            .zip(nics.chain(disks))
            .all(|(a, (t, name, mac, path))| {
                a.devtype == t
                    && a.device == name
                    && a.mac.as_deref() == mac
                    && a.path.as_deref() == path
            })
}

/// The latest known identity of every device, with the entries changed since the last
/// [`DeviceBook::take_changed`].
#[derive(Debug, Default)]
pub struct DeviceBook {
    inner: Mutex<Book>,
}

#[derive(Debug, Default)]
struct Book {
    /// host → uuid → devices.
    known: HashMap<String, HashMap<String, Vec<DeviceIdentity>>>,
    changed: Vec<(Key, Vec<DeviceIdentity>)>,
}

impl DeviceBook {
    /// Records the devices of every VM in `sample`. Allocates only for VMs whose devices
    /// changed since the previous call.
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
        for dom in &sample.domains {
            if known.get(&dom.uuid).is_some_and(|devs| same(devs, dom)) {
                continue;
            }
            let devs = identities(dom);
            known.insert(dom.uuid.clone(), devs.clone());
            book.changed
                .push(((sample.host.clone(), dom.uuid.clone()), devs));
        }
        if known.len() > sample.domains.len() {
            let present: HashSet<&str> = sample.domains.iter().map(|d| d.uuid.as_str()).collect();
            known.retain(|u, _| present.contains(u.as_str()));
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
