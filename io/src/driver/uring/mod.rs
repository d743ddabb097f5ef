//! The io_uring half of the event loop: accepts, receives and sends as ring operations, one `io_uring_enter` per
//! loop turn.
//!
//! Only how bytes move differs from epoll; everything else (transports, outboxes, group commit, closing, signals,
//! accept back-off) is the driver's shared code in `mod.rs`. Each listener has one multishot accept; each
//! connection at most one bounded receive (a bundle of provided buffers, one read buffer's worth at most, armed
//! again only once the driver has read what the last one brought and may read more: `receive_more`), and at most
//! one send in flight (a `sendmsg` of up to [`entries::MAX_SEND_IOV`] chunks of its outbox). The mio poller stays for what other threads and
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

mod bufring;
mod coalesce;
mod complete;
mod entries;

use super::clock::Clock;
use super::conn::Conn;
use super::outbox::Outbox;
use super::stats::LoopStats;
use super::transport::Flush;
use bufring::{BufRing, BUF_GROUP};
use bytes::Bytes;
use coalesce::Coalescer;
use complete::stash;
use entries::{
    check_kernel, limited_multishot_recv, send_chunks, send_entry, user_data, SendVectors, KIND_ACCEPT, KIND_CANCEL,
    KIND_EPOLL, KIND_RECV, KIND_SEND, RECVSEND_BUNDLE,
};
use io_uring::{opcode, squeue, types, IoUring};
use mqtt_core::broker::ConnectionId;
use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::time::{Duration, Instant};

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
/// Most TLS records queued for the ring per connection before TLS stops taking plaintext (the rest stays in the
/// outbox, as it stays there when a socket is full under epoll).
const WIRE_LIMIT: usize = 256 * 1024;
/// Completions that end a coalescing window early (besides the sends it issues): past a few dozen packets a turn,
/// waiting longer saves little and only adds latency.
const WINDOW_COMPLETIONS: usize = 32;

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
    _vectors: Option<SendVectors>,
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
    /// The loop turn's time when it last received something (`Coalescer`: cold or hot).
    last_recv: Option<Instant>,
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
    /// Enters, completions, receives and sends (see `stats`).
    stats: LoopStats,
    /// Whether to wait for input to gather before the next turn (see `coalesce`).
    coalescer: Coalescer,
    /// The last wait reaped completions (an idle loop blocks until the first one, without a window).
    busy: bool,
    /// Created disabled, so that the thread that runs the loop is the ring's one submitter (enabled at the first
    /// `wait`): the driver may be built on another thread.
    enabled: bool,
}

