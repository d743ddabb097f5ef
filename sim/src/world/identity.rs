//! Clients authenticated by their transport, in the seeds with `Options::identity_listener`: extra connections,
//! beside the simulated clients, open on `acl::IDENTITY_LISTENER` (in `Config::identity_as_username`), where the
//! driver tells the broker, after a TLS handshake verified a client certificate and before any MQTT bytes, the
//! name the certificate gives (`Input::Identified`). Some have a known user's name, some a stranger's, some none
//! (a certificate without a Common Name); their CONNECTs claim a user name and password of their own, or none.
//! A few open on the plain listener with a verified name that listener must ignore.
//!
//! The odd simulated clients connect on the identity listener too, each verified as a user and claiming a retired
//! user name and password in its CONNECT: the broker must admit them as their certificates say (they are
//! entitled: a refusal fails the run) with everything else the swarm does to them, takeovers, restarts and
//! deferred verdicts included.
//!
//! The prediction comes from the specification and the configuration only (the seed's users, `acl::check_user`),
//! never from the broker: on the identity listener the verified name is the User Name the server authenticates
//! [MQTT-3.1.4-2] (section 5.4.1: a server may authenticate a client by its TLS certificate), whatever the CONNECT
//! claims, and without one the CONNECT is refused, CONNACK 0x87 Not authorized (3.1.1: return code 5, Not
//! authorized, section 3.2.2.3), and the connection closed [MQTT-3.2.2-7] (3.1.1: [MQTT-3.2.2-5]); a stranger's name
//! is refused like a wrong password, 0x86 (3.1.1: return code 4); elsewhere the CONNECT's own User Name and
//! Password decide. An admitted connection is then authorised as the name it was authenticated as: its SUBSCRIBE
//! of its own home filter and of another user's gets [granted, 0x87] (3.1.1: [granted, 0x80]) [MQTT-3.9.3-1]; a
//! name verified again after the CONNECT changes nothing. The connections draw from a random stream of their own,
//! so the seeds without the listener run as before.

use super::*;
use crate::acl::{check_user, password_of, user_name, HOME, IDENTITY_LISTENER, USERS};
use crate::coverage::Feature;
use mqtt_core::broker::AuthDecision;

/// Per main-phase step, the chance that a new connection opens on a listener with a verified name (in seeds with
/// the option).
const PROBE_RATE: f64 = 0.004;

/// Their address: one of their own, so that their refusals' throttling (per address) holds back no one else's.
const IDENTITY_HOST: u8 = 4;

/// What the broker must answer the CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    /// CONNACK 0x00; authorised as this User Name (`None`: anonymous).
    Admitted(Option<String>),
    /// CONNACK with this reason (3.1.1: the return code that decodes to it).
    Refused(ReasonCode),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Connack,
    Suback,
    /// Nothing more may come (the client disconnected, or was refused).
    Finished,
}

/// One connection with a verified name (or none), as the world drives and checks it.
pub(super) struct IdentityProbe {
    /// Opened on `IDENTITY_LISTENER` (otherwise on the plain one, which ignores verified names).
    certified: bool,
    /// The name the transport verified.
    identity: Option<String>,
    /// The User Name and Password its CONNECT claims.
    claim: Option<(String, Vec<u8>)>,
    /// A name verified again after the CONNACK, which must change nothing.
    late: Option<String>,
    version: ProtocolVersion,
    verdict: Verdict,
    stage: Stage,
    /// The SUBSCRIBE's filters and the reasons predicted for them.
    expected_suback: Vec<ReasonCode>,
    decoder: Decoder,
    /// Time jumps and broker restarts when it opened: either may end it early (a connect timeout, a lost
    /// connection), which excuses an unfinished exchange.
    disturbances: (u64, u64),
}

impl IdentityProbe {
    fn describe(&self) -> String {
        format!(
            "{} {:?}, verified as {}, claims {}",
            if self.certified {
                "identity listener"
            } else {
                "plain listener"
            },
            self.version,
            self.identity.as_deref().unwrap_or("nothing"),
            self.claim
                .as_ref()
                .map_or("nothing".to_string(), |(user, password)| format!(
                    "{user}/{}",
                    String::from_utf8_lossy(password)
                )),
        )
    }
}

