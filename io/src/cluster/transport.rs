//! Node-to-node links: plain TCP on the driver's mio loop.
//!
//! Each node dials every other node and sends only on the connection it dialled; it receives on the connections it
//! accepted. Two one-way connections per pair need no tie-breaking when two nodes dial each other at once, and a
//! node that restarts simply dials again.
//!
//! On the wire, every frame is `[u32 big-endian length][body]`, the length bounded by the largest message allowed.
//! The first frame a dialler sends is its hello: magic, version, its node id and the cluster id. An acceptor drops
//! (and logs) a connection whose hello names another cluster, an unknown node, or is not a hello at all; after the
//! hello every frame is one Raft message, handed up whole with the sender's id. A frame over the bound drops the
//! connection before its body is read. A dialler whose connection fails retries with exponential back-off; what it
//! queues meanwhile is bounded (messages beyond the bound are dropped and counted; Raft resends what matters).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const HELLO_MAGIC: &[u8; 4] = b"MQCN";
const HELLO_VERSION: u8 = 1;
/// Magic, version, node id, cluster id length, cluster id.
const MAX_HELLO: usize = 4 + 1 + 8 + 1 + crate::config::MAX_CLUSTER_ID_LEN;
const LEN_PREFIX: usize = 4;
/// Back-off between connection attempts to a peer: doubles from the first to the last.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// An accepted connection must say hello within this.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// Messages queued for one peer beyond this many, or this many bytes, are dropped.
pub const MAX_QUEUED_MESSAGES: usize = 4096;
pub const MAX_QUEUED_BYTES: usize = 256 * 1024 * 1024;
/// Messages that end a relayed connection's stream (see [`PeerTransport::send_notice`]) may go this many beyond
/// `MAX_QUEUED_MESSAGES`: one per relayed connection at most, so this covers far more than a node holds at once.
pub const NOTICE_RESERVE: usize = 65_536;
/// Accepted connections held at once (legitimate peers need one each, plus ones being replaced).
const MAX_INBOUND: usize = 64;
const READ_CHUNK: usize = 64 * 1024;
/// What one readiness turn reads from an accepted connection before the node handles it: the frames read are
/// handed up and consumed in the same turn, so this (plus one frame being assembled) bounds what a fast sender
/// makes a node hold at once. A connection left readable is read again in the next turn ([`PeerTransport::read_more`]).
const READ_PER_TURN: usize = 1024 * 1024;

/// What the links report to the node.
#[derive(Debug, PartialEq, Eq)]
pub enum PeerEvent {
    /// A whole message from node `from`.
    Message { from: u64, data: Bytes },
    /// A connection to `peer` failed or broke.
    Unreachable { peer: u64 },
    /// `mqtt-broker cluster status` asks for this node's status on accepted connection `token`: answer it with
    /// [`PeerTransport::answer_status`].
    StatusRequest { token: usize },
    /// `mqtt-broker cluster add-node` / `remove-node` asks this node to propose a membership change on accepted
    /// connection `token`: answer it with [`PeerTransport::answer_status`].
    MemberRequest {
        token: usize,
        change: mqtt_cluster::MemberChange,
    },
}

/// How the links are set up.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    pub node_id: u64,
    pub cluster_id: String,
    /// Every other node and where it listens.
    pub peers: Vec<(u64, SocketAddr)>,
    pub listen: SocketAddr,
    /// Largest message body accepted or sent.
    pub max_message: usize,
    /// Tokens from here up belong to the links (the driver keeps its own elsewhere).
    pub token_base: usize,
}

/// One outgoing link.
struct Link {
    peer: u64,
    /// Its mio token (stable while the link exists; links come and go with membership changes).
    token: usize,
    address: SocketAddr,
    stream: Option<TcpStream>,
    /// Set once the connect completed (first writable event without a socket error).
    connected: bool,
    /// Framed messages waiting, the first one possibly partly written.
    queue: VecDeque<Bytes>,
    queued_bytes: usize,
    written: usize,
    retry_at: Option<Instant>,
    backoff: Duration,
    dropped: u64,
    /// Whether the current outage was reported already (one `Unreachable` per outage, not per attempt).
    reported: bool,
}

/// One accepted connection.
struct Inbound {
    stream: TcpStream,
    peer_addr: SocketAddr,
    /// The sender, once its hello arrived.
    from: Option<u64>,
    buf: BytesMut,
    hello_deadline: Instant,
}

