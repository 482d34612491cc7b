//! Collect: one libvirt connection per source, one bulk stats call per cycle.
//!
//! Each cycle makes one `virConnectGetAllDomainStats` call for the active (running and paused)
//! domains with the groups `state`, `cpu-total`, `balloon`, `vcpu`, `interface` and `block`, and
//! the `NOWAIT` flag so that a domain whose QEMU monitor is busy is reported with what libvirt
//! has rather than blocking the whole call. The first cycle of each connection that sees a domain
//! detects which groups the driver returns; any group it lacks (the test driver returns only
//! `state`) is filled from per-domain calls from then on ([`perdomain`]). After it, the host's
//! own CPU and memory statistics ([`Collector::node_stats`]: two calls; its capacity once per
//! connection).
//!
//! A `sim:` URI names a simulated host instead ([`simulated`]): no libvirt, the same pipeline.

pub mod bulk;
pub mod device_cache;
pub mod devices;
pub mod ffi;
pub mod perdomain;
pub mod simulated;
pub mod warn;

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use virt::connect::Connect;
use virt::error::ErrorNumber;
use virt::sys;

use self::bulk::{Decoder, Groups};
use self::device_cache::DeviceCache;
use self::ffi::StatsList;
use self::warn::Warnings;
use crate::model::{DomainSample, HostSample, NodeStats};

/// Domains decoded, completed and handed on together ([`Collector::collect_chunks`]). Bounds what
/// a cycle holds in memory whatever the number of VMs: samples and line protocol for 10,000 VMs
/// at once would take about 40 MB.
pub const CHUNK_DOMAINS: usize = 16;

/// What a finished cycle reports besides its chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CycleSummary {
    /// Wall-clock time of the bulk call, ns since the epoch (also in every chunk).
    pub timestamp_ns: i64,
    /// Domains handed on in all chunks.
    pub domains: usize,
}

/// Where to collect from: a libvirt URI and an optional host-name override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSpec {
    /// libvirt connection URI (`qemu:///system`, `qemu+ssh://host/system`, `test:///default`).
    pub uri: String,
    /// Value of the `host` tag; libvirt's host name when `None`.
    pub host: Option<String>,
}

/// Why a cycle produced no sample.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// The connection could not be opened.
    #[error(
        "cannot connect to libvirt at {uri:?}: {message}. Check that the URI is right \
         (e.g. qemu:///system, qemu+ssh://user@host/system) and that libvirtd (or virtqemud) \
         is running and reachable with this user's permissions"
    )]
    Connect {
        /// The source URI.
        uri: String,
        /// libvirt's message.
        message: String,
    },
    /// The bulk stats call failed.
    #[error("libvirt bulk stats call failed on {uri:?}: {message}")]
    Stats {
        /// The source URI.
        uri: String,
        /// libvirt's message.
        message: String,
    },
}

/// Monotonic nanoseconds since the first call in this process.
pub fn mono_ns() -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Wall-clock nanoseconds since the Unix epoch.
pub fn wall_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Starts libvirt's default event loop on a background thread (once per process). Keepalive
/// on remote connections needs it: with it, a dead peer closes the connection and a stuck call
/// fails instead of hanging. Call before opening connections.
pub fn start_event_loop() -> std::io::Result<()> {
    static STARTED: OnceLock<()> = OnceLock::new();
    if STARTED.get().is_some() {
        return Ok(());
    }
    if let Err(e) = virt::event::event_register_default_impl() {
        return Err(std::io::Error::other(format!(
            "cannot start libvirt's event loop: {e}"
        )));
    }
    std::thread::Builder::new()
        .name("libvirt events".into())
        .spawn(|| loop {
            if let Err(e) = virt::event::event_run_default_impl() {
                tracing::error!("libvirt event loop: {e}");
                std::thread::sleep(Duration::from_secs(1));
            }
        })?;
    let _ = STARTED.set(());
    Ok(())
}

/// True when `uri` goes through libvirt's remote driver (a `+transport` scheme such as
/// `qemu+ssh`, or a host name): only such connections have keepalive, which needs the event
/// loop. Local connections do without it (it would only cost CPU on every call).
pub fn is_remote_uri(uri: &str) -> bool {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return false;
    };
    let authority = rest
        .strip_prefix("//")
        .map(|r| r.split(['/', '?']).next().unwrap_or(""))
        .unwrap_or("");
    scheme.contains('+') || !authority.is_empty()
}

