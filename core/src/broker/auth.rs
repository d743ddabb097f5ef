//! Authentication, pluggable: plain username/password checks and MQTT 5 enhanced authentication (AUTH exchanges,
//! section 4.12) go through one trait. Implementations must be deterministic for the simulator's sake.

use crate::packet::ReasonCode;
use bytes::Bytes;
use std::net::SocketAddr;

/// What the authenticator sees of a CONNECT.
#[derive(Debug, Clone)]
pub struct ConnectInfo<'a> {
    pub client_id: &'a str,
    pub peer: SocketAddr,
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
    /// Authentication Method of MQTT 5 enhanced authentication.
    pub auth_method: Option<&'a str>,
    pub auth_data: Option<&'a [u8]>,
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
}

pub trait Authenticator {
    /// Called once per CONNECT.
    fn authenticate(&mut self, info: &ConnectInfo<'_>) -> AuthDecision;

    /// Called for each AUTH packet of an enhanced authentication exchange (during CONNECT or re-authentication).
    fn continue_auth(&mut self, client_id: &str, method: &str, data: Option<&[u8]>) -> AuthDecision {
        let _ = (client_id, method, data);
        AuthDecision::Deny(ReasonCode::BAD_AUTHENTICATION_METHOD)
    }
}

/// Lets everyone in; refuses enhanced authentication, which it does not implement [MQTT-4.12.0-1].
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
}
