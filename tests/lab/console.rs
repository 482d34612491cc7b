//! Reader of a lab guest's serial console (`scripts/lab.d/init`, docs/lab.md "Console stats
//! format"): boot markers, the workload description and the stats blocks with the guest's own
//! `/proc/net/dev` and `/proc/diskstats`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One interface line of the guest's `/proc/net/dev`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetDev {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errs: u64,
    pub rx_drop: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errs: u64,
    pub tx_drop: u64,
}

/// One disk line of the guest's `/proc/diskstats` (sectors are 512 bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskIo {
    pub reads: u64,
    pub read_sectors: u64,
    pub writes: u64,
    pub write_sectors: u64,
}

/// One `@@VMTEL-STATS-BEGIN ... @@VMTEL-STATS-END` block.
#[derive(Debug, Clone, Default)]
pub struct Block {
    /// Guest uptime (s) read just before the block's contents.
    pub uptime: f64,
    /// Block number since the guest's boot.
    pub seq: u64,
    /// Which boot of this console it belongs to (1 = the first `@@VMTEL-BOOT`).
    pub boot: usize,
    pub net: BTreeMap<String, NetDev>,
    pub disks: BTreeMap<String, DiskIo>,
    pub meminfo: BTreeMap<String, u64>,
}

/// What one workload round does (`@@VMTEL-WORKLOAD`): per disk and per NIC.
#[derive(Debug, Clone, Copy, Default)]
pub struct Workload {
    pub disk_rd_reqs: u64,
    pub disk_rd_bytes: u64,
    pub disk_wr_reqs: u64,
    pub disk_wr_bytes: u64,
    pub ping_frame_bytes: u64,
    pub direct: bool,
}

#[derive(Debug, PartialEq)]
enum Section {
    None,
    NetDev,
    DiskStats,
    MemInfo,
}

/// Incremental reader of one console file.
pub struct Console {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
    open: Option<(Block, Section)>,
    /// `@@VMTEL-BOOT` lines seen so far.
    pub boots: usize,
    pub workload: Option<Workload>,
    pub blocks: Vec<Block>,
}

fn num(s: &str) -> u64 {
    s.parse()
        .unwrap_or_else(|_| panic!("not a counter in the console: {s:?}"))
}

impl Console {
    /// Reads everything the console holds so far (the rotated `.0` part first).
    pub fn open(path: &Path) -> Console {
        let mut c = Console {
            path: path.to_owned(),
            offset: 0,
            partial: Vec::new(),
            open: None,
            boots: 0,
            workload: None,
            blocks: Vec::new(),
        };
        let rotated = rotated(path);
        if let Ok(mut f) = File::open(&rotated) {
            let mut data = Vec::new();
            f.read_to_end(&mut data).expect("read console");
            c.feed(&data);
        }
        c.poll();
        c
    }