/// Silences libvirt's default error printer: vmtel reports libvirt errors through its own log.
pub fn quiet_libvirt_errors() {
    virt::error::clear_error_callback();
}

/// A connection to one libvirt source and the per-connection state of its collection.
pub struct Collector {
    spec: SourceSpec,
    conn: Option<Connect>,
    host: String,
    /// Groups the bulk call returns on this connection; `None` until detected.
    bulk: Option<Groups>,
    nowait: bool,
    cache: DeviceCache,
    warn: Warnings,
    /// Successful connects so far; changes on every reconnect.
    connects: u64,
    /// Guest balloon statistics period to enable where a running domain has none.
    balloon_period: Option<u32>,
    /// `uuid/id` of domains whose balloon period vmtel already tried to set, with the cycle
    /// that last saw them.
    balloon_tried: HashMap<String, u64>,
    /// NIC names per domain (UUID) whose XML was read and still lacked one of them (e.g. a NIC
    /// without a target device): not read again until the names or the domain ID change. With
    /// the cycle that last saw the domain.
    identity_checked: HashMap<String, (Option<u32>, Vec<String>, u64)>,
    /// Record decoder with its layout cache.
    decoder: Decoder,
    /// Samples of the last chunk, reused by the next.
    spare: Vec<DomainSample>,
    /// Chunks of samples given back ([`Collector::recycle`]), each kept in the vector it was
    /// handed out in: moving a vector moves no sample, so the samples exist once.
    recycled: Vec<Vec<DomainSample>>,
    /// Domains in the last cycle (how many samples are worth keeping).
    last_domains: usize,
    /// Emptied vectors of recycled chunks, to hold new chunks ([`Collector::chunk_vec`]).
    emptied: Vec<Vec<DomainSample>>,
    /// Where samples handed out earlier come back from while a cycle runs
    /// ([`Collector::set_returns`]).
    returns: Option<Box<dyn FnMut() -> Vec<Vec<DomainSample>>>>,
    /// Cycles run so far.
    cycle: u64,
    /// The host's capacity and which of its statistics calls work, per connection.
    node: NodeProbe,
    /// A simulated host in place of libvirt (`sim:` URIs), once opened.
    sim: Option<Box<simulated::SimSource>>,
}

/// What [`Collector::node_stats`] learned about the connection's host calls.
#[derive(Debug, Default)]
struct NodeProbe {
    /// `virNodeGetInfo`, read once per connection (CPUs online, MHz, memory).
    info: Option<(u64, u64, u64)>,
    /// The calls found unsupported on this connection, not made again until it reconnects.
    no_info: bool,
    no_cpu: bool,
    no_memory: bool,
    no_free: bool,
}

/// Keepalive probes on remote connections: interval in seconds and unanswered probes before
/// libvirt closes a dead connection (so a stuck call fails instead of hanging).
const KEEPALIVE: (i32, u32) = (5, 3);

impl Collector {
    /// A collector for `spec`; nothing is opened until the first cycle.
    pub fn new(spec: SourceSpec, device_cache_ttl: Duration) -> Self {
        let warn = Warnings::new(&spec.uri);
        Collector {
            spec,
            conn: None,
            host: String::new(),
            bulk: None,
            nowait: true,
            cache: DeviceCache::new(device_cache_ttl),
            warn,
            connects: 0,
            balloon_period: None,
            balloon_tried: HashMap::new(),
            identity_checked: HashMap::new(),
            decoder: Decoder::new(),
            spare: Vec::new(),
            recycled: Vec::new(),
            emptied: Vec::new(),
            returns: None,
            last_domains: 0,
            cycle: 0,
            node: NodeProbe::default(),
            sim: None,
        }
    }

    /// Enables the guest balloon statistics period (seconds) on running domains that report no
    /// guest memory statistics. Off (`None`) by default.
    pub fn set_balloon_period(&mut self, period: Option<u32>) {
        self.balloon_period = period.filter(|&p| p > 0);
    }

    /// Number of successful connects so far. It changes when the collector reconnected, after
    /// which counters of the new connection must not be compared with older ones.
    pub fn connects(&self) -> u64 {
        self.connects
    }

    /// The host name of the open (or last) connection: the `host` tag of its lines.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The source this collector reads.
    pub fn spec(&self) -> &SourceSpec {
        &self.spec
    }

    /// The groups the bulk call was found to return, once detected.
    pub fn bulk_groups(&self) -> Option<Groups> {
        self.bulk
    }

