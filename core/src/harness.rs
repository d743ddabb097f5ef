//! An in-memory harness: one broker and any number of clients, no sockets, a virtual clock. Used by the core's unit
//! tests, by the simulator and by the fuzz targets (in the manner of quinn-proto's `Pair`).

use crate::broker::{Broker, Config, ConnectionId, Event, Input, ListenerId, Output};
use crate::codec::{self, DecodeError, Decoder};
use crate::packet::{Connect, Packet, Properties, ProtocolVersion};
use crate::persist::{Image, Record};
use crate::time::Time;
use bytes::BytesMut;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

/// The client side of one connection: what the broker sent it, decoded.
pub struct ClientEnd {
    pub version: ProtocolVersion,
    decoder: Decoder,
    pub inbox: VecDeque<Packet>,
    /// The broker asked the driver to close this connection.
    pub closed: bool,
    /// The broker sent bytes the client could not decode (a broker bug).
    pub decode_error: Option<DecodeError>,
    pub bytes_received: usize,
}

pub struct Harness {
    pub broker: Broker,
    pub now: Time,
    clients: BTreeMap<ConnectionId, ClientEnd>,
    pub events: Vec<Event>,
    /// Every persistence record the broker emitted, in order: the harness's "disk", always in sync.
    pub records: Vec<Record>,
    /// Every `Transmit` as handed out, when set to `Some` (tests of how output is chunked).
    pub transmits: Option<Vec<(ConnectionId, bytes::Bytes)>>,
    next_conn: u64,
}

impl Harness {
    pub fn new(config: Config) -> Harness {
        Harness::with_broker(Broker::new(config, 0))
    }

    pub fn with_broker(broker: Broker) -> Harness {
        Harness {
            broker,
            now: Time::ZERO,
            clients: BTreeMap::new(),
            events: Vec::new(),
            records: Vec::new(),
            transmits: None,
            next_conn: 1,
        }
    }

    /// A snapshot replaces the records while the broker runs on, as storage does when the log has grown.
    /// Returns the state the records hold.
    pub fn compact_records(&mut self) -> Image {
        let mut image = Image::default();
        for record in self.records.drain(..) {
            image.apply(record);
        }
        image.collect_garbage();
        self.records = image.to_records().collect();
        image
    }

    /// The broker process dies and starts again from its records: every connection is gone, and the new broker
    /// is rebuilt from the replayed records. The records are then compacted to what the new broker holds, as
    /// a restart writes a fresh snapshot.
    pub fn crash_and_restart(&mut self) {
        let image = self.compact_records();
        let mut broker = Broker::new(self.broker.config().clone(), 1);
        broker.restore(self.now, image);
        self.broker = broker;
        for client in self.clients.values_mut() {
            client.closed = true;
        }
    }

    /// Opens a transport connection (no CONNECT yet) from 127.0.0.1 on listener 0.
    pub fn open(&mut self) -> ConnectionId {
        let peer = SocketAddr::from(([127, 0, 0, 1], 40000 + (self.next_conn % 20000) as u16));
        self.open_from(peer, ListenerId(0))
    }

    /// Opens a transport connection from `peer` on `listener`.
    pub fn open_from(&mut self, peer: SocketAddr, listener: ListenerId) -> ConnectionId {
        let conn = ConnectionId(self.next_conn);
        self.next_conn += 1;
        self.clients.insert(
            conn,
            ClientEnd {
                version: ProtocolVersion::V5,
                decoder: Decoder::new(Some(ProtocolVersion::V5), usize::MAX),
                inbox: VecDeque::new(),
                closed: false,
                decode_error: None,
                bytes_received: 0,
            },
        );
        self.input(Input::Opened { conn, peer, listener });
        conn
    }

    /// The transport verified the client's certificate, which names `identity` (as the driver reports it after a
    /// TLS handshake, before any bytes).
    pub fn identify(&mut self, conn: ConnectionId, identity: &str) {
        self.input(Input::Identified { conn, identity });
    }