    /// Reads what was appended since the last call; returns how many blocks completed.
    pub fn poll(&mut self) -> usize {
        let before = self.blocks.len();
        let Ok(mut f) = File::open(&self.path) else {
            return 0;
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len < self.offset {
            // virtlogd rotated the file (its old contents are now `.0`) or it was re-created.
            if let Ok(mut old) = File::open(rotated(&self.path)) {
                if old.metadata().map(|m| m.len()).unwrap_or(0) >= self.offset {
                    let mut data = Vec::new();
                    old.seek(SeekFrom::Start(self.offset)).expect("seek");
                    old.read_to_end(&mut data).expect("read console");
                    self.feed(&data);
                }
            }
            self.offset = 0;
            self.partial.clear();
        }
        let mut data = Vec::new();
        f.seek(SeekFrom::Start(self.offset)).expect("seek");
        f.read_to_end(&mut data).expect("read console");
        self.offset += data.len() as u64;
        self.feed(&data);
        self.blocks.len() - before
    }

    /// Waits (polling every 5 ms, at most `limit`) until the console holds at least `n`
    /// complete blocks.
    pub fn wait_blocks(&mut self, n: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            self.poll();
            if self.blocks.len() >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}: no stats block #{n} within {limit:?} (has {}; last: {:?})",
                self.path.display(),
                self.blocks.len(),
                self.blocks.last().map(|b| (b.uptime, b.seq))
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for the next complete block and returns the index of the newest one in `blocks`.
    pub fn wait_next(&mut self, limit: Duration) -> usize {
        self.poll();
        let n = self.blocks.len();
        self.wait_blocks(n + 1, limit);
        self.blocks.len() - 1
    }

    fn feed(&mut self, data: &[u8]) {
        self.partial.extend_from_slice(data);
        let mut start = 0;
        while let Some(nl) = self.partial[start..].iter().position(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(&self.partial[start..start + nl]).into_owned();
            start += nl + 1;
            self.line(line.trim_end_matches('\r'));
        }
        self.partial.drain(..start);
    }

    fn line(&mut self, line: &str) {
        if line.starts_with("@@VMTEL-BOOT") {
            self.boots += 1;
            self.open = None; // a block cut short by a reset is dropped
            return;
        }
        if let Some(rest) = line.strip_prefix("@@VMTEL-WORKLOAD ") {
            let kv: BTreeMap<&str, &str> = rest
                .split_whitespace()
                .filter_map(|w| w.split_once('='))
                .collect();
            let get = |k: &str| num(kv.get(k).unwrap_or_else(|| panic!("WORKLOAD lacks {k}")));
            self.workload = Some(Workload {
                disk_rd_reqs: get("disk_rd_reqs"),
                disk_rd_bytes: get("disk_rd_bytes"),
                disk_wr_reqs: get("disk_wr_reqs"),
                disk_wr_bytes: get("disk_wr_bytes"),
                ping_frame_bytes: get("ping_frame_bytes"),
                direct: get("direct") == 1,
            });
            return;
        }
        if let Some(rest) = line.strip_prefix("@@VMTEL-STATS-BEGIN ") {
            let mut w = rest.split_whitespace();
            let uptime: f64 = w.next().and_then(|s| s.parse().ok()).expect("uptime");
            let seq = w.next().map(num).expect("seq");
            self.open = Some((
                Block {
                    uptime,
                    seq,
                    boot: self.boots,
                    ..Block::default()
                },
                Section::None,
            ));
            return;
        }
        let Some((block, section)) = self.open.as_mut() else {
            return;
        };
        if line.starts_with("@@VMTEL-STATS-END") {
            let (block, _) = self.open.take().unwrap();
            self.blocks.push(block);
            return;
        }
        match line {
            "--- /proc/net/dev" => *section = Section::NetDev,
            "--- /proc/diskstats" => *section = Section::DiskStats,
            "--- /proc/meminfo" => *section = Section::MemInfo,
            _ => match section {
                Section::NetDev => {
                    let Some((name, rest)) = line.split_once(':') else {
                        return;
                    };
                    let f: Vec<u64> = rest.split_whitespace().map(num).collect();
                    if f.len() < 16 || name.contains('|') {
                        return; // the two header lines
                    }
                    block.net.insert(
                        name.trim().to_owned(),
                        NetDev {
                            rx_bytes: f[0],
                            rx_packets: f[1],
                            rx_errs: f[2],
                            rx_drop: f[3],
                            tx_bytes: f[8],
                            tx_packets: f[9],
                            tx_errs: f[10],
                            tx_drop: f[11],
                        },
                    );
                }
                Section::DiskStats => {
                    let f: Vec<&str> = line.split_whitespace().collect();
                    if f.len() >= 10 {
                        block.disks.insert(
                            f[2].to_owned(),
                            DiskIo {
                                reads: num(f[3]),
                                read_sectors: num(f[5]),
                                writes: num(f[7]),
                                write_sectors: num(f[9]),
                            },
                        );
                    }
                }
                Section::MemInfo => {
                    if let Some((k, v)) = line.split_once(':') {
                        if let Some(kb) = v.split_whitespace().next() {
                            block.meminfo.insert(k.to_owned(), num(kb));
                        }
                    }
                }
                Section::None => {}
            },
        }
    }
}

fn rotated(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".0");
    PathBuf::from(p)
}
