//! The I/O side of mqtt-broker: configuration, logging and the mio driver around the sans-IO core.

pub mod auth;
pub mod cluster;
pub mod config;
pub mod driver;
pub mod fd_limit;
pub mod log;
pub mod storage;
pub mod tls;
