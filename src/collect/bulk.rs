//! Maps the typed parameters of one bulk stats record (`virConnectGetAllDomainStats`) onto a
//! [`DomainSample`].
//!
//! Keys follow libvirt's documented names (`state.state`, `cpu.time`, `balloon.rss`,
//! `vcpu.N.delay`, `net.N.rx.bytes`, `block.N.wr.reqs`, ...). Unknown keys are ignored, negative
//! values (QEMU's `-1` for "unsupported") are treated as missing, and gaps in the `net.N` and
//! `block.N` indices (an interface with no statistics) are skipped.

mod layout;
mod names;

use self::layout::{Layout, Spares};
use super::ffi::RawParams;
use crate::model::DomainSample;

/// Bit set of libvirt stats groups, using libvirt's own `VIR_DOMAIN_STATS_*` bit values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Groups(pub u32);

impl Groups {
    /// `state`: state and reason.
    pub const STATE: Groups = Groups(virt::sys::VIR_DOMAIN_STATS_STATE);
    /// `cpu-total`: total, user and system CPU time.
    pub const CPU: Groups = Groups(virt::sys::VIR_DOMAIN_STATS_CPU_TOTAL);
    /// `balloon`: current and maximum memory and guest memory statistics.
    pub const BALLOON: Groups = Groups(virt::sys::VIR_DOMAIN_STATS_BALLOON);
    /// `vcpu`: vCPU counts and per-vCPU times.
    pub const VCPU: Groups = Groups(virt::sys::VIR_DOMAIN_STATS_VCPU);
    /// `interface`: per-NIC counters.
    pub const INTERFACE: Groups = Groups(virt::sys::VIR_DOMAIN_STATS_INTERFACE);
    /// `block`: per-disk counters.
    pub const BLOCK: Groups = Groups(virt::sys::VIR_DOMAIN_STATS_BLOCK);
    /// Every group vmtel asks for.
    pub const ALL: Groups = Groups(
        Self::STATE.0
            | Self::CPU.0
            | Self::BALLOON.0
            | Self::VCPU.0
            | Self::INTERFACE.0
            | Self::BLOCK.0,
    );
    /// No group.
    pub const NONE: Groups = Groups(0);

    /// True if every group of `other` is in `self`.
    pub fn contains(self, other: Groups) -> bool {
        self.0 & other.0 == other.0
    }

    /// Groups in `self` or `other`.
    pub fn union(self, other: Groups) -> Groups {
        Groups(self.0 | other.0)
    }

    /// Groups in `self` but not in `other`.
    pub fn minus(self, other: Groups) -> Groups {
        Groups(self.0 & !other.0)
    }

    /// libvirt's names of the groups in `self`, for messages.
    pub fn names(self) -> Vec<&'static str> {
        [
            (Self::STATE, "state"),
            (Self::CPU, "cpu-total"),
            (Self::BALLOON, "balloon"),
            (Self::VCPU, "vcpu"),
            (Self::INTERFACE, "interface"),
            (Self::BLOCK, "block"),
        ]
        .into_iter()
        .filter(|(g, _)| self.contains(*g))
        .map(|(_, n)| n)
        .collect()
    }
}

/// Most parameter layouts a [`Decoder`] keeps (VMs of one shape share one).
const MAX_LAYOUTS: usize = 64;

/// Decodes bulk-stats records into samples. It remembers the parameter layouts it has seen (see
/// [`layout`]), so a record shaped like an earlier one is decoded without parsing any name.
/// Keep one per connection; any sequence of records gives the same results as a fresh decoder.
#[derive(Debug, Default)]
pub struct Decoder {
    layouts: Vec<Layout>,
    last: usize,
    clock: u64,
    spares: Spares,
}

impl Decoder {
    /// A decoder with no layout yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Empties `sample` for reuse by another VM ([`DomainSample::recycle`]), keeping (a bounded
    /// number of) its device entries to decode the next records' devices into, so that their
    /// strings' allocations are reused.
    pub fn recycle(&mut self, sample: &mut DomainSample) {
        self.spares.nics.keep(&mut sample.nics);
        self.spares.disks.keep(&mut sample.disks);
        sample.recycle();
    }

    /// Number of layouts kept.
    pub fn layouts(&self) -> usize {
        self.layouts.len()
    }

    /// Fills `sample` from one record's parameters and returns the groups that were present.
    ///
    /// Only what the record has is written: a group it lacks leaves its fields untouched (for
    /// the per-domain fallback), and the NIC and disk lists are replaced only when their group is
    /// present.
    pub fn decode(&mut self, sample: &mut DomainSample, params: RawParams<'_>) -> Groups {
        self.clock += 1;
        let n = params.len();
        let found = if self
            .layouts
            .get(self.last)
            .is_some_and(|l| l.matches(params.clone()))
        {
            Some(self.last)
        } else {
            self.layouts
                .iter()
                .position(|l| l.len() == n && l.matches(params.clone()))
        };
        let at = match found {
            Some(at) => at,
            None => {
                let layout = Layout::build(params.clone());
                if !layout.cacheable {
                    layout.apply(sample, params, &mut self.spares);
                    return layout.groups;
                }
                if self.layouts.len() >= MAX_LAYOUTS {
                    if let Some(oldest) =
                        (0..self.layouts.len()).min_by_key(|&i| self.layouts[i].used)
                    {
                        self.layouts.swap_remove(oldest);
                    }
                }
                self.layouts.push(layout);
                self.layouts.len() - 1
            }
        };
        self.last = at;
        let Some(layout) = self.layouts.get_mut(at) else {
            return Groups::NONE;
        };
        layout.used = self.clock;
        layout.apply(sample, params, &mut self.spares);
        layout.groups
    }
}

/// Decodes one record with a fresh [`Decoder`] (no layout kept).
pub fn apply(sample: &mut DomainSample, params: RawParams<'_>) -> Groups {
    Decoder::new().decode(sample, params)
}

#[cfg(test)]
mod tests;