/// The prediction, from the configuration and the seed's users: see the module's documentation.
fn predict(certified: bool, identity: Option<&str>, claim: Option<&(String, Vec<u8>)>) -> Verdict {
    let decide = |name: &str, password: Option<&[u8]>, vouched: bool| match check_user(name, password, vouched) {
        AuthDecision::Allow { .. } => Verdict::Admitted(Some(name.to_string())),
        AuthDecision::Deny(reason) => Verdict::Refused(reason),
        // `check_user` allows or denies.
        _ => Verdict::Refused(ReasonCode::UNSPECIFIED_ERROR),
    };
    match (certified, identity, claim) {
        // The certificate is the credential: the CONNECT's own are not looked at [MQTT-3.1.4-2].
        (true, Some(name), _) => decide(name, None, true),
        (true, None, _) => Verdict::Refused(ReasonCode::NOT_AUTHORIZED),
        (false, _, Some((name, password))) => decide(name, Some(password), false),
        (false, _, None) => Verdict::Admitted(None),
    }
}

/// The identity connections' own random stream.
pub(super) struct IdentityProbes {
    rng: ChaCha8Rng,
}

impl IdentityProbes {
    pub(super) fn new(seed: u64) -> IdentityProbes {
        IdentityProbes {
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x1d3e_7171_0b0e_5eed),
        }
    }
}

/// What a certified simulated client's CONNECT claims: a user name the authenticator no longer knows, with a stale
/// password, which the broker must not look at (the certificate decides).
pub(super) fn stale_credentials(connect: &mut Connect) {
    connect.username = Some("retired".into());
    connect.password = Some(b"stale".to_vec().into());
}

impl World {
    /// The name the transport verifies for `client`'s connections, if it connects on the identity listener: the odd
    /// clients do, in seeds with one (by index, so that the seed's random choices stay what they were).
    pub(super) fn certified_client(&self, client: usize) -> Option<String> {
        (self.opts.identity_listener && client % 2 == 1).then(|| user_name(client % USERS))
    }

    /// A certified simulated client is entitled: the broker must admit it as the name its transport verified,
    /// whatever user name its CONNECT claims [MQTT-3.1.4-2].
    pub(super) fn check_certified_connack(&self, client: usize, connack: &ConnAck) -> Result<(), Violation> {
        match self.certified_client(client) {
            Some(name) if connack.reason.is_error() => Err(Violation(format!(
                "c{client} on the identity listener, verified as {name}, its CONNECT claiming retired/stale, was \
                 refused with {:?}: it must be authenticated as {name}, a known user [MQTT-3.1.4-2]",
                connack.reason
            ))),
            _ => Ok(()),
        }
    }

    /// Sometimes opens a new connection with a verified name (main phase only, in seeds with the option).
    pub(super) fn maybe_identify(&mut self) -> Result<(), Violation> {
        if !self.opts.identity_listener || !self.identity_probes.rng.gen_bool(PROBE_RATE) {
            return Ok(());
        }
        let rng = &mut self.identity_probes.rng;
        let certified = rng.gen_bool(0.8);
        let identity = match rng.gen_range(0..10) {
            0..=5 => Some(user_name(rng.gen_range(0..USERS))),
            6 | 7 => None,
            // Verified, but not one of the seed's users.
            _ => Some("stranger".to_string()),
        };
        let claim = rng.gen_bool(0.7).then(|| {
            let n = rng.gen_range(0..USERS);
            let password = if rng.gen_bool(0.7) {
                password_of(n)
            } else {
                b"wrong".to_vec()
            };
            (user_name(n), password)
        });
        let late = rng.gen_bool(0.3).then(|| user_name(rng.gen_range(0..USERS)));
        let version = if rng.gen_bool(0.5) {
            ProtocolVersion::V5
        } else {
            ProtocolVersion::V3_1_1
        };
        let verdict = predict(certified, identity.as_deref(), claim.as_ref());
        let listener = if certified { IDENTITY_LISTENER } else { ListenerId(0) };
        let conn = self.open_on(None, IDENTITY_HOST, listener)?;
        let probe = IdentityProbe {
            certified,
            identity,
            claim,
            late,
            version,
            verdict,
            stage: Stage::Connack,
            expected_suback: Vec::new(),
            decoder: Decoder::new(Some(version), usize::MAX),
            disturbances: (self.counts.time_jumps, self.counts.broker_restarts),
        };
        self.log(format!(
            "identity probe {conn:?} opens: {}; expects {:?}",
            probe.describe(),
            probe.verdict
        ));
        let identity = probe.identity.clone();
        let mut connect = mqtt_core::harness::connect_packet(version, &format!("idp-{}", conn.0));
        // No keep alive: a refusal is held a while after a failed authentication.
        connect.keep_alive = 0;
        if let Some((user, password)) = &probe.claim {
            connect.username = Some(user.clone());
            connect.password = Some(password.clone().into());
        }
        if let Some(link) = self.links.get_mut(&conn) {
            link.identity = Some(probe);
        }
        // The driver reports the verified name after the handshake, before the client's first bytes.
        if let Some(identity) = identity {
            self.identified(conn, &identity)?;
        }
        self.identity_probe_sends(conn, &Packet::Connect(Box::new(connect)));
        Ok(())
    }

