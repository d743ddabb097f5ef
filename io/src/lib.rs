//! The I/O side of mqtt-broker: configuration, logging and the mio driver around the sans-IO core.

pub mod auth;
pub mod bridge;
pub mod cluster;
pub mod config;
pub mod driver;
pub mod fd_limit;
pub mod http;
pub mod log;
pub mod metrics;
#[cfg(test)]
pub(crate) mod test_ports;
/// Durable files for the core's records (the `mqtt-storage` crate), under the name the driver has always used.
pub use mqtt_storage as storage;
pub mod tls;
