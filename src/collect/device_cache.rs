//! The device lists of the domains, cached between cycles (see [`DeviceCache`]).
//!
//! Entries live for the configured TTL, and are refreshed early when the domain's ID changes (it
//! was restarted) or when a device call failed (a device was hot-unplugged). Entries of domains
//! that were not seen in a cycle are dropped, so the cache stays as large as the fleet.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::devices::{DeviceList, Devices};
use crate::model::uuid_key;

#[derive(Debug)]
struct Entry {
    id: Option<u32>,
    /// When the entry goes stale, ms after the cache's creation.
    expires_ms: u64,
    /// Where its list is in the store: `[at, at + len)`.
    at: u32,
    len: u32,
    seen: bool,
}

/// Per-domain device lists keyed by UUID, with a TTL.
///
/// Each entry lives between half the TTL and the whole TTL, spread by its UUID: the lists of a
/// fleet are all read in the first cycle, and without the spread they would all be read again
/// in the same later cycle (seconds of XML reading at a thousand domains).
///
/// The lists themselves are kept back to back in one byte vector (a refreshed list is appended
/// and its old bytes become garbage, which [`DeviceCache::end_cycle`] compacts away once it is as
/// large as the live lists): a fleet's lists cost one allocation, not one or more per domain
/// scattered among each cycle's short-lived memory.
#[derive(Debug)]
pub struct DeviceCache {
    ttl: Duration,
    epoch: Instant,
    entries: HashMap<u128, Entry>,
    store: Vec<u8>,
    /// Bytes of `store` that entries use.
    live: usize,
}

impl DeviceCache {
    /// An empty cache whose entries live for at most `ttl`.
    pub fn new(ttl: Duration) -> Self {
        DeviceCache {
            ttl,
            epoch: Instant::now(),
            entries: HashMap::new(),
            store: Vec::new(),
            live: 0,
        }
    }

    fn ms(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// How long the entry of the domain with key `key` lives: 50 % to 100 % of the TTL.
    fn ttl_of(&self, key: u128) -> Duration {
        let spread = (key ^ (key >> 64)) as u64 % 1024;
        self.ttl / 2 + self.ttl.mul_f64(spread as f64 / 2048.0)
    }

    fn list(store: &[u8], at: u32, len: u32) -> DeviceList<'_> {
        let at = at as usize;
        DeviceList::from_bytes(store.get(at..at + len as usize).unwrap_or_default())
    }