/// Every link of one node.
pub struct PeerTransport {
    config: TransportConfig,
    listener: TcpListener,
    local: SocketAddr,
    links: BTreeMap<u64, Link>,
    /// By token.
    inbound: HashMap<usize, Inbound>,
    next_inbound: usize,
    hello: Bytes,
    read_buf: Vec<u8>,
    /// Accepted connections whose last turn stopped at `READ_PER_TURN` with more to read: edge-triggered readiness
    /// will not report them again, so they are read at the next turn.
    unfinished: Vec<usize>,
}

impl PeerTransport {
    /// Binds the peer listener and starts dialling every peer.
    pub fn bind(registry: &Registry, config: TransportConfig, now: Instant) -> io::Result<PeerTransport> {
        let mut listener = TcpListener::bind(config.listen)?;
        let local = listener.local_addr()?;
        registry.register(&mut listener, Token(config.token_base), Interest::READABLE)?;
        let links = config
            .peers
            .iter()
            .enumerate()
            .map(|(i, &(peer, address))| (peer, Link::new(peer, config.token_base + 1 + i, address, now)))
            .collect();
        let hello = encode_hello(config.node_id, &config.cluster_id);
        let mut transport = PeerTransport {
            next_inbound: config.token_base + 1 + config.peers.len(),
            config,
            listener,
            local,
            links,
            inbound: HashMap::new(),
            hello,
            read_buf: vec![0; READ_CHUNK],
            unfinished: Vec::new(),
        };
        // Dialling fails only asynchronously here (the events come with the connection's readiness).
        let mut events = Vec::new();
        transport.on_timers(registry, now, &mut events);
        Ok(transport)
    }

    /// The bound peer listener address (port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Whether `token` is one of the links'.
    pub fn owns(&self, token: Token) -> bool {
        token.0 >= self.config.token_base && token.0 < self.config.token_base + (1 << 32)
    }

    /// Starts dialling a member added at run time (a configuration change); a known one whose address changed is
    /// dialled at the new one.
    pub fn add_peer(&mut self, registry: &Registry, peer: u64, address: SocketAddr, now: Instant) {
        if peer == self.config.node_id || self.links.get(&peer).is_some_and(|l| l.address == address) {
            return;
        }
        self.remove_peer(registry, peer);
        let token = self.next_inbound;
        self.next_inbound += 1;
        self.links.insert(peer, Link::new(peer, token, address, now));
        let mut events = Vec::new();
        self.on_timers(registry, now, &mut events);
    }

    /// Forgets a member removed at run time: its link is closed and its accepted connections dropped.
    pub fn remove_peer(&mut self, registry: &Registry, peer: u64) {
        if let Some(mut link) = self.links.remove(&peer) {
            if let Some(mut stream) = link.stream.take() {
                let _ = registry.deregister(&mut stream);
            }
        }
        self.drop_peer(registry, peer);
    }

    /// Every member this node has a link to, with its address.
    pub fn peer_addresses(&self) -> Vec<(u64, SocketAddr)> {
        self.links.values().map(|l| (l.peer, l.address)).collect()
    }

    /// Queues `message` for `to`; false if it was dropped (unknown peer, a full queue, or larger than the bound).
    /// Nothing is written until [`PeerTransport::flush`]: the messages of one loop turn leave in one write per link.
    pub fn send(&mut self, to: u64, message: &[u8]) -> bool {
        let max = self.config.max_message;
        let Some(link) = self.links.get_mut(&to) else {
            log::warn!("cluster: no link to node {to}; message dropped");
            return false;
        };
        if message.len() > max {
            log::error!(
                "cluster: a {}-byte message for node {to} exceeds the {max}-byte bound; dropped",
                message.len()
            );
            return false;
        }
        let framed_len = LEN_PREFIX + message.len();
        let full = link.queue.len() >= MAX_QUEUED_MESSAGES
            || (!link.queue.is_empty() && link.queued_bytes + framed_len > MAX_QUEUED_BYTES);
        if full {
            link.dropped += 1;
            if link.dropped.is_power_of_two() {
                log::warn!(
                    "cluster: queue to node {to} full; {} message(s) dropped so far",
                    link.dropped
                );
            }
            return false;
        }
        let mut framed = BytesMut::with_capacity(framed_len);
        framed.put_u32(message.len() as u32);
        framed.put_slice(message);
        link.queue.push_back(framed.freeze());
        link.queued_bytes += framed_len;
        true
    }

