//! vmtel: a telemetry agent for KVM/libvirt hypervisors.
//!
//! Data flows through one module per stage:
//!
//! * [`collect`]: one libvirt bulk stats call per host per cycle (per-domain calls only for
//!   groups a driver lacks) → [`model::HostSample`].
//! * [`derive`]: rates and utilisation from consecutive samples → [`model::Features`].
//! * [`schema`]: every measurement and field, declared once (type, unit, counter or gauge,
//!   source, chart label, Prometheus name).
//! * [`encode`]: the seed's measurements as InfluxDB line protocol.
//! * [`deliver`]: sinks behind bounded queues, off the collection path.
//! * [`store`]: the embedded history (SQLite), a sink like the others.
//! * [`serve`]: the web dashboard, its JSON API and `/metrics`, read from the store.
//! * [`daemon`]: `vmtel run`: the schedule, one worker per source, signals.
//! * [`config`]: the TOML configuration; [`logging`]: log set-up and reporting of lasting
//!   conditions; [`backoff`]: the one retry schedule (delivery, reconnects).
//! * [`cli`]: the `vmtel` command line.

pub mod backoff;
pub mod cli;
pub mod collect;
pub mod config;
pub mod daemon;
pub mod deliver;
pub mod demo;
pub mod derive;
pub mod encode;
pub mod logging;
pub mod model;
pub mod schema;
pub mod serve;
pub mod sim;
pub mod store;
