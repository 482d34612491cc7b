//! The device list of each domain (NIC and disk names), read from the domain XML and cached.
//!
//! Only the per-domain fallback needs it (the bulk call names devices itself). Entries live for
//! the configured TTL, and are refreshed early when the domain's ID changes (it was restarted)
//! or when a device call failed (a device was hot-unplugged). Entries of domains that were not
//! seen in a cycle are dropped, so the cache stays as large as the fleet.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::model::uuid_key;

/// A network interface as the domain XML describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NicDevice<'a> {
    /// Host-side target device (`<target dev='...'/>`), the name libvirt's stats calls take.
    pub target: &'a str,
    /// MAC address, when the XML has one.
    pub mac: Option<&'a str>,
}

/// A disk as the domain XML describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskDevice<'a> {
    /// Guest-side target device (`<target dev='vda'/>`).
    pub target: &'a str,
    /// Source file, block device or volume name, when the XML has one.
    pub source: Option<&'a str>,
}

/// Where a string is in [`Devices`]' text: `[start, end)`, or [`ABSENT`].
type Span = [u32; 2];

const ABSENT: Span = [u32::MAX, u32::MAX];

/// The devices of one domain (NICs and disks with a target device).
///
/// A list is cached for as long as its domain runs, so it is kept compactly: all its strings
/// back to back in one allocation, and two spans per device (target, then MAC or source) in
/// another, instead of a `String` per name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Devices {
    text: Box<str>,
    /// The NICs' spans, then the disks'.
    spans: Box<[Span]>,
    nic_count: usize,
}

impl Devices {
    /// A device list with these NICs and disks.
    pub fn new(nics: &[NicDevice<'_>], disks: &[DiskDevice<'_>]) -> Devices {
        let mut b = Builder::default();
        for n in nics {
            b.nic(n.target, n.mac);
        }
        for d in disks {
            b.disk(d.target, d.source);
        }
        b.build()
    }

    fn get(&self, span: Span) -> Option<&str> {
        let [start, end] = span;
        if span == ABSENT {
            return None;
        }
        self.text.get(start as usize..end as usize)
    }

    fn pairs<'a>(
        &'a self,
        spans: &'a [Span],
    ) -> impl ExactSizeIterator<Item = (&'a str, Option<&'a str>)> + 'a {
        spans
            .chunks_exact(2)
            .map(|p| (self.get(p[0]).unwrap_or(""), self.get(p[1])))
    }

    /// The network interfaces, in the XML's order.
    pub fn nics(&self) -> impl ExactSizeIterator<Item = NicDevice<'_>> + '_ {
        let (nics, _) = self.spans.split_at(2 * self.nic_count);
        self.pairs(nics)
            .map(|(target, mac)| NicDevice { target, mac })
    }

    /// The disks, in the XML's order.
    pub fn disks(&self) -> impl ExactSizeIterator<Item = DiskDevice<'_>> + '_ {
        let (_, disks) = self.spans.split_at(2 * self.nic_count);
        self.pairs(disks)
            .map(|(target, source)| DiskDevice { target, source })
    }
}

/// Collects a [`Devices`]: NICs and disks in any order.
#[derive(Default)]
struct Builder {
    text: String,
    nics: Vec<Span>,
    disks: Vec<Span>,
}

impl Builder {
    fn span(&mut self, s: Option<&str>) -> Span {
        let Some(s) = s else { return ABSENT };
        let start = self.text.len();
        self.text.push_str(s);
        match (u32::try_from(start), u32::try_from(self.text.len())) {
            (Ok(a), Ok(b)) if b != u32::MAX => [a, b],
            // Beyond 4 GiB of names: not kept (a domain XML is far smaller).
            _ => ABSENT,
        }
    }

    fn nic(&mut self, target: &str, mac: Option<&str>) {
        let pair = [self.span(Some(target)), self.span(mac)];
        self.nics.extend(pair);
    }

    fn disk(&mut self, target: &str, source: Option<&str>) {
        let pair = [self.span(Some(target)), self.span(source)];
        self.disks.extend(pair);
    }

