//! The io_uring half of the event loop: accepts, receives and sends as ring operations, one `io_uring_enter` per
//! loop turn.
//!
//! Only how bytes move differs from epoll; everything else (transports, outboxes, group commit, closing, signals,
//! accept back-off) is the driver's shared code in `mod.rs`. Each listener has one multishot accept; each
//! connection at most one bounded receive (a bundle of provided buffers, one read buffer's worth at most, armed
//! again only once the driver has read what the last one brought and may read more: `receive_more`), and at most
//! one send in flight (a `sendmsg` of up to [`MAX_SEND_IOV`] chunks of its outbox). The mio poller stays for what other threads and
//! the core bring (the waker, the signal pipe, a cluster node's sockets): its epoll descriptor is polled by the
//! ring, and read without blocking when it fires.
//!
//! The ring's completions are turned into what epoll would have said: a connection with received buffers is
//! "readable" (and read one buffer per turn, like epoll's fair reading), a listener with accepted descriptors is
//! "acceptable", a send that did not complete within the `io_uring_enter` that issued it found the socket full
//! (`Flush::Blocked`, so the core hears `WriteBlocked` exactly as under epoll).
//!
//! A turn's sends wait for the input that arrived while the turn ran (see `wait`): epoll reads each socket when
//! the read turn reaches it, so its reads also take what came in meanwhile, whereas a ring turn sees only what
//! the kernel had received when the turn began. Without that, the ring sent about half again as many (smaller)
//! sends per message as epoll on the QoS 1 rows of `bench/io_drivers.sh`, each one a TCP delivery and a client
//! wake-up (BENCHMARKS.md, "I/O drivers").

use super::conn::Conn;
use super::outbox::Outbox;
use super::transport::Flush;
use bytes::Bytes;
use io_uring::{cqueue, opcode, squeue, types, IoUring};
use mqtt_core::broker::ConnectionId;
use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

/// Submission queue entries (the completion queue has four times as many). Overridden by
/// `MQTT_BROKER_IO_URING_ENTRIES`; 0 makes ring creation fail, which is how the fallback to epoll is tested.
const RING_ENTRIES: u32 = 4096;
pub const ENTRIES_ENV: &str = "MQTT_BROKER_IO_URING_ENTRIES";
/// Set: single bounded receives even where multishot ones can be limited (how both are tested, and compared).
pub const SINGLE_RECV_ENV: &str = "MQTT_BROKER_IO_URING_SINGLE_RECV";
/// Most one receive takes: one read buffer (what a read turn takes from a connection, as epoll's `read` does).
/// Asked of the kernel as this plus one byte: a bound that is not a whole number of provided buffers ends in a
/// partial buffer, which the kernel drops, and a bundle so cut is not extended by the kernel's retry (Linux 6.10+
/// appends whatever else the socket holds to a bundle that filled its whole length; measured on 6.18: a receive
/// of exactly 64 KiB took 190 KiB, one of 64 KiB + 1 took 64 KiB).
const RECV_MAX: usize = super::READ_BUF;
/// `IORING_RECVSEND_BUNDLE` and `IORING_RECV_MULTISHOT` (linux/io_uring.h; the crate keeps its copies private): a
/// receive into several provided buffers, and one that stays armed.
const RECVSEND_BUNDLE: u16 = 1 << 4;
const RECV_MULTISHOT: u16 = 1 << 1;
/// Where `optlen` sits in a submission entry (struct io_uring_sqe): for a multishot receive, the most it takes in
/// all before it ends (Linux 6.17+; older kernels refuse the entry with EINVAL).
const SQE_OPTLEN_OFFSET: usize = 44;
/// Provided receive buffers: how many and how large. A connection holds them from their completion until the
/// read turn that reads them (at most `RECV_MAX` of them), so this bounds the input waiting in the driver (8 MiB,
/// resident once used); when all are taken, receives end with ENOBUFS and are re-armed once buffers come back.
/// Many and small: thousands of quiet clients each hold one for a PUBLISH of a few dozen bytes.
const RECV_BUFS: u16 = 4096;
const RECV_BUF_SIZE: usize = 2 * 1024;
/// How many free buffers the kernel's ring holds at first (512 KiB); doubled, up to all of them, each time a receive
/// finds it empty. The rest wait in a stack, the most recently returned on top: a ring of every free buffer hands
/// them out first in, first out, so every receive wrote into memory not touched for 8 MiB (a fan-out of 64 B
/// messages spent 4 % of the broker's time in the kernel's copy into them, under 1 % for epoll's one read buffer).
const RING_START: usize = 256;
const BUF_GROUP: u16 = 0;
/// Most chunks in one send (Linux's IOV_MAX). Higher than epoll's per-write limit because a connection has one
/// send per turn here, where epoll's writes loop until the socket is full: a subscriber of many small messages
/// would otherwise get 64 of them per turn.
const MAX_SEND_IOV: usize = 1024;
/// Bytes one send aims for: the socket holds this much unsent (TCP_NOTSENT_LOWAT, `MAX_SOCKET_UNSENT`).
const SEND_BYTES: usize = 256 * 1024;
/// Most TLS records queued for the ring per connection before TLS stops taking plaintext (the rest stays in the
/// outbox, as it stays there when a socket is full under epoll).
const WIRE_LIMIT: usize = 256 * 1024;

