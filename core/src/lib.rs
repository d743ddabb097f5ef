//! mqtt-core: the sans-IO heart of mqtt-broker.
//!
//! - [`packet`]: MQTT control packets as plain data.
//! - [`codec`]: encoding and incremental decoding of those packets for MQTT 3.1, 3.1.1 and 5.0.
//! - [`topic`]: topic name / filter validation, the subscription tree and the retained-message store.
//! - [`broker`]: the deterministic broker state machine. It never touches a socket, a clock, a thread or a random
//!   source: time and randomness come in as inputs, bytes and decisions go out as outputs.

pub mod bridge;
pub mod broker;
pub mod codec;
#[cfg(any(test, feature = "testing"))]
pub mod harness;
pub mod hash;
pub mod packet;
pub mod persist;
pub mod time;
pub mod topic;