    /// Queues a message that ends a relayed connection's stream even when the queue is full (up to
    /// `NOTICE_RESERVE` more): dropped, nothing after it would show the other side a gap, and its client would
    /// wait on a connection no one serves. False only if even the reserve is full (logged as an error).
    pub fn send_notice(&mut self, to: u64, message: &[u8]) -> bool {
        let Some(link) = self.links.get_mut(&to) else {
            return false;
        };
        if link.queue.len() >= MAX_QUEUED_MESSAGES + NOTICE_RESERVE || message.len() > self.config.max_message {
            link.dropped += 1;
            log::error!(
                "cluster: queue to node {to} full beyond its reserve; a relayed connection's close was dropped"
            );
            return false;
        }
        let mut framed = BytesMut::with_capacity(LEN_PREFIX + message.len());
        framed.put_u32(message.len() as u32);
        framed.put_slice(message);
        link.queued_bytes += framed.len();
        link.queue.push_back(framed.freeze());
        true
    }

    /// Writes what every connected link has queued, as far as the sockets take it.
    pub fn flush(&mut self, registry: &Registry, now: Instant, events: &mut Vec<PeerEvent>) {
        for link in self.links.values_mut().filter(|l| l.connected && !l.queue.is_empty()) {
            flush_link(link, registry, now, events);
        }
    }

    /// Handles a readiness event on one of the links' tokens.
    pub fn handle_event(
        &mut self,
        registry: &Registry,
        token: Token,
        readable: bool,
        writable: bool,
        now: Instant,
        events: &mut Vec<PeerEvent>,
    ) {
        if token.0 == self.config.token_base {
            self.accept(registry, now, events);
            return;
        }
        if let Some(link) = self.links.values_mut().find(|l| l.token == token.0) {
            on_link_event(link, &self.hello, registry, readable, writable, now, events);
            return;
        }
        if readable {
            self.read_inbound(registry, token.0, events);
        }
    }

    /// Retries connections whose back-off ended and drops inbound connections that never said hello.
    pub fn on_timers(&mut self, registry: &Registry, now: Instant, events: &mut Vec<PeerEvent>) {
        for link in self.links.values_mut() {
            if link.retry_at.is_some_and(|at| at <= now) {
                link.retry_at = None;
                let token = Token(link.token);
                dial(link, registry, token, now, events);
            }
        }
        let late: Vec<usize> = self
            .inbound
            .iter()
            .filter(|(_, c)| c.from.is_none() && c.hello_deadline <= now)
            .map(|(t, _)| *t)
            .collect();
        for token in late {
            if let Some(conn) = self.inbound.get(&token) {
                log::warn!("cluster: {} sent no hello in time; dropped", conn.peer_addr);
            }
            self.drop_inbound(registry, token);
        }
    }