    pub(super) fn identified(&mut self, conn: ConnectionId, identity: &str) -> Result<(), Violation> {
        self.trace.absorb(identity.as_bytes());
        self.log(format!("{conn:?}: the transport verified the name {identity}"));
        self.broker_input(Input::Identified { conn, identity })
    }

    fn identity_probe_sends(&mut self, conn: ConnectionId, packet: &Packet) {
        let version = self
            .links
            .get(&conn)
            .and_then(|l| l.identity.as_ref())
            .map_or(ProtocolVersion::V5, |p| p.version);
        self.probe_send("identity probe", conn, packet, version, None);
    }

    /// What the broker sends a connection with a verified name, against the prediction.
    pub(super) fn identity_probe_receives(&mut self, conn: ConnectionId, data: &[u8]) -> Result<(), Violation> {
        self.probe_receive(
            "identity probe",
            conn,
            data,
            |link| link.identity.as_mut().map(|p| &mut p.decoder),
            World::identity_probe_step,
        )
    }

    fn identity_probe_step(&mut self, conn: ConnectionId, packet: &Packet) -> Result<(), Violation> {
        let Some(probe) = self.links.get(&conn).and_then(|l| l.identity.as_ref()) else {
            return Ok(());
        };
        let wrong = |expected: &str| {
            Violation(format!(
                "identity probe {conn:?} ({}) expected {expected} and got {}",
                probe.describe(),
                describe(packet)
            ))
        };
        let next = match (probe.stage, packet) {
            (Stage::Connack, Packet::ConnAck(ack)) => {
                // Limits checked before authentication may refuse the CONNECT first (connect rate, connections per
                // address, a busy or suspended broker; 3.1.1 says Server unavailable for each).
                let before_auth = [
                    ReasonCode::CONNECTION_RATE_EXCEEDED,
                    ReasonCode::QUOTA_EXCEEDED,
                    ReasonCode::SERVER_BUSY,
                    ReasonCode::SERVER_UNAVAILABLE,
                ];
                if before_auth.contains(&ack.reason) {
                    self.set_identity_stage(conn, Stage::Finished);
                    return Ok(());
                }
                match &probe.verdict {
                    Verdict::Refused(reason) if ack.reason == *reason => {
                        self.coverage.hit(match *reason {
                            ReasonCode::NOT_AUTHORIZED => Feature::IdentityMissingRefused,
                            _ => Feature::IdentityUnknownRefused,
                        });
                        Stage::Finished
                    }
                    Verdict::Refused(reason) => {
                        let why = if probe.identity.is_none() && probe.certified {
                            "no verified name on a listener that takes names from the transport"
                        } else if probe.certified {
                            "its verified name is no user's, whatever its CONNECT claims"
                        } else {
                            "the CONNECT's own credentials are wrong on a listener that ignores verified names"
                        };
                        return Err(wrong(&format!(
                            "CONNACK {reason:?} ({why}) and the connection closed [MQTT-3.1.4-2], [MQTT-3.2.2-7]"
                        )));
                    }
                    Verdict::Admitted(user) if ack.reason == ReasonCode::SUCCESS => {
                        let user = user.clone();
                        self.coverage.hit(if probe.certified {
                            Feature::IdentityAuthenticated
                        } else {
                            Feature::IdentityIgnoredElsewhere
                        });
                        if let Some(late) = probe.late.clone() {
                            // The CONNECT was processed (its CONNACK is here): too late to change who this is.
                            self.identified(conn, &late)?;
                        }
                        self.identity_probe_subscribes(conn, user.as_deref());
                        Stage::Suback
                    }
                    Verdict::Admitted(user) => {
                        return Err(wrong(&format!(
                            "CONNACK 0x00: authenticated as {} [MQTT-3.1.4-2]",
                            user.as_deref().unwrap_or("an anonymous client")
                        )))
                    }
                }
            }
            (Stage::Suback, Packet::SubAck(ack)) => {
                if ack.reasons != probe.expected_suback {
                    let user = match &probe.verdict {
                        Verdict::Admitted(Some(user)) => user.clone(),
                        _ => "an anonymous client".to_string(),
                    };
                    return Err(wrong(&format!(
                        "SUBACK {:?}: authorised as {user}, the name it was authenticated as, on its home filter \
                         alone [MQTT-3.9.3-1]",
                        probe.expected_suback
                    )));
                }
                self.coverage.hit(Feature::IdentityAuthorised);
                let disconnect = Packet::Disconnect(Disconnect {
                    reason: ReasonCode::NORMAL_DISCONNECTION,
                    properties: Default::default(),
                });
                self.identity_probe_sends(conn, &disconnect);
                Stage::Finished
            }
            _ => return Err(wrong(&format!("nothing of that kind at {:?}", probe.stage))),
        };
        self.set_identity_stage(conn, next);
        Ok(())
    }

