//! Not reading from a connection, so that what its client sends waits in the kernel's socket buffer (and, once that
//! is full, in the client) instead of in the broker's memory. Two reasons, both for connections past CONNACK:
//!
//! - **Input budget** (`max_partial_input_bytes`): the partial packets held from all clients. Above the budget, a
//!   connection holding a partial packet of a read buffer or more (the ones holding the most) is not read until
//!   the total drains to 7/8 of the budget; clients holding less (whose packets are small, or who send whole
//!   ones) keep being read, so a well-behaved client keeps its service. One parked connection at a time, the one
//!   nearest to completing its packet, is read anyway (the *finisher*): parked packets can only drain by being
//!   completed, and many large packets sent at once must not wait on each other forever. Memory is then bounded
//!   by the budget, plus the finisher's packet (at most `max_packet_size`), plus up to two read buffers (128 KiB)
//!   per connection read while over it. A stalled finisher holds its place until its keep alive ends it.
//! - **Output bound** (`max_outbuf_bytes`): the bytes the driver has not written (the transport's own replies
//!   included: WebSocket pongs, close frames) plus what the core holds for the connection. A client that sends
//!   without reading what it is owed (PINGREQ or WebSocket ping floods) stops being read at the bound, instead
//!   of growing its replies; it is read again once it has read them (a slow subscriber that reads keeps having
//!   its own packets read between the deliveries that refill its output).
//!
//! Both drivers park the same way: epoll simply does not read (edge-triggered readiness is remembered by putting
//! the connection back in the read queue when it is resumed), io_uring arms no receive for it. Its receives are
//! bounded (one read buffer each) and armed only after the driver has read what the last one brought and found
//! the connection free to be read (`Driver::read_turn`), so a parked connection holds at most one receive's worth,
//! copied aside so that the provided buffers serve everyone else (`Ring::pause`): like epoll's up to two read
//! buffers per connection read over the budget, and nobody is closed for it.

use super::conn::State;
use super::{Core, Driver, Io};
use mqtt_core::broker::ConnectionId;
use std::time::{Duration, Instant};

/// A partial packet this large or larger is among "the most" when over the budget: one read buffer.
pub const LARGE_PARTIAL: usize = super::READ_BUF;
/// Log lines about parking come at most this often.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// Why a connection is not being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Park {
    /// The partial packets of all connections are over `max_partial_input_bytes` and this one holds a large one.
    Input,
    /// Its unsent output is at `max_outbuf_bytes`.
    Output,
}

/// The global budget for partial packets held from connected clients.
pub struct InputBudget {
    limit: usize,
    /// Sum of every connection's `held_input`.
    total: usize,
    /// The parked connection read anyway, to complete its packet.
    finisher: Option<ConnectionId>,
    last_input_log: Option<Instant>,
    last_output_log: Option<Instant>,
}

impl InputBudget {
    pub fn new(limit: usize) -> InputBudget {
        InputBudget {
            limit,
            total: 0,
            finisher: None,
            last_input_log: None,
            last_output_log: None,
        }
    }

    fn over(&self) -> bool {
        self.total > self.limit
    }

    /// Low enough to read the parked connections again (hysteresis: not every read flips it).
    fn drained(&self) -> bool {
        self.total <= self.limit - self.limit / 8
    }

    /// A connection's partial packet changed from `*slot` bytes to `held`.
    fn set(&mut self, slot: &mut usize, held: usize) {
        self.total = self.total - *slot + held;
        *slot = held;
    }
}

/// Whether a log line is due at `now`, and if so, remember that it was written then.
fn due(last: &mut Option<Instant>, now: Instant) -> bool {
    if last.is_some_and(|at| now.duration_since(at) < LOG_EVERY) {
        return false;
    }
    *last = Some(now);
    true
}

impl<C: Core> Driver<C> {
    /// Why `id` must not be read now, if so.
    pub(super) fn park_reason(&self, id: ConnectionId) -> Option<Park> {
        let conn = self.conns.get(&id)?;
        if conn.state != State::Open {
            return None;
        }
        // Read again once its client has read everything written so far, even if the core refilled its output
        // at once (a slow subscriber of a flood still has its PINGREQs and PUBACKs read): one read per drain.
        if !conn.read_grant && conn.pending_bytes() + self.broker.unsent_output(id) >= self.max_outbuf {
            return Some(Park::Output);
        }
        let largest = conn.held_input >= LARGE_PARTIAL;
        (self.input.over() && largest && self.input.finisher != Some(id)).then_some(Park::Input)
    }

