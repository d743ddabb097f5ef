//! Where the core consults the authenticator beyond the CONNECT itself: admitting a client (its will must be
//! publishable), refusing one (with the guessing slow-down), and the per-topic checks for PUBLISH, SUBSCRIBE and
//! each delivery.

use super::auth::ClientIdentity;
use super::connection::Phase;
use super::session::SessionKey;
use super::timer::Timer;
use super::{Broker, ConnectionId, Event, Output};
use crate::packet::{Connect, ReasonCode};
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

impl Broker {
    /// The authenticator let the client in: forget the address's failures, check that its will may be published
    /// (refused with Not authorized otherwise, as the will would be a PUBLISH the client may not make), and accept.
    pub(super) fn admit(&mut self, conn: ConnectionId, connect: Box<Connect>, auth_data: Option<Bytes>) {
        if let Some(peer) = self.connections.expected(conn).map(|c| c.peer) {
            self.auth_throttle.record_success(peer.ip());
        }
        if let Some(will) = &connect.will {
            let identity = ClientIdentity {
                client_id: &connect.client_id,
                username: connect.username.as_deref(),
            };
            if !self.authenticator.authorize_publish(identity, &will.topic) {
                // [MQTT-3.2.2-7]: a failing CONNACK, then close; 0x87 is return code 5 in 3.1.1.
                self.refuse_connect(conn, ReasonCode::NOT_AUTHORIZED, "will topic not authorized");
                return;
            }
        }
        self.accept_connect(conn, connect, auth_data);
    }

    /// The authenticator refused the client: tell the driver (to log it with the address), then send the failing
    /// CONNACK now or, after recent failures from the same IP address, hold it on a timer [MQTT-3.2.2-7].
    pub(super) fn refuse_authentication(&mut self, conn: ConnectionId, connect: &Connect, reason: ReasonCode) {
        let Some(peer) = self.connections.expected(conn).map(|c| c.peer) else {
            return;
        };
        let base = Duration::from_millis(self.config.auth_failure_delay_ms);
        let max = Duration::from_millis(self.config.auth_failure_delay_max_ms);
        let delay = self.auth_throttle.record_failure(peer.ip(), self.now, base, max);
        self.outputs.push_back(Output::Event(Event::AuthenticationFailed {
            conn,
            peer,
            client_id: connect.client_id.clone(),
            username: connect.username.clone(),
            reason,
            delay_ms: delay.as_millis() as u64,
        }));
        if delay.is_zero() {
            self.refuse_connect(conn, reason, "authentication failed");
            return;
        }
        if let Some(connection) = self.connections.expected_mut(conn) {
            connection.phase = Phase::Refusing;
            connection.client_id = Some(Arc::from(connect.client_id.as_str()));
            connection.extras().pending_refusal = Some((reason, "authentication failed"));
        }
        self.timers.arm(self.now + delay, Timer::Refusal(conn));
    }

    /// A held refusal is due: send it and close.
    pub(super) fn send_held_refusal(&mut self, conn: ConnectionId) {
        let Some(connection) = self.connections.if_open_mut(conn) else {
            return;
        };
        if connection.phase != Phase::Refusing {
            return;
        }
        let Some((reason, text)) = connection
            .extras
            .as_mut()
            .and_then(|extras| extras.pending_refusal.take())
        else {
            return;
        };
        connection.phase = Phase::AwaitingConnect;
        self.refuse_connect(conn, reason, text);
    }

    /// May the client on `conn` publish to `topic`?
    pub(super) fn may_publish(&self, conn: ConnectionId, topic: &str) -> bool {
        self.identity_of(conn)
            .is_some_and(|identity| self.authenticator.authorize_publish(identity, topic))
    }

    /// May the client on `conn` subscribe to `filter` (shared prefix removed)?
    pub(super) fn may_subscribe(&self, conn: ConnectionId, filter: &str) -> bool {
        self.identity_of(conn)
            .is_some_and(|identity| self.authenticator.authorize_subscribe(identity, filter))
    }

    /// Who is on a connected `conn`: its session's client id and user name (the connection does not keep a copy).
    fn identity_of(&self, conn: ConnectionId) -> Option<ClientIdentity<'_>> {
        let key = self.connections.expected(conn)?.session?;
        let session = self.sessions.get(&key)?;
        Some(ClientIdentity {
            client_id: &session.client_id,
            username: session.username.as_deref(),
        })
    }

    /// May the session `key` receive a message on `topic`? Checked per delivery, online or queued.
    pub(super) fn may_read(&self, key: SessionKey, topic: &str) -> bool {
        let Some(session) = self.sessions.get(&key) else {
            return false;
        };
        let identity = ClientIdentity {
            client_id: &session.client_id,
            username: session.username.as_deref(),
        };
        self.authenticator.authorize_read(identity, topic)
    }
}