    /// Subscribes to the home filter of `user` (if any) and of another user: only the first may be granted.
    fn identity_probe_subscribes(&mut self, conn: ConnectionId, user: Option<&str>) {
        let Some(probe) = self.links.get_mut(&conn).and_then(|l| l.identity.as_mut()) else {
            return;
        };
        // 3.1.1 knows one failure code in SUBACK, 0x80.
        let refused = if probe.version.is_v5() {
            ReasonCode::NOT_AUTHORIZED
        } else {
            ReasonCode::UNSPECIFIED_ERROR
        };
        let other = (0..USERS)
            .map(user_name)
            .find(|name| Some(name.as_str()) != user)
            .unwrap_or_default();
        let mut filters = Vec::new();
        probe.expected_suback.clear();
        if let Some(user) = user {
            filters.push(format!("{HOME}/{user}"));
            probe.expected_suback.push(ReasonCode::GRANTED_QOS_0);
        }
        filters.push(format!("{HOME}/{other}"));
        probe.expected_suback.push(refused);
        let subscribe = Packet::Subscribe(Subscribe {
            packet_id: 1,
            filters: filters
                .into_iter()
                .map(|filter| (filter, SubscriptionOptions::default()))
                .collect(),
            properties: Default::default(),
        });
        self.identity_probe_sends(conn, &subscribe);
    }

    fn set_identity_stage(&mut self, conn: ConnectionId, stage: Stage) {
        if let Some(probe) = self.links.get_mut(&conn).and_then(|l| l.identity.as_mut()) {
            probe.stage = stage;
        }
    }

    /// At the end of the run every exchange has finished and the broker closed every connection, refused
    /// [MQTT-3.1.4-2] or disconnected. A refusal held after a failed authentication may still be due: the clock
    /// runs on for the longest hold first. A name verified for a connection already closed must change nothing
    /// (no output for it).
    pub(super) fn check_identity_probes(&mut self) -> Result<(), Violation> {
        let open = |w: &World| w.links.values().any(|l| l.identity.is_some() && !l.closed_by_broker);
        if open(self) {
            self.now += self.config.auth_failure_delay_max_ms + 1_000;
            self.log("clock advanced for held refusals of identity probes".into());
            self.fire_timers()?;
            let mut events = 0;
            while !self.queue.is_empty() && events < 10_000 {
                events += 1;
                self.next_event()?;
            }
        }
        let disturbances = (self.counts.time_jumps, self.counts.broker_restarts);
        let mut closed = None;
        for (conn, link) in &self.links {
            let Some(probe) = &link.identity else { continue };
            closed = closed.or(link.closed_by_broker.then_some(*conn));
            // A time jump may time the exchange out, a broker restart loses the connection.
            if probe.disturbances != disturbances {
                continue;
            }
            if probe.stage != Stage::Finished {
                return Err(Violation(format!(
                    "identity probe {conn:?} ({}) still waits at {:?}{}",
                    probe.describe(),
                    probe.stage,
                    if link.closed_by_broker {
                        ", its connection closed"
                    } else {
                        ""
                    }
                )));
            }
            if !link.closed_by_broker {
                return Err(Violation(format!(
                    "identity probe {conn:?} ({}) was never closed by the broker after its exchange ended \
                     [MQTT-3.2.2-7]",
                    probe.describe()
                )));
            }
        }
        match closed {
            Some(conn) => self.identified(conn, &user_name(0)),
            None => Ok(()),
        }
    }
}
