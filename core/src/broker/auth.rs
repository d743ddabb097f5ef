//! Authentication and authorization, pluggable: plain username/password checks, MQTT 5 enhanced authentication
//! (AUTH exchanges, section 4.12) and per-topic access control go through one trait. Implementations must be
//! deterministic for the simulator's sake: the same calls give the same answers.
//!
//! A verdict that takes long to compute (a password hash such as Argon2, a call to an external service) need not
//! stall the core: `authenticate` may answer [`AuthDecision::Pending`] and the driver later delivers the verdict
//! with `Input::AuthDecided` for the CONNECT's [`ConnectInfo::conn`]. Meanwhile the core leaves the connection's
//! later bytes undecoded (see `Broker::handle_received`).

use super::{ConnectionId, ListenerId};
use crate::packet::ReasonCode;
use bytes::Bytes;
use std::net::SocketAddr;

/// What the authenticator sees of a CONNECT.
#[derive(Debug, Clone)]
pub struct ConnectInfo<'a> {
    /// The connection the CONNECT arrived on: the key under which a [`AuthDecision::Pending`] verdict is delivered.
    pub conn: ConnectionId,
    pub client_id: &'a str,
    pub peer: SocketAddr,
    /// The listener the connection arrived on, for per-listener policies (anonymous access).
    pub listener: ListenerId,
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
    /// Authentication Method of MQTT 5 enhanced authentication.
    pub auth_method: Option<&'a str>,
    pub auth_data: Option<&'a [u8]>,
}

/// Who is asking for access to a topic: an authenticated client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIdentity<'a> {
    pub client_id: &'a str,
    /// The User Name of its CONNECT; `None` for anonymous clients.
    pub username: Option<&'a str>,
}

/// The authenticator's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthDecision {
    /// Let the client in; `data` is sent as Authentication Data in CONNACK / AUTH (enhanced auth only).
    Allow { data: Option<Bytes> },
    /// Keep going: send AUTH 0x18 Continue authentication with this data and wait for the client's AUTH.
    Continue { data: Option<Bytes> },
    /// Refuse with this reason code (0x86 Bad User Name or Password, 0x87 Not authorized, 0x8C Bad
    /// authentication method, ...).
    Deny(ReasonCode),
    /// Decided later: the driver will deliver the verdict (`Allow` or `Deny`) as `Input::AuthDecided` for this
    /// connection. Only an answer of [`Authenticator::authenticate`]; from `continue_auth` it counts as
    /// `Deny(0x87 Not authorized)`. A verdict that never comes ends with the connect timeout.
    Pending,
}

pub trait Authenticator {
    /// Called once per CONNECT. May answer [`AuthDecision::Pending`] and deliver the verdict later.
    fn authenticate(&mut self, info: &ConnectInfo<'_>) -> AuthDecision;

    /// Called for each AUTH packet of an enhanced authentication exchange (during CONNECT or re-authentication).
    fn continue_auth(&mut self, client_id: &str, method: &str, data: Option<&[u8]>) -> AuthDecision {
        let _ = (client_id, method, data);
        AuthDecision::Deny(ReasonCode::BAD_AUTHENTICATION_METHOD)
    }

    /// May `client` publish to `topic`? Asked for every PUBLISH it sends (retained ones included) and for its
    /// will at CONNECT time.
    fn authorize_publish(&self, client: ClientIdentity<'_>, topic: &str) -> bool {
        let _ = (client, topic);
        true
    }

    /// May `client` subscribe to `filter` (without any `$share/{group}/` prefix)? Deliveries through an allowed
    /// subscription are still checked one by one with [`Authenticator::authorize_read`].
    fn authorize_subscribe(&self, client: ClientIdentity<'_>, filter: &str) -> bool {
        let _ = (client, filter);
        true
    }

    /// May `client` receive a message published to `topic`? Asked per delivery, so a subscription to `#` only
    /// brings the topics the client may read.
    fn authorize_read(&self, client: ClientIdentity<'_>, topic: &str) -> bool {
        let _ = (client, topic);
        true
    }

    /// Whether `authorize_read` may ever refuse. False lets the broker skip asking per delivery (most of a fan-out's
    /// work is deliveries); true, the default, is always correct.
    fn restricts_reads(&self) -> bool {
        true
    }
}

/// Lets everyone in and allows every topic; refuses enhanced authentication, which it does not implement
/// [MQTT-4.12.0-1].
#[derive(Debug, Default, Clone, Copy)]
pub struct AllowAll;

impl Authenticator for AllowAll {
    fn authenticate(&mut self, info: &ConnectInfo<'_>) -> AuthDecision {
        if info.auth_method.is_some() {
            AuthDecision::Deny(ReasonCode::BAD_AUTHENTICATION_METHOD)
        } else {
            AuthDecision::Allow { data: None }
        }
    }

    fn restricts_reads(&self) -> bool {
        false
    }
}
