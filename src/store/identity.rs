//! Device identity (a NIC's MAC address, a disk's source path) is not part of the line-protocol
//! schema, so the workers hand it to the store here: each cycle they record what they know, and
//! the store sink writes what changed into its `devices` table.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::model::HostSample;

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

/// The latest known identity of every device, with the entries changed since the last
/// [`DeviceBook::take_changed`].
#[derive(Debug, Default)]
pub struct DeviceBook {
    inner: Mutex<Book>,
}

#[derive(Debug, Default)]
struct Book {
    known: HashMap<Key, Vec<DeviceIdentity>>,
    changed: Vec<(Key, Vec<DeviceIdentity>)>,
}

impl DeviceBook {
    /// Records the devices of every VM in `sample`; `mac_of(uuid, nic)` looks up a NIC's MAC.
    pub fn record(&self, sample: &HostSample, mac_of: impl Fn(&str, &str) -> Option<String>) {
        let Ok(mut book) = self.inner.lock() else {
            return;
        };
        for dom in &sample.domains {
            let mut devs: Vec<DeviceIdentity> =
                Vec::with_capacity(dom.nics.len() + dom.disks.len());
            for nic in &dom.nics {
                devs.push(DeviceIdentity {
                    devtype: "nic",
                    device: nic.name.clone(),
                    mac: mac_of(&dom.uuid, &nic.name),
                    path: None,
                });
            }
            for disk in &dom.disks {
                devs.push(DeviceIdentity {
                    devtype: "disk",
                    device: disk.name.clone(),
                    mac: None,
                    path: disk.path.clone(),
                });
            }
            let key = (sample.host.clone(), dom.uuid.clone());
            if book.known.get(&key) != Some(&devs) {
                book.known.insert(key.clone(), devs.clone());
                book.changed.push((key, devs));
            }
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
