//! Writing: each dirty connection flushed once, and what the flush learned (blocked, writable again, gone) turned
//! into inputs for the core.

use super::accept::set_nonblocking;
use super::conn::{Flush, State};
use super::{set_interest, Core, Driver, Io, CLOSE_LINGER};
use mio::Interest;
use mqtt_core::broker::{ConnectionId, Input};

impl<C: Core> Driver<C> {
    /// Flush every dirty connection once; return the inputs the core must hear about as a result.
    pub(super) fn flush_dirty(&mut self) -> Vec<Input<'static>> {
        self.touched.clear();
        let dirty = std::mem::take(&mut self.dirty);
        self.flush(dirty)
    }

    /// Flush these connections once each (see `flush_dirty`).
    pub(super) fn flush(&mut self, ids: Vec<ConnectionId>) -> Vec<Input<'static>> {
        let mut follow_ups = Vec::new();
        for id in ids {
            let Some(conn) = self.conns.get_mut(&id) else {
                continue;
            };
            conn.dirty = false;
            if conn.durability_hold {
                // Waiting for the disk (see `suspend_storage`).
                continue;
            }
            self.stats.flushes += 1;
            let result = match &mut self.io {
                Io::Epoll => conn.flush(),
                Io::Uring(ring) => ring.flush(id, conn),
            };
            let epoll = matches!(self.io, Io::Epoll);
            let open = conn.state == State::Open;
            match result {
                Ok(Flush::Done) => {
                    conn.read_grant = true;
                    if conn.write_blocked {
                        conn.write_blocked = false;
                        if open {
                            follow_ups.push(Input::Writable { conn: id });
                        }
                    }
                    if conn.writable_interest {
                        conn.writable_interest = false;
                        set_interest(&self.poll, id, conn, Interest::READABLE);
                    }
                    if let State::Flushing { deadline } = conn.state {
                        if !epoll {
                            // The ring's sockets block; the TLS close_notify written directly must not.
                            set_nonblocking(&conn.stream);
                        }
                        conn.shutdown_write();
                        conn.state = State::Draining {
                            deadline: deadline.min(self.now + CLOSE_LINGER),
                        };
                    }
                }
                Ok(Flush::Blocked) => {
                    if !conn.write_blocked {
                        conn.write_blocked = true;
                        if open {
                            follow_ups.push(Input::WriteBlocked { conn: id });
                        }
                    }
                    if !conn.writable_interest && epoll {
                        conn.writable_interest = true;
                        set_interest(&self.poll, id, conn, Interest::READABLE | Interest::WRITABLE);
                    }
                }
                // io_uring: the send is queued or in flight; its completion flushes again.
                Ok(Flush::Pending) => {}
                Err(e) => {
                    log::debug!("conn {}: write error: {e}", id.0);
                    self.remove(id);
                    follow_ups.push(Input::Closed { conn: id });
                }
            }
        }
        follow_ups
    }
}
