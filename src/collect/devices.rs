//! The device list of each domain (NIC and disk names, MACs and sources), read from the domain
//! XML. The per-domain fallback needs it to ask for each device's counters, and the bulk path
//! for the NICs' MAC addresses; [`super::device_cache`] keeps the lists between cycles.

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

/// A string's place in a list's text: `[start, end)`, or [`ABSENT`].
type Span = [u32; 2];

const ABSENT: Span = [u32::MAX, u32::MAX];

/// Header: the number of NICs, then of devices (u32, little-endian each).
const HEADER: usize = 8;
/// Bytes per device: two spans (target, then MAC or source) of two u32.
const DEVICE_BYTES: usize = 16;

/// The devices of one domain (NICs and disks with a target device), as one byte string.
///
/// A list is cached for as long as its domain runs, so it is one allocation laid out as:
/// a header (NIC count, device count), two spans per device (NICs first), then all the strings
/// back to back. [`DeviceList`] reads it in place; the cache stores the same bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Devices {
    bytes: Box<[u8]>,
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

    /// The list, to read.
    pub fn list(&self) -> DeviceList<'_> {
        DeviceList { bytes: &self.bytes }
    }

    /// The list's bytes (what [`DeviceList::from_bytes`] reads).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The network interfaces, in the XML's order.
    pub fn nics(&self) -> impl ExactSizeIterator<Item = NicDevice<'_>> + '_ {
        self.list().nics()
    }

    /// The disks, in the XML's order.
    pub fn disks(&self) -> impl ExactSizeIterator<Item = DiskDevice<'_>> + '_ {
        self.list().disks()
    }
}

/// A device list read in place (from a [`Devices`] or the cache's storage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceList<'a> {
    bytes: &'a [u8],
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    bytes
        .get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

impl<'a> DeviceList<'a> {
    /// Reads the bytes of a [`Devices`] ([`Devices::as_bytes`]). Bytes of any other shape read
    /// as a list of fewer devices, never a panic.
    pub fn from_bytes(bytes: &'a [u8]) -> DeviceList<'a> {
        DeviceList { bytes }
    }

    fn counts(&self) -> (usize, usize) {
        let nics = read_u32(self.bytes, 0) as usize;
        let all = read_u32(self.bytes, 4) as usize;
        let fits = self.bytes.len().saturating_sub(HEADER) / DEVICE_BYTES;
        let all = all.min(fits);
        (nics.min(all), all)
    }

    fn string(&self, text: usize, span: Span) -> Option<&'a str> {
        if span == ABSENT {
            return None;
        }
        let [a, b] = span;
        let bytes = self.bytes.get(text + a as usize..text + b as usize)?;
        std::str::from_utf8(bytes).ok()
    }

    /// Device `i`'s target and second string (the text starts at `text`).
    fn device(&self, i: usize, text: usize) -> (&'a str, Option<&'a str>) {
        let at = HEADER + i * DEVICE_BYTES;
        let span = |k: usize| {
            [
                read_u32(self.bytes, at + 8 * k),
                read_u32(self.bytes, at + 8 * k + 4),
            ]
        };
        (
            self.string(text, span(0)).unwrap_or(""),
            self.string(text, span(1)),
        )
    }

    /// The network interfaces, in the XML's order.
    pub fn nics(self) -> impl ExactSizeIterator<Item = NicDevice<'a>> {
        let (nics, all) = self.counts();
        let text = HEADER + all * DEVICE_BYTES;
        (0..nics).map(move |i| {
            let (target, mac) = self.device(i, text);
            NicDevice { target, mac }
        })
    }

    /// The disks, in the XML's order.
    pub fn disks(self) -> impl ExactSizeIterator<Item = DiskDevice<'a>> {
        let (nics, all) = self.counts();
        let text = HEADER + all * DEVICE_BYTES;
        (nics..all).map(move |i| {
            let (target, source) = self.device(i, text);
            DiskDevice { target, source }
        })
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

    fn build(self) -> Devices {
        let count = |spans: &[Span]| u32::try_from(spans.len() / 2).unwrap_or(0);
        let nics = count(&self.nics);
        let all = nics.saturating_add(count(&self.disks));
        let mut bytes =
            Vec::with_capacity(HEADER + (self.nics.len() + self.disks.len()) * 8 + self.text.len());
        bytes.extend_from_slice(&nics.to_le_bytes());
        bytes.extend_from_slice(&all.to_le_bytes());
        for [a, b] in self.nics.iter().chain(&self.disks) {
            bytes.extend_from_slice(&a.to_le_bytes());
            bytes.extend_from_slice(&b.to_le_bytes());
        }
        bytes.extend_from_slice(self.text.as_bytes());
        Devices {
            bytes: bytes.into_boxed_slice(),
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
}
