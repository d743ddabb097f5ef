//! Checks on records read back from disk that a checksum cannot make: the core's (`mqtt_core::persist::sanity`),
//! shared with every other reader of records.

pub use mqtt_core::persist::sanity::check;