    /// Stop reading `id` (it was just taken off the read queue).
    pub(super) fn park(&mut self, id: ConnectionId, why: Park) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.parked = Some(why);
        conn.readable = false;
        let unsent = conn.pending_bytes();
        self.parked.insert(id);
        if let Io::Uring(ring) = &mut self.io {
            ring.pause(id);
        }
        match why {
            Park::Input => {
                if due(&mut self.input.last_input_log, self.now) {
                    let parked = self.parked_for(Park::Input);
                    log::warn!(
                        "partial packets held from connected clients ({} bytes) exceed max_partial_input_bytes ({}): \
                         not reading from the {parked} client(s) holding the most until it drains",
                        self.input.total,
                        self.input.limit
                    );
                }
            }
            Park::Output => {
                log::debug!("conn {}: {unsent} bytes unsent: not reading until it reads", id.0);
                if due(&mut self.input.last_output_log, self.now) {
                    log::info!(
                        "conn {}: output unread at max_outbuf_bytes ({}): not reading from it until it reads \
                         ({} client(s) held back so)",
                        id.0,
                        self.max_outbuf,
                        self.parked_for(Park::Output)
                    );
                }
            }
        }
    }

    fn parked_for(&self, why: Park) -> usize {
        self.parked
            .iter()
            .filter(|id| self.conns.get(id).is_some_and(|c| c.parked == Some(why)))
            .count()
    }

    /// Read `id` again: back in the read queue (its socket may have become readable meanwhile).
    fn unpark(&mut self, id: ConnectionId) {
        self.parked.remove(&id);
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.parked = None;
        if let Io::Uring(ring) = &mut self.io {
            ring.resume(id);
        }
        self.mark_readable(id);
    }

    /// A closing connection is read (and what it sends discarded) whatever held it back.
    pub(super) fn unpark_closing(&mut self, id: ConnectionId) {
        if self.parked.contains(&id) {
            self.unpark(id);
        }
    }

    /// After a read of `id`: what its partial packet holds now.
    pub(super) fn account_input(&mut self, id: ConnectionId) {
        let partial = self.broker.partial_input(id);
        if let Some(conn) = self.conns.get_mut(&id) {
            self.input.set(&mut conn.held_input, partial.held);
            conn.missing_input = partial.missing;
        }
    }

    /// `id` is gone, with the partial packet it held.
    pub(super) fn forget_input(&mut self, id: ConnectionId, held: usize) {
        self.input.total -= held;
        self.parked.remove(&id);
        if self.input.finisher == Some(id) {
            self.input.finisher = None;
        }
    }

    /// Before each read turn: read again what may be read, and until the budget has drained, let the parked
    /// connection nearest to completing its packet finish it.
    pub(super) fn review_parked(&mut self) {
        let drained = self.input.drained();
        if drained {
            self.input.finisher = None;
        }
        if self.parked.is_empty() {
            return;
        }
        let resume: Vec<ConnectionId> = self
            .parked
            .iter()
            .copied()
            .filter(|id| match self.conns.get(id).and_then(|c| c.parked) {
                Some(Park::Input) => drained,
                // Read again once its client has read everything written so far, even if the core refilled its
                // output at once (a slow subscriber of a flood still has its PINGREQs and PUBACKs read), or once
                // it is below the bound.
                Some(Park::Output) => self.park_reason(*id) != Some(Park::Output),
                None => true,
            })
            .collect();
        let resumed_input = drained && !resume.is_empty() && self.parked_for(Park::Input) > 0;
        for id in resume {
            self.unpark(id);
        }
        if resumed_input && due(&mut self.input.last_input_log, self.now) {
            log::info!(
                "partial packets held from connected clients down to {} bytes: reading from every client again",
                self.input.total
            );
        }
        let finishing = self
            .input
            .finisher
            .and_then(|id| self.conns.get(&id))
            .is_some_and(|c| c.held_input >= LARGE_PARTIAL);
        // Until it has drained (below the budget too, in the hysteresis band), the parked packets only shrink by
        // being completed.
        if !drained && !finishing {
            let nearest = self
                .parked
                .iter()
                .filter_map(|id| Some((*id, self.conns.get(id)?)))
                .filter(|(_, c)| c.parked == Some(Park::Input))
                .min_by_key(|(id, c)| (c.missing_input, *id))
                .map(|(id, _)| id);
            self.input.finisher = nearest;
            if let Some(id) = nearest {
                self.unpark(id);
            }
        }
    }
}
