//! The broker's deadlines firing: connect timeouts and keep alives (one timer entry per connection), session
//! expiry, will delays, held refusals, retained streams and `$SYS`, and the timer queue kept free of stale entries.

use super::connection::Phase;
use super::timer::Timer;
use super::{planted, Broker, ConnectionId, WillPolicy};
use crate::packet::ReasonCode;
use crate::time::Time;

impl Broker {
    /// Drops the timer entries that would do nothing when they fire: their connection or session is gone, or a
    /// later disconnect re-armed the session's expiry or will at another deadline. Keeps the queue proportional to
    /// live connections and sessions however often clients come and go.
    pub(super) fn compact_timers(&mut self) {
        let expiry_compacted_away = self.planted(planted::PlantedBug::SessionExpiryCompactedAway);
        let (connections, sessions, streams) = (&self.connections, &self.sessions, &self.retained_streams);
        self.timers.compact(|deadline, timer| match timer {
            Timer::RetainedStream(key) => streams.contains_key(&key),
            Timer::Connection(conn) | Timer::Refusal(conn) => connections.contains(conn),
            // The entry `expiry_timer_due` names stays, whatever the session's state: `arm_expiry_timer` arms no
            // new one while it is pending, counting on it to re-check and re-arm when it fires. Dropped because a
            // later drop had moved `expires_at`, it left the session without any entry, never to expire (seed 3629
            // of the simulator) [MQTT-4.1.0-2]. At most one entry per session is kept.
            // The planted `SessionExpiryCompactedAway` keeps the old rule, which dropped that entry.
            Timer::SessionExpiry(key) if expiry_compacted_away => sessions
                .get(&key)
                .is_some_and(|s| s.connection.is_none() && s.expires_at == Some(deadline)),
            Timer::SessionExpiry(key) => sessions.get(&key).is_some_and(|s| s.expiry_timer_due == Some(deadline)),
            Timer::WillDelay(key) => sessions.get(&key).is_some_and(|s| {
                s.connection.is_none() && s.pending_will.as_ref().is_some_and(|w| w.publish_at == deadline)
            }),
            Timer::Sys => true,
        });
    }

    /// Timer entries pending, stale ones included (tests and metrics).
    pub fn timer_entries(&self) -> usize {
        self.timers.len()
    }

    /// Fires the timers due now; one armed for now meanwhile waits for the next Tick (see `Timers::firing`).
    pub(super) fn fire_timers(&mut self) {
        self.timers.begin_firing(self.now);
        while let Some(timer) = self.timers.pop_due(self.now) {
            match timer {
                Timer::Connection(conn) => self.connection_timer(conn),
                Timer::SessionExpiry(key) => self.check_session_expiry(key),
                Timer::WillDelay(key) => self.check_will_delay(key),
                Timer::Refusal(conn) => self.send_held_refusal(conn),
                Timer::RetainedStream(key) => self.advance_retained(key),
                Timer::Sys => {
                    self.publish_sys();
                    let next = self.now + std::time::Duration::from_secs(u64::from(self.config.sys_interval));
                    self.timers.arm(next, Timer::Sys);
                }
            }
        }
        self.timers.end_firing();
    }

    /// Makes sure a `Timer::Connection` entry fires for `conn` no later than `at`, unless a pending entry fires
    /// earlier (it re-checks and re-arms when it does). Entries are never cancelled; a stale one costs a wake-up.
    pub(super) fn arm_connection_timer(&mut self, conn: ConnectionId, at: Time) {
        let Some(connection) = self.connections.expected_mut(conn) else {
            return;
        };
        if at < connection.timer_due || connection.timer_due <= self.now {
            connection.timer_due = connection.timer_due.max(at);
            self.timers.arm(at, Timer::Connection(conn));
        }
    }

    pub(super) fn connection_timer(&mut self, conn: ConnectionId) {
        let Some(phase) = self.connections.if_open(conn).map(|c| c.phase) else {
            return;
        };
        match phase {
            Phase::AwaitingConnect | Phase::Authenticating | Phase::Verifying => self.connect_timeout(conn),
            Phase::Connected => self.check_keep_alive(conn),
            Phase::Refusing | Phase::Closing => {}
        }
    }

    pub(super) fn connect_timeout(&mut self, conn: ConnectionId) {
        let waiting = self.connections.expected(conn).is_some_and(|c| {
            matches!(
                c.phase,
                Phase::AwaitingConnect | Phase::Authenticating | Phase::Verifying
            )
        });
        if waiting {
            self.close_connection(conn, WillPolicy::Discard, "no CONNECT within the connect timeout");
        }
    }

    /// [MQTT-3.1.2-22]: close a connection that sent nothing for one and a half times its keep alive.
    pub(super) fn check_keep_alive(&mut self, conn: ConnectionId) {
        let Some(connection) = self.connections.expected(conn) else {
            return;
        };
        if connection.keep_alive == 0 || connection.phase != Phase::Connected {
            return;
        }
        let deadline = connection.last_activity + keep_alive_grace(connection.keep_alive);
        if self.now >= deadline {
            self.disconnect_with(conn, ReasonCode::KEEP_ALIVE_TIMEOUT, "keep alive timeout");
        } else if self.planted(planted::PlantedBug::KeepAliveRearmsStaleDeadline) {
            let stale = connection.timer_due;
            self.arm_connection_timer(conn, stale);
        } else {
            self.arm_connection_timer(conn, deadline);
        }
    }
}

/// One and a half times the keep alive [MQTT-3.1.2-22].
pub(super) fn keep_alive_grace(keep_alive: u16) -> std::time::Duration {
    std::time::Duration::from_millis(u64::from(keep_alive) * 1500)
}
