//! Access control in the simulation: a fixed rule set, a pure function of the client identifier and the topic, that
//! the broker enforces (as its `Authenticator`) and the model predicts. It exercises the broker's authorization of
//! PUBLISH (refused: 0x87 for MQTT 5, dropped for 3.1.1), SUBSCRIBE (0x87 / 0x80 in SUBACK) and each delivery (a
//! subscription to `#` does not bring topics the client may not read), wills included.
//!
//! It also answers some CONNECTs `AuthDecision::Pending`, as a password verified off the event loop would be; the
//! world delivers the verdict a little later (or, as a fault, never: the connect timeout ends the connection).
//!
//! And it speaks one enhanced authentication method (MQTT 5.0 section 4.12), [`CHALLENGE_METHOD`]: the client
//! says hello, the broker answers AUTH 0x18 with a challenge, the client answers it, the broker accepts (CONNACK 0x00,
//! or AUTH 0x00 when re-authenticating, with its final data) or refuses (0x87). Every step is a pure function of
//! what the client sent, so the world predicts each answer (see `world::enhanced_auth`). Any other method is
//! refused with 0x8C Bad authentication method.
//!
//! And it knows a few users, [`USERS`] of them named `u0`, `u1`, ..., each with a password ([`password_of`]): a
//! CONNECT with a User Name is admitted if it names one of them with the right password, or names one of them
//! alone on [`IDENTITY_LISTENER`] (where the broker puts the name the transport verified, a TLS client
//! certificate's, in place of the CONNECT's: the certificate is the credential, section 5.4.1), and refused with
//! 0x86 Bad User Name or Password otherwise. A user may subscribe to `h/{user}` (its "home") and to no other
//! user's (see `world::identity`, which connects as users; the simulated clients connect without a User Name and
//! never use `h`).

use mqtt_core::broker::{AuthDecision, Authenticator, ClientIdentity, ConnectInfo, ConnectionId, ListenerId};
use mqtt_core::packet::ReasonCode;

/// The enhanced authentication method the simulated broker supports.
pub const CHALLENGE_METHOD: &str = "SIM-CHALLENGE";

/// The users the authenticator knows: `u0` .. `u{USERS - 1}`.
pub const USERS: usize = 4;

/// The listener whose clients are who their transport verified them to be, in seeds with
/// `Options::identity_listener` (`Config::identity_as_username`); the simulated clients use listener 0.
pub const IDENTITY_LISTENER: ListenerId = ListenerId(1);

/// The first level of every user's home filter (`h/{user}`), used by nothing else.
pub const HOME: &str = "h";

/// User `n`'s name.
pub fn user_name(n: usize) -> String {
    format!("u{n}")
}

/// User `n`'s password.
pub fn password_of(n: usize) -> Vec<u8> {
    format!("pw{n}").into_bytes()
}

/// The number of a known user's name.
fn user_number(name: &str) -> Option<usize> {
    name.strip_prefix('u')?.parse().ok().filter(|n| *n < USERS)
}

/// The verdict on a CONNECT's User Name and Password (`vouched`: the name is the one its transport verified, so no
/// password comes with it). A pure function, which `world::identity` predicts with.
pub fn check_user(name: &str, password: Option<&[u8]>, vouched: bool) -> AuthDecision {
    match user_number(name) {
        Some(n) if vouched || password == Some(&password_of(n)[..]) => AuthDecision::Allow { data: None },
        _ => AuthDecision::Deny(ReasonCode::BAD_USER_NAME_OR_PASSWORD),
    }
}

/// May a client with `username` subscribe to `filter`? A home filter only by its own user; anything else by anyone.
pub fn may_subscribe_home(username: Option<&str>, filter: &str) -> bool {
    match filter.split_once('/') {
        Some((HOME, owner)) => username == Some(owner),
        _ => true,
    }
}

/// SplitMix64's finalizer.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn digest(parts: &[&[u8]]) -> u64 {
    parts
        .iter()
        .flat_map(|part| part.iter().chain([&0xFF]))
        .fold(0x5eed, |h, b| mix(h ^ u64::from(*b)))
}

/// The broker's challenge to `client_id`'s hello (a first AUTH step's data starts with `hello:`).
pub fn challenge_for(client_id: &str, hello: &[u8]) -> Vec<u8> {
    format!("challenge:{:016x}", digest(&[client_id.as_bytes(), hello])).into_bytes()
}

/// The right answer to `challenge`: it names the challenge, so the broker needs no state between the steps.
pub fn answer_to(challenge: &[u8]) -> Vec<u8> {
    let mut answer = b"answer:".to_vec();
    answer.extend_from_slice(challenge);
    answer.extend(format!(":{:016x}", digest(&[b"answer", challenge])).into_bytes());
    answer
}

