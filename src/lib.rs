//! vmtel: a telemetry agent for KVM/libvirt hypervisors.
//!
//! Data flows through one module per stage:
//!
//! * [`collect`]: one libvirt bulk stats call per host per cycle (per-domain calls only for
//!   groups a driver lacks) → [`model::HostSample`].
//! * [`derive`]: rates and utilisation from consecutive samples → [`model::Features`].
//! * [`encode`]: the seed's measurements as InfluxDB line protocol.
//! * [`config`]: the TOML configuration.
//! * [`cli`]: the `vmtel` command line.

pub mod cli;
pub mod collect;
pub mod config;
pub mod demo;
pub mod derive;
pub mod encode;
pub mod model;
