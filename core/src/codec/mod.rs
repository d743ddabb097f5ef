//! Encoding and incremental decoding of MQTT control packets (MQTT 3.1, 3.1.1 and 5.0).
//!
//! - `primitive`: the data representations of section 1.5 (`Reader` to parse, `Sink` to write or measure).
//! - `property`: MQTT 5 properties and which packet may carry which.
//! - `decode` / `encode`: one packet each way, every malformed-packet rule checked on the way in.
//! - `decoder`: the incremental framer, which enforces the maximum packet size before buffering a body.

pub(crate) mod decode;
mod decoder;
pub(crate) mod encode;
mod error;
#[cfg(any(test, feature = "testing"))]
pub mod generate;
pub(crate) mod primitive;
pub(crate) mod property;
#[cfg(any(test, feature = "testing"))]
pub mod selfcheck;

pub use decoder::{Decoder, PacketTracker};
pub use encode::{encode, encode_publish_header, encoded_len};
pub use error::{DecodeError, EncodeError};
pub use primitive::VARINT_MAX;
