//! Enhanced authentication (MQTT 5.0 section 4.12) in the swarm (`Options::enhanced_auth`): extra MQTT 5
//! connections, beside the simulated clients, authenticate with the simulated authenticator's challenge method
//! (`acl::CHALLENGE_METHOD`). Each one's plan is drawn when it opens, and every answer of the broker is predicted
//! from it: the challenge in AUTH 0x18 [MQTT-4.12.0-2], CONNACK 0x00 carrying the same Authentication Method
//! [MQTT-4.12.0-5] and the final data, CONNACK 0x87 for a wrong answer [MQTT-4.12.0-4], 0x8C for a method the broker
//! does not know [MQTT-4.12.0-1]; after CONNACK, re-authentication by AUTH 0x19 [MQTT-4.12.1-1] ends in AUTH 0x00 or,
//! for a wrong answer, DISCONNECT 0x87 and a closed connection [MQTT-4.12.1-2]. The connections neither publish nor
//! subscribe, so the model of the simulated clients is untouched; they draw from a random stream of their own.

use super::*;
use crate::acl::{answer_to, challenge_for, final_data, CHALLENGE_METHOD};
use crate::coverage::Feature;

/// Per main-phase step, the chance that a new authenticating connection opens (in seeds with the option).
const PROBE_RATE: f64 = 0.004;

/// What one authenticating connection does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// A method the broker does not support: CONNACK 0x8C.
    UnknownMethod,
    /// Answers the CONNECT's challenge wrongly: CONNACK 0x87.
    WrongAnswer,
    /// Authenticates, then maybe re-authenticates (rightly or not), then disconnects.
    Authenticates { reauth: Option<bool> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// AUTH 0x18 with the challenge to `hello`.
    Challenge { reauth: bool },
    /// The CONNACK (success, or the refusal the plan calls for).
    Connack,
    /// AUTH 0x00, or DISCONNECT 0x87 for a wrong answer.
    ReauthResult,
    /// Nothing more may come (the client disconnected, or was refused).
    Finished,
}

/// One authenticating connection, as the world drives and checks it.
pub(super) struct AuthProbe {
    client_id: String,
    plan: Plan,
    stage: Stage,
    /// The data of the client's last AUTH (or CONNECT) step, whose answer is expected.
    sent: Vec<u8>,
    decoder: Decoder,
    /// Time jumps and broker restarts when it opened: either may end it early (a connect timeout, a lost
    /// connection), which excuses an unfinished exchange.
    disturbances: (u64, u64),
}

/// The enhanced-auth connections' own random stream and how many opened.
pub(super) struct Probes {
    rng: ChaCha8Rng,
}

impl Probes {
    pub(super) fn new(seed: u64) -> Probes {
        Probes {
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x0a17_4e17_c4a1_1e06),
        }
    }
}

impl World {
    fn disturbances(&self) -> (u64, u64) {
        (self.counts.time_jumps, self.counts.broker_restarts)
    }

    /// Sometimes opens a new authenticating connection (main phase only, in seeds with the option).
    pub(super) fn maybe_authenticate(&mut self) -> Result<(), Violation> {
        if !self.opts.enhanced_auth || !self.probes.rng.gen_bool(PROBE_RATE) {
            return Ok(());
        }
        let plan = match self.probes.rng.gen_range(0..10) {
            0 => Plan::UnknownMethod,
            1 | 2 => Plan::WrongAnswer,
            3..=5 => Plan::Authenticates { reauth: None },
            6..=8 => Plan::Authenticates { reauth: Some(true) },
            _ => Plan::Authenticates { reauth: Some(false) },
        };
        let conn = self.open(None)?;
        let client_id = format!("auth-{}", conn.0);
        let hello = format!("hello:{}", self.probes.rng.gen::<u32>()).into_bytes();
        let mut connect = mqtt_core::harness::connect_packet(ProtocolVersion::V5, &client_id);
        // No keep alive: the exchange's answers may be slow (a refusal is held after a failure).
        connect.keep_alive = 0;
        connect.properties.authentication_method = Some(match plan {
            Plan::UnknownMethod => "SIM-UNKNOWN".into(),
            _ => CHALLENGE_METHOD.into(),
        });
        connect.properties.authentication_data = Some(hello.clone().into());
        let stage = match plan {
            Plan::UnknownMethod => Stage::Connack,
            _ => Stage::Challenge { reauth: false },
        };
        let disturbances = self.disturbances();
        if let Some(link) = self.links.get_mut(&conn) {
            link.auth = Some(AuthProbe {
                client_id,
                plan,
                stage,
                sent: hello,
                decoder: Decoder::new(Some(ProtocolVersion::V5), usize::MAX),
                disturbances,
            });
        }
        self.probe_sends(conn, &Packet::Connect(Box::new(connect)), &format!("{plan:?}"));
        Ok(())
    }

