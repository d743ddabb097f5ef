//! CONNECT, CONNACK, authentication, session attach/detach and takeover, DISCONNECT from the client.

use super::auth::{AuthDecision, ConnectInfo};
use super::connection::Phase;
use super::session::{Session, SessionKey};
use super::timer::Timer;
use super::{keep_alive_grace, Broker, ConnectionId, DropCause, Event, WillPolicy};
use crate::codec::DecodeError;
use crate::packet::{Auth, ConnAck, Connect, Disconnect, Packet, Properties, ProtocolVersion, ReasonCode};
use bytes::Bytes;
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;

/// MQTT 3.1 limits client identifiers to 23 characters.
const MQTT31_MAX_CLIENT_ID: usize = 23;

impl Broker {
    pub(super) fn handle_connect(&mut self, conn: ConnectionId, mut connect: Box<Connect>) {
        let Some(connection) = self.connections.expected_mut(conn) else {
            return;
        };
        connection.protocol = Some(connect.protocol);
        // A refusing CONNACK must fit the client's Maximum Packet Size too: its Reason String is left out
        // otherwise [MQTT-3.2.2-19], [MQTT-3.2.2-20].
        connection.client_max_packet_size = connect.properties.maximum_packet_size.unwrap_or(u32::MAX);

        if let Some(reason) = self.connect_quota_refusal(conn, &connect) {
            self.refuse_connect(conn, reason, "CONNECT refused by a quota");
            return;
        }
        if let Some(reason) = self.connect_refusal(&connect) {
            self.refuse_connect(conn, reason, "CONNECT refused");
            return;
        }
        if connect.client_id.is_empty() {
            connect.client_id = self.assign_client_id();
            if let Some(connection) = self.connections.expected_mut(conn) {
                connection.client_id_assigned = true;
            }
        }

        if !self.apply_identity(conn, &mut connect) {
            self.refuse_authentication(conn, &connect, ReasonCode::NOT_AUTHORIZED);
            return;
        }

        let info = ConnectInfo {
            conn,
            client_id: &connect.client_id,
            peer: self
                .connections
                .expected(conn)
                .map(|c| c.peer)
                .unwrap_or_else(unspecified_addr),
            listener: self.connections.expected(conn).map(|c| c.listener).unwrap_or_default(),
            username: connect.username.as_deref(),
            password: connect.password.as_deref(),
            auth_method: connect.properties.authentication_method.as_deref(),
            auth_data: connect.properties.authentication_data.as_deref(),
        };
        let decision = self.authenticator.authenticate(&info);
        self.follow_decision(conn, connect, decision);
    }

    /// What follows the authenticator's verdict on a CONNECT: the one path for a verdict given at once and for one
    /// delivered later (`Input::AuthDecided`).
    fn follow_decision(&mut self, conn: ConnectionId, connect: Box<Connect>, decision: AuthDecision) {
        match decision {
            AuthDecision::Allow { data } => self.admit(conn, connect, data),
            AuthDecision::Deny(reason) => self.refuse_authentication(conn, &connect, reason),
            AuthDecision::Continue { data } => {
                let method = connect.properties.authentication_method.clone();
                if !connect.protocol.is_v5() || method.is_none() {
                    // Enhanced authentication exists only in MQTT 5 with an Authentication Method [MQTT-4.12.0-1].
                    self.refuse_connect(conn, ReasonCode::BAD_AUTHENTICATION_METHOD, "authentication failed");
                    return;
                }
                if let Some(connection) = self.connections.expected_mut(conn) {
                    connection.phase = Phase::Authenticating;
                    connection.extras().auth_method = method.clone();
                    connection.client_id = Some(Arc::from(connect.client_id.as_str()));
                    connection.extras().pending_connect = Some(connect);
                }
                self.send_auth(conn, ReasonCode::CONTINUE_AUTHENTICATION, method, data);
            }
            AuthDecision::Pending => {
                // Nothing the client sent after the CONNECT is decoded until the verdict (see `handle_received`).
                if let Some(connection) = self.connections.expected_mut(conn) {
                    connection.phase = Phase::Verifying;
                    connection.client_id = Some(Arc::from(connect.client_id.as_str()));
                    connection.extras().pending_connect = Some(connect);
                }
            }
        }
    }

