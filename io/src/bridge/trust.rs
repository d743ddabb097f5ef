//! The local broker lets its bridges in: their in-memory connections arrive on a listener id no socket has, and
//! the broker's authenticator is wrapped so that such a connection is allowed and its client may publish and
//! subscribe anywhere (it carries what the operator configured), while a network client that claims a bridge's
//! local client id is refused (it would take the bridge's session over).

use mqtt_core::broker::{AuthDecision, Authenticator, ClientIdentity, ConnectInfo, ListenerId};
use mqtt_core::packet::ReasonCode;

/// The listener id of every bridge's local connection.
pub const BRIDGE_LISTENER: ListenerId = ListenerId(usize::MAX);

pub struct BridgeTrust {
    inner: Box<dyn Authenticator>,
    /// The bridges' local client ids.
    ids: Vec<String>,
}

impl BridgeTrust {
    pub fn new(inner: Box<dyn Authenticator>, ids: Vec<String>) -> BridgeTrust {
        BridgeTrust { inner, ids }
    }

    fn is_bridge(&self, client_id: &str) -> bool {
        self.ids.iter().any(|id| id == client_id)
    }
}

impl Authenticator for BridgeTrust {
    fn authenticate(&mut self, info: &ConnectInfo<'_>) -> AuthDecision {
        match (info.listener == BRIDGE_LISTENER, self.is_bridge(info.client_id)) {
            (true, true) => AuthDecision::Allow { data: None },
            (true, false) | (false, true) => AuthDecision::Deny(ReasonCode::NOT_AUTHORIZED),
            (false, false) => self.inner.authenticate(info),
        }
    }

    fn continue_auth(&mut self, client_id: &str, method: &str, data: Option<&[u8]>) -> AuthDecision {
        self.inner.continue_auth(client_id, method, data)
    }

    fn authorize_publish(&self, client: ClientIdentity<'_>, topic: &str) -> bool {
        self.is_bridge(client.client_id) || self.inner.authorize_publish(client, topic)
    }

    fn authorize_subscribe(&self, client: ClientIdentity<'_>, filter: &str) -> bool {
        self.is_bridge(client.client_id) || self.inner.authorize_subscribe(client, filter)
    }

    fn authorize_read(&self, client: ClientIdentity<'_>, topic: &str) -> bool {
        self.is_bridge(client.client_id) || self.inner.authorize_read(client, topic)
    }

    fn restricts_reads(&self) -> bool {
        self.inner.restricts_reads()
    }
}