    /// When [`PeerTransport::on_timers`] next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let retry = self.links.values().filter_map(|l| l.retry_at);
        let hello = self
            .inbound
            .values()
            .filter(|c| c.from.is_none())
            .map(|c| c.hello_deadline);
        retry.chain(hello).min()
    }

    /// Whether the link to `peer` is connected (for tests and status).
    pub fn is_connected(&self, peer: u64) -> bool {
        self.links.get(&peer).is_some_and(|l| l.connected)
    }

    /// Messages to `peer` dropped because its queue was full.
    pub fn dropped(&self, peer: u64) -> u64 {
        self.links.get(&peer).map_or(0, |l| l.dropped)
    }

    /// Drops the accepted connection(s) of node `from` (it sent something unacceptable); it will dial again.
    pub fn drop_peer(&mut self, registry: &Registry, from: u64) {
        let tokens: Vec<usize> = self
            .inbound
            .iter()
            .filter(|(_, c)| c.from == Some(from))
            .map(|(t, _)| *t)
            .collect();
        for token in tokens {
            self.drop_inbound(registry, token);
        }
    }

    fn accept(&mut self, registry: &Registry, now: Instant, events: &mut Vec<PeerEvent>) {
        loop {
            let (mut stream, peer_addr) = match self.listener.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    log::warn!("cluster: accept failed: {e}");
                    return;
                }
            };
            if self.inbound.len() >= MAX_INBOUND {
                log::warn!("cluster: {peer_addr} refused: {MAX_INBOUND} node connections open already");
                continue;
            }
            let token = self.next_inbound;
            self.next_inbound += 1;
            if let Err(e) = registry.register(&mut stream, Token(token), Interest::READABLE) {
                log::warn!("cluster: cannot watch {peer_addr}: {e}");
                continue;
            }
            let _ = stream.set_nodelay(true);
            self.inbound.insert(
                token,
                Inbound {
                    stream,
                    peer_addr,
                    from: None,
                    buf: BytesMut::new(),
                    hello_deadline: now + HELLO_TIMEOUT,
                },
            );
            // Edge-triggered: bytes that arrived before registration are reported by no later event.
            self.read_inbound(registry, token, events);
        }
    }

    /// Whether an accepted connection has more to read than its last turn took.
    pub fn has_unfinished_reads(&self) -> bool {
        !self.unfinished.is_empty()
    }

    /// Reads on from the accepted connections whose last turn stopped at its bound.
    pub fn read_more(&mut self, registry: &Registry, events: &mut Vec<PeerEvent>) {
        for token in std::mem::take(&mut self.unfinished) {
            self.read_inbound(registry, token, events);
        }
    }

    fn read_inbound(&mut self, registry: &Registry, token: usize, events: &mut Vec<PeerEvent>) {
        let result = match self.inbound.get_mut(&token) {
            Some(conn) => read_frames(conn, &mut self.read_buf, &self.config, &self.links, events),
            None => return,
        };
        if let Ok(Turn::More) = result {
            if !self.unfinished.contains(&token) {
                self.unfinished.push(token);
            }
        }
        if let Err(reason) = result {
            match reason {
                Drop::Closed => {
                    if let Some(conn) = self.inbound.get(&token) {
                        log::debug!("cluster: {} (node {:?}) closed its link", conn.peer_addr, conn.from);
                    }
                }
                Drop::Refused(why) => {
                    if let Some(conn) = self.inbound.get(&token) {
                        log::error!("cluster: connection from {} dropped: {why}", conn.peer_addr);
                    }
                }
                Drop::Status => {
                    events.push(PeerEvent::StatusRequest { token });
                    return;
                }
                Drop::Member(change) => {
                    events.push(PeerEvent::MemberRequest { token, change });
                    return;
                }
            }
            self.drop_inbound(registry, token);
            return;
        }
        // A node that dialled again (it restarted) replaces its older connection.
        let Some(from) = self.inbound.get(&token).and_then(|c| c.from) else {
            return;
        };
        let older: Vec<usize> = self
            .inbound
            .iter()
            .filter(|(t, c)| **t != token && c.from == Some(from))
            .map(|(t, _)| *t)
            .collect();
        for t in older {
            self.drop_inbound(registry, t);
        }
    }

    /// Writes a status answer on accepted connection `token` and drops the connection. The answer is a few hundred
    /// bytes on a fresh socket: it fits the socket's buffer, so one non-blocking write takes it (a client too slow
    /// for that gets nothing).
    pub fn answer_status(&mut self, registry: &Registry, token: usize, answer: &[u8]) {
        if let Some(conn) = self.inbound.get_mut(&token) {
            if let Err(e) = conn.stream.write_all(answer) {
                log::debug!("cluster: status answer to {} failed: {e}", conn.peer_addr);
            }
        }
        self.drop_inbound(registry, token);
    }

    fn drop_inbound(&mut self, registry: &Registry, token: usize) {
        self.unfinished.retain(|t| *t != token);
        if let Some(mut conn) = self.inbound.remove(&token) {
            let _ = registry.deregister(&mut conn.stream);
        }
    }
}

/// Why an inbound connection is dropped.
enum Drop {
    Closed,
    Refused(String),
    /// A status request: answered, then dropped.
    Status,
    /// A membership change request: answered, then dropped.
    Member(mqtt_cluster::MemberChange),
}

/// How a read turn on an accepted connection ended.
#[derive(Debug, PartialEq, Eq)]
enum Turn {
    /// The socket is drained until its next readiness event.
    Drained,
    /// `READ_PER_TURN` was read and the socket may hold more.
    More,
}

/// Reads what the socket holds, up to `READ_PER_TURN`, and hands up every whole frame.
fn read_frames(
    conn: &mut Inbound,
    read_buf: &mut [u8],
    config: &TransportConfig,
    links: &BTreeMap<u64, Link>,
    events: &mut Vec<PeerEvent>,
) -> Result<Turn, Drop> {
    let mut read = 0;
    loop {
        if read >= READ_PER_TURN {
            return Ok(Turn::More);
        }
        match conn.stream.read(read_buf) {
            Ok(0) => {
                take_frames(conn, config, links, events)?;
                return Err(Drop::Closed);
            }
            Ok(n) => {
                read += n;
                conn.buf.extend_from_slice(&read_buf[..n]);
                take_frames(conn, config, links, events)?;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Turn::Drained),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Drop::Refused(format!("read error: {e}"))),
        }
    }
}