    /// True while a connection is open (a simulated source is, once opened).
    pub fn is_connected(&self) -> bool {
        self.conn.is_some() || self.sim.is_some()
    }

    /// Opens the connection if it is not open.
    pub fn connect(&mut self) -> Result<(), CollectError> {
        if self.conn.is_some() || self.sim.is_some() {
            return Ok(());
        }
        if simulated::is_simulated(&self.spec.uri) {
            let sim = simulated::take_or_open(&self.spec.uri)?;
            self.host = self.spec.host.clone().unwrap_or_else(|| sim.host_name());
            self.sim = Some(Box::new(sim));
            self.connects += 1;
            return Ok(());
        }
        let conn = Connect::open(Some(&self.spec.uri)).map_err(|e| CollectError::Connect {
            uri: self.spec.uri.clone(),
            message: e.message().to_owned(),
        })?;
        self.host = match &self.spec.host {
            Some(h) => h.clone(),
            None => conn.hostname().unwrap_or_else(|_| self.spec.uri.clone()),
        };
        // Only remote drivers support keepalive; it needs the event loop the daemon runs for
        // remote sources.
        if let Err(e) = conn.set_keep_alive(KEEPALIVE.0, KEEPALIVE.1) {
            tracing::debug!(source = %self.spec.uri, "no keepalive on this connection: {e}");
        }
        self.bulk = None;
        self.nowait = true;
        self.node = NodeProbe::default();
        self.conn = Some(conn);
        self.connects += 1;
        Ok(())
    }

    /// Closes the connection; the next cycle reconnects and detects the driver's groups again.
    pub fn disconnect(&mut self) {
        self.conn = None;
        self.bulk = None;
    }

    fn fetch(&mut self) -> Result<StatsList, virt::error::Error> {
        let Some(conn) = &self.conn else {
            return Err(virt::error::Error::last_error());
        };
        let flags = sys::VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE;
        if self.nowait {
            let with = flags | sys::VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT;
            match StatsList::fetch(conn, Groups::ALL.0, with) {
                Ok(list) => return Ok(list),
                Err(e)
                    if e.code().is_any(vec![
                        ErrorNumber::InvalidArg,
                        ErrorNumber::NoSupport,
                        ErrorNumber::OperationUnsupported,
                    ]) =>
                {
                    self.nowait = false;
                    self.warn.once("nowait", || {
                        format!("driver rejects the NOWAIT flag ({e}); a busy VM can delay this source's cycle")
                    });
                }
                Err(e) => return Err(e),
            }
        }
        StatsList::fetch(conn, Groups::ALL.0, flags)
    }

    /// Runs one cycle and returns every domain in one sample (for `vmtel once` and tests; the
    /// daemon uses [`Collector::collect_chunks`]).
    pub fn collect(&mut self) -> Result<HostSample, CollectError> {
        let mut domains = Vec::new();
        let summary = self.collect_chunks(|chunk| domains.extend(chunk.domains.iter().cloned()))?;
        Ok(HostSample {
            host: self.host.clone(),
            timestamp_ns: summary.timestamp_ns,
            domains,
        })
    }

    /// Gives back the samples of chunks handed out earlier (taken out of the chunk by the
    /// caller), so the next cycles fill them again instead of allocating.
    ///
    /// Samples beyond what the last cycle used (plus a chunk) are dropped: a cycle whose samples
    /// came back late made the next one allocate new ones, and both sets would otherwise be
    /// kept for good.
    pub fn recycle(&mut self, chunks: Vec<Vec<DomainSample>>) {
        let mut kept = self.spare.len() + self.recycled.iter().map(Vec::len).sum::<usize>();
        let room = self.last_domains + CHUNK_DOMAINS;
        for c in chunks {
            if kept + c.len() > room {
                continue;
            }
            kept += c.len();
            self.recycled.push(c);
        }
    }

    /// Sets where the samples of chunks taken by `each` (see [`Collector::collect_chunks`]) come
    /// back from. The collector asks it whenever it has no sample left to fill, so that chunks
    /// the sinks are already done with are filled again within the same cycle: a cycle then
    /// holds about as many samples as are in flight, not one per domain.
    pub fn set_returns(&mut self, returns: impl FnMut() -> Vec<Vec<DomainSample>> + 'static) {
        self.returns = Some(Box::new(returns));
    }

