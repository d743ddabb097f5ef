//! Who a client is when its transport says so: on a listener in `Config::identity_as_username`, the name the
//! driver verified (a TLS client certificate's Common Name, `Input::Identified`) is the User Name the CONNECT is
//! authenticated with, whatever the CONNECT itself claims. The certificate is the credential, so the CONNECT's
//! Password is dropped too; the authenticator decides on the verified name as on any other (section 5.4.1: a server
//! may authenticate clients by their TLS certificate). A client refused is sent its CONNACK and closed like any
//! other that fails authentication [MQTT-3.1.4-2].

use super::connection::Phase;
use super::{Broker, ConnectionId};
use crate::packet::Connect;

impl Broker {
    /// The transport's verified name for `conn`, kept until its CONNECT.
    pub(super) fn handle_identified(&mut self, conn: ConnectionId, identity: &str) {
        // The connection closed (or timed out) after the handshake: nothing left to identify.
        let Some(connection) = self.connections.if_open_mut(conn) else {
            return;
        };
        // Only the CONNECT reads the name. The driver gives it before any MQTT bytes, so one arriving later would
        // change a decision already taken: ignored.
        if connection.phase != Phase::AwaitingConnect || connection.protocol.is_some() {
            return;
        }
        connection.extras().identity = Some(Box::from(identity));
    }

    /// Puts the verified name in the CONNECT's User Name where the connection's listener asks for it. Returns
    /// `false` if the listener asks for one and the transport verified none (a certificate without a Common Name):
    /// such a client cannot be told apart from any other and must be refused.
    pub(super) fn apply_identity(&mut self, conn: ConnectionId, connect: &mut Connect) -> bool {
        let ignored = self.planted(super::planted::PlantedBug::IdentityIgnored);
        let falls_back = self.planted(super::planted::PlantedBug::IdentityMissingFallsBack);
        let Some(connection) = self.connections.expected_mut(conn) else {
            return false;
        };
        // Before the CONNECT the extras hold nothing but the name (see `Extras::identity`): dropping them keeps
        // such a connection's footprint that of any other.
        let identity = connection.extras.take().and_then(|extras| extras.identity);
        if !self.config.identity_as_username.contains(&connection.listener) || ignored {
            return true;
        }
        if identity.is_none() && falls_back {
            return true;
        }
        connect.username = identity.map(String::from);
        connect.password = None;
        connect.username.is_some()
    }
}