fn take_frames(
    conn: &mut Inbound,
    config: &TransportConfig,
    links: &BTreeMap<u64, Link>,
    events: &mut Vec<PeerEvent>,
) -> Result<(), Drop> {
    loop {
        if conn.buf.len() < LEN_PREFIX {
            return Ok(());
        }
        let len = u32::from_be_bytes([conn.buf[0], conn.buf[1], conn.buf[2], conn.buf[3]]) as usize;
        let max = if conn.from.is_some() {
            config.max_message
        } else {
            MAX_HELLO
        };
        if len > max {
            return Err(Drop::Refused(format!(
                "a {len}-byte frame exceeds the {max}-byte bound"
            )));
        }
        if conn.buf.len() < LEN_PREFIX + len {
            // The buffer never holds more than one bounded frame beyond what was taken.
            conn.buf.reserve(LEN_PREFIX + len - conn.buf.len());
            return Ok(());
        }
        conn.buf.advance(LEN_PREFIX);
        let body = conn.buf.split_to(len).freeze();
        match conn.from {
            Some(from) => events.push(PeerEvent::Message { from, data: body }),
            None => {
                if let Some(cluster) = super::status::parse_request(&body) {
                    if cluster != config.cluster_id {
                        return Err(Drop::Refused(format!("status request for cluster {cluster:?}")));
                    }
                    return Err(Drop::Status);
                }
                if let Some(request) = super::admin::parse_request(&body) {
                    let (cluster, change) = request.map_err(Drop::Refused)?;
                    if cluster != config.cluster_id {
                        return Err(Drop::Refused(format!("membership request for cluster {cluster:?}")));
                    }
                    return Err(Drop::Member(change));
                }
                let from = check_hello(&body, config, links).map_err(Drop::Refused)?;
                log::info!("cluster: node {from} connected from {}", conn.peer_addr);
                conn.from = Some(from);
            }
        }
    }
}

pub(crate) fn encode_hello(node_id: u64, cluster_id: &str) -> Bytes {
    let mut body = BytesMut::new();
    body.put_slice(HELLO_MAGIC);
    body.put_u8(HELLO_VERSION);
    body.put_u64(node_id);
    // The configuration bounds the cluster id to MAX_CLUSTER_ID_LEN (64) bytes.
    body.put_u8(cluster_id.len().min(u8::MAX as usize) as u8);
    body.put_slice(cluster_id.as_bytes());
    let mut framed = BytesMut::new();
    framed.put_u32(body.len() as u32);
    framed.put_slice(&body);
    framed.freeze()
}

/// The sender's node id, if the hello is from a member of this cluster.
fn check_hello(body: &[u8], config: &TransportConfig, links: &BTreeMap<u64, Link>) -> Result<u64, String> {
    let mut b = body;
    if b.len() < 4 + 1 + 8 + 1 || &b[..4] != HELLO_MAGIC {
        return Err("not a cluster node (bad hello)".into());
    }
    b.advance(4);
    let version = b.get_u8();
    if version != HELLO_VERSION {
        return Err(format!("unknown hello version {version}"));
    }
    let node = b.get_u64();
    let len = b.get_u8() as usize;
    if b.len() != len {
        return Err("malformed hello".into());
    }
    let cluster = String::from_utf8_lossy(b);
    if cluster != config.cluster_id {
        return Err(format!(
            "node {node} belongs to cluster {cluster:?}, this node to {:?}",
            config.cluster_id
        ));
    }
    if !links.contains_key(&node) {
        return Err(format!("node {node} is not a member of this cluster"));
    }
    Ok(node)
}

impl Link {
    fn new(peer: u64, token: usize, address: SocketAddr, now: Instant) -> Link {
        Link {
            peer,
            token,
            address,
            stream: None,
            connected: false,
            queue: VecDeque::new(),
            queued_bytes: 0,
            written: 0,
            retry_at: Some(now),
            backoff: BACKOFF_MIN,
            dropped: 0,
            reported: false,
        }
    }
}