    /// An empty vector for a chunk's samples (one emptied by this cycle if there is one).
    fn chunk_vec(&mut self) -> Vec<DomainSample> {
        self.emptied
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(CHUNK_DOMAINS))
    }

    /// A sample to fill: a spare one, else one of a recycled chunk, else a new one.
    fn spare_sample(&mut self) -> DomainSample {
        loop {
            if let Some(s) = self.spare.pop() {
                return s;
            }
            match self.recycled.pop() {
                Some(v) => {
                    let empty = std::mem::replace(&mut self.spare, v);
                    if empty.capacity() > 0 {
                        self.emptied.push(empty);
                    }
                }
                None => {
                    let back = self.returns.as_mut().map(|r| r()).unwrap_or_default();
                    if back.is_empty() {
                        return DomainSample::default();
                    }
                    self.recycle(back);
                    if self.recycled.is_empty() {
                        return DomainSample::default();
                    }
                }
            }
        }
    }

    /// The host's capacity and use (`vm_host`), read after a cycle's bulk call: CPUs and
    /// memory from `virNodeGetInfo` (once per connection), CPU times from
    /// `virNodeGetCPUStats` and memory from `virNodeGetMemoryStats` (or the free memory alone
    /// from `virNodeGetFreeMemory` where the driver lacks memory statistics). A call the
    /// driver does not support is not made again on this connection; a failing call leaves
    /// its fields out and never fails the cycle. `None` when no call gave anything.
    pub fn node_stats(&mut self) -> Option<NodeStats> {
        if let Some(sim) = &self.sim {
            return Some(sim.node_stats());
        }
        let conn = self.conn.as_ref()?;
        let uri = &self.spec.uri;
        let mut n = NodeStats::default();
        let off = |what: &str, e: &virt::error::Error| {
            tracing::debug!(source = %uri, "no host {what} on this connection: {e}");
        };
        if self.node.info.is_none() && !self.node.no_info {
            match conn.node_info() {
                Ok(i) => {
                    self.node.info = Some((u64::from(i.cpus), u64::from(i.mhz), i.memory));
                }
                Err(e) => {
                    off("information (virNodeGetInfo)", &e);
                    self.node.no_info = true;
                }
            }
        }
        if let Some((cpus, mhz, memory)) = self.node.info {
            n.cpus = Some(cpus).filter(|&c| c > 0);
            n.mhz = Some(mhz).filter(|&m| m > 0);
            n.mem_total = Some(memory).filter(|&m| m > 0);
        }
        if !self.node.no_cpu {
            match ffi::node_stats(conn, ffi::NodeStatsKind::Cpu) {
                Ok(stats) => {
                    for (name, v) in stats {
                        match name.as_str() {
                            "kernel" => n.cpu_kernel = Some(v),
                            "user" => n.cpu_user = Some(v),
                            "idle" => n.cpu_idle = Some(v),
                            "iowait" => n.cpu_iowait = Some(v),
                            _ => {}
                        }
                    }
                }
                Err(e) => {
                    off("CPU statistics (virNodeGetCPUStats)", &e);
                    self.node.no_cpu = true;
                }
            }
        }
        let mut have_memory = false;
        if !self.node.no_memory {
            match ffi::node_stats(conn, ffi::NodeStatsKind::Memory) {
                Ok(stats) => {
                    for (name, v) in stats {
                        match name.as_str() {
                            "total" => n.mem_total = Some(v),
                            "free" => n.mem_free = Some(v),
                            "buffers" => n.mem_buffers = Some(v),
                            "cached" => n.mem_cached = Some(v),
                            _ => {}
                        }
                    }
                    have_memory = n.mem_free.is_some();
                }
                Err(e) => {
                    off("memory statistics (virNodeGetMemoryStats)", &e);
                    self.node.no_memory = true;
                }
            }
        }
        if !have_memory && !self.node.no_free {
            match conn.free_memory() {
                Ok(bytes) => n.mem_free = Some(bytes / 1024),
                Err(e) => {
                    off("free memory (virNodeGetFreeMemory)", &e);
                    self.node.no_free = true;
                }
            }
        }
        (n != NodeStats::default()).then_some(n)
    }

    /// Runs one cycle: connects if needed, makes the bulk call, and hands the active domains to
    /// `each` in chunks of at most [`CHUNK_DOMAINS`], each one complete (per-domain fallback
    /// filled, MACs attached). Every chunk carries the same host and timestamp; `each` may change
    /// a chunk, whose samples are recycled afterwards (or taken: see [`Collector::recycle`]).
    ///
    /// A failure of the bulk call closes the connection, so that the next cycle reconnects; it
    /// comes before any chunk, so a cycle is never handed on in part.
    pub fn collect_chunks(
        &mut self,
        mut each: impl FnMut(&mut HostSample),
    ) -> Result<CycleSummary, CollectError> {
        self.connect()?;
        if let Some(sim) = &mut self.sim {
            let host = self.host.clone();
            return sim.collect_chunks(|chunk| {
                chunk.host.clone_from(&host);
                each(chunk);
            });
        }
        let before = mono_ns();
        let list = match self.fetch() {
            Ok(list) => list,
            Err(e) => {
                self.disconnect();
                return Err(CollectError::Stats {
                    uri: self.spec.uri.clone(),
                    message: e.message().to_owned(),
                });
            }
        };
        let timestamp_ns = wall_ns();
        // libvirt reads each domain at some point during the call; the midpoint bounds the
        // error of a rate by half the call's duration (a slow call at boot can take a second).
        let mono = before + (mono_ns().saturating_sub(before)) / 2;
        self.cycle += 1;
        let size = list.len().min(CHUNK_DOMAINS);
        let mut chunk = HostSample {
            host: self.host.clone(),
            timestamp_ns,
            domains: self.chunk_vec(),
        };
        let mut handles = Vec::with_capacity(size);
        let mut seen = Groups::NONE;
        let mut total = 0;
        for rec in list.records() {
            let Some(dom) = rec.domain() else { continue };
            let mut sample = self.spare_sample();
            self.decoder.recycle(&mut sample);
            sample.name = dom.name().unwrap_or_default();
            sample.uuid = dom.uuid_string().unwrap_or_default();
            sample.id = dom.id();
            sample.mono_ns = mono;
            seen = seen.union(self.decoder.decode(&mut sample, rec.raw_params()));
            chunk.domains.push(sample);
            handles.push(dom);
            if chunk.domains.len() >= CHUNK_DOMAINS {
                total += self.finish_chunk(&mut chunk, &mut handles, seen, &mut each);
            }
        }
        if !chunk.domains.is_empty() {
            total += self.finish_chunk(&mut chunk, &mut handles, seen, &mut each);
        }
        drop(list);
        self.cache.end_cycle();
        self.last_domains = total;
        let cycle = self.cycle;
        self.identity_checked.retain(|_, v| v.2 == cycle);
        self.balloon_tried.retain(|_, c| *c == cycle);
        Ok(CycleSummary {
            timestamp_ns,
            domains: total,
        })
    }

    /// Completes one chunk (groups the bulk call lacks, MACs, balloon period), hands it to
    /// `each` and keeps its samples for reuse. Returns the number of domains.
    fn finish_chunk(
        &mut self,
        chunk: &mut HostSample,
        handles: &mut Vec<virt::domain::Domain>,
        seen: Groups,
        each: &mut impl FnMut(&mut HostSample),
    ) -> usize {
        self.note_groups(seen);
        let missing = Groups::ALL.minus(self.bulk.unwrap_or(Groups::ALL));
        if missing != Groups::NONE {
            for (sample, dom) in chunk.domains.iter_mut().zip(handles.iter()) {
                sample.mono_ns = mono_ns();
                perdomain::fill(dom, sample, missing, &mut self.cache, &mut self.warn);
            }
        }
        if !missing.contains(Groups::INTERFACE) {
            self.attach_macs(&mut chunk.domains, handles);
        }
        if let Some(period) = self.balloon_period {
            self.enable_balloon_stats(period, &chunk.domains, handles);
        }
        let n = chunk.domains.len();
        each(chunk);
        if chunk.domains.capacity() == 0 {
            // `each` took the samples (they come back through `recycle`): the next chunk gets
            // an emptied vector.
            chunk.domains = self.chunk_vec();
        } else {
            self.spare.append(&mut chunk.domains);
        }
        handles.clear();
        n
    }

    /// Records which groups the bulk call returned (`seen`: so far in this cycle).
    fn note_groups(&mut self, seen: Groups) {
        match self.bulk {
            None => {
                self.bulk = Some(seen);
                let missing = Groups::ALL.minus(seen);
                if missing != Groups::NONE {
                    tracing::info!(
                        source = %self.spec.uri,
                        "bulk stats lack the groups {:?}; filling them with per-domain calls",
                        missing.names()
                    );
                }
            }
            // A group missing at first (e.g. every domain busy under NOWAIT) that shows up later
            // is taken from the bulk call from then on.
            Some(known) if !known.contains(seen) => self.bulk = Some(known.union(seen)),
            _ => {}
        }
    }
}