    /// Whether the CONNECT on `conn` waits for the authenticator's verdict (`AuthDecision::Pending`).
    pub fn awaiting_verdict(&self, conn: ConnectionId) -> bool {
        self.connections
            .if_open(conn)
            .is_some_and(|c| c.phase == Phase::Verifying)
    }

    /// The verdict on a CONNECT the authenticator answered `Pending`. Ignored unless the connection is still open
    /// and waiting for it (it may have closed or timed out meanwhile). The connection goes back to where it stood
    /// when the CONNECT was read, so what follows is exactly what an immediate verdict would have caused; then the
    /// bytes the client sent meanwhile are decoded.
    pub(super) fn handle_auth_decided(&mut self, conn: ConnectionId, decision: AuthDecision) {
        let Some(connection) = self.connections.if_open_mut(conn) else {
            return;
        };
        if connection.phase != Phase::Verifying {
            return;
        }
        // Before CONNACK the extras hold nothing but the CONNECT: dropping them keeps an idle client's footprint
        // the same as after an immediate verdict.
        let Some(connect) = connection.extras.take().and_then(|extras| extras.pending_connect) else {
            return;
        };
        connection.phase = Phase::AwaitingConnect;
        connection.client_id = None;
        // Other clients connected while this one waited: the limits checked at CONNECT time are checked again.
        let decision = match decision {
            AuthDecision::Allow { .. } => match self.connection_limit_refusal(conn, &connect) {
                Some(reason) => {
                    self.refuse_connect(conn, reason, "CONNECT refused by a connection limit");
                    return;
                }
                None => decision,
            },
            // A verdict of `Pending` again keeps the connection waiting.
            other => other,
        };
        self.follow_decision(conn, connect, decision);
        // The verdict may have refused and closed it.
        if self
            .connections
            .if_open(conn)
            .is_some_and(|c| c.phase == Phase::Connected)
        {
            self.decode_received(conn);
        }
    }