    fn build(mut self) -> Devices {
        let nic_count = self.nics.len() / 2;
        self.nics.append(&mut self.disks);
        Devices {
            text: self.text.into_boxed_str(),
            spans: self.nics.into_boxed_slice(),
            nic_count,
        }
    }
}

/// Parses the devices out of a domain's XML description.
pub fn parse_domain_xml(xml: &str) -> Result<Devices, roxmltree::Error> {
    let doc = roxmltree::Document::parse(xml)?;
    let mut devices = Builder::default();
    let Some(devs) = doc
        .root_element()
        .children()
        .find(|n| n.has_tag_name("devices"))
    else {
        return Ok(devices.build());
    };
    fn child_attr<'a>(node: roxmltree::Node<'a, '_>, tag: &str, attr: &str) -> Option<&'a str> {
        node.children()
            .find(|c| c.has_tag_name(tag))
            .and_then(|c| c.attribute(attr))
    }
    for node in devs.children().filter(|n| n.is_element()) {
        match node.tag_name().name() {
            "interface" => {
                if let Some(target) = child_attr(node, "target", "dev") {
                    devices.nic(target, child_attr(node, "mac", "address"));
                }
            }
            "disk" => {
                if let Some(target) = child_attr(node, "target", "dev") {
                    let source = ["file", "dev", "name", "volume"]
                        .iter()
                        .find_map(|a| child_attr(node, "source", a));
                    devices.disk(target, source);
                }
            }
            _ => {}
        }
    }
    Ok(devices.build())
}

#[derive(Debug)]
struct Entry {
    id: Option<u32>,
    /// When the entry goes stale.
    expires: Instant,
    devices: Arc<Devices>,
    seen: bool,
}

/// Per-domain device lists keyed by UUID, with a TTL.
///
/// Each entry lives between half the TTL and the whole TTL, spread by its UUID: the lists of a
/// fleet are all read in the first cycle, and without the spread they would all be read again
/// in the same later cycle (seconds of XML reading at a thousand domains).
#[derive(Debug)]
pub struct DeviceCache {
    ttl: Duration,
    entries: HashMap<u128, Entry>,
}

impl DeviceCache {
    /// An empty cache whose entries live for at most `ttl`.
    pub fn new(ttl: Duration) -> Self {
        DeviceCache {
            ttl,
            entries: HashMap::new(),
        }
    }

    /// How long the entry of the domain with key `key` lives: 50 % to 100 % of the TTL.
    fn ttl_of(&self, key: u128) -> Duration {
        let spread = (key ^ (key >> 64)) as u64 % 1024;
        self.ttl / 2 + self.ttl.mul_f64(spread as f64 / 2048.0)
    }

    /// The cached devices of `uuid`, if they are fresh and belong to the same domain ID.
    pub fn get(&mut self, uuid: &str, id: Option<u32>, now: Instant) -> Option<Arc<Devices>> {
        let e = self.entries.get_mut(&uuid_key(uuid))?;
        if e.id != id || now >= e.expires {
            return None;
        }
        e.seen = true;
        Some(Arc::clone(&e.devices))
    }

    /// Stores a freshly read device list.
    pub fn put(
        &mut self,
        uuid: &str,
        id: Option<u32>,
        now: Instant,
        devices: Devices,
    ) -> Arc<Devices> {
        let key = uuid_key(uuid);
        let devices = Arc::new(devices);
        let entry = Entry {
            id,
            expires: now + self.ttl_of(key),
            devices: Arc::clone(&devices),
            seen: true,
        };
        self.entries.insert(key, entry);
        devices
    }

    /// The cached devices of `uuid` for domain ID `id`, however old: device identity (MACs)
    /// does not change while a domain runs, except by hot-plug, which the caller detects.
    pub fn get_identity(&mut self, uuid: &str, id: Option<u32>) -> Option<&Devices> {
        let e = self.entries.get_mut(&uuid_key(uuid))?;
        if e.id != id {
            return None;
        }
        e.seen = true;
        Some(&e.devices)
    }

    /// Marks `uuid`'s entry stale, so the next cycle reads the XML again.
    pub fn invalidate(&mut self, uuid: &str) {
        self.entries.remove(&uuid_key(uuid));
    }