impl Ring {
    /// Create the ring (the probe: failure means epoll), its buffer ring and an accept per listener.
    pub fn new(listeners: &[RawFd], epoll_fd: RawFd, coalesce: Duration) -> io::Result<Ring> {
        check_kernel()?;
        let entries = match std::env::var(ENTRIES_ENV) {
            Ok(v) => v
                .parse()
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{ENTRIES_ENV}={v}")))?,
            Err(_) => RING_ENTRIES,
        };
        // Deferred task work: the kernel completes receives only when the loop enters to collect them, and wakes a
        // waiting loop only once as many completions as it asked for are in (what lets `coalesce` gather input
        // without a wake-up per packet). It needs a single submitting thread.
        let ring = IoUring::builder()
            .setup_cqsize(entries.saturating_mul(4))
            .setup_defer_taskrun()
            .setup_single_issuer()
            .setup_r_disabled()
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
            stats: LoopStats::default(),
            coalescer: Coalescer::new(coalesce),
            busy: false,
            enabled: false,
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
                last_recv: None,
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
            self.cancel_receive(id);
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
            self.cancel_receive(id);
        }
    }

    /// Ask the kernel to end `id`'s armed receive; its completion (cancelled, or data taken before) comes later.
    fn cancel_receive(&mut self, id: ConnectionId) {
        let entry = opcode::AsyncCancel::new(user_data(KIND_RECV, id.0))
            .build()
            .user_data(user_data(KIND_CANCEL, 0));
        // A full submission queue is flushed by `push`; an error there leaves the receive armed, and its data is
        // then stashed or dropped with the connection as any late completion is.
        let _ = self.push(entry);
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
    ///
    /// `now` is the driver's clock read of the turn before; this is where the next is taken, right after the wait
    /// returns, so that the receives it reaps are stamped with the time they were seen (not a wait's length
    /// earlier: after an idle wait of seconds a client's packet would count as hot).
    pub fn wait(
        &mut self,
        timeout: Option<Duration>,
        clock: Clock,
        now: &mut Instant,
        conns: &mut HashMap<ConnectionId, Box<Conn>>,
    ) -> io::Result<Vec<Completion>> {
        if !self.enabled {
            self.ring.submitter().register_enable_rings()?;
            self.enabled = true;
        }
        let mut timeout = timeout;
        // While many quiet clients send, wait for their input to gather (`coalesce`); a timer due within the
        // window ends the wait sooner, as a plain wait.
        let window = match self.busy {
            true => self.coalescer.window(*now).filter(|w| timeout.is_none_or(|t| t > *w)),
            false => None,
        };
        // Input arrived while the turn ran (completions, or receives the kernel completes at the next enter): take
        // it first, without waiting, and hold the turn's sends for the next wait, so that one send per connection
        // carries the answers to both. The next wait sends whatever has come in by then, so a send is held for one
        // short turn at most. Not while any socket is full: then the clients are not keeping up, and reading more
        // before sending only feeds the backlogs (a flood into 40 readers that never read peaked 7 MiB higher in
        // `io/tests/abuse.rs`). Not when coalescing either: the window gathers the input, and the sends go out first.
        let collect_first = window.is_none()
            && !self.deferred_sends
            && self.stalled == 0
            && !self.to_send.is_empty()
            && self.input_waiting();
        self.deferred_sends = collect_first;
        self.stats.collect_first += u64::from(collect_first);
        if collect_first {
            timeout = Some(Duration::ZERO);
        }
        self.prepare(conns, !collect_first)?;
        match window {
            Some(window) => self.enter_window(window)?,
            None => self.enter(1, timeout)?,
        }
        *now = clock.instant();
        self.busy = self.reap(conns, *now) > 0;
        self.note_stalls();
        Ok(std::mem::take(&mut self.completions))
    }

    /// Add the ring's counters (enters, completions, receives, sends) to the loop's.
    pub fn add_stats(&self, stats: &mut LoopStats) {
        let own = &self.stats;
        stats.enters += own.enters;
        stats.cqes += own.cqes;
        stats.recv_cqes += own.recv_cqes;
        stats.recv_bytes += own.recv_bytes;
        stats.sends += own.sends;
        stats.send_bytes += own.send_bytes;
        stats.collect_first += own.collect_first;
        stats.windows += own.windows;
    }

    /// Whether completions or task work (receives the kernel has yet to complete) wait for the loop.
    fn input_waiting(&mut self) -> bool {
        self.ring.submission().taskrun() || !self.ring.completion().is_empty()
    }

    /// One `io_uring_enter`: submit what is queued and wait for `want` completions or `timeout` (a zero timeout
    /// does not wait).
    fn enter(&mut self, want: usize, timeout: Option<Duration>) -> io::Result<()> {
        let result = match timeout {
            Some(t) if t.is_zero() => {
                let sq = self.ring.submission();
                if sq.is_empty() && !sq.cq_overflow() && !sq.taskrun() {
                    // Nothing to issue and no wait: the completion queue is read without entering the kernel.
                    Ok(0)
                } else {
                    drop(sq);
                    self.stats.enters += 1;
                    self.ring.submit()
                }
            }
            Some(t) => {
                self.stats.enters += 1;
                let ts = types::Timespec::from(t);
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(want, &args)
            }
            None => {
                self.stats.enters += 1;
                self.ring.submit_and_wait(want)
            }
        };
        match result {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR | libc::EBUSY)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// One `io_uring_enter` that submits what is queued and waits out `window` for input to gather: the kernel
    /// wakes the loop early only if [`WINDOW_COMPLETIONS`] more completions than the sends just issued come in.
    fn enter_window(&mut self, window: Duration) -> io::Result<()> {
        self.stats.windows += 1;
        let want = self.ring.submission().len() + WINDOW_COMPLETIONS;
        self.enter(want, Some(window))
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
            self.stats.sends += 1;
            self.stats.send_bytes += chunks.iter().map(|c| c.len() as u64).sum::<u64>();
            let (entry, vectors) = send_entry(rc.fd, &chunks);
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
}
