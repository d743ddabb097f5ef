//! The connect rate per address (`Options::connect_rate`, `Config::max_connects_per_second_per_address`): bursts
//! of CONNECTs from an address of their own, each followed at once by DISCONNECT, some beyond the rate. The world
//! keeps the address's token bucket itself (one second's worth, refilled continuously; every CONNECT the broker
//! reads takes a token) from the configuration and the simulated clock, and predicts each verdict when the broker
//! reads the CONNECT: CONNACK 0x00, or 0x9F Connection rate exceeded (3.1.1: return code 3, Server unavailable).
//! The rate is far above what the simulated clients' own reconnects reach on theirs. Bursts draw from a stream of
//! their own.

use super::*;
use crate::coverage::Feature;

/// Per main-phase step, the chance of a burst (in seeds with the option).
const BURST_RATE: f64 = 0.002;

/// The address the bursts come from (the simulated clients use 1, the others 2).
pub(super) const BURST_HOST: u8 = 3;

pub(super) struct ConnectRate {
    rng: ChaCha8Rng,
    /// The address's bucket, in thousandths of a token, and when it was last brought up to date; `None` before its
    /// first CONNECT (full).
    bucket: Option<(i128, u64)>,
    /// Broker restarts when the bucket was last used: a restarted broker starts with a full one.
    restarts: u64,
    /// Each burst connection: its version and, once the broker read its CONNECT, whether it passes.
    pub(super) probes: BTreeMap<ConnectionId, (ProtocolVersion, Option<bool>, Decoder)>,
}

impl ConnectRate {
    pub(super) fn new(seed: u64) -> ConnectRate {
        ConnectRate {
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0xc044_ec7a_7e00_0009),
            bucket: None,
            restarts: 0,
            probes: BTreeMap::new(),
        }
    }
}

impl World {
    /// Sometimes a burst of up to one and a half seconds' worth of CONNECTs, within a few milliseconds.
    pub(super) fn maybe_connect_burst(&mut self) -> Result<(), Violation> {
        let rate = u64::from(self.opts.connect_rate);
        if rate == 0 || !self.connect_rate.rng.gen_bool(BURST_RATE) {
            return Ok(());
        }
        let count = self.connect_rate.rng.gen_range(rate / 2..=rate + rate / 2);
        self.log(format!("a burst of {count} CONNECTs from address {BURST_HOST}"));
        for _ in 0..count {
            let conn = self.open_from(None, BURST_HOST)?;
            let version = if self.connect_rate.rng.gen_bool(0.5) {
                ProtocolVersion::V5
            } else {
                ProtocolVersion::V3_1_1
            };
            let connect = mqtt_core::harness::connect_packet(version, &format!("rate-{}", conn.0));
            let mut data = encoded(&Packet::Connect(Box::new(connect)), version);
            let disconnect = Packet::Disconnect(Disconnect {
                reason: ReasonCode::NORMAL_DISCONNECTION,
                properties: Default::default(),
            });
            data.extend(encoded(&disconnect, version));
            self.trace.absorb(&data);
            self.connect_rate
                .probes
                .insert(conn, (version, None, Decoder::new(Some(version), usize::MAX)));
            let at = self.now + self.connect_rate.rng.gen_range(0..=3);
            if let Some(link) = self.links.get_mut(&conn) {
                link.last_to_broker = at;
            }
            self.schedule(at, Event::ToBroker { conn, data });
        }
        Ok(())
    }

    /// The broker is about to read `packets` on `conn`: a burst CONNECT takes a token from the world's bucket.
    pub(super) fn connect_rate_reads(&mut self, conn: ConnectionId, packets: &[Packet]) {
        if !packets.iter().any(|p| matches!(p, Packet::Connect(_))) || !self.connect_rate.probes.contains_key(&conn) {
            return;
        }
        let rate = i128::from(self.opts.connect_rate);
        let capacity = rate * 1000;
        if self.connect_rate.restarts != self.counts.broker_restarts {
            self.connect_rate.restarts = self.counts.broker_restarts;
            self.connect_rate.bucket = None;
        }
        let (tokens, updated) = self.connect_rate.bucket.unwrap_or((capacity, self.now));
        let elapsed = i128::from(self.now.saturating_sub(updated));
        let mut tokens = (tokens + elapsed * rate).min(capacity);
        let pass = tokens >= 1000;
        if pass {
            tokens -= 1000;
        }
        self.connect_rate.bucket = Some((tokens, self.now));
        if let Some(probe) = self.connect_rate.probes.get_mut(&conn) {
            probe.1 = Some(pass);
        }
    }

    /// What the broker sends a burst connection: the CONNACK the world's bucket predicts.
    pub(super) fn connect_rate_receives(&mut self, conn: ConnectionId, data: &[u8]) -> Result<(), Violation> {
        let Some((version, expected, decoder)) = self.connect_rate.probes.get_mut(&conn) else {
            return Ok(());
        };
        let (version, expected) = (*version, *expected);
        decoder.feed(data);
        let mut packets = Vec::new();
        while let Ok(Some(packet)) = decoder.next_packet() {
            packets.push(packet);
        }
        for packet in packets {
            let Packet::ConnAck(ack) = &packet else {
                return Err(Violation(format!(
                    "burst connection {conn:?} got {} where only a CONNACK was due",
                    describe(&packet)
                )));
            };
            let refused = if version.is_v5() {
                ack.reason == ReasonCode::CONNECTION_RATE_EXCEEDED
            } else {
                ack.reason == ReasonCode::SERVER_UNAVAILABLE
            };
            // Connections per address are limited too in some seeds (checked after the rate: 0x97 / 3).
            let address_full = self.opts.quotas.per_address_limit
                && (ack.reason == ReasonCode::QUOTA_EXCEEDED || ack.reason == ReasonCode::SERVER_UNAVAILABLE);
            match expected {
                Some(true) if !ack.reason.is_error() || address_full => {}
                Some(false) if refused => self.coverage.hit(Feature::ConnectRateRefused),
                Some(true) => {
                    return Err(Violation(format!(
                        "burst connection {conn:?} ({version:?}) got CONNACK {} although the world's connect-rate \
                         bucket had a token for it",
                        ack.reason
                    )))
                }
                _ => {
                    return Err(Violation(format!(
                        "burst connection {conn:?} ({version:?}) got CONNACK {} over the connect rate of {}/s, not \
                         0x9F Connection rate exceeded",
                        ack.reason, self.opts.connect_rate
                    )))
                }
            }
            if let Some(probe) = self.connect_rate.probes.get_mut(&conn) {
                probe.1 = None;
            }
        }
        Ok(())
    }
}
