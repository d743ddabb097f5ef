//! The broker core fed an arbitrary sequence of events: connections opening and closing, raw bytes, valid packets
//! of every kind (so the fuzzer gets past CONNECT), time passing, slow readers. It must never panic, never emit
//! output for a connection it does not know or has closed, and only ever send decodable bytes. One listener takes
//! its clients' names from their transport (`Config::identity_as_username`), and the driver's verified names
//! (`Input::Identified`) arrive for any connection: before or after its CONNECT, twice, after it closed, or for one
//! never opened.
#![no_main]

use arbitrary::Arbitrary;
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mqtt_core::broker::{
    AuthDecision, Authenticator, Broker, ClientIdentity, Config, ConnectInfo, ConnectionId, Input, ListenerId, Output,
};
use mqtt_core::codec::{encode, generate, Decoder};
use mqtt_core::packet::{Packet, ProtocolVersion};
use mqtt_core::time::Time;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::net::SocketAddr;

#[derive(Arbitrary, Debug)]
enum Op {
    /// On the listener that takes names from the transport, or the plain one.
    Open {
        identity_listener: bool,
    },
    /// The transport verified `identity`: for an open connection (`conn` picks one), or, with `stale`, for the
    /// connection id `conn` itself, which may be closed or never opened.
    Identified {
        conn: u8,
        stale: bool,
        identity: String,
    },
    Close {
        conn: u8,
    },
    Connect {
        conn: u8,
        v5: bool,
        client: u8,
    },
    /// A valid packet, delivered in two reads split at `split` (modulo its length; 0: whole).
    Packet {
        conn: u8,
        seed: u64,
        split: u16,
    },
    Raw {
        conn: u8,
        bytes: Vec<u8>,
    },
    Advance {
        ms: u32,
    },
    Blocked {
        conn: u8,
    },
    Writable {
        conn: u8,
    },
    Shutdown,
}

struct Peer {
    version: ProtocolVersion,
    decoder: Decoder,
    /// Decodes what the peer sent, to learn which protocol version the broker will answer in.
    shadow: Decoder,
    /// The first CONNECT fixed the version; later ones (protocol errors) do not change it.
    locked: bool,
    closed: bool,
}

fuzz_target!(|ops: Vec<Op>| {
    let config = Config {
        max_packet_size: 4096,
        receive_maximum: 4,
        max_queued_messages: 16,
        max_outbuf_bytes: 2048,
        // Low, so that fuzzed payloads go out both copied and shared.
        shared_payload_min: 64,
        // Every quota on, small enough to be hit by arbitrary input.
        max_connections_per_address: 3,
        max_connects_per_second_per_address: 20,
        max_publish_rate: 20,
        max_publish_bytes_rate: 4096,
        max_subscriptions_per_client: 4,
        max_topic_levels: 4,
        max_topic_length: 32,
        max_queued_bytes: 1024,
        max_queued_bytes_total: 4096,
        identity_as_username: vec![IDENTITY_LISTENER],
        ..Config::default()
    };
    // Access rules on, so authorization of PUBLISH, SUBSCRIBE and each delivery is fuzzed too.
    let mut broker = Broker::with_authenticator(config, 7, Box::new(FuzzAcl));
    let mut now = Time::ZERO;
    let mut peers: BTreeMap<ConnectionId, Peer> = BTreeMap::new();
    let mut next = 0u64;
    let pick = |peers: &BTreeMap<ConnectionId, Peer>, n: u8| -> Option<ConnectionId> {
        if peers.is_empty() {
            return None;
        }
        peers.keys().nth(usize::from(n) % peers.len()).copied()
    };
    for op in ops.into_iter().take(200) {
        let mut bytes = BytesMut::new();
        let identified: String;
        let input = match op {
            Op::Open { identity_listener } => {
                next += 1;
                let conn = ConnectionId(next);
                let version = ProtocolVersion::V5;
                peers.insert(
                    conn,
                    Peer {
                        version,
                        decoder: Decoder::new(Some(version), usize::MAX),
                        shadow: Decoder::new(None, 4096),
                        locked: false,
                        closed: false,
                    },
                );
                // A few addresses, so the per-address quotas both refuse and admit.
                let host = (conn.0 % 4) as u8 + 1;
                Input::Opened {
                    conn,
                    peer: SocketAddr::from(([127, 0, 0, host], 1)),
                    listener: if identity_listener {
                        IDENTITY_LISTENER
                    } else {
                        ListenerId(0)
                    },
                }
            }
            Op::Identified { conn, stale, identity } => {
                let conn = if stale {
                    Some(ConnectionId(u64::from(conn)))
                } else {
                    pick(&peers, conn)
                };
                let Some(conn) = conn else { continue };
                // A certificate's Common Name is short; a long one would only slow the fuzzer down.
                let end = identity.char_indices().nth(16).map_or(identity.len(), |(at, _)| at);
                identified = identity[..end].to_string();
                Input::Identified {
                    conn,
                    identity: &identified,
                }
            }
            Op::Close { conn } => match pick(&peers, conn) {
                Some(conn) => Input::Closed { conn },
                None => continue,
            },
            Op::Connect { conn, v5, client } => {
                let Some(conn) = pick(&peers, conn) else { continue };
                let version = if v5 {
                    ProtocolVersion::V5
                } else {
                    ProtocolVersion::V3_1_1
                };
                let connect = mqtt_core::harness::connect_packet(version, &format!("c{}", client % 4));
                let _ = encode(&Packet::Connect(Box::new(connect)), version, &mut bytes);
                Input::Received { conn, data: &bytes }
            }
            Op::Packet { conn, seed, split } => {
                let Some(conn) = pick(&peers, conn) else { continue };
                let version = peers.get(&conn).map_or(ProtocolVersion::V5, |p| p.version);
                let packet = generate::packet(&mut ChaCha8Rng::seed_from_u64(seed), version);
                let _ = encode(&packet, version, &mut bytes);
                // TCP delivers in any chunking: the first part now, the rest as this op's input.
                let at = usize::from(split) % bytes.len().max(1);
                if at > 0 {
                    let first = bytes.split_to(at);
                    apply(&mut broker, now, &mut peers, Input::Received { conn, data: &first });
                    if !peers.contains_key(&conn) {
                        continue;
                    }
                }
                Input::Received { conn, data: &bytes }
            }
            Op::Raw { conn, bytes: raw } => {
                let Some(conn) = pick(&peers, conn) else { continue };
                bytes.extend_from_slice(&raw);
                Input::Received { conn, data: &bytes }
            }
            Op::Advance { ms } => {
                now = now + std::time::Duration::from_millis(u64::from(ms % 200_000));
                Input::Tick
            }
            Op::Blocked { conn } => match pick(&peers, conn) {
                Some(conn) => Input::WriteBlocked { conn },
                None => continue,
            },
            Op::Writable { conn } => match pick(&peers, conn) {
                Some(conn) => Input::Writable { conn },
                None => continue,
            },
            Op::Shutdown => Input::Shutdown,
        };
        apply(&mut broker, now, &mut peers, input);
    }
});