impl Collector {
    /// Gives the NICs of the bulk path their MAC addresses, which the bulk call does not report.
    /// The domain XML is read once per domain start and again only when a NIC name appears that
    /// it did not list (hot-plug), so this costs no libvirt call in a steady cycle.
    fn attach_macs(&mut self, domains: &mut [DomainSample], handles: &[virt::domain::Domain]) {
        let now = Instant::now();
        for (sample, dom) in domains.iter_mut().zip(handles) {
            if sample.nics.is_empty() {
                continue;
            }
            let lists_all = |d: devices::DeviceList<'_>| {
                sample
                    .nics
                    .iter()
                    .all(|n| d.nics().any(|x| x.target == n.name))
            };
            let complete = self
                .cache
                .get_identity(&sample.uuid, sample.id)
                .is_some_and(lists_all);
            if !complete {
                let cycle = self.cycle;
                let checked =
                    self.identity_checked
                        .get_mut(&sample.uuid)
                        .is_some_and(|(id, names, seen)| {
                            *seen = cycle;
                            *id == sample.id && names.iter().eq(sample.nics.iter().map(|n| &n.name))
                        });
                if !checked {
                    match perdomain::read_devices(dom) {
                        Ok(Some(d)) => {
                            self.cache.put(&sample.uuid, sample.id, now, &d);
                        }
                        Ok(None) => continue, // destroyed since the bulk call
                        Err(msg) => {
                            self.warn.once(&format!("xml:{}", sample.uuid), || {
                                format!(
                                    "cannot read the device list of VM {:?}: {msg}",
                                    sample.name
                                )
                            });
                        }
                    }
                    let names = sample.nics.iter().map(|n| n.name.clone()).collect();
                    self.identity_checked
                        .insert(sample.uuid.clone(), (sample.id, names, self.cycle));
                }
            }
            if let Some(d) = self.cache.get_identity(&sample.uuid, sample.id) {
                for nic in &mut sample.nics {
                    nic.mac = d
                        .nics()
                        .find(|x| x.target == nic.name)
                        .and_then(|x| x.mac.map(str::to_owned));
                }
            }
        }
    }

    /// Sets the balloon statistics period on running domains without guest memory statistics,
    /// once per domain instance (UUID and ID).
    fn enable_balloon_stats(
        &mut self,
        period: u32,
        domains: &[DomainSample],
        handles: &[virt::domain::Domain],
    ) {
        const RUNNING: i64 = 1;
        for (sample, dom) in domains.iter().zip(handles) {
            let key = format!("{}/{}", sample.uuid, sample.id.unwrap_or(0));
            if let Some(seen) = self.balloon_tried.get_mut(&key) {
                *seen = self.cycle;
                continue;
            }
            let has_guest_stats = sample.mem.usable.is_some() || sample.mem.available.is_some();
            if sample.state == Some(RUNNING) && !has_guest_stats {
                let period = i32::try_from(period).unwrap_or(i32::MAX);
                match dom.set_memory_stats_period(period, sys::VIR_DOMAIN_AFFECT_LIVE) {
                    Ok(()) => tracing::info!(
                        source = %self.spec.uri,
                        "enabled guest memory statistics every {period}s on VM {:?}",
                        sample.name
                    ),
                    // Gone or stopped since the bulk call: nothing to enable.
                    Err(e) if perdomain::is_gone(&e) => {}
                    Err(e) => {
                        self.warn.once(&format!("balloon:{}", sample.uuid), || {
                            format!(
                                "cannot enable guest memory statistics on VM {:?}: {e}",
                                sample.name
                            )
                        });
                    }
                }
                self.balloon_tried.insert(key, self.cycle);
            }
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.disconnect();
    }
}

#[cfg(test)]
mod uri_tests {
    use super::is_remote_uri;

    #[test]
    fn remote_and_local_uris() {
        for uri in [
            "qemu+ssh://root@hv1/system",
            "qemu+tls://hv1/system",
            "qemu://hv1/system",
            "test+unix:///default?socket=/tmp/s",
        ] {
            assert!(is_remote_uri(uri), "{uri}");
        }
        for uri in [
            "qemu:///system",
            "test:///default",
            "test:///tmp/a.xml",
            "bogus",
        ] {
            assert!(!is_remote_uri(uri), "{uri}");
        }
    }
}
