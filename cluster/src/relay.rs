//! The client relay: a node that does not lead still accepts clients. It terminates the client's transport (the
//! driver does TCP, TLS and WebSockets as on a single node) and relays the MQTT bytes to the leader's broker over
//! the node-to-node link; the leader's outputs for that connection come back the same way.
//!
//! **Connection ids** are unique cluster-wide: a relayed connection is known to the leader's broker as
//! `(origin node << 48) | local id`, so two nodes' local ids never meet in one broker, and the leader's own
//! clients (high bits zero) never meet a relayed one.
//!
//! **Wire.** A relay message travels on the same links as Raft messages, told apart by its magic: magic, version,
//! cluster id, kind, connection id, sequence number, then the kind's payload. Each direction of each connection
//! numbers its messages from 0; the links may drop a message (a full queue, a broken connection), and a receiver
//! that sees a gap closes the connection instead of handing a client a stream with a hole in it.
//!
//! **Bounds.** Nothing is buffered here: a relayed input is passed to the broker as it arrives, a relayed output
//! is handed to the driver at once. What is in flight per connection is bounded by the broker's own per-connection
//! bounds (the slow-consumer policy sees the follower's `WriteBlocked`/`Writable`, relayed like any input) and by
//! the link's queue bound; beyond that, messages are dropped, the gap is seen and the connection closed.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use mqtt_core::broker::{ConnectionId, Input, ListenerId, Output};
use std::fmt;
use std::net::SocketAddr;

pub const RELAY_MAGIC: [u8; 4] = *b"MQRY";
pub const RELAY_VERSION: u8 = 1;
/// Magic, version, cluster id, kind, connection, sequence.
pub const RELAY_HEADER_LEN: usize = 4 + 1 + 8 + 1 + 8 + 8;
/// The bits of a cluster-wide connection id that hold the origin node's local id.
pub const LOCAL_BITS: u32 = 48;
const LOCAL_MASK: u64 = (1 << LOCAL_BITS) - 1;

/// The cluster-wide id of connection `local` accepted by node `origin`.
pub fn global_id(origin: u64, local: ConnectionId) -> ConnectionId {
    ConnectionId((origin << LOCAL_BITS) | (local.0 & LOCAL_MASK))
}

/// The node a cluster-wide id came from (0: the leader's own connection) and its id there.
pub fn split_id(conn: ConnectionId) -> (u64, ConnectionId) {
    (conn.0 >> LOCAL_BITS, ConnectionId(conn.0 & LOCAL_MASK))
}

/// Whether a message from a peer is a relay message (else it is a Raft message).
pub fn is_relay(data: &[u8]) -> bool {
    data.len() >= 4 && data[..4] == RELAY_MAGIC
}

/// Whether a relay message ends its connection's stream (`Closed`, `Close`, `Failover`): the one message of a stream
/// whose loss no later message would reveal as a gap, so a driver must not drop it at a full queue (see
/// `NodeInput::RelayDropped`). At most one per connection and direction, so what it adds to a queue is bounded by
/// the connections.
pub fn ends_stream(data: &[u8]) -> bool {
    const KIND_AT: usize = 4 + 1 + 8;
    is_relay(data)
        && data.get(KIND_AT).is_some_and(|kind| {
            [
                RelayKind::Closed.code(),
                RelayKind::Close.code(),
                RelayKind::Failover.code(),
            ]
            .contains(kind)
        })
}

/// What one relay message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayKind {
    /// Follower to leader: a client connected (its address, the follower's listener index).
    Opened {
        peer: SocketAddr,
        listener: usize,
    },
    /// Follower to leader: the client's TLS certificate verified this name (`Input::Identified`).
    Identified(String),
    /// Follower to leader: bytes from the client.
    Received(Bytes),
    /// Follower to leader: the client's connection closed (or the follower gave up on the relay).
    Closed,
    WriteBlocked,
    Writable,
    /// Leader to follower: bytes for the client.
    Transmit(Bytes),
    /// Leader to follower: close the client's connection once what was transmitted is written.
    Close,
    /// Leader to follower: the leader stopped serving; close the client's connection as in a failover (an MQTT 5
    /// client first gets DISCONNECT 0x8B, see `failover`).
    Failover,
}

impl RelayKind {
    fn code(&self) -> u8 {
        match self {
            RelayKind::Opened { .. } => 1,
            RelayKind::Received(_) => 2,
            RelayKind::Closed => 3,
            RelayKind::WriteBlocked => 4,
            RelayKind::Writable => 5,
            RelayKind::Transmit(_) => 6,
            RelayKind::Close => 7,
            RelayKind::Failover => 8,
            RelayKind::Identified(_) => 9,
        }
    }