/// The broker's final Authentication Data on accepting `answer`.
pub fn final_data(answer: &[u8]) -> Vec<u8> {
    format!("welcome:{:016x}", digest(&[b"final", answer])).into_bytes()
}

/// The broker's verdict on one step of a [`CHALLENGE_METHOD`] exchange.
fn challenge_step(client_id: &str, data: Option<&[u8]>) -> AuthDecision {
    let data = data.unwrap_or_default();
    if data.starts_with(b"hello:") {
        return AuthDecision::Continue {
            data: Some(challenge_for(client_id, data).into()),
        };
    }
    let challenge = data
        .strip_prefix(b"answer:".as_slice())
        .and_then(|rest| rest.get(..rest.len().saturating_sub(17)));
    match challenge {
        Some(challenge) if answer_to(challenge) == data => AuthDecision::Allow {
            data: Some(final_data(data).into()),
        },
        _ => AuthDecision::Deny(ReasonCode::NOT_AUTHORIZED),
    }
}

/// The rules, switched on per seed.
#[derive(Debug, Clone, Copy, Default)]
pub struct SimAcl {
    pub enabled: bool,
    /// One CONNECT in this many waits for a delayed verdict (0 = none).
    pub defer_one_in: u64,
    /// Mixed into the choice, so each seed defers different connections.
    pub salt: u64,
    /// [`IDENTITY_LISTENER`] takes names from the transport: a user named there needs no password.
    pub identity_listener: bool,
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
        if info.auth_method == Some(CHALLENGE_METHOD) {
            // A CONNECT must start the exchange: an answer without a challenge is refused.
            match info.auth_data {
                Some(hello) if hello.starts_with(b"hello:") => challenge_step(info.client_id, Some(hello)),
                _ => AuthDecision::Deny(ReasonCode::NOT_AUTHORIZED),
            }
        } else if info.auth_method.is_some() {
            AuthDecision::Deny(ReasonCode::BAD_AUTHENTICATION_METHOD)
        } else if self.defers(info.conn, info.client_id) {
            // A simulated client's verdict (the world delivers Allow: they are entitled, whatever their name).
            AuthDecision::Pending
        } else if let Some(name) = info.username {
            let vouched = self.identity_listener && info.listener == IDENTITY_LISTENER;
            check_user(name, info.password, vouched)
        } else {
            AuthDecision::Allow { data: None }
        }
    }

    fn continue_auth(&mut self, client_id: &str, method: &str, data: Option<&[u8]>) -> AuthDecision {
        if method == CHALLENGE_METHOD {
            challenge_step(client_id, data)
        } else {
            AuthDecision::Deny(ReasonCode::BAD_AUTHENTICATION_METHOD)
        }
    }

    fn authorize_publish(&self, client: ClientIdentity<'_>, topic: &str) -> bool {
        client_number(client.client_id).is_none_or(|n| self.may_publish(n, topic))
    }

    fn authorize_subscribe(&self, client: ClientIdentity<'_>, filter: &str) -> bool {
        may_subscribe_home(client.username, filter)
            && client_number(client.client_id).is_none_or(|n| self.may_subscribe(n, filter))
    }

    fn authorize_read(&self, client: ClientIdentity<'_>, topic: &str) -> bool {
        client_number(client.client_id).is_none_or(|n| self.may_read(n, topic))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_challenge_method_accepts_exactly_the_right_answer() {
        let mut acl = SimAcl::default();
        let challenge = challenge_for("auth-1", b"hello:7");
        assert_eq!(
            acl.continue_auth("auth-1", CHALLENGE_METHOD, Some(b"hello:7")),
            AuthDecision::Continue {
                data: Some(challenge.clone().into())
            }
        );
        let answer = answer_to(&challenge);
        assert_eq!(
            acl.continue_auth("auth-1", CHALLENGE_METHOD, Some(&answer)),
            AuthDecision::Allow {
                data: Some(final_data(&answer).into())
            }
        );
        let mut wrong = answer.clone();
        *wrong.last_mut().unwrap() ^= 1;
        assert_eq!(
            acl.continue_auth("auth-1", CHALLENGE_METHOD, Some(&wrong)),
            AuthDecision::Deny(ReasonCode::NOT_AUTHORIZED)
        );
        assert_eq!(
            acl.continue_auth("auth-1", "OTHER", Some(&answer)),
            AuthDecision::Deny(ReasonCode::BAD_AUTHENTICATION_METHOD)
        );
    }
}
