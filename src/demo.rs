//! Generated fleets on libvirt's test driver: the built-in demo source, and fixtures for tests
//! and benchmarks.
//!
//! libvirt's test driver reads a `<node>` XML file holding any number of `<domain
//! type='test'>` elements (`test:///ABS/PATH/node.xml`). [`node_xml`] writes such a file from a
//! [`Fleet`] description, escaping every name for XML.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Run state a test-driver domain starts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Running (libvirt state 1).
    Running,
    /// Paused (libvirt state 3).
    Paused,
    /// Shut off (libvirt state 5): not active, so not collected.
    ShutOff,
}

impl RunState {
    fn code(self) -> u8 {
        match self {
            RunState::Running => 1,
            RunState::Paused => 3,
            RunState::ShutOff => 5,
        }
    }
}

/// One generated domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vm {
    /// Domain name (any text libvirt accepts; it is XML-escaped here).
    pub name: String,
    /// Domain UUID.
    pub uuid: String,
    /// Initial state.
    pub state: RunState,
    /// vCPUs.
    pub vcpus: u32,
    /// Maximum memory in KiB.
    pub memory_kib: u64,
    /// Current memory in KiB.
    pub current_kib: u64,
    /// NIC target device names (avoid `vnet*`/`macvtap*`: the test driver renames those).
    pub nics: Vec<String>,
    /// Disk target device names.
    pub disks: Vec<String>,
}

impl Vm {
    /// A running VM with 2 vCPUs, 2 GiB, NICs `tap<i>a`/`tap<i>b` and disks `vda`/`vdb`.
    pub fn standard(i: usize, name: &str) -> Vm {
        Vm {
            name: name.to_owned(),
            uuid: uuid_for(i),
            state: RunState::Running,
            vcpus: 2,
            memory_kib: 2 * 1024 * 1024,
            current_kib: 1536 * 1024,
            nics: vec![format!("tap{i}a"), format!("tap{i}b")],
            disks: vec!["vda".into(), "vdb".into()],
        }
    }
}

/// A deterministic UUID for the `i`-th generated VM.
pub fn uuid_for(i: usize) -> String {
    format!("5eed0000-0000-4000-8000-{:012x}", i)
}

/// The demo fleet: `n` VMs with varied sizes, a few paused and shut-off ones, and names that
/// exercise escaping everywhere they are shown.
pub fn demo_fleet(n: usize) -> Vec<Vm> {
    const ROLES: &[&str] = &["web", "db", "cache", "queue", "build", "api"];
    (0..n)
        .map(|i| {
            let role = ROLES[i % ROLES.len()];
            let name = match i {
                3 => format!("{role} {i:02}, \"eu\""),
                5 => format!("{role}-{i:02}-ünïcode"),
                7 => format!("{role}=<script>alert({i})"),
                _ => format!("{role}-{i:02}"),
            };
            let mut vm = Vm::standard(i, &name);
            vm.vcpus = [1, 2, 4, 8][i % 4];
            vm.memory_kib = u64::from(vm.vcpus) * 1024 * 1024;
            vm.current_kib = vm.memory_kib * 3 / 4;
            vm.state = match i % 11 {
                9 => RunState::Paused,
                10 => RunState::ShutOff,
                _ => RunState::Running,
            };
            vm
        })
        .collect()
}

fn xml_escape(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            // Character references keep tab, newline and CR intact in attributes; other C0
            // controls cannot appear in XML 1.0 at all.
            '\t' | '\n' | '\r' => {
                let _ = write!(out, "&#x{:x};", u32::from(c));
            }
            c if c.is_ascii_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

/// The test driver's `<node>` document for `vms`.
pub fn node_xml(vms: &[Vm]) -> String {
    let mut x = String::from("<node>\n");
    for (i, vm) in vms.iter().enumerate() {
        x.push_str(
            "<domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>\n<name>",
        );
        xml_escape(&mut x, &vm.name);
        x.push_str("</name>\n<uuid>");
        xml_escape(&mut x, &vm.uuid);
        let _ = write!(
            x,
            "</uuid>\n<memory unit='KiB'>{}</memory>\n<currentMemory unit='KiB'>{}</currentMemory>\n\
             <vcpu>{}</vcpu>\n<os><type>hvm</type></os>\n<devices>\n",
            vm.memory_kib, vm.current_kib, vm.vcpus
        );
        for (d, disk) in vm.disks.iter().enumerate() {
            x.push_str("<disk type='file' device='disk'><source file='/var/lib/vmtel-demo/");
            let _ = write!(x, "{i}-{d}.qcow2'/><target dev='");
            xml_escape(&mut x, disk);
            x.push_str("' bus='virtio'/></disk>\n");
        }
        for (n, nic) in vm.nics.iter().enumerate() {
            let _ = write!(
                x,
                "<interface type='ethernet'><mac address='52:54:00:{:02x}:{:02x}:{:02x}'/><target dev='",
                (i >> 8) & 0xff,
                i & 0xff,
                n & 0xff
            );
            xml_escape(&mut x, nic);
            x.push_str("'/></interface>\n");
        }
        let _ = writeln!(
            x,
            "</devices>\n<test:runstate>{}</test:runstate>\n</domain>",
            vm.state.code()
        );
    }
    x.push_str("</node>\n");
    x
}

/// Writes `vms` as a node file in `dir` and returns the `test:///...` URI that reads it.
pub fn write_node(dir: &Path, file: &str, vms: &[Vm]) -> std::io::Result<(PathBuf, String)> {
    let path = dir.join(file);
    std::fs::write(&path, node_xml(vms))?;
    let abs = std::fs::canonicalize(&path)?;
    let uri = format!("test://{}", abs.display());
    Ok((abs, uri))
}

/// Hosts in the built-in demo fleet, and VMs per host.
pub const DEMO_HOSTS: usize = 3;
/// VMs per demo host.
pub const DEMO_VMS_PER_HOST: usize = 12;

/// Writes the built-in demo fleet (several hosts of test-driver VMs) under `dir` and returns one
/// source per host, with `host` tags `demo-hv1`, `demo-hv2`, ...
pub fn write_demo_fleet(dir: &Path) -> std::io::Result<Vec<crate::collect::SourceSpec>> {
    std::fs::create_dir_all(dir)?;
    (0..DEMO_HOSTS)
        .map(|h| {
            let mut vms = demo_fleet(DEMO_VMS_PER_HOST);
            for (i, vm) in vms.iter_mut().enumerate() {
                vm.uuid = uuid_for(h * 1000 + i);
            }
            let (_, uri) = write_node(dir, &format!("demo-hv{}.xml", h + 1), &vms)?;
            Ok(crate::collect::SourceSpec {
                uri,
                host: Some(format!("demo-hv{}", h + 1)),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_xml_is_well_formed_and_escaped() {
        let vms = demo_fleet(12);
        let xml = node_xml(&vms);
        let doc = roxmltree::Document::parse(&xml).expect("well-formed");
        let names: Vec<_> = doc
            .descendants()
            .filter(|n| n.has_tag_name("name"))
            .filter_map(|n| n.text())
            .collect();
        let want: Vec<_> = vms.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, want);
    }
}