    /// Checks of a CONNECT that the codec cannot make because they depend on the broker's configuration.
    fn connect_refusal(&self, connect: &Connect) -> Option<ReasonCode> {
        if self.connected_clients >= self.config.max_connections {
            return Some(ReasonCode::SERVER_BUSY);
        }
        match connect.protocol {
            ProtocolVersion::V3_1 if connect.client_id.is_empty() || connect.client_id.len() > MQTT31_MAX_CLIENT_ID => {
                return Some(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
            }
            // [MQTT-3.1.3-8]: an empty client id requires Clean Session in 3.1.1.
            ProtocolVersion::V3_1_1 if connect.client_id.is_empty() && !connect.clean_start => {
                return Some(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
            }
            _ => {}
        }
        if let Some(will) = &connect.will {
            // [MQTT-3.2.2-12]: a will QoS above Maximum QoS is refused with 0x9B.
            if will.qos as u8 > self.config.maximum_qos {
                return Some(ReasonCode::QOS_NOT_SUPPORTED);
            }
            // [MQTT-3.2.2-13]: a retained will when retain is not available is refused with 0x9A.
            if will.retain && !self.config.retain_available {
                return Some(ReasonCode::RETAIN_NOT_SUPPORTED);
            }
            if crate::topic::validate_topic_name(&will.topic).is_err() {
                return Some(ReasonCode::TOPIC_NAME_INVALID);
            }
        }
        None
    }

    /// A fresh client identifier from the seeded RNG, unique among sessions [MQTT-3.1.3-6].
    fn assign_client_id(&mut self) -> String {
        loop {
            let id = format!("auto-{:016x}", self.rng.gen::<u64>());
            if !self.sessions_by_client_id.contains_key(id.as_str()) {
                return id;
            }
        }
    }

    /// CONNACK with a failure reason, then close [MQTT-3.2.2-7]. 3.1.1 clients get the nearest return code.
    pub(super) fn refuse_connect(&mut self, conn: ConnectionId, reason: ReasonCode, text: &str) {
        let connack = ConnAck {
            session_present: false,
            reason,
            properties: Properties {
                reason_string: Some(text.to_string()),
                ..Default::default()
            }
            .into(),
        };
        self.send(conn, &Packet::ConnAck(connack));
        self.stats.connect_refused(reason);
        let text = format!("{text} ({reason})");
        self.close_connection(conn, WillPolicy::Discard, &text);
    }

    /// A CONNECT that failed to decode: answer with a CONNACK where the client told us enough to understand one
    /// [MQTT-3.1.4-1], [MQTT-3.1.2-2]; otherwise just close.
    pub(super) fn reject_connect_on_decode_error(&mut self, conn: ConnectionId, error: &DecodeError, text: &str) {
        let attempted = self
            .connections
            .expected(conn)
            .and_then(|c| c.decoder.attempted_version());
        let answer = match (error, attempted) {
            // An unknown level is answered in 3.1.1 form, return code 1, which every version understands.
            (DecodeError::UnsupportedProtocolVersion(_), _) => Some(ProtocolVersion::V3_1_1),
            (_, Some(ProtocolVersion::V5)) => Some(ProtocolVersion::V5),
            _ => None,
        };
        match answer {
            Some(version) => {
                if let Some(connection) = self.connections.expected_mut(conn) {
                    connection.protocol = Some(version);
                }
                self.refuse_connect(conn, error.reason_code(), text);
            }
            None => self.close_connection(conn, WillPolicy::Discard, text),
        }
    }

    pub(super) fn handle_auth_during_connect(&mut self, conn: ConnectionId, auth: Auth) {
        let Some(connection) = self.connections.expected(conn) else {
            return;
        };
        let method = connection.auth_method().unwrap_or_default().to_owned();
        // [MQTT-4.12.0-5]: the method must stay the same through the exchange.
        if auth.properties.authentication_method.as_deref() != Some(method.as_str())
            || auth.reason != ReasonCode::CONTINUE_AUTHENTICATION
        {
            self.refuse_connect(conn, ReasonCode::PROTOCOL_ERROR, "bad AUTH during CONNECT");
            return;
        }
        let decision = self.continue_auth(conn, &method, &auth);
        match decision {
            AuthDecision::Allow { data } => {
                let pending = self
                    .connections
                    .expected_mut(conn)
                    .and_then(|c| c.extras.as_mut().and_then(|extras| extras.pending_connect.take()));
                if let Some(connect) = pending {
                    self.admit(conn, connect, data);
                }
            }
            AuthDecision::Continue { data } => {
                self.send_auth(conn, ReasonCode::CONTINUE_AUTHENTICATION, Some(method), data)
            }
            AuthDecision::Deny(reason) => {
                match self
                    .connections
                    .expected_mut(conn)
                    .and_then(|c| c.extras.as_mut().and_then(|extras| extras.pending_connect.take()))
                {
                    Some(connect) => self.refuse_authentication(conn, &connect, reason),
                    None => self.refuse_connect(conn, reason, "authentication failed"),
                }
            }
            // Never: `continue_auth` turns it into a denial.
            AuthDecision::Pending => {}
        }
    }

    /// Re-authentication on a live connection [MQTT-4.12.1].
    pub(super) fn handle_reauth(&mut self, conn: ConnectionId, auth: Auth) {
        let Some(connection) = self.connections.expected(conn) else {
            return;
        };
        let Some(method) = connection.auth_method().map(str::to_owned) else {
            // [MQTT-4.12.0-7]: AUTH without enhanced authentication in CONNECT is a Protocol Error.
            self.protocol_error(
                conn,
                ReasonCode::PROTOCOL_ERROR,
                "AUTH without an authentication method",
            );
            return;
        };
        if auth.properties.authentication_method.as_deref() != Some(method.as_str()) {
            self.protocol_error(
                conn,
                ReasonCode::PROTOCOL_ERROR,
                "AUTH changed the authentication method",
            );
            return;
        }
        let decision = self.continue_auth(conn, &method, &auth);
        match decision {
            AuthDecision::Allow { data } => self.send_auth(conn, ReasonCode::SUCCESS, Some(method), data),
            AuthDecision::Continue { data } => {
                self.send_auth(conn, ReasonCode::CONTINUE_AUTHENTICATION, Some(method), data)
            }
            AuthDecision::Deny(_) if self.planted(super::planted::PlantedBug::ReauthFailureAccepted) => {
                self.send_auth(conn, ReasonCode::SUCCESS, Some(method), None)
            }
            AuthDecision::Deny(reason) => self.disconnect_with(conn, reason, "re-authentication failed"),
            // Never: `continue_auth` turns it into a denial.
            AuthDecision::Pending => {}
        }
    }

    /// One step of an enhanced authentication exchange, answered by the authenticator.
    fn continue_auth(&mut self, conn: ConnectionId, method: &str, auth: &Auth) -> AuthDecision {
        let client_id = self
            .connections
            .expected(conn)
            .and_then(|c| c.client_id.clone())
            .unwrap_or_default();
        match self
            .authenticator
            .continue_auth(&client_id, method, auth.properties.authentication_data.as_deref())
        {
            // Only a CONNECT's verdict may come later (see `AuthDecision::Pending`).
            AuthDecision::Pending => AuthDecision::Deny(ReasonCode::NOT_AUTHORIZED),
            decision => decision,
        }
    }

    fn send_auth(&mut self, conn: ConnectionId, reason: ReasonCode, method: Option<String>, data: Option<Bytes>) {
        let properties = Properties {
            authentication_method: method,
            authentication_data: data,
            ..Default::default()
        };
        self.send(
            conn,
            &Packet::Auth(Auth {
                reason,
                properties: properties.into(),
            }),
        );
    }

    /// Attaches the connection to its session (new or resumed), sends CONNACK, and resends what was inflight.
    pub(super) fn accept_connect(&mut self, conn: ConnectionId, connect: Box<Connect>, auth_data: Option<Bytes>) {
        let v5 = connect.protocol.is_v5();
        let client_id = connect.client_id.clone();
        let assigned = self.connections.expected(conn).is_some_and(|c| c.client_id_assigned);

        // Session expiry: v5 from the property (absent = 0) [MQTT-3.1.2-11]; 3.1.1 Clean Session = 0 keeps the
        // session with the broker's cap as expiry, Clean Session = 1 ends it with the connection.
        let requested_expiry = if v5 {
            connect.properties.session_expiry_interval.unwrap_or(0)
        } else if connect.clean_start {
            0
        } else {
            u32::MAX
        };
        let expiry = requested_expiry.min(self.config.max_session_expiry);

        let (key, session_present, had_pending_will) = self.attach_session(conn, &connect, expiry);
        self.persist_session_attached(key, had_pending_will);

        let keep_alive = self.effective_keep_alive(connect.keep_alive, v5);
        let shared_client_id = self.sessions.get(&key).map(|session| Arc::clone(&session.client_id));
        let Some(connection) = self.connections.expected_mut(conn) else {
            return;
        };
        connection.phase = Phase::Connected;
        self.release_preconnect_bytes(conn);
        self.lift_connect_size_limit(conn);
        let Some(connection) = self.connections.expected_mut(conn) else {
            return;
        };
        connection.client_id = shared_client_id;
        connection.session = Some(key);
        connection.keep_alive = keep_alive;
        connection.last_activity = self.now;
        connection.client_receive_maximum = connect.properties.receive_maximum.unwrap_or(u16::MAX);
        connection.client_max_packet_size = connect.properties.maximum_packet_size.unwrap_or(u32::MAX);
        connection.client_topic_alias_maximum = connect.properties.topic_alias_maximum.unwrap_or(0);
        connection.request_problem_information = connect.properties.request_problem_information != Some(0);
        if let (None, Some(method)) = (connection.auth_method(), &connect.properties.authentication_method) {
            connection.extras().auth_method = Some(method.clone());
        }
        let peer = connection.peer;

        let mut properties = Properties::default();
        if v5 {
            let config = &self.config;
            if config.receive_maximum != u16::MAX {
                properties.receive_maximum = Some(config.receive_maximum);
            }
            if config.maximum_qos < 2 {
                properties.maximum_qos = Some(config.maximum_qos);
            }
            if !config.retain_available {
                properties.retain_available = Some(0);
            }
            properties.maximum_packet_size = Some(config.max_packet_size);
            if config.max_topic_alias > 0 {
                properties.topic_alias_maximum = Some(config.max_topic_alias);
            }
            if !config.wildcard_subscriptions {
                properties.wildcard_subscription_available = Some(0);
            }
            if !config.subscription_identifiers {
                properties.subscription_identifier_available = Some(0);
            }
            if !config.shared_subscriptions {
                properties.shared_subscription_available = Some(0);
            }
            if assigned {
                // [MQTT-3.2.2-16]
                properties.assigned_client_identifier = Some(client_id.clone());
            }
            if keep_alive != connect.keep_alive {
                // [MQTT-3.2.2-21]: the client must use the Server Keep Alive.
                properties.server_keep_alive = Some(keep_alive);
            }
            if expiry != requested_expiry {
                properties.session_expiry_interval = Some(expiry);
            }
            // [MQTT-3.1.2-28]: Response Information only when asked for. The broker suggests a per-client
            // response topic prefix; it is a convention, not enforced.
            if connect.properties.request_response_information == Some(1) {
                properties.response_information = Some(format!("response/{client_id}/"));
            }
            if let Some(method) = connect.properties.authentication_method.clone() {
                properties.authentication_method = Some(method);
                properties.authentication_data = auth_data;
            }
        }
        let connack = ConnAck {
            session_present,
            reason: ReasonCode::SUCCESS,
            properties: properties.into(),
        };
        self.send(conn, &Packet::ConnAck(connack));

        self.connected_clients += 1;
        self.quota_connected(conn);
        self.stats.clients_connected_max = self.stats.clients_connected_max.max(self.connected_clients as u64);
        self.outputs.push_back(super::Output::Event(Event::ClientConnected {
            conn,
            client_id,
            peer,
            protocol: connect.protocol,
            clean_start: connect.clean_start,
            keep_alive,
        }));
        if keep_alive > 0 {
            self.arm_connection_timer(conn, self.now + keep_alive_grace(keep_alive));
        }
        if session_present {
            if self.planted(super::planted::PlantedBug::InflightDroppedOnReconnect) {
                if let Some(session) = self.sessions.get_mut(&key) {
                    let bytes = session
                        .inflight()
                        .iter()
                        .map(|i| super::quota::delivery_bytes(&i.delivery))
                        .sum();
                    session.clear_inflight();
                    self.count_dequeued(key, bytes);
                }
            }
            self.resend_inflight(key);
        }
        self.pump(key);
    }

    /// Finds or creates the session for the CONNECT's client id, taking it over from another connection if need be
    /// [MQTT-3.1.4-3], discarding it on Clean Start [MQTT-3.1.2-4]. Returns the key and Session Present.
    /// The third value says whether a pending will was cancelled.
    fn attach_session(&mut self, conn: ConnectionId, connect: &Connect, expiry: u32) -> (SessionKey, bool, bool) {
        let existing = self.sessions_by_client_id.get(connect.client_id.as_str()).copied();
        if let Some(key) = existing {
            self.take_over(key, connect.clean_start);
            if connect.clean_start {
                self.end_session(key);
            }
        }
        let resumed = if connect.clean_start {
            None
        } else {
            existing.filter(|k| self.sessions.contains_key(k))
        };
        let (key, present) = match resumed {
            Some(key) => (key, true),
            None => {
                let key = SessionKey(self.next_session_key);
                self.next_session_key += 1;
                let client_id: Arc<str> = Arc::from(connect.client_id.as_str());
                let session = Session::new(Arc::clone(&client_id), connect.protocol);
                self.sessions.insert(key, Box::new(session));
                self.sessions_by_client_id.insert(client_id, key);
                (key, false)
            }
        };
        let mut had_pending_will = false;
        if let Some(session) = self.sessions.get_mut(&key) {
            session.protocol = connect.protocol;
            session.expiry_interval = expiry;
            session.connection = Some(conn);
            session.username = connect.username.as_deref().map(Arc::from);
            session.expires_at = None;
            session.offline_since = None;
            // [MQTT-3.1.3-9]: reconnecting before the Will Delay Interval passed cancels the pending will.
            had_pending_will = session.pending_will.take().is_some();
            session.will = connect.will.clone().map(Box::new);
        }
        (key, present, had_pending_will)
    }

    /// Disconnects whichever connection holds the session, because another CONNECT claims its client id.
    fn take_over(&mut self, key: SessionKey, clean_start: bool) {
        let always = self.planted(super::planted::PlantedBug::TakeoverPublishesDelayedWill);
        let Some(session) = self.sessions.get_mut(&key) else {
            return;
        };
        let Some(old) = session.connection.take() else {
            return;
        };
        // The old connection's will: published now if it has no delay or its session ends with this CONNECT;
        // otherwise the new connection arrived within the delay, which cancels it [MQTT-3.1.2-8].
        if let Some(will) = session.will.take() {
            let delay = will.properties.will_delay_interval.unwrap_or(0);
            if delay == 0 || clean_start || always {
                let (client_id, username) = (Arc::clone(&session.client_id), session.username.clone());
                self.publish_will(*will, &client_id, username.as_deref());
            }
        }
        if let Some(connection) = self.connections.expected_mut(old) {
            connection.session = None;
        }
        if self.planted(super::planted::PlantedBug::TakeoverWithoutDisconnect) {
            self.close_connection(old, WillPolicy::Discard, "session taken over");
            return;
        }
        self.disconnect_with_policy(
            old,
            ReasonCode::SESSION_TAKEN_OVER,
            WillPolicy::Discard,
            "session taken over",
        );
    }

    /// Detaches a session from its closed connection: will per policy, then the session ends or waits to expire.
    pub(super) fn detach_session(&mut self, key: SessionKey, conn: ConnectionId, will_policy: WillPolicy) {
        let ignore_delay = self.planted(super::planted::PlantedBug::WillDelayIgnored);
        let Some(session) = self.sessions.get_mut(&key) else {
            return;
        };
        if session.connection != Some(conn) {
            return;
        }
        session.connection = None;
        session.offline_since = Some(self.now);
        let will = session.will.take();
        let had_will = will.is_some();
        let expiry = session.expiry_interval;
        let mut publish_now = None;
        if let (Some(will), WillPolicy::Publish) = (will, will_policy) {
            let delay = will.properties.will_delay_interval.unwrap_or(0);
            // The will goes out at the delay or when the session ends, whichever is first [MQTT-3.1.3-9].
            if delay == 0 || expiry == 0 || ignore_delay {
                // The session may end below, before the will goes out: keep its author's identity.
                publish_now = Some((*will, Arc::clone(&session.client_id), session.username.clone()));
            } else {
                let at = self.now + Duration::from_secs(u64::from(delay.min(expiry)));
                session.pending_will = Some(Box::new(super::session::PendingWill {
                    will: *will,
                    publish_at: at,
                }));
                self.timers.arm(at, Timer::WillDelay(key));
            }
        }
        self.persist_offline(key);
        self.persist_will_pending(key);
        // An armed will recorded at CONNECT (`Config::durable_wills`) that is neither pending now nor published
        // later (discarded by DISCONNECT 0x00, or published at once) is done.
        let pending = self.sessions.get(&key).is_some_and(|s| s.pending_will.is_some());
        if self.config.durable_wills && had_will && !pending {
            self.persist_will_done(key);
        }
        if expiry == 0 {
            self.end_session(key);
        } else if expiry != u32::MAX {
            let at = self.now + Duration::from_secs(u64::from(expiry));
            if let Some(session) = self.sessions.get_mut(&key) {
                session.expires_at = Some(at);
            }
            self.arm_expiry_timer(key, at);
        }
        // Offline, the session no longer holds up publishers: what does not fit its queue is dropped.
        self.note_queue_drained(key);
        if let Some((will, client_id, username)) = publish_now {
            self.publish_will(will, &client_id, username.as_deref());
        }
    }

    pub(super) fn check_session_expiry(&mut self, key: SessionKey) {
        let Some(session) = self.sessions.get_mut(&key) else {
            return;
        };
        // This entry fired; a later one may still be pending, which costs at most one more wake-up.
        session.expiry_timer_due = None;
        match (session.connection, session.expires_at) {
            (None, Some(at)) if at <= self.now => self.end_session(key),
            // Offline again since this entry was armed, with a later deadline that no entry covers yet.
            (None, Some(at)) => self.arm_expiry_timer(key, at),
            _ => {}
        }
    }

    /// Makes sure a `Timer::SessionExpiry` entry fires for the session no later than `at`: a pending entry that fires
    /// earlier re-checks (and re-arms) then, so none is added.
    pub(super) fn arm_expiry_timer(&mut self, key: SessionKey, at: crate::time::Time) {
        let Some(session) = self.sessions.get_mut(&key) else {
            return;
        };
        if session.expiry_timer_due.is_none_or(|due| due > at) {
            session.expiry_timer_due = Some(at);
            self.timers.arm(at, Timer::SessionExpiry(key));
        }
    }

    /// Removes a session and all its state; a will still pending is published, as the session ending is one of
    /// its triggers [MQTT-3.1.2-8].
    pub(super) fn end_session(&mut self, key: SessionKey) {
        let Some(session) = self.sessions.remove(&key) else {
            return;
        };
        self.drop_retained_streams(key);
        if self.sessions_by_client_id.get(&session.client_id) == Some(&key) {
            self.sessions_by_client_id.remove(&session.client_id);
        }
        for filter in session.subscriptions.keys() {
            self.remove_from_tree(filter, key);
        }
        self.persist_session_end(key, &session);
        self.stats
            .dropped(DropCause::SessionEnded, session.queue().len() as u64);
        self.count_session_ended(session.queued_bytes);
        self.woken.extend(session.waiters().iter().copied());
        if let Some(pending) = session.pending_will {
            self.publish_will(pending.will, &session.client_id, session.username.as_deref());
        }
    }

    pub(super) fn handle_disconnect(&mut self, conn: ConnectionId, disconnect: Disconnect) {
        let Some(key) = self.connections.expected(conn).and_then(|c| c.session) else {
            return;
        };
        let requested = disconnect.properties.session_expiry_interval;
        let requested = requested.filter(|_| !self.planted(super::planted::PlantedBug::DisconnectExpiryIgnored));
        if let Some(requested) = requested {
            let current = self.sessions.get(&key).map(|s| s.expiry_interval).unwrap_or(0);
            // [MQTT-3.14.2-2]: a session that was to end with the connection cannot be given an expiry now.
            if current == 0 && requested != 0 {
                self.protocol_error(conn, ReasonCode::PROTOCOL_ERROR, "session expiry set on DISCONNECT");
                return;
            }
            let expiry = requested.min(self.config.max_session_expiry);
            if let Some(session) = self.sessions.get_mut(&key) {
                session.expiry_interval = expiry;
            }
            self.persist_expiry(key, expiry);
        }
        // [MQTT-3.14.4-3]: a normal DISCONNECT deletes the will; 0x04 asks for it to be published.
        let policy = if disconnect.reason == ReasonCode::DISCONNECT_WITH_WILL {
            WillPolicy::Publish
        } else {
            WillPolicy::Discard
        };
        let text = format!("client sent DISCONNECT ({})", disconnect.reason);
        self.close_connection(conn, policy, &text);
    }

    /// Keep alive in effect: the broker's cap replaces a larger (or zero) value for MQTT 5 clients, who are told via
    /// Server Keep Alive [MQTT-3.2.2-21]. Older clients cannot be told, so theirs stands.
    fn effective_keep_alive(&self, requested: u16, v5: bool) -> u16 {
        let cap = self.config.max_keep_alive;
        if v5 && cap != 0 && (requested == 0 || requested > cap) {
            cap
        } else {
            requested
        }
    }

    /// Sends again, in order, everything that was inflight when the session's previous connection ended
    /// [MQTT-4.4.0-1]: PUBLISH with DUP set [MQTT-3.3.1-1], or PUBREL for messages already past PUBREC.
    fn resend_inflight(&mut self, key: SessionKey) {
        let Some(session) = self.sessions.get(&key) else {
            return;
        };
        let Some(conn) = session.connection else {
            return;
        };
        let packets: Vec<Packet> = session
            .inflight()
            .iter()
            .map(|entry| match entry.state {
                super::session::Awaiting::PubComp => {
                    Packet::PubRel(crate::packet::PubResponse::new(entry.packet_id, ReasonCode::SUCCESS))
                }
                _ => Packet::Publish(entry.delivery.to_publish(entry.packet_id, true, self.now)),
            })
            .collect();
        for packet in packets {
            match packet {
                Packet::Publish(publish) => {
                    let packet_id = publish.packet_id;
                    if !self.send_publish(conn, publish) {
                        // Too large for this connection's Maximum Packet Size: it counts as delivered
                        // [MQTT-3.1.2-25] and must not hold its inflight slot for ever.
                        if let Some(session) = self.sessions.get_mut(&key) {
                            if let Some(position) = session.inflight_position(packet_id) {
                                if let Some(entry) = session.remove_inflight(position) {
                                    self.count_dequeued(key, super::quota::delivery_bytes(&entry.delivery));
                                }
                            }
                        }
                    }
                }
                other => {
                    self.send(conn, &other);
                }
            }
        }
    }
}

fn unspecified_addr() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([0, 0, 0, 0], 0))
}
