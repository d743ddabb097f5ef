//! Reading: one read buffer per readable connection per turn, round robin, fed to the core (and, under io_uring,
//! the next receive armed only once a connection was read dry and may read more).

use super::conn::State;
use super::transport::Verified;
use super::{Core, Driver, Io};
use mqtt_core::broker::{ConnectionId, Input};
use std::io::{self, Read};

impl<C: Core> Driver<C> {
    pub(super) fn mark_readable(&mut self, id: ConnectionId) {
        if let Some(conn) = self.conns.get_mut(&id) {
            if !conn.readable && conn.parked.is_none() {
                conn.readable = true;
                self.readable.push_back(id);
            }
        }
    }

    /// One read per readable connection, round robin. Readiness is edge-triggered, so a connection stays in the
    /// queue until a read would block; but reading each one dry in turn would let a client that sends without
    /// pause hold the loop while everyone else's input, and the output it causes, waits (a QoS 0 flood into one
    /// subscriber measured 5 s p99 that way).
    /// Connections held back by a budget are taken out of the queue first (see `park`).
    pub(super) fn read_turn(&mut self) {
        self.review_parked();
        for _ in 0..self.readable.len() {
            let Some(id) = self.readable.pop_front() else {
                return;
            };
            if let Some(why) = self.park_reason(id) {
                self.park(id, why);
                continue;
            }
            let more = self.read_once(id)
                && match &self.io {
                    Io::Epoll => true,
                    // Completions say exactly what is there: no read that would only learn "nothing more".
                    Io::Uring(ring) => ring.has_received(id),
                };
            if more {
                self.readable.push_back(id);
            } else if let Some(conn) = self.conns.get_mut(&id) {
                conn.readable = false;
                self.receive_more(id);
            }
        }
    }

    /// io_uring: `id` was read dry. Its next receive is armed only if it may be read: one held back by a budget
    /// is parked now, before the kernel takes more of what its client sends (under epoll those bytes simply stay
    /// in the socket until the next read turn parks it).
    pub(super) fn receive_more(&mut self, id: ConnectionId) {
        if !matches!(self.io, Io::Uring(_)) {
            return;
        }
        match self.park_reason(id) {
            Some(why) => self.park(id, why),
            None => {
                if let Io::Uring(ring) = &mut self.io {
                    ring.receive_more(id);
                }
            }
        }
    }

    /// Read one buffer and feed it to the core; whether the socket may hold more.
    fn read_once(&mut self, id: ConnectionId) -> bool {
        let Some(conn) = self.conns.get_mut(&id) else {
            return false;
        };
        let open = conn.state == State::Open;
        let read = match &mut self.io {
            Io::Epoll => conn.stream.read(&mut self.read_buf),
            Io::Uring(ring) => ring.read(id, &mut self.read_buf),
        };
        match read {
            Ok(0) => {
                log::debug!("conn {}: closed by peer", id.0);
                self.drop_conn(id);
                false
            }
            Ok(n) if open => {
                self.stats.reads += 1;
                self.stats.read_bytes += n as u64;
                conn.read_grant = false;
                let data = match conn.receive(&self.read_buf[..n], &mut self.scratch) {
                    Ok(data) => data,
                    Err(e) => {
                        // Failed TLS handshakes and certificate problems are worth an operator's attention;
                        // a peer closing its WebSocket or TLS session is routine.
                        if e.is_failure() {
                            log::info!("conn {} ({}): {e}", id.0, conn.peer());
                        } else {
                            log::debug!("conn {} ({}): {e}", id.0, conn.peer());
                        }
                        self.end_transport(id);
                        return true;
                    }
                };
                // The handshake that just ended verified who the client is: the core hears it before the client's
                // first MQTT bytes, which may have come in the same read.
                if let Some(verified) = conn.take_verified() {
                    let now = self.clock.time_of(self.now);
                    match verified {
                        Verified::Name(identity) => {
                            log::debug!("conn {}: client certificate names {identity:?}", id.0);
                            self.broker.handle_input(
                                now,
                                Input::Identified {
                                    conn: id,
                                    identity: &identity,
                                },
                            );
                        }
                        Verified::NoCommonName => {
                            log::info!(
                                "conn {} ({}): client certificate has no subject Common Name; its CONNECT will be \
                                 refused",
                                id.0,
                                conn.peer()
                            );
                        }
                    }
                }
                // Handshake answers and pongs go out through the same flush as the core's output.
                if conn.wants_write() && !conn.dirty {
                    conn.dirty = true;
                    self.dirty.push(id);
                    self.touched.push(id);
                }
                if data.is_empty() {
                    self.flush_dirty_and_settle();
                    return true;
                }
                let now = self.clock.time_of(self.now);
                self.broker.handle_input(now, Input::Received { conn: id, data });
                self.settle_read();
                self.account_input(id);
                if self.conns.get(&id).is_some_and(|c| c.transport_ended()) {
                    log::debug!("conn {}: WebSocket closed by peer after its last MQTT bytes", id.0);
                    self.end_transport(id);
                }
                true
            }
            // Closing: the core is done with this connection; discard what the peer still sends.
            Ok(_) => true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => true,
            Err(e) => {
                log::debug!("conn {}: read error: {e}", id.0);
                self.drop_conn(id);
                false
            }
        }
    }
}