// What a completion is for: the kind in the top byte of `user_data`, the connection id or listener index below.
const KIND_SHIFT: u32 = 56;
const KIND_ACCEPT: u64 = 1;
const KIND_RECV: u64 = 2;
const KIND_SEND: u64 = 3;
const KIND_EPOLL: u64 = 4;
const KIND_CANCEL: u64 = 5;
const ID_MASK: u64 = (1 << KIND_SHIFT) - 1;

fn user_data(kind: u64, id: u64) -> u64 {
    (kind << KIND_SHIFT) | (id & ID_MASK)
}

/// TLS records waiting for the ring: rustls writes into this instead of the socket.
#[derive(Default)]
pub struct WireWriter {
    pub out: Outbox,
}

impl Write for WireWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.out.len() >= WIRE_LIMIT {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.out.push(Bytes::copy_from_slice(buf));
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What the ring learned in one turn, in the terms of the shared loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// Listener `i` has accepted descriptors (or an error) to hand out.
    Acceptable(usize),
    /// A connection has a received buffer, end of file or an error to read.
    Readable(ConnectionId),
    /// A send completed (or was found stuck): flush the connection again.
    Flushable(ConnectionId),
    /// The mio poller has events.
    Poller,
}

enum Received {
    Data { bid: u16, len: usize },
    Eof,
    Error(io::Error),
}

/// A send the kernel may still be reading from: owns the bytes and, for a `sendmsg`, the vectors that point into
/// them (a send of one chunk, a quiet client's PUBACK, needs neither).
struct InFlight {
    _chunks: Vec<Bytes>,
    _vectors: Option<(Box<[libc::iovec]>, Box<libc::msghdr>)>,
}

// SAFETY: the raw pointers point into `_chunks` and `_vectors`, whose heap data does not move with them; nothing
// else aliases them.
unsafe impl Send for InFlight {}

struct RingConn {
    fd: RawFd,
    recv_armed: bool,
    received: VecDeque<Received>,
    sending: Option<InFlight>,
    /// The send in flight outlived the `io_uring_enter` that issued it: the socket is full.
    stalled: bool,
    /// In `to_send` already.
    queued: bool,
    send_error: Option<io::Error>,
    /// TLS records (unused for plain connections, which send their outbox).
    wire: WireWriter,
    /// End of file or an error was received: no more receives.
    read_done: bool,
    /// The driver does not read it for now (see `park`): no receive is armed.
    paused: bool,
    /// What it had received when it was paused, copied out of the provided buffers (which went back to the pool:
    /// a parked connection must not keep them from everyone else). Read before `received`. At most one receive's
    /// worth (`RECV_MAX`): a receive is armed only when nothing received is left unread, and not while paused.
    stashed: Vec<u8>,
}

impl RingConn {
    /// Whether a receive may be armed for it: none is, it is read, and everything it received was read.
    fn may_receive(&self) -> bool {
        !self.recv_armed && !self.read_done && !self.paused && self.received.is_empty() && self.stashed.is_empty()
    }
}

struct ListenerSlot {
    fd: RawFd,
    armed: bool,
    open: bool,
    accepted: VecDeque<io::Result<RawFd>>,
}

/// Provided buffers for receives, in a ring the kernel takes them from.
struct BufRing {
    /// `RECV_BUFS` entries of `io_uring_buf`, page-aligned (mmap); the kernel reads it.
    entries: *mut types::BufRingEntry,
    map_len: usize,
    tail: u16,
    data: Vec<u8>,
    /// Which buffer each ring entry holds, and where each buffer was last put: a bundle's completion names only
    /// its first buffer, the others are the entries after it.
    entry_bid: Vec<u16>,
    bid_entry: Vec<u16>,
    /// Free buffers not in the ring, the most recently returned last.
    free: Vec<u16>,
    /// Buffers in the ring (offered, not yet taken by a receive), and how many it may hold (`RING_START`).
    in_ring: usize,
    target: usize,
}

// SAFETY: the mapping is owned by this struct and only touched through `&mut self` (and by the kernel).
unsafe impl Send for BufRing {}

