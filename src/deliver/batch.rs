//! The typed cycle that the workers hand to the sinks: a [`Batch`] holds VMs of one host with
//! their derived features ([`VmChunk`]), the host's own capacity and use ([`NodeRecord`]), or
//! vmtel's own health ([`Internal`]), never text. Each
//! text sink encodes it with its own precision ([`crate::encode::Encoder::encode_batch`]); the
//! history store reads the values as they are.

use std::sync::{Arc, Mutex};

use crate::daemon::internal::{DeliveryCounters, SinkCounters, SourceCounters};
use crate::model::{DomainSample, Features, HostSample, NodeStats};

/// One piece of a source's cycle (a cycle arrives as several batches with the same timestamp).
#[derive(Debug)]
pub struct Batch {
    /// The source URI the values came from (or `vmtel` for the sinks' self-telemetry).
    pub source: String,
    /// Grid timestamp of the cycle, ns since the epoch: every value of the batch carries it.
    pub timestamp_ns: i64,
    /// What the batch holds.
    pub payload: Payload,
    /// True for the last batch of a cycle (a sink may write a cycle in one transaction).
    pub end_of_cycle: bool,
}

/// What a [`Batch`] holds.
#[derive(Debug)]
pub enum Payload {
    /// VMs of one host, with their derived features.
    Vms(VmChunk),
    /// The host itself (`vm_host`), once per cycle.
    Node(NodeRecord),
    /// `vmtel_internal` records.
    Internal(Vec<Internal>),
}

/// VMs of one host sampled in one cycle, with their derived features. When dropped (by the last
/// sink done with it) its samples go back to the worker's [`SamplePool`].
#[derive(Debug, Default)]
pub struct VmChunk {
    /// The host and its VMs (the `timestamp_ns` is the batch's grid timestamp).
    pub sample: HostSample,
    /// `features[i]` holds the derived values of `sample.domains[i]`, when there are any.
    pub features: Vec<Option<Features>>,
    /// Where the samples go when the chunk is dropped.
    pool: Option<Arc<SamplePool>>,
}

impl VmChunk {
    /// A chunk whose samples return to `pool` when it is dropped.
    pub fn new(
        sample: HostSample,
        features: Vec<Option<Features>>,
        pool: Option<Arc<SamplePool>>,
    ) -> VmChunk {
        VmChunk {
            sample,
            features,
            pool,
        }
    }

    /// The derived features of VM `i`, if any.
    pub fn features_of(&self, i: usize) -> Option<&Features> {
        self.features.get(i).and_then(Option::as_ref)
    }
}

impl Drop for VmChunk {
    fn drop(&mut self) {
        if let Some(pool) = &self.pool {
            pool.put(
                std::mem::take(&mut self.sample.domains),
                std::mem::take(&mut self.features),
            );
        }
    }
}

/// What the sinks hand back once done with a chunk: its samples, for the collector to fill
/// again (their names, UUIDs and device lists keep their allocations), in the vector of their
/// chunk, and its features vector. Nothing a steady cycle hands out is allocated anew. Holds at
/// most [`SamplePool::MAX`] samples.
#[derive(Debug, Default)]
pub struct SamplePool {
    free: Mutex<Free>,
}

#[derive(Debug, Default)]
struct Free {
    samples: Vec<Vec<DomainSample>>,
    count: usize,
    features: Vec<Vec<Option<Features>>>,
}

impl SamplePool {
    /// Samples kept at most (what a slow sink still holds is not the pool's).
    pub const MAX: usize = 4096;

    /// Gives a chunk's samples and features vector back.
    pub fn put(&self, samples: Vec<DomainSample>, mut features: Vec<Option<Features>>) {
        let Ok(mut free) = self.free.lock() else {
            return;
        };
        if !samples.is_empty() && free.count + samples.len() <= Self::MAX {
            free.count += samples.len();
            free.samples.push(samples);
        }
        if features.capacity() > 0 && free.features.len() < Self::MAX / 16 {
            features.clear();
            free.features.push(features);
        }
    }

    /// Takes every free chunk of samples.
    pub fn take_all(&self) -> Vec<Vec<DomainSample>> {
        self.free
            .lock()
            .map(|mut f| {
                f.count = 0;
                std::mem::take(&mut f.samples)
            })
            .unwrap_or_default()
    }

    /// An empty features vector, recycled if one is free.
    pub fn features(&self) -> Vec<Option<Features>> {
        self.free
            .lock()
            .ok()
            .and_then(|mut f| f.features.pop())
            .unwrap_or_default()
    }
}

/// One host's `vm_host` record.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRecord {
    /// The `host` tag: the hypervisor's name, as on its VMs' lines.
    pub host: String,
    /// What libvirt said about it.
    pub stats: NodeStats,
}

/// One `vmtel_internal` record: a source's or a sink's counters at the cycle's time.
#[derive(Debug, Clone, PartialEq)]
pub struct Internal {
    /// The `host` tag: where vmtel runs.
    pub host: String,
    /// Whose counters these are.
    pub subject: Subject,
}

/// The subject of an [`Internal`] record.
#[derive(Debug, Clone, PartialEq)]
pub enum Subject {
    /// A source (tag `source` = its URI).
    Source {
        /// The libvirt URI.
        uri: String,
        /// Its counters.
        counters: SourceCounters,
    },
    /// A sink (tag `sink` = its name).
    Sink {
        /// The sink's name.
        name: String,
        /// Its counters.
        counters: SinkCounters,
        /// Spool and delivery counters of an InfluxDB output.
        delivery: Option<DeliveryCounters>,
    },
}

impl Subject {
    /// The tag that names the subject and its value: `("source", uri)` or `("sink", name)`.
    pub fn tag(&self) -> (&'static str, &str) {
        match self {
            Subject::Source { uri, .. } => ("source", uri),
            Subject::Sink { name, .. } => ("sink", name),
        }
    }
}

impl Batch {
    /// The number of records (lines of line protocol, at most) the batch holds: per VM one each
    /// of `vm_metrics` and `vm_totals`, one per device, one of `vm_features` when derived; one
    /// for the host's `vm_host`; one per internal record.
    pub fn records(&self) -> usize {
        match &self.payload {
            Payload::Vms(c) => c
                .sample
                .domains
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    2 + d.nics.len() + d.disks.len() + usize::from(c.features_of(i).is_some())
                })
                .sum(),
            Payload::Node(_) => 1,
            Payload::Internal(v) => v.len(),
        }
    }
}