    /// Whether it travels from the leader to the follower that holds the client.
    pub fn is_downstream(&self) -> bool {
        matches!(self, RelayKind::Transmit(_) | RelayKind::Close | RelayKind::Failover)
    }

    /// The leader's broker input for a message from a follower.
    pub fn as_input(&self, conn: ConnectionId) -> Option<Input<'_>> {
        Some(match self {
            RelayKind::Opened { peer, listener } => Input::Opened {
                conn,
                peer: *peer,
                listener: ListenerId(*listener),
            },
            RelayKind::Identified(identity) => Input::Identified { conn, identity },
            RelayKind::Received(data) => Input::Received { conn, data },
            RelayKind::Closed => Input::Closed { conn },
            RelayKind::WriteBlocked => Input::WriteBlocked { conn },
            RelayKind::Writable => Input::Writable { conn },
            RelayKind::Transmit(_) | RelayKind::Close | RelayKind::Failover => return None,
        })
    }

    /// The relay message for a client input on a follower (none for inputs that are not a connection's).
    pub fn from_input(input: &Input<'_>) -> Option<RelayKind> {
        Some(match input {
            Input::Opened { peer, listener, .. } => RelayKind::Opened {
                peer: *peer,
                listener: listener.0,
            },
            Input::Identified { identity, .. } => RelayKind::Identified(identity.to_string()),
            Input::Received { data, .. } => RelayKind::Received(Bytes::copy_from_slice(data)),
            Input::Closed { .. } => RelayKind::Closed,
            Input::WriteBlocked { .. } => RelayKind::WriteBlocked,
            Input::Writable { .. } => RelayKind::Writable,
            _ => return None,
        })
    }

    /// The relay message for a leader's broker output (none for events and records, which stay on the leader).
    pub fn from_output(output: Output) -> Option<(ConnectionId, RelayKind)> {
        match output {
            Output::Transmit { conn, data } => Some((conn, RelayKind::Transmit(data))),
            Output::Close { conn } => Some((conn, RelayKind::Close)),
            Output::Persist(_) | Output::Event(_) => None,
        }
    }
}

/// One relay message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayMessage {
    /// The cluster-wide connection id.
    pub conn: ConnectionId,
    /// This direction's message number on this connection, from 0.
    pub seq: u64,
    pub kind: RelayKind,
}

/// Why a relay message was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayError {
    Truncated { len: usize },
    BadMagic,
    UnknownVersion(u8),
    WrongCluster { expected: u64, got: u64 },
    UnknownKind(u8),
    Malformed(&'static str),
}

impl fmt::Display for RelayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RelayError::Truncated { len } => write!(f, "relay message of {len} bytes is shorter than its header"),
            RelayError::BadMagic => write!(f, "not a relay message (bad magic)"),
            RelayError::UnknownVersion(v) => write!(f, "unknown relay message version {v}"),
            RelayError::WrongCluster { expected, got } => {
                write!(
                    f,
                    "relay message of cluster {got:#x}, this node is of cluster {expected:#x}"
                )
            }
            RelayError::UnknownKind(k) => write!(f, "unknown relay message kind {k}"),
            RelayError::Malformed(what) => write!(f, "malformed relay message: {what}"),
        }
    }
}

impl std::error::Error for RelayError {}

pub fn encode(cluster_id: u64, message: &RelayMessage) -> Bytes {
    let payload_len = match &message.kind {
        RelayKind::Received(d) | RelayKind::Transmit(d) => d.len(),
        RelayKind::Identified(identity) => identity.len(),
        RelayKind::Opened { .. } => 64,
        _ => 0,
    };
    let mut out = BytesMut::with_capacity(RELAY_HEADER_LEN + payload_len);
    out.put_slice(&RELAY_MAGIC);
    out.put_u8(RELAY_VERSION);
    out.put_u64(cluster_id);
    out.put_u8(message.kind.code());
    out.put_u64(message.conn.0);
    out.put_u64(message.seq);
    match &message.kind {
        RelayKind::Opened { peer, listener } => {
            out.put_u32(u32::try_from(*listener).unwrap_or(u32::MAX));
            out.put_slice(peer.to_string().as_bytes());
        }
        RelayKind::Received(data) | RelayKind::Transmit(data) => out.put_slice(data),
        RelayKind::Identified(identity) => out.put_slice(identity.as_bytes()),
        _ => {}
    }
    out.freeze()
}

