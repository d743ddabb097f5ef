//! What the ring's completions mean: accepted descriptors, received buffers (or the end of a connection), sends
//! done. Each is turned into a [`Completion`] for the shared loop.

use super::bufring::BufRing;
use super::entries::{ID_MASK, KIND_ACCEPT, KIND_EPOLL, KIND_RECV, KIND_SEND, KIND_SHIFT};
use super::{Completion, Conn, Received, Ring, RingConn, RECV_MAX};
use io_uring::cqueue;
use mqtt_core::broker::ConnectionId;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::time::Instant;

impl Ring {
    /// Turn the completions into what the loop acts on; returns how many there were.
    pub(super) fn reap(&mut self, conns: &mut HashMap<ConnectionId, Box<Conn>>, now: Instant) -> usize {
        let cqes: Vec<(u64, i32, u32)> = self
            .ring
            .completion()
            .map(|c| (c.user_data(), c.result(), c.flags()))
            .collect();
        self.stats.cqes += cqes.len() as u64;
        let count = cqes.len();
        for (data, res, flags) in cqes {
            let id = data & ID_MASK;
            match data >> KIND_SHIFT {
                KIND_ACCEPT => self.on_accept(id as usize, res, flags),
                KIND_RECV => self.on_recv(ConnectionId(id), res, flags, now),
                KIND_SEND => self.on_send(ConnectionId(id), res, conns),
                KIND_EPOLL => {
                    self.epoll_armed = false;
                    self.completions.push(Completion::Poller);
                }
                _ => {}
            }
        }
        count
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

    fn on_recv(&mut self, id: ConnectionId, res: i32, flags: u32, now: Instant) {
        self.stats.recv_cqes += 1;
        self.stats.recv_bytes += res.max(0) as u64;
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
        if res > 0 {
            self.coalescer.receive(now, rc.last_recv.replace(now));
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

/// Copy what `rc` received out of the provided buffers (into `stashed`, read first) and give them back.
pub(super) fn stash(rc: &mut RingConn, bufs: &mut BufRing) {
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
