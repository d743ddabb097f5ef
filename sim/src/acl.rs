//! Access control in the simulation: a fixed rule set, a pure function of the client identifier and the topic, that
//! the broker enforces (as its `Authenticator`) and the model predicts. It exercises the broker's authorization of
//! PUBLISH (refused: 0x87 for MQTT 5, dropped for 3.1.1), SUBSCRIBE (0x87 / 0x80 in SUBACK) and each delivery (a
//! subscription to `#` does not bring topics the client may not read), wills included.
//!
//! It also answers some CONNECTs `AuthDecision::Pending`, as a password verified off the event loop would be; the
//! world delivers the verdict a little later (or, as a fault, never: the connect timeout ends the connection).

use mqtt_core::broker::{AuthDecision, Authenticator, ClientIdentity, ConnectInfo, ConnectionId};
use mqtt_core::packet::ReasonCode;

/// The rules, switched on per seed.
#[derive(Debug, Clone, Copy, Default)]
pub struct SimAcl {
    pub enabled: bool,
    /// One CONNECT in this many waits for a delayed verdict (0 = none).
    pub defer_one_in: u64,
    /// Mixed into the choice, so each seed defers different connections.
    pub salt: u64,
}

/// The simulated client's index in `sim-{n}`; other identifiers (probes, misbehaving clients) get no rules.
fn client_number(client_id: &str) -> Option<usize> {
    client_id.strip_prefix("sim-")?.parse().ok()
}

fn first_level(topic: &str) -> &str {
    topic.split('/').next().unwrap_or(topic)
}

impl SimAcl {
    /// Does the CONNECT of `client_id` on `conn` wait for a delayed verdict? Only the simulated clients' do (the
    /// misbehaving ones and the probes are checked for prompt answers). A pure function, so that the world knows
    /// without asking the broker.
    pub fn defers(&self, conn: ConnectionId, client_id: &str) -> bool {
        if self.defer_one_in == 0 || client_number(client_id).is_none() {
            return false;
        }
        // SplitMix64's finalizer: consecutive connection ids spread evenly.
        let mut x = conn.0 ^ self.salt;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
        x.is_multiple_of(self.defer_one_in)
    }

    /// Odd clients may not publish under `d`.
    pub fn may_publish(&self, client: usize, topic: &str) -> bool {
        !(self.enabled && client % 2 == 1 && first_level(topic) == "d")
    }

    /// Clients 1, 4, 7 may not subscribe to filters starting with the literal level `c` (wildcards stay allowed).
    pub fn may_subscribe(&self, client: usize, filter: &str) -> bool {
        !(self.enabled && client % 3 == 1 && first_level(filter) == "c")
    }

    /// Clients 2 and 6 may not read topics under `b`, whatever their subscriptions say.
    pub fn may_read(&self, client: usize, topic: &str) -> bool {
        !(self.enabled && client % 4 == 2 && first_level(topic) == "b")
    }
}

impl Authenticator for SimAcl {
    fn authenticate(&mut self, info: &ConnectInfo<'_>) -> AuthDecision {
        if info.auth_method.is_some() {
            AuthDecision::Deny(ReasonCode::BAD_AUTHENTICATION_METHOD)
        } else if self.defers(info.conn, info.client_id) {
            AuthDecision::Pending
        } else {
            AuthDecision::Allow { data: None }
        }
    }

    fn authorize_publish(&self, client: ClientIdentity<'_>, topic: &str) -> bool {
        client_number(client.client_id).is_none_or(|n| self.may_publish(n, topic))
    }

    fn authorize_subscribe(&self, client: ClientIdentity<'_>, filter: &str) -> bool {
        client_number(client.client_id).is_none_or(|n| self.may_subscribe(n, filter))
    }

    fn authorize_read(&self, client: ClientIdentity<'_>, topic: &str) -> bool {
        client_number(client.client_id).is_none_or(|n| self.may_read(n, topic))
    }
}