    /// Opens a connection and sends CONNECT; returns the connection and whatever the broker answered first.
    pub fn connect(&mut self, connect: Connect) -> (ConnectionId, Option<Packet>) {
        let conn = self.open();
        self.send(conn, Packet::Connect(Box::new(connect)));
        let answer = self.recv(conn);
        (conn, answer)
    }

    /// Encodes `packet` as the client would (CONNECT fixes the client's version) and feeds it to the broker.
    pub fn send(&mut self, conn: ConnectionId, packet: Packet) {
        let version = match (&packet, self.clients.get_mut(&conn)) {
            (Packet::Connect(connect), Some(client)) => {
                client.version = connect.protocol;
                client.decoder.set_version(connect.protocol);
                connect.protocol
            }
            (_, Some(client)) => client.version,
            (_, None) => ProtocolVersion::V5,
        };
        let mut bytes = BytesMut::new();
        codec::encode(&packet, version, &mut bytes).expect("harness packets are encodable");
        self.send_bytes(conn, &bytes);
    }

    pub fn send_bytes(&mut self, conn: ConnectionId, data: &[u8]) {
        self.input(Input::Received { conn, data });
    }

    /// The client vanishes without DISCONNECT.
    pub fn drop_connection(&mut self, conn: ConnectionId) {
        if let Some(client) = self.clients.get_mut(&conn) {
            client.closed = true;
        }
        self.input(Input::Closed { conn });
    }

    pub fn input(&mut self, input: Input<'_>) {
        self.broker.handle_input(self.now, input);
        self.drain();
    }

    /// Moves the clock forward by `by`, firing every timer due on the way, in order.
    pub fn advance(&mut self, by: Duration) {
        let target = self.now + by;
        while let Some(deadline) = self.broker.poll_timeout() {
            if deadline > target {
                break;
            }
            self.now = self.now.max(deadline);
            self.input(Input::Tick);
        }
        self.now = target;
        self.input(Input::Tick);
    }

    fn drain(&mut self) {
        while let Some(output) = self.broker.poll_output() {
            match output {
                Output::Transmit { conn, data } => {
                    if let Some(transmits) = &mut self.transmits {
                        transmits.push((conn, data.clone()));
                    }
                    if let Some(client) = self.clients.get_mut(&conn) {
                        client.bytes_received += data.len();
                        client.decoder.feed(&data);
                        loop {
                            match client.decoder.next_packet() {
                                Ok(Some(packet)) => client.inbox.push_back(packet),
                                Ok(None) => break,
                                Err(error) => {
                                    client.decode_error = Some(error);
                                    break;
                                }
                            }
                        }
                    }
                }
                Output::Close { conn } => {
                    if let Some(client) = self.clients.get_mut(&conn) {
                        client.closed = true;
                    }
                }
                Output::Persist(record) => self.records.push(record),
                Output::Event(event) => self.events.push(event),
            }
        }
    }

    /// The next packet the broker sent to this client.
    pub fn recv(&mut self, conn: ConnectionId) -> Option<Packet> {
        self.clients.get_mut(&conn).and_then(|c| c.inbox.pop_front())
    }

    /// Everything the broker sent to this client since the last look.
    pub fn recv_all(&mut self, conn: ConnectionId) -> Vec<Packet> {
        self.clients
            .get_mut(&conn)
            .map(|c| c.inbox.drain(..).collect())
            .unwrap_or_default()
    }

    pub fn is_closed(&self, conn: ConnectionId) -> bool {
        self.clients.get(&conn).is_some_and(|c| c.closed)
    }

    pub fn client(&self, conn: ConnectionId) -> Option<&ClientEnd> {
        self.clients.get(&conn)
    }
}

/// A CONNECT with the given version and client id, Clean Start set, keep alive 60 s, no will.
pub fn connect_packet(protocol: ProtocolVersion, client_id: &str) -> Connect {
    Connect {
        protocol,
        clean_start: true,
        keep_alive: 60,
        properties: Properties::default(),
        client_id: client_id.to_string(),
        will: None,
        username: None,
        password: None,
    }
}
