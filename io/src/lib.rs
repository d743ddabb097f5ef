//! The I/O side of mqtt-broker: configuration, logging and the mio driver around the sans-IO core.

pub mod auth;
pub mod config;
pub mod driver;
pub mod fd_limit;
pub mod http;
pub mod log;
pub mod metrics;
pub mod storage;
pub mod tls;