    /// The entry of `uuid` for domain ID `id` (and, with `now_ms`, still fresh then), marked as
    /// seen this cycle.
    fn lookup(
        &mut self,
        uuid: &str,
        id: Option<u32>,
        now_ms: Option<u64>,
    ) -> Option<DeviceList<'_>> {
        let e = self.entries.get_mut(&uuid_key(uuid))?;
        if e.id != id || now_ms.is_some_and(|now| now >= e.expires_ms) {
            return None;
        }
        e.seen = true;
        Some(Self::list(&self.store, e.at, e.len))
    }

    /// True when `uuid` has a fresh entry for domain ID `id` ([`DeviceCache::get`] would
    /// return it).
    pub fn is_fresh(&self, uuid: &str, id: Option<u32>, now: Instant) -> bool {
        let now = self.ms(now);
        self.entries
            .get(&uuid_key(uuid))
            .is_some_and(|e| e.id == id && now < e.expires_ms)
    }

    /// The cached devices of `uuid`, if they are fresh and belong to the same domain ID.
    pub fn get(&mut self, uuid: &str, id: Option<u32>, now: Instant) -> Option<DeviceList<'_>> {
        let now = self.ms(now);
        self.lookup(uuid, id, Some(now))
    }

    /// Stores a freshly read device list.
    pub fn put<'a>(
        &'a mut self,
        uuid: &str,
        id: Option<u32>,
        now: Instant,
        devices: &'a Devices,
    ) -> DeviceList<'a> {
        let key = uuid_key(uuid);
        let bytes = devices.as_bytes();
        let placed = (
            u32::try_from(self.store.len()),
            u32::try_from(bytes.len()),
            u32::try_from(self.store.len() + bytes.len()),
        );
        let (Ok(at), Ok(len), Ok(_)) = placed else {
            // Beyond 4 GiB of device lists: not cached (read again next cycle).
            if let Some(old) = self.entries.remove(&key) {
                self.live -= old.len as usize;
            }
            return devices.list();
        };
        if self.store.capacity() - self.store.len() < bytes.len() {
            // Grow by a quarter, not double: this is most of the cache's memory.
            self.store
                .reserve_exact(bytes.len().max(self.store.len() / 4 + 4096));
        }
        self.store.extend_from_slice(bytes);
        self.live += bytes.len();
        let entry = Entry {
            id,
            expires_ms: self.ms(now + self.ttl_of(key)),
            at,
            len,
            seen: true,
        };
        if let Some(old) = self.entries.insert(key, entry) {
            self.live -= old.len as usize;
        }
        Self::list(&self.store, at, len)
    }

    /// The cached devices of `uuid` for domain ID `id`, however old: device identity (MACs)
    /// does not change while a domain runs, except by hot-plug, which the caller detects.
    pub fn get_identity(&mut self, uuid: &str, id: Option<u32>) -> Option<DeviceList<'_>> {
        self.lookup(uuid, id, None)
    }

    /// Marks `uuid`'s entry stale, so the next cycle reads the XML again.
    pub fn invalidate(&mut self, uuid: &str) {
        if let Some(old) = self.entries.remove(&uuid_key(uuid)) {
            self.live -= old.len as usize;
        }
    }

    /// Drops the entries of domains not looked up since the previous call, and compacts the
    /// store once its garbage is as large as the live lists.
    pub fn end_cycle(&mut self) {
        let mut dropped = 0;
        self.entries.retain(|_, e| {
            let keep = std::mem::take(&mut e.seen);
            if !keep {
                dropped += e.len as usize;
            }
            keep
        });
        self.live -= dropped;
        if self.store.len() > 2 * self.live + 4096 {
            self.compact();
        }
    }

    fn compact(&mut self) {
        let mut store = Vec::with_capacity(self.live);
        for e in self.entries.values_mut() {
            let from = e.at as usize;
            let bytes = self
                .store
                .get(from..from + e.len as usize)
                .unwrap_or_default();
            // `live` < `store.len()` <= u32::MAX: fits.
            e.at = u32::try_from(store.len()).unwrap_or(u32::MAX);
            store.extend_from_slice(bytes);
        }
        self.store = store;
    }

    /// Number of cached domains.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::super::devices::{DiskDevice, NicDevice};
    use super::*;

    fn list(name: &str) -> Devices {
        Devices::new(
            &[NicDevice {
                target: name,
                mac: Some("52:54:00:00:00:01"),
            }],
            &[DiskDevice {
                target: "vda",
                source: Some(name),
            }],
        )
    }

    fn names(l: Option<DeviceList<'_>>) -> Option<(String, String)> {
        let l = l?;
        let nic = l.nics().next()?.target.to_owned();
        let disk = l.disks().next()?.source?.to_owned();
        Some((nic, disk))
    }
    #[test]
    fn refreshes_of_a_fleet_are_spread_over_the_second_half_of_the_ttl() {
        let ttl = Duration::from_secs(300);
        let mut c = DeviceCache::new(ttl);
        let t0 = Instant::now();
        let uuids: Vec<String> = (0..1000).map(crate::demo::uuid_for).collect();
        for u in &uuids {
            c.put(u, Some(1), t0, &Devices::default());
        }
        // Every entry lives at least half the TTL and at most the TTL.
        for u in &uuids {
            assert!(c
                .get(u, Some(1), t0 + ttl / 2 - Duration::from_millis(1))
                .is_some());
        }
        let mut expired_by = |secs: u64| {
            uuids
                .iter()
                .filter(|u| c.get(u, Some(1), t0 + Duration::from_secs(secs)).is_none())
                .count()
        };
        assert_eq!(expired_by(300), 1000);
        // Spread: each 30 s slice of the second half holds about a fifth of them, not all.
        let slices: Vec<usize> = (0..=5).map(|k| expired_by(150 + 30 * k)).collect();
        for w in slices.windows(2) {
            let n = w[1] - w[0];
            assert!((100..=300).contains(&n), "{slices:?}");
        }
    }

    #[test]
    fn ttl_id_change_and_pruning() {
        let mut c = DeviceCache::new(Duration::from_secs(300));
        let t0 = Instant::now();
        c.put("u", Some(1), t0, &Devices::default());
        assert!(c.get("u", Some(1), t0 + Duration::from_secs(149)).is_some());
        assert!(c.get("u", Some(1), t0 + Duration::from_secs(300)).is_none());
        assert!(c.get("u", Some(2), t0).is_none(), "new domain ID refreshes");
        c.end_cycle();
        assert_eq!(c.len(), 1, "looked up this cycle: kept");
        c.end_cycle();
        assert!(c.is_empty(), "not looked up for a cycle: dropped");
        c.put("v", None, t0, &Devices::default());
        c.invalidate("v");
        assert!(c.get("v", None, t0).is_none());
    }

    proptest::proptest! {
        /// Any sequence of stores, refreshes, invalidations and cycle ends (with compactions)
        /// leaves every entry reading back the list last stored for it.
        #[test]
        fn entries_read_back_what_was_stored_through_compactions(
            ops in proptest::collection::vec((0u8..4, 0usize..12, "\\PC{0,30}"), 1..200),
        ) {
            let t0 = Instant::now();
            let mut c = DeviceCache::new(Duration::from_secs(300));
            let mut model: HashMap<usize, String> = HashMap::new();
            for (op, vm, name) in ops {
                let uuid = format!("vm-{vm}");
                match op {
                    0 | 1 => {
                        let got = names(Some(c.put(&uuid, Some(1), t0, &list(&name))));
                        proptest::prop_assert_eq!(got, Some((name.clone(), name.clone())));
                        model.insert(vm, name);
                    }
                    2 => {
                        c.invalidate(&uuid);
                        model.remove(&vm);
                    }
                    _ => {
                        // Entries looked up this cycle survive; the others are dropped.
                        c.end_cycle();
                        let keep: Vec<usize> = model.keys().copied().filter(|k| k % 2 == 0).collect();
                        for k in &keep {
                            let uuid = format!("vm-{k}");
                            proptest::prop_assert!(c.get(&uuid, Some(1), t0).is_some());
                        }
                        c.end_cycle();
                        model.retain(|k, _| keep.contains(k));
                        proptest::prop_assert!(c.store.len() <= 2 * c.live + 4096);
                    }
                }
                proptest::prop_assert_eq!(c.len(), model.len());
                for (k, want) in &model {
                    let got = names(c.get_identity(&format!("vm-{k}"), Some(1)));
                    proptest::prop_assert_eq!(got, Some((want.clone(), want.clone())));
                }
            }
        }
    }
}