/// Feeds one input, then drains and checks every output: no output for a connection the driver does not know or
/// that the broker closed, and every Transmit decodes with a client-side decoder.
fn apply(broker: &mut Broker, now: Time, peers: &mut BTreeMap<ConnectionId, Peer>, input: Input<'_>) {
    if let Input::Received { conn, data } = &input {
        if let Some(peer) = peers.get_mut(conn).filter(|p| !p.locked) {
            peer.shadow.feed(data);
            let unsupported = loop {
                match peer.shadow.next_packet() {
                    Ok(Some(_)) => continue,
                    Ok(None) => break false,
                    Err(e) => break matches!(e, mqtt_core::codec::DecodeError::UnsupportedProtocolVersion(_)),
                }
            };
            // An unknown protocol level is answered in 3.1.1 form [MQTT-3.1.2-2].
            let answer = if unsupported {
                Some(ProtocolVersion::V3_1_1)
            } else {
                peer.shadow.attempted_version()
            };
            if let Some(version) = answer {
                peer.locked = true;
                peer.version = version;
                peer.decoder.set_version(version);
            }
        }
    }
    let closed_by_driver = match &input {
        Input::Closed { conn } => Some(*conn),
        _ => None,
    };
    broker.handle_input(now, input);
    if let Some(conn) = closed_by_driver {
        peers.remove(&conn);
    }
    while let Some(output) = broker.poll_output() {
        match output {
            Output::Transmit { conn, data } => {
                let peer = peers
                    .get_mut(&conn)
                    .expect("transmit for a connection the driver opened");
                assert!(!peer.closed, "transmit after close");
                peer.decoder.feed(&data);
                while let Some(_packet) = peer.decoder.next_packet().expect("the broker sends valid packets") {}
            }
            Output::Close { conn } => {
                let peer = peers.get_mut(&conn).expect("close for a connection the driver opened");
                peer.closed = true;
            }
            Output::Event(_) | Output::Persist(_) => {}
        }
    }
    if let Err(mismatch) = broker.check_queue_accounting() {
        panic!("queued-bytes accounting: {mismatch}");
    }
    // Closed connections are gone for good; the driver would never mention them again.
    peers.retain(|_, peer| !peer.closed);
}

/// The listener whose clients are who their transport says (`Config::identity_as_username`).
const IDENTITY_LISTENER: ListenerId = ListenerId(1);

/// Fixed access rules: nobody publishes under `d`, subscribes to a filter starting with `c`, or reads under `b`;
/// user name `bad` (from the CONNECT or the transport) is refused at CONNECT.
struct FuzzAcl;

impl Authenticator for FuzzAcl {
    fn authenticate(&mut self, info: &ConnectInfo<'_>) -> AuthDecision {
        match (info.auth_method, info.username) {
            (Some(_), _) => AuthDecision::Deny(mqtt_core::packet::ReasonCode::BAD_AUTHENTICATION_METHOD),
            (None, Some("bad")) => AuthDecision::Deny(mqtt_core::packet::ReasonCode::BAD_USER_NAME_OR_PASSWORD),
            (None, _) => AuthDecision::Allow { data: None },
        }
    }

    fn authorize_publish(&self, _client: ClientIdentity<'_>, topic: &str) -> bool {
        !topic.starts_with('d')
    }

    fn authorize_subscribe(&self, _client: ClientIdentity<'_>, filter: &str) -> bool {
        !filter.starts_with('c')
    }

    fn authorize_read(&self, _client: ClientIdentity<'_>, topic: &str) -> bool {
        !topic.starts_with('b')
    }
}