    fn probe_sends(&mut self, conn: ConnectionId, packet: &Packet, why: &str) {
        self.probe_send("auth probe", conn, packet, ProtocolVersion::V5, Some(why));
    }

    fn probe_auth(&mut self, conn: ConnectionId, reason: ReasonCode, data: Vec<u8>, why: &str) {
        if let Some(probe) = self.links.get_mut(&conn).and_then(|l| l.auth.as_mut()) {
            probe.sent = data.clone();
        }
        let auth = Packet::Auth(Auth {
            reason,
            properties: Properties {
                authentication_method: Some(CHALLENGE_METHOD.into()),
                authentication_data: Some(data.into()),
                ..Default::default()
            }
            .into(),
        });
        self.probe_sends(conn, &auth, why);
    }

    /// What the broker sends an authenticating connection, against what its plan predicts.
    pub(super) fn auth_probe_receives(&mut self, conn: ConnectionId, data: &[u8]) -> Result<(), Violation> {
        self.probe_receive(
            "auth probe",
            conn,
            data,
            |link| link.auth.as_mut().map(|p| &mut p.decoder),
            World::probe_step,
        )
    }

    fn probe_step(&mut self, conn: ConnectionId, packet: &Packet) -> Result<(), Violation> {
        let Some(probe) = self.links.get(&conn).and_then(|l| l.auth.as_ref()) else {
            return Ok(());
        };
        let (plan, stage, client_id, sent) = (probe.plan, probe.stage, probe.client_id.clone(), probe.sent.clone());
        let wrong = |expected: &str| {
            Violation(format!(
                "auth probe {conn:?} ({plan:?}) expected {expected} and got {}",
                describe(packet)
            ))
        };
        let method_ok = |properties: &Properties| properties.authentication_method.as_deref() == Some(CHALLENGE_METHOD);
        // Limits checked before any authentication may refuse the CONNECT first (connect rate, connections per
        // address, a busy or suspended broker): that exchange never started.
        if let (Stage::Challenge { reauth: false } | Stage::Connack, Packet::ConnAck(ack)) = (stage, packet) {
            let before_auth = [
                ReasonCode::CONNECTION_RATE_EXCEEDED,
                ReasonCode::QUOTA_EXCEEDED,
                ReasonCode::SERVER_BUSY,
                ReasonCode::SERVER_UNAVAILABLE,
            ];
            if before_auth.contains(&ack.reason) {
                self.set_probe_stage(conn, Stage::Finished);
                return Ok(());
            }
        }
        let next = match (stage, packet) {
            (Stage::Challenge { reauth }, Packet::Auth(auth)) => {
                let expected = challenge_for(&client_id, &sent);
                if auth.reason != ReasonCode::CONTINUE_AUTHENTICATION
                    || !method_ok(&auth.properties)
                    || auth.properties.authentication_data.as_deref() != Some(&expected[..])
                {
                    return Err(wrong(
                        "AUTH 0x18 Continue authentication with its method and the challenge [MQTT-4.12.0-2], \
                         [MQTT-4.12.0-5]",
                    ));
                }
                let right = match plan {
                    Plan::WrongAnswer => false,
                    Plan::Authenticates { reauth: Some(right) } if reauth => right,
                    _ => true,
                };
                let mut answer = answer_to(&expected);
                if !right {
                    // One character off: a wrong answer, well formed.
                    if let Some(last) = answer.last_mut() {
                        *last = if *last == b'0' { b'1' } else { b'0' };
                    }
                }
                // [MQTT-4.12.0-3]: the client's answer carries 0x18 too.
                self.probe_auth(conn, ReasonCode::CONTINUE_AUTHENTICATION, answer, "answer");
                if reauth {
                    Stage::ReauthResult
                } else {
                    Stage::Connack
                }
            }
            (Stage::Connack, Packet::ConnAck(ack)) => match plan {
                Plan::UnknownMethod if ack.reason == ReasonCode::BAD_AUTHENTICATION_METHOD => {
                    self.coverage.hit(Feature::EnhancedAuthBadMethod);
                    Stage::Finished
                }
                Plan::UnknownMethod => return Err(wrong("CONNACK 0x8C Bad authentication method [MQTT-4.12.0-1]")),
                Plan::WrongAnswer if ack.reason == ReasonCode::NOT_AUTHORIZED => {
                    self.coverage.hit(Feature::EnhancedAuthRefused);
                    Stage::Finished
                }
                Plan::WrongAnswer => {
                    return Err(wrong("CONNACK 0x87 Not authorized for a wrong answer [MQTT-4.12.0-4]"))
                }
                Plan::Authenticates { reauth } => {
                    let expected = final_data(&sent);
                    if ack.reason != ReasonCode::SUCCESS
                        || !method_ok(&ack.properties)
                        || ack.properties.authentication_data.as_deref() != Some(&expected[..])
                    {
                        return Err(wrong(
                            "CONNACK 0x00 with the same Authentication Method and the final data [MQTT-4.12.0-5]",
                        ));
                    }
                    self.coverage.hit(Feature::EnhancedAuth);
                    match reauth {
                        Some(_) => {
                            let hello = format!("hello:{}", self.probes.rng.gen::<u32>()).into_bytes();
                            self.probe_auth(conn, ReasonCode::REAUTHENTICATE, hello, "re-authenticate");
                            Stage::Challenge { reauth: true }
                        }
                        None => {
                            self.probe_disconnects(conn);
                            Stage::Finished
                        }
                    }
                }
            },
            (Stage::ReauthResult, Packet::Auth(auth)) if plan == Plan::Authenticates { reauth: Some(true) } => {
                let expected = final_data(&sent);
                if auth.reason != ReasonCode::SUCCESS
                    || !method_ok(&auth.properties)
                    || auth.properties.authentication_data.as_deref() != Some(&expected[..])
                {
                    return Err(wrong(
                        "AUTH 0x00 Success with its method and the final data after re-authentication [MQTT-4.12.1-1]",
                    ));
                }
                self.coverage.hit(Feature::Reauthenticated);
                self.probe_disconnects(conn);
                Stage::Finished
            }
            (Stage::ReauthResult, Packet::Disconnect(d))
                if plan == Plan::Authenticates { reauth: Some(false) } && d.reason == ReasonCode::NOT_AUTHORIZED =>
            {
                self.coverage.hit(Feature::ReauthRefused);
                Stage::Finished
            }
            (Stage::ReauthResult, _) if plan == Plan::Authenticates { reauth: Some(false) } => {
                return Err(wrong(
                    "DISCONNECT 0x87 Not authorized after re-authenticating with a wrong answer [MQTT-4.12.1-2]",
                ))
            }
            _ => return Err(wrong(&format!("nothing of that kind at {stage:?}"))),
        };
        self.set_probe_stage(conn, next);
        Ok(())
    }