    /// Drops the entries of domains not looked up since the previous call.
    pub fn end_cycle(&mut self) {
        self.entries.retain(|_, e| std::mem::take(&mut e.seen));
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
    use super::*;

    const XML: &str = r#"<domain type='test'><name>a</name><devices>
        <disk type='file' device='disk'><source file='/x/a b.img'/><target dev='vda' bus='virtio'/></disk>
        <disk type='block'><source dev='/dev/sdz'/><target dev='sdb'/></disk>
        <disk type='file' device='cdrom'><target dev='hdc'/></disk>
        <interface type='ethernet'><mac address='52:54:00:00:00:01'/><target dev='tap0'/></interface>
        <interface type='user'><mac address='52:54:00:00:00:02'/></interface>
        </devices></domain>"#;

    #[test]
    fn parses_targets_sources_and_macs() {
        let d = parse_domain_xml(XML).expect("valid xml");
        let nics: Vec<_> = d.nics().collect();
        assert_eq!(
            nics,
            [NicDevice {
                target: "tap0",
                mac: Some("52:54:00:00:00:01")
            }]
        );
        let disks: Vec<_> = d.disks().collect();
        let names: Vec<_> = disks.iter().map(|d| d.target).collect();
        assert_eq!(names, ["vda", "sdb", "hdc"]);
        assert_eq!(disks[0].source, Some("/x/a b.img"));
        assert_eq!(disks[1].source, Some("/dev/sdz"));
        assert_eq!(disks[2].source, None);
    }

    #[test]
    fn refreshes_of_a_fleet_are_spread_over_the_second_half_of_the_ttl() {
        let ttl = Duration::from_secs(300);
        let mut c = DeviceCache::new(ttl);
        let t0 = Instant::now();
        let uuids: Vec<String> = (0..1000).map(crate::demo::uuid_for).collect();
        for u in &uuids {
            c.put(u, Some(1), t0, Devices::default());
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

    proptest::proptest! {
        /// Whatever the names (empty, unicode, any order of NICs and disks), the compact list
        /// gives back exactly what went in.
        #[test]
        fn a_device_list_gives_back_what_went_in(
            nics in proptest::collection::vec(("\\PC{0,12}", proptest::option::of("\\PC{0,20}")), 0..5),
            disks in proptest::collection::vec(("\\PC{0,12}", proptest::option::of("\\PC{0,40}")), 0..5),
        ) {
            let n: Vec<NicDevice> = nics
                .iter()
                .map(|(t, m)| NicDevice { target: t, mac: m.as_deref() })
                .collect();
            let d: Vec<DiskDevice> = disks
                .iter()
                .map(|(t, s)| DiskDevice { target: t, source: s.as_deref() })
                .collect();
            let devices = Devices::new(&n, &d);
            proptest::prop_assert_eq!(devices.nics().collect::<Vec<_>>(), n);
            proptest::prop_assert_eq!(devices.disks().collect::<Vec<_>>(), d);
            proptest::prop_assert_eq!(devices.nics().len(), nics.len());
        }
    }

    #[test]
    fn bad_xml_is_an_error() {
        assert!(parse_domain_xml("<domain><devices>").is_err());
    }

    #[test]
    fn ttl_id_change_and_pruning() {
        let mut c = DeviceCache::new(Duration::from_secs(300));
        let t0 = Instant::now();
        c.put("u", Some(1), t0, Devices::default());
        assert!(c.get("u", Some(1), t0 + Duration::from_secs(149)).is_some());
        assert!(c.get("u", Some(1), t0 + Duration::from_secs(300)).is_none());
        assert!(c.get("u", Some(2), t0).is_none(), "new domain ID refreshes");
        c.end_cycle();
        assert_eq!(c.len(), 1, "looked up this cycle: kept");
        c.end_cycle();
        assert!(c.is_empty(), "not looked up for a cycle: dropped");
        c.put("v", None, t0, Devices::default());
        c.invalidate("v");
        assert!(c.get("v", None, t0).is_none());
    }
}