fn dial(link: &mut Link, registry: &Registry, token: Token, now: Instant, events: &mut Vec<PeerEvent>) {
    match TcpStream::connect(link.address) {
        Ok(mut stream) => {
            if let Err(e) = registry.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE) {
                log::warn!("cluster: cannot watch the link to node {}: {e}", link.peer);
                fail(link, now, events);
                return;
            }
            let _ = stream.set_nodelay(true);
            link.stream = Some(stream);
            link.connected = false;
        }
        Err(e) => {
            log::debug!("cluster: cannot dial node {} at {}: {e}", link.peer, link.address);
            fail(link, now, events);
        }
    }
}

fn on_link_event(
    link: &mut Link,
    hello: &Bytes,
    registry: &Registry,
    readable: bool,
    writable: bool,
    now: Instant,
    events: &mut Vec<PeerEvent>,
) {
    let Some(stream) = link.stream.as_mut() else {
        return;
    };
    if !link.connected && (writable || readable) {
        match stream.take_error() {
            Ok(None) if stream.peer_addr().is_ok() => {
                log::info!("cluster: link to node {} at {} up", link.peer, link.address);
                link.connected = true;
                link.backoff = BACKOFF_MIN;
                link.reported = false;
                link.written = 0;
                // The hello goes first, ahead of whatever queued while the link was down.
                link.queued_bytes += hello.len();
                link.queue.push_front(hello.clone());
            }
            // Not connected yet (a wake-up before the connect finished); a refused connect shows as an error.
            Ok(None) if !readable => return,
            Ok(None) => {
                close_link(link, registry, now, events);
                return;
            }
            Ok(Some(e)) | Err(e) => {
                log::debug!("cluster: link to node {} at {}: {e}", link.peer, link.address);
                close_link(link, registry, now, events);
                return;
            }
        }
    }
    if readable {
        // The acceptor never writes: readable means closed or broken.
        let mut scratch = [0u8; 64];
        loop {
            match stream.read(&mut scratch) {
                Ok(0) => {
                    log::info!("cluster: link to node {} closed by the peer", link.peer);
                    close_link(link, registry, now, events);
                    return;
                }
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::info!("cluster: link to node {}: {e}", link.peer);
                    close_link(link, registry, now, events);
                    return;
                }
            }
        }
    }
    if link.connected {
        flush_link(link, registry, now, events);
    }
}

/// Frames written per system call at most.
const WRITE_BATCH: usize = 64;

/// Writes queued frames until the socket is full or the queue empty, many frames per write.
fn flush_link(link: &mut Link, registry: &Registry, now: Instant, events: &mut Vec<PeerEvent>) {
    loop {
        let Some(stream) = link.stream.as_mut() else {
            return;
        };
        if link.queue.is_empty() {
            return;
        }
        let mut slices = Vec::with_capacity(WRITE_BATCH.min(link.queue.len()));
        for (i, frame) in link.queue.iter().take(WRITE_BATCH).enumerate() {
            let from = if i == 0 { link.written } else { 0 };
            slices.push(io::IoSlice::new(&frame[from..]));
        }
        match stream.write_vectored(&slices) {
            Ok(0) => return,
            Ok(mut n) => {
                while n > 0 {
                    let Some(front) = link.queue.front() else { break };
                    let rest = front.len() - link.written;
                    if n >= rest {
                        n -= rest;
                        link.queued_bytes -= front.len();
                        link.queue.pop_front();
                        link.written = 0;
                    } else {
                        link.written += n;
                        n = 0;
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::info!("cluster: link to node {}: write failed: {e}", link.peer);
                close_link(link, registry, now, events);
                return;
            }
        }
    }
}

/// A frame cut off mid-write cannot be finished on a new connection: it is dropped.
fn discard_partial(link: &mut Link) {
    if link.written > 0 {
        if let Some(front) = link.queue.pop_front() {
            link.queued_bytes -= front.len();
        }
        link.written = 0;
    }
}

fn close_link(link: &mut Link, registry: &Registry, now: Instant, events: &mut Vec<PeerEvent>) {
    if let Some(mut stream) = link.stream.take() {
        let _ = registry.deregister(&mut stream);
    }
    link.connected = false;
    discard_partial(link);
    fail(link, now, events);
}

fn fail(link: &mut Link, now: Instant, events: &mut Vec<PeerEvent>) {
    link.retry_at = Some(now + link.backoff);
    link.backoff = (link.backoff * 2).min(BACKOFF_MAX);
    if !link.reported {
        link.reported = true;
        events.push(PeerEvent::Unreachable { peer: link.peer });
    }
}

#[cfg(test)]
mod tests;