    fn set_probe_stage(&mut self, conn: ConnectionId, stage: Stage) {
        if let Some(probe) = self.links.get_mut(&conn).and_then(|l| l.auth.as_mut()) {
            probe.stage = stage;
        }
    }

    fn probe_disconnects(&mut self, conn: ConnectionId) {
        let disconnect = Packet::Disconnect(Disconnect {
            reason: ReasonCode::NORMAL_DISCONNECTION,
            properties: Default::default(),
        });
        self.probe_sends(conn, &disconnect, "done");
    }

    /// At the end of the run every exchange has finished, and the broker closed every refused connection
    /// [MQTT-4.12.0-4], [MQTT-4.12.1-2] and every one that disconnected. A refusal held after a failed
    /// authentication may still be due: the clock runs on for the longest hold first.
    pub(super) fn check_auth_probes(&mut self) -> Result<(), Violation> {
        let open = |w: &World| w.links.values().any(|l| l.auth.is_some() && !l.closed_by_broker);
        if open(self) {
            self.now += self.config.auth_failure_delay_max_ms + 1_000;
            self.log("clock advanced for held authentication refusals".into());
            self.fire_timers()?;
            let mut events = 0;
            while !self.queue.is_empty() && events < 10_000 {
                events += 1;
                self.next_event()?;
            }
        }
        let disturbances = self.disturbances();
        for (conn, link) in &self.links {
            let Some(probe) = &link.auth else { continue };
            // A time jump may time the exchange out, a broker restart loses the connection.
            if probe.disturbances != disturbances {
                continue;
            }
            if probe.stage != Stage::Finished {
                return Err(Violation(format!(
                    "auth probe {conn:?} ({:?}) still waits at {:?}{}",
                    probe.plan,
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
                    "auth probe {conn:?} ({:?}) was never closed by the broker after its exchange ended",
                    probe.plan
                )));
            }
        }
        Ok(())
    }
}