impl BufRing {
    fn new(ring: &IoUring) -> io::Result<BufRing> {
        let map_len = usize::from(RECV_BUFS) * std::mem::size_of::<types::BufRingEntry>();
        // SAFETY: an anonymous private mapping; checked for failure below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let mut bufs = BufRing {
            entries: ptr.cast(),
            map_len,
            tail: 0,
            data: vec![0; usize::from(RECV_BUFS) * RECV_BUF_SIZE],
            entry_bid: vec![0; usize::from(RECV_BUFS)],
            bid_entry: vec![0; usize::from(RECV_BUFS)],
            free: (0..RECV_BUFS).rev().collect(),
            in_ring: 0,
            target: RING_START,
        };
        // SAFETY: the mapping lives as long as `bufs`, which the ring's owner drops after the ring (field order).
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(ptr as u64, RECV_BUFS, BUF_GROUP, 0)?;
        }
        bufs.refill();
        bufs.publish();
        Ok(bufs)
    }

    /// Buffer `bid` is free again (offered to the kernel by the next `refill`).
    fn give(&mut self, bid: u16) {
        self.free.push(bid);
    }

    /// Top the ring up to its target from the most recently freed buffers; whether it took any (then `publish`).
    fn refill(&mut self) -> bool {
        let mut offered = false;
        while self.in_ring < self.target {
            let Some(bid) = self.free.pop() else {
                break;
            };
            self.offer(bid);
            offered = true;
        }
        offered
    }

    /// A receive found the ring empty: let it hold more.
    fn starved(&mut self) {
        self.target = (self.target * 2).min(usize::from(RECV_BUFS));
    }

    /// Put buffer `bid` in the ring (seen by the kernel once published).
    fn offer(&mut self, bid: u16) {
        self.in_ring += 1;
        let index = usize::from(self.tail & (RECV_BUFS - 1));
        let addr = self.data[usize::from(bid) * RECV_BUF_SIZE..].as_ptr() as u64;
        // SAFETY: `index` < RECV_BUFS, inside the mapping.
        let entry = unsafe { &mut *self.entries.add(index) };
        entry.set_addr(addr);
        entry.set_len(RECV_BUF_SIZE as u32);
        entry.set_bid(bid);
        self.entry_bid[index] = bid;
        self.bid_entry[usize::from(bid)] = index as u16;
        self.tail = self.tail.wrapping_add(1);
    }

    /// The buffers a bundled receive of `len` bytes starting with buffer `first` filled (and took out of the
    /// ring), in order, with how much of each: the kernel takes consecutive ring entries and fills each before the
    /// next.
    fn bundle(&mut self, first: u16, len: usize) -> Vec<(u16, usize)> {
        let start = self.bid_entry[usize::from(first)];
        let count = len.div_ceil(RECV_BUF_SIZE);
        self.in_ring = self.in_ring.saturating_sub(count);
        (0..count)
            .map(|i| {
                let index = usize::from(start.wrapping_add(i as u16) & (RECV_BUFS - 1));
                (self.entry_bid[index], (len - i * RECV_BUF_SIZE).min(RECV_BUF_SIZE))
            })
            .collect()
    }

    fn publish(&self) {
        // The ring's tail overlays the reserved field of entry 0 (struct io_uring_buf_ring), 14 bytes in.
        // SAFETY: inside the mapping, 2-aligned; the kernel reads it with acquire semantics.
        let tail = unsafe { &*(self.entries.cast::<u8>().add(14).cast::<AtomicU16>()) };
        tail.store(self.tail, Ordering::Release);
    }

    fn buf(&self, bid: u16, len: usize) -> &[u8] {
        let start = usize::from(bid) * RECV_BUF_SIZE;
        &self.data[start..start + len.min(RECV_BUF_SIZE)]
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // Closing the ring's descriptor cancels its receives asynchronously: the kernel may still write into these
        // buffers after the ring is dropped. They are left to the process's exit (a driver is dropped once, when
        // the broker stops) rather than freed under the kernel's hands.
        std::mem::forget(std::mem::take(&mut self.data));
        let _ = self.map_len;
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // The same for sends in flight: the kernel may still read their bytes.
        for (_, sending) in self.orphans.drain() {
            std::mem::forget(sending);
        }
        for (_, mut rc) in self.conns.drain() {
            if let Some(sending) = rc.sending.take() {
                std::mem::forget(sending);
            }
        }
    }
}