pub fn decode(data: &[u8], cluster_id: u64) -> Result<RelayMessage, RelayError> {
    if data.len() < RELAY_HEADER_LEN {
        return Err(RelayError::Truncated { len: data.len() });
    }
    let mut b = data;
    if b[..4] != RELAY_MAGIC {
        return Err(RelayError::BadMagic);
    }
    b.advance(4);
    let version = b.get_u8();
    if version != RELAY_VERSION {
        return Err(RelayError::UnknownVersion(version));
    }
    let got = b.get_u64();
    if got != cluster_id {
        return Err(RelayError::WrongCluster {
            expected: cluster_id,
            got,
        });
    }
    let code = b.get_u8();
    let conn = ConnectionId(b.get_u64());
    let seq = b.get_u64();
    let kind = match code {
        1 => {
            if b.len() < 4 {
                return Err(RelayError::Malformed("opened without a listener"));
            }
            let listener = b.get_u32() as usize;
            let peer = std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(RelayError::Malformed("opened with a bad peer address"))?;
            RelayKind::Opened { peer, listener }
        }
        2 => RelayKind::Received(Bytes::copy_from_slice(b)),
        3 => RelayKind::Closed,
        4 => RelayKind::WriteBlocked,
        5 => RelayKind::Writable,
        6 => RelayKind::Transmit(Bytes::copy_from_slice(b)),
        7 => RelayKind::Close,
        8 => RelayKind::Failover,
        9 => {
            let identity = std::str::from_utf8(b).map_err(|_| RelayError::Malformed("identity not UTF-8"))?;
            RelayKind::Identified(identity.to_string())
        }
        other => return Err(RelayError::UnknownKind(other)),
    };
    if !matches!(
        kind,
        RelayKind::Opened { .. } | RelayKind::Identified(_) | RelayKind::Received(_) | RelayKind::Transmit(_)
    ) && !b.is_empty()
    {
        return Err(RelayError::Malformed("trailing bytes"));
    }
    Ok(RelayMessage { conn, seq, kind })
}

/// A follower's client connection relayed to a leader.
#[derive(Debug, Clone)]
pub struct Relayed {
    /// The leader it is relayed to.
    pub leader: u64,
    /// The next sequence number to send, and to expect from the leader.
    pub next_out: u64,
    pub next_in: u64,
    /// The packet its client is sending, as far as it was relayed: the leader's broker holds it until it is whole,
    /// and this node's driver holds the client to the input budget for it (`Node::partial_input`).
    pub partial: mqtt_core::codec::PacketTracker,
}

/// A leader's broker connection whose client is held by another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Remote {
    pub origin: u64,
    pub next_out: u64,
    pub next_in: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips() {
        let kinds = [
            RelayKind::Opened {
                peer: "127.0.0.1:5000".parse().unwrap(),
                listener: 2,
            },
            RelayKind::Identified("alice".into()),
            RelayKind::Received(Bytes::from_static(b"\x10\x00")),
            RelayKind::Closed,
            RelayKind::WriteBlocked,
            RelayKind::Writable,
            RelayKind::Transmit(Bytes::from_static(b"\x20\x02\x00\x00")),
            RelayKind::Close,
            RelayKind::Failover,
        ];
        for kind in kinds {
            let message = RelayMessage {
                conn: global_id(3, ConnectionId(77)),
                seq: 9,
                kind,
            };
            let bytes = encode(42, &message);
            assert!(is_relay(&bytes));
            let ends = matches!(message.kind, RelayKind::Closed | RelayKind::Close | RelayKind::Failover);
            assert_eq!(ends_stream(&bytes), ends, "{:?}", message.kind);
            assert_eq!(decode(&bytes, 42), Ok(message));
        }
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        let good = encode(
            1,
            &RelayMessage {
                conn: ConnectionId(1),
                seq: 0,
                kind: RelayKind::Close,
            },
        );
        assert_eq!(decode(&good[..5], 1), Err(RelayError::Truncated { len: 5 }));
        assert_eq!(decode(&good, 2), Err(RelayError::WrongCluster { expected: 2, got: 1 }));
        let mut bad = good.to_vec();
        bad[13] = 99;
        assert_eq!(decode(&bad, 1), Err(RelayError::UnknownKind(99)));
        let mut trailing = good.to_vec();
        trailing.push(0);
        assert!(matches!(decode(&trailing, 1), Err(RelayError::Malformed(_))));
        let mut opened = encode(
            1,
            &RelayMessage {
                conn: ConnectionId(1),
                seq: 0,
                kind: RelayKind::Opened {
                    peer: "127.0.0.1:1".parse().unwrap(),
                    listener: 0,
                },
            },
        )
        .to_vec();
        opened.truncate(opened.len() - 2);
        opened.extend_from_slice(b"zz");
        assert!(matches!(decode(&opened, 1), Err(RelayError::Malformed(_))));
    }

    #[test]
    fn ids_split_back() {
        let id = global_id(5, ConnectionId(123));
        assert_eq!(split_id(id), (5, ConnectionId(123)));
        assert_eq!(split_id(ConnectionId(123)), (0, ConnectionId(123)));
    }
}