/// The ring and what it has in flight.
pub struct Ring {
    // Dropped before `bufs`: the kernel stops using the buffer ring with the ring.
    ring: IoUring,
    bufs: BufRing,
    conns: HashMap<ConnectionId, RingConn>,
    listeners: Vec<ListenerSlot>,
    epoll_fd: RawFd,
    epoll_armed: bool,
    /// Connections with bytes to send and no send in flight, sent at the next `wait`.
    to_send: Vec<ConnectionId>,
    /// Sends issued in the current `wait`, checked for stalling after it.
    issued: Vec<ConnectionId>,
    /// Sends of connections that were closed while the kernel still had them.
    orphans: HashMap<ConnectionId, InFlight>,
    /// Connections whose receive must be (re-)armed at the next `wait`.
    to_arm: Vec<ConnectionId>,
    completions: Vec<Completion>,
    /// Receives are multishot, each limited to `RECV_MAX` bytes in all (else single, see `RECV_MAX`).
    limited_multishot: bool,
    /// The last `wait` held the turn's sends back to collect input first (see `wait`): this one sends.
    deferred_sends: bool,
    /// Connections whose send waits for room in the socket (`RingConn::stalled`).
    stalled: usize,
}

impl Ring {
    /// Create the ring (the probe: failure means epoll), its buffer ring and an accept per listener.
    pub fn new(listeners: &[RawFd], epoll_fd: RawFd) -> io::Result<Ring> {
        check_kernel()?;
        let entries = match std::env::var(ENTRIES_ENV) {
            Ok(v) => v
                .parse()
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{ENTRIES_ENV}={v}")))?,
            Err(_) => RING_ENTRIES,
        };
        let ring = IoUring::builder()
            .setup_cqsize(entries.saturating_mul(4))
            .setup_coop_taskrun()
            .setup_taskrun_flag()
            .build(entries)?;
        if !ring.params().is_feature_ext_arg() || !ring.params().is_feature_nodrop() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the kernel's io_uring lacks timed waits or lossless completions",
            ));
        }
        if !ring.params().is_feature_recvsend_bundle() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the kernel's io_uring lacks bundled receives (Linux 6.10)",
            ));
        }
        let bufs = BufRing::new(&ring)?;
        let mut ring = Ring {
            ring,
            bufs,
            conns: HashMap::new(),
            listeners: listeners
                .iter()
                .map(|&fd| ListenerSlot {
                    fd,
                    armed: false,
                    open: true,
                    accepted: VecDeque::new(),
                })
                .collect(),
            epoll_fd,
            epoll_armed: false,
            to_send: Vec::new(),
            issued: Vec::new(),
            orphans: HashMap::new(),
            to_arm: Vec::new(),
            completions: Vec::new(),
            limited_multishot: std::env::var(SINGLE_RECV_ENV).is_err(),
            deferred_sends: false,
            stalled: 0,
        };
        for i in 0..ring.listeners.len() {
            ring.arm_accept(i)?;
        }
        Ok(ring)
    }

    fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every pointer an entry carries (send vectors, message headers) is owned by `InFlight`s that
            // live until the entry's completion; the other entries carry none.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return Ok(());
            }
            // Full: hand what is queued to the kernel (completions are reaped at the turn's `wait`).
            self.ring.submit()?;
        }
    }

    fn arm_accept(&mut self, index: usize) -> io::Result<()> {
        let slot = &mut self.listeners[index];
        if slot.armed || !slot.open {
            return Ok(());
        }
        slot.armed = true;
        let entry = opcode::AcceptMulti::new(types::Fd(slot.fd))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(user_data(KIND_ACCEPT, index as u64));
        self.push(entry)
    }

    /// Stop accepting on listener `index` (shutdown): its accept is cancelled before its socket closes.
    pub fn close_listener(&mut self, index: usize) {
        if let Some(slot) = self.listeners.get_mut(index) {
            slot.open = false;
            for fd in slot.accepted.drain(..).flatten() {
                // SAFETY: an accepted descriptor nobody else owns.
                unsafe { libc::close(fd) };
            }
            if slot.armed {
                let entry = opcode::AsyncCancel::new(user_data(KIND_ACCEPT, index as u64))
                    .build()
                    .user_data(user_data(KIND_CANCEL, 0));
                let _ = self.push(entry);
            }
        }
    }

    /// The next connection accepted on listener `index`; `WouldBlock` when there is none (the accept is re-armed
    /// if it ended, so the shared loop's back-off works as under epoll).
    pub fn accept(&mut self, index: usize) -> io::Result<(mio::net::TcpStream, std::net::SocketAddr)> {
        let Some(slot) = self.listeners.get_mut(index) else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        match slot.accepted.pop_front() {
            Some(Ok(fd)) => {
                // SAFETY: the descriptor the kernel just created for us; the stream owns it from here.
                let stream = unsafe { mio::net::TcpStream::from_raw_fd(fd) };
                // No address comes with a multishot accept; a peer gone already fails here and is skipped.
                let peer = stream
                    .peer_addr()
                    .map_err(|_| io::Error::from(io::ErrorKind::ConnectionAborted))?;
                Ok((stream, peer))
            }
            Some(Err(e)) => Err(e),
            None => {
                self.arm_accept(index)?;
                Err(io::ErrorKind::WouldBlock.into())
            }
        }
    }

    /// Start receiving on a new connection.
    pub fn register(&mut self, id: ConnectionId, stream: &mio::net::TcpStream) {
        self.conns.insert(
            id,
            RingConn {
                fd: stream.as_raw_fd(),
                recv_armed: false,
                received: VecDeque::new(),
                sending: None,
                stalled: false,
                queued: false,
                send_error: None,
                wire: WireWriter::default(),
                read_done: false,
                paused: false,
                stashed: Vec::new(),
            },
        );
        self.to_arm.push(id);
    }

    /// Forget a connection (its socket closes right after): its receive is cancelled, a send in flight keeps its
    /// bytes until the kernel is done with them, its unread buffers go back to the kernel.
    pub fn deregister(&mut self, id: ConnectionId) {
        let Some(mut rc) = self.conns.remove(&id) else {
            return;
        };
        for received in rc.received.drain(..) {
            if let Received::Data { bid, .. } = received {
                self.bufs.give(bid);
            }
        }
        if let Some(sending) = rc.sending.take() {
            self.orphans.insert(id, sending);
        }
        if rc.stalled {
            self.stalled -= 1;
        }
        if rc.recv_armed {
            let entry = opcode::AsyncCancel::new(user_data(KIND_RECV, id.0))
                .build()
                .user_data(user_data(KIND_CANCEL, 0));
            let _ = self.push(entry);
        }
    }

    /// Stop receiving for `id` while the driver does not read it: no receive is armed for it, so what the peer
    /// sends waits in the socket. What it received already (at most one receive's worth: none is armed while it
    /// holds any) is copied aside and its buffers go back to the pool, which every other connection receives into.
    pub fn pause(&mut self, id: ConnectionId) {
        let Some(rc) = self.conns.get_mut(&id) else {
            return;
        };
        rc.paused = true;
        stash(rc, &mut self.bufs);
        log::debug!(
            "conn {}: paused with {} bytes received and unread",
            id.0,
            rc.stashed.len()
        );
        if rc.recv_armed {
            // Armed while it could still be read (an idle connection waiting for its client): whatever it takes
            // before the cancel lands is stashed too (`on_recv`), one receive at most.
            let entry = opcode::AsyncCancel::new(user_data(KIND_RECV, id.0))
                .build()
                .user_data(user_data(KIND_CANCEL, 0));
            let _ = self.push(entry);
        }
    }

    /// Receive for `id` again (once its cancelled receive has ended, if it has not yet).
    pub fn resume(&mut self, id: ConnectionId) {
        let Some(rc) = self.conns.get_mut(&id) else {
            return;
        };
        rc.paused = false;
        if rc.may_receive() {
            self.to_arm.push(id);
        }
    }

    /// What the connection received, up to `buf.len()` (the same one read buffer per connection per turn as
    /// under epoll, gathered from as many provided buffers as fit): `Ok(0)` at end of file, `WouldBlock` when
    /// nothing waits.
    pub fn read(&mut self, id: ConnectionId, buf: &mut [u8]) -> io::Result<usize> {
        let Some(rc) = self.conns.get_mut(&id) else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        if !rc.stashed.is_empty() {
            let n = rc.stashed.len().min(buf.len());
            buf[..n].copy_from_slice(&rc.stashed[..n]);
            rc.stashed.drain(..n);
            if rc.stashed.is_empty() {
                rc.stashed = Vec::new();
            }
            return Ok(n);
        }
        let mut n = 0;
        while let Some(Received::Data { bid, len }) = rc.received.front() {
            let (bid, len) = (*bid, *len);
            if n + len > buf.len() {
                break;
            }
            buf[n..n + len].copy_from_slice(self.bufs.buf(bid, len));
            n += len;
            rc.received.pop_front();
            self.bufs.give(bid);
        }
        if n > 0 {
            return Ok(n);
        }
        match rc.received.pop_front() {
            Some(Received::Eof) => Ok(0),
            Some(Received::Error(e)) => Err(e),
            Some(Received::Data { .. }) | None => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    /// Whether a read would find something (the shared loop keeps the connection in its read queue then).
    pub fn has_received(&self, id: ConnectionId) -> bool {
        self.conns
            .get(&id)
            .is_some_and(|rc| !rc.received.is_empty() || !rc.stashed.is_empty())
    }

    /// The driver has read everything `id` received and may read more (it is not held back by a budget): its next
    /// receive is armed at the next `wait`. Until then what its client sends waits in the socket, as under epoll
    /// between two reads.
    pub fn receive_more(&mut self, id: ConnectionId) {
        if self.conns.get(&id).is_some_and(RingConn::may_receive) {
            self.to_arm.push(id);
        }
    }

    /// Queue the connection's pending bytes for sending at the next `wait` (see the module comment for what the
    /// result means).
    pub fn flush(&mut self, id: ConnectionId, conn: &mut Conn) -> io::Result<Flush> {
        let Some(rc) = self.conns.get_mut(&id) else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        if let Some(e) = rc.send_error.take() {
            return Err(e);
        }
        let wire_empty = conn.wire(&mut rc.wire)?.is_empty();
        if rc.sending.is_none() {
            if wire_empty && !conn.wants_write() {
                return Ok(Flush::Done);
            }
            if !wire_empty && !rc.queued {
                rc.queued = true;
                self.to_send.push(id);
            }
        }
        Ok(if rc.stalled { Flush::Blocked } else { Flush::Pending })
    }

    /// Issue what was queued, wait for at least one completion or `timeout` (`None`: no limit), and collect the
    /// completions. One `io_uring_enter`, none when nothing is queued and `timeout` is zero.
    pub fn wait(
        &mut self,
        timeout: Option<Duration>,
        conns: &mut HashMap<ConnectionId, Box<Conn>>,
    ) -> io::Result<Vec<Completion>> {
        let mut timeout = timeout;
        // Input arrived while the turn ran (completions, or receives the kernel completes at the next enter): take
        // it first, without waiting, and hold the turn's sends for the next wait, so that one send per connection
        // carries the answers to both. The next wait sends whatever has come in by then, so a send is held for one
        // short turn at most. Not while any socket is full: then the clients are not keeping up, and reading more
        // before sending only feeds the backlogs (a flood into 40 readers that never read peaked 7 MiB higher in
        // `io/tests/abuse.rs`).
        let collect_first =
            !self.deferred_sends && self.stalled == 0 && !self.to_send.is_empty() && self.input_waiting();
        self.deferred_sends = collect_first;
        if collect_first {
            timeout = Some(Duration::ZERO);
        }
        self.prepare(conns, !collect_first)?;
        self.enter(timeout)?;
        self.reap(conns);
        self.note_stalls();
        Ok(std::mem::take(&mut self.completions))
    }

    /// Whether completions or task work (receives the kernel has yet to complete) wait for the loop.
    fn input_waiting(&mut self) -> bool {
        self.ring.submission().taskrun() || !self.ring.completion().is_empty()
    }

    /// One `io_uring_enter`: submit what is queued and wait for one completion or `timeout`.
    fn enter(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let result = match timeout {
            Some(t) if t.is_zero() => {
                let sq = self.ring.submission();
                if sq.is_empty() && !sq.cq_overflow() && !sq.taskrun() {
                    // Nothing to issue and no wait: the completion queue is read without entering the kernel.
                    Ok(0)
                } else {
                    drop(sq);
                    self.ring.submit()
                }
            }
            Some(t) => {
                let ts = types::Timespec::from(t);
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
            None => self.ring.submit_and_wait(1),
        };
        match result {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR | libc::EBUSY)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// A send still in flight after the enter that issued it waits for room in the socket.
    fn note_stalls(&mut self) {
        for id in std::mem::take(&mut self.issued) {
            if let Some(rc) = self.conns.get_mut(&id) {
                if rc.sending.is_some() && !rc.stalled {
                    rc.stalled = true;
                    self.stalled += 1;
                    self.completions.push(Completion::Flushable(id));
                }
            }
        }
    }

    /// Push the turn's receives and (`send`) sends to the submission queue.
    fn prepare(&mut self, conns: &mut HashMap<ConnectionId, Box<Conn>>, send: bool) -> io::Result<()> {
        if self.bufs.refill() {
            self.bufs.publish();
        }
        if !self.epoll_armed {
            self.epoll_armed = true;
            let entry = opcode::PollAdd::new(types::Fd(self.epoll_fd), libc::POLLIN as u32)
                .build()
                .user_data(user_data(KIND_EPOLL, 0));
            self.push(entry)?;
        }
        for id in std::mem::take(&mut self.to_arm) {
            let Some(rc) = self.conns.get_mut(&id) else {
                continue;
            };
            if !rc.may_receive() {
                continue;
            }
            rc.recv_armed = true;
            let entry = if self.limited_multishot {
                limited_multishot_recv(rc.fd)
            } else {
                // One bundle of provided buffers, bounded (see `RECV_MAX` for the byte more).
                opcode::Recv::new(types::Fd(rc.fd), std::ptr::null_mut(), RECV_MAX as u32 + 1)
                    .ioprio(RECVSEND_BUNDLE)
                    .buf_group(BUF_GROUP)
                    .build()
                    .flags(squeue::Flags::BUFFER_SELECT)
            }
            .user_data(user_data(KIND_RECV, id.0));
            self.push(entry)?;
        }
        if !send {
            return Ok(());
        }
        for id in std::mem::take(&mut self.to_send) {
            let (Some(rc), Some(conn)) = (self.conns.get_mut(&id), conns.get_mut(&id)) else {
                continue;
            };
            rc.queued = false;
            if rc.sending.is_some() || conn.durability_hold {
                // In flight already, or its newest bytes wait for the disk (`suspend_storage`).
                continue;
            }
            let wire = conn.wire(&mut rc.wire)?;
            if wire.is_empty() {
                continue;
            }
            let chunks = send_chunks(wire);
            let (entry, vectors) = if let [one] = chunks.as_slice() {
                let entry = opcode::Send::new(types::Fd(rc.fd), one.as_ptr(), one.len() as u32)
                    .flags(libc::MSG_NOSIGNAL)
                    .build();
                (entry, None)
            } else {
                let mut iov: Box<[libc::iovec]> = chunks
                    .iter()
                    .map(|c| libc::iovec {
                        iov_base: c.as_ptr() as *mut libc::c_void,
                        iov_len: c.len(),
                    })
                    .collect();
                // SAFETY: msghdr is plain data; all-zero is a valid empty header.
                let mut msg: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
                msg.msg_iov = iov.as_mut_ptr();
                msg.msg_iovlen = iov.len();
                let entry = opcode::SendMsg::new(types::Fd(rc.fd), &*msg)
                    .flags(libc::MSG_NOSIGNAL as u32)
                    .build();
                (entry, Some((iov, msg)))
            };
            let entry = entry.user_data(user_data(KIND_SEND, id.0));
            rc.sending = Some(InFlight {
                _chunks: chunks,
                _vectors: vectors,
            });
            self.issued.push(id);
            self.push(entry)?;
        }
        Ok(())
    }

    fn reap(&mut self, conns: &mut HashMap<ConnectionId, Box<Conn>>) {
        let cqes: Vec<(u64, i32, u32)> = self
            .ring
            .completion()
            .map(|c| (c.user_data(), c.result(), c.flags()))
            .collect();
        for (data, res, flags) in cqes {
            let id = data & ID_MASK;
            match data >> KIND_SHIFT {
                KIND_ACCEPT => self.on_accept(id as usize, res, flags),
                KIND_RECV => self.on_recv(ConnectionId(id), res, flags),
                KIND_SEND => self.on_send(ConnectionId(id), res, conns),
                KIND_EPOLL => {
                    self.epoll_armed = false;
                    self.completions.push(Completion::Poller);
                }
                _ => {}
            }
        }
    }

    fn on_accept(&mut self, index: usize, res: i32, flags: u32) {
        let Some(slot) = self.listeners.get_mut(index) else {
            return;
        };
        if !cqueue::more(flags) {
            slot.armed = false;
        }
        if res == -libc::ECANCELED {
            return;
        }
        if !slot.open {
            if res >= 0 {
                // SAFETY: accepted after the listener closed; nobody owns it.
                unsafe { libc::close(res) };
            }
            return;
        }
        slot.accepted.push_back(if res >= 0 {
            Ok(res)
        } else {
            Err(io::Error::from_raw_os_error(-res))
        });
        self.completions.push(Completion::Acceptable(index));
    }

    fn on_recv(&mut self, id: ConnectionId, res: i32, flags: u32) {
        let first = cqueue::buffer_select(flags);
        let taken = match (res, first) {
            (n, Some(first)) if n > 0 => self.bufs.bundle(first, n as usize),
            _ => Vec::new(),
        };
        let Some(rc) = self.conns.get_mut(&id) else {
            // Closed meanwhile: give the buffers back.
            for (bid, _) in taken {
                self.bufs.give(bid);
            }
            return;
        };
        if !cqueue::more(flags) {
            rc.recv_armed = false;
        }
        let received = match res {
            _ if !taken.is_empty() => {
                rc.received
                    .extend(taken.into_iter().map(|(bid, len)| Received::Data { bid, len }));
                None
            }
            0 => Some(Received::Eof),
            e if e == -libc::EINVAL && self.limited_multishot => {
                // A kernel before 6.17: no byte limit on multishot receives. Single bounded receives instead.
                log::info!("io_uring: multishot receives cannot be limited on this kernel; using single receives");
                self.limited_multishot = false;
                if rc.may_receive() {
                    self.to_arm.push(id);
                }
                return;
            }
            // Cancelled (paused; resumed since, it receives again), or every buffer is waiting to be read (receive
            // again once some are back, next turn).
            e if e == -libc::ECANCELED || e == -libc::ENOBUFS => {
                if e == -libc::ENOBUFS {
                    self.bufs.starved();
                }
                if rc.may_receive() {
                    self.to_arm.push(id);
                }
                return;
            }
            e if e < 0 => Some(Received::Error(io::Error::from_raw_os_error(-e))),
            _ => return,
        };
        if let Some(end) = received {
            rc.read_done = true;
            rc.received.push_back(end);
        }
        if rc.paused {
            // Taken before its cancel landed: aside, like what it held when paused.
            stash(rc, &mut self.bufs);
        }
        self.completions.push(Completion::Readable(id));
    }

    fn on_send(&mut self, id: ConnectionId, res: i32, conns: &mut HashMap<ConnectionId, Box<Conn>>) {
        let (Some(rc), Some(conn)) = (self.conns.get_mut(&id), conns.get_mut(&id)) else {
            self.orphans.remove(&id);
            return;
        };
        rc.sending = None;
        if std::mem::take(&mut rc.stalled) {
            self.stalled -= 1;
        }
        if res < 0 {
            rc.send_error = Some(io::Error::from_raw_os_error(-res));
        } else if let Ok(wire) = conn.wire(&mut rc.wire) {
            wire.consume(res as usize);
        }
        self.completions.push(Completion::Flushable(id));
    }
}

/// The front of `wire` for one send: its chunks as they are, up to [`SEND_BYTES`], unless that takes more than
/// [`MAX_SEND_IOV`] of them (thousands of small PUBLISHes or PUBACKs for one subscriber): then they are copied into
/// one buffer, so that a send carries as much as epoll's write loop would in one turn.
fn send_chunks(wire: &Outbox) -> Vec<Bytes> {
    let mut chunks = Vec::new();
    let mut bytes = 0;
    for chunk in wire.chunks() {
        if bytes >= SEND_BYTES {
            return chunks;
        }
        if chunks.len() == MAX_SEND_IOV {
            let mut joined = Vec::with_capacity(SEND_BYTES + 64 * 1024);
            for chunk in wire.chunks() {
                if joined.len() >= SEND_BYTES {
                    break;
                }
                joined.extend_from_slice(chunk);
            }
            return vec![Bytes::from(joined)];
        }
        bytes += chunk.len();
        chunks.push(chunk.clone());
    }
    chunks
}

/// A multishot receive of bundles that ends once it has taken `RECV_MAX` bytes in all: a quiet client's many small
/// packets cost one arming between reads of the driver, not one each, and what a client held back can have sent
/// into the driver is still one read buffer's worth.
fn limited_multishot_recv(fd: RawFd) -> squeue::Entry {
    let entry = opcode::Recv::new(types::Fd(fd), std::ptr::null_mut(), 0)
        .ioprio(RECVSEND_BUNDLE | RECV_MULTISHOT)
        .buf_group(BUF_GROUP)
        .build()
        .flags(squeue::Flags::BUFFER_SELECT);
    // The crate has no setter for the limit. SAFETY: `Entry` is `repr(C)` over the 64-byte `io_uring_sqe`, plain
    // data whose `optlen` is the `u32` at byte 44 (a union with `file_index`, which a receive does not use).
    let mut raw: [u8; 64] = unsafe { std::mem::transmute(entry) };
    raw[SQE_OPTLEN_OFFSET..SQE_OPTLEN_OFFSET + 4].copy_from_slice(&(RECV_MAX as u32).to_ne_bytes());
    unsafe { std::mem::transmute::<[u8; 64], squeue::Entry>(raw) }
}

/// Copy what `rc` received out of the provided buffers (into `stashed`, read first) and give them back.
fn stash(rc: &mut RingConn, bufs: &mut BufRing) {
    let mut kept = VecDeque::new();
    for received in rc.received.drain(..) {
        match received {
            Received::Data { bid, len } => {
                rc.stashed.extend_from_slice(bufs.buf(bid, len));
                bufs.give(bid);
            }
            other => kept.push_back(other),
        }
    }
    rc.received = kept;
    debug_assert!(rc.stashed.len() <= RECV_MAX, "one receive's worth at most");
}

/// Multishot receive needs Linux 6.0; older kernels run on epoll.
fn check_kernel() -> io::Result<()> {
    // SAFETY: uname fills the struct it is given.
    let mut name: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut name) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let release: String = name
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8 as char)
        .collect();
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    if major < 6 {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("kernel {release} lacks multishot receive (Linux 6.0)"),
        ));
    }
    Ok(())
}
