//! `$SYS` contents (`Options::sys_watch`): a watcher connection subscribes to `$SYS/#` and every statistic the
//! broker publishes (every `sys_interval`, on a Tick) is checked, as the broker sends it, against the world's own
//! counts of the same broker incarnation, taken before the Tick:
//! - exactly: `uptime` (whole seconds since the broker's first input), `bytes/received` (every byte the world fed
//!   the broker on a connection it had not closed; the simulated clients send nothing to a connection whose
//!   refusal is held, which the broker does not count), `bytes/sent` (every byte of every `Transmit` so far: the
//!   broker counts bytes as it hands them out, so bytes still buffered for a client that stopped reading count
//!   later on both sides; the last bytes of a connection closed in the same Tick are handed out at once, so they
//!   may be counted already), and `clients/total` = `connected` + `disconnected`;
//! - within bounds, where the exact value depends on what the world cannot see yet: `clients/connected` is at
//!   least the connections whose success CONNACK was transmitted minus those closed in the same Tick, and at most
//!   that plus the open connections with no CONNACK transmitted yet (a CONNACK may wait in the buffer of a client
//!   that stopped reading); `clients/maximum` is at least `connected`; `messages/received` is at most the PUBLISH
//!   packets the broker read (refused and duplicate QoS 2 ones are not counted); every counter only grows.
//!
//! Only in seeds without persistence: a broker restart starts the counts again, and a power cut loses the outputs
//! of an input. The watcher draws from a random stream of its own and keeps no keep alive (a time jump must not
//! close it). Retained copies sent on its SUBSCRIBE carry values of an earlier interval, told apart by their
//! Retain flag (set only on those [MQTT-3.3.1-9]) and not checked.

use super::*;
use crate::coverage::Feature;
use std::collections::BTreeMap;

/// Per main-phase step, the chance that the watcher connects, while it has not.
const WATCH_RATE: f64 = 0.003;

/// What the world counts for the `$SYS` check.
pub(super) struct SysWatch {
    rng: ChaCha8Rng,
    /// The watcher's connection and its decoder of what the broker sends it.
    watcher: Option<(ConnectionId, Decoder)>,
    /// When the broker got its first input.
    started_at: Option<u64>,
    bytes_received: u64,
    bytes_sent: u64,
    publishes_read: u64,
    /// Connections whose success CONNACK was transmitted and that the broker has not closed.
    connected: BTreeSet<ConnectionId>,
    /// Open connections with no CONNACK transmitted yet, each with a decoder of what the broker sent so far.
    undecided: BTreeMap<ConnectionId, Decoder>,
    /// The counters' last published values, which may only grow.
    last: BTreeMap<String, u64>,
    /// Batches checked (a batch: the statistics of one Tick).
    pub(super) batches: u64,
}

/// The world's counts before an input: what the broker's statistics of that input must match.
#[derive(Clone, Copy)]
pub(super) struct Snapshot {
    now: u64,
    bytes_received: u64,
    bytes_sent: u64,
    publishes_read: u64,
    connected: usize,
    undecided: usize,
}

impl SysWatch {
    pub(super) fn new(seed: u64) -> SysWatch {
        SysWatch {
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x5e55_1057_a7c0_0001),
            watcher: None,
            started_at: None,
            bytes_received: 0,
            bytes_sent: 0,
            publishes_read: 0,
            connected: BTreeSet::new(),
            undecided: BTreeMap::new(),
            last: BTreeMap::new(),
            batches: 0,
        }
    }
}

fn number(value: &str) -> Option<u64> {
    value.strip_suffix(" seconds").unwrap_or(value).parse().ok()
}

impl World {
    fn sys_on(&self) -> bool {
        self.opts.sys_watch
    }

    /// Sometimes connects the watcher (main phase, in seeds with the option).
    pub(super) fn maybe_watch_sys(&mut self) -> Result<(), Violation> {
        if !self.sys_on() || self.sys.watcher.is_some() || !self.sys.rng.gen_bool(WATCH_RATE) {
            return Ok(());
        }
        let version = if self.sys.rng.gen_bool(0.5) {
            ProtocolVersion::V5
        } else {
            ProtocolVersion::V3_1_1
        };
        let conn = self.open(None)?;
        let mut connect = mqtt_core::harness::connect_packet(version, &format!("sys-{}", conn.0));
        connect.keep_alive = 0;
        let subscribe = Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties: Default::default(),
            filters: vec![("$SYS/#".into(), SubscriptionOptions::default())],
        });
        let mut data = encoded(&Packet::Connect(Box::new(connect)), version);
        data.extend(encoded(&subscribe, version));
        self.sys.watcher = Some((conn, Decoder::new(Some(version), usize::MAX)));
        let digest = self.trace.absorb(&data);
        self.log(format!(
            "$SYS watcher on {conn:?} ({version:?}) subscribes to $SYS/# {digest}"
        ));
        let at = self.now + self.delay();
        if let Some(link) = self.links.get_mut(&conn) {
            link.last_to_broker = at;
        }
        self.schedule(at, Event::ToBroker { conn, data });
        Ok(())
    }

    /// The world's counts as they stand before an input.
    pub(super) fn sys_snapshot(&mut self, input: &Input<'_>) -> Option<Snapshot> {
        if !self.sys_on() {
            return None;
        }
        self.sys.started_at.get_or_insert(self.now);
        let snapshot = Snapshot {
            now: self.now,
            bytes_received: self.sys.bytes_received,
            bytes_sent: self.sys.bytes_sent,
            publishes_read: self.sys.publishes_read,
            connected: self.sys.connected.len(),
            undecided: self.sys.undecided.len(),
        };
        match input {
            Input::Opened { conn, .. } => {
                self.sys.undecided.insert(*conn, Decoder::new(None, usize::MAX));
            }
            Input::Received { data, .. } => self.sys.bytes_received += data.len() as u64,
            _ => {}
        }
        Some(snapshot)
    }

    /// PUBLISH packets about to be read by the broker (an upper bound of the messages it counts as received).
    pub(super) fn sys_publishes_read(&mut self, packets: &[Packet]) {
        let publishes = packets.iter().filter(|p| matches!(p, Packet::Publish(_))).count();
        self.sys.publishes_read += publishes as u64;
    }

    /// One input's outputs: the world's counts follow them, and the watcher's statistics are checked against the
    /// counts from before the input.
    pub(super) fn sys_outputs(&mut self, snapshot: Option<Snapshot>, outputs: &[Output]) -> Result<(), Violation> {
        let Some(snapshot) = snapshot else {
            return Ok(());
        };
        let mut closed_connected = 0;
        let mut statistics = Vec::new();
        // Bytes the broker may have counted as sent before it wrote this batch: a connection it closed in the same
        // input (a keep-alive timeout, say) has its last bytes handed out at once, ahead of the statistics.
        let mut sent_before_batch = 0;
        let mut batch_started = false;
        for output in outputs {
            match output {
                Output::Transmit { conn, data } => {
                    self.sys.bytes_sent += data.len() as u64;
                    let to_watcher = self.sys.watcher.as_ref().is_some_and(|(w, _)| w == conn);
                    batch_started |= to_watcher;
                    if !batch_started {
                        sent_before_batch += data.len() as u64;
                    }
                    if let Some(decoder) = self.sys.undecided.get_mut(conn) {
                        decoder.feed(data);
                        while let Ok(Some(packet)) = decoder.next_packet() {
                            if let Packet::ConnAck(ack) = packet {
                                self.sys.undecided.remove(conn);
                                if !ack.reason.is_error() {
                                    self.sys.connected.insert(*conn);
                                }
                                break;
                            }
                        }
                    }
                    if let Some((_, decoder)) = self.sys.watcher.as_mut().filter(|(w, _)| w == conn) {
                        decoder.feed(data);
                        while let Ok(Some(packet)) = decoder.next_packet() {
                            match packet {
                                Packet::Publish(p) if !p.retain => {
                                    statistics.push((p.topic.clone(), String::from_utf8_lossy(&p.payload).into_owned()))
                                }
                                Packet::ConnAck(ack) if ack.reason.is_error() => {
                                    // Refused by a quota (connections per address): another watcher may try later.
                                    self.log(format!("$SYS watcher on {conn:?} refused ({})", ack.reason));
                                    self.sys.watcher = None;
                                    break;
                                }
                                _ => {}
                            }
                        }
                    }
                }
                Output::Close { conn } => {
                    self.sys.undecided.remove(conn);
                    if self.sys.connected.remove(conn) {
                        closed_connected += 1;
                    }
                    if self.sys.watcher.as_ref().is_some_and(|(w, _)| w == conn) {
                        self.sys.watcher = None;
                    }
                }
                _ => {}
            }
        }
        if statistics.is_empty() {
            return Ok(());
        }
        self.check_sys_batch(&snapshot, closed_connected, sent_before_batch, &statistics)
    }

    fn check_sys_batch(
        &mut self,
        snapshot: &Snapshot,
        closed_in_input: usize,
        sent_before_batch: u64,
        statistics: &[(String, String)],
    ) -> Result<(), Violation> {
        let values: BTreeMap<&str, &str> = statistics.iter().map(|(t, v)| (t.as_str(), v.as_str())).collect();
        let get = |topic: &str| -> Result<u64, Violation> {
            values
                .get(topic)
                .and_then(|v| number(v))
                .ok_or_else(|| Violation(format!("$SYS batch at {} ms lacks a number for {topic}", snapshot.now)))
        };
        let wrong = |topic: &str, value: u64, expected: String| {
            Violation(format!(
                "$SYS: {topic} says {value} at {} ms, the world's own count is {expected}",
                snapshot.now
            ))
        };
        let uptime = (snapshot.now - self.sys.started_at.unwrap_or(snapshot.now)) / 1000;
        let exact = [
            ("$SYS/broker/uptime", uptime),
            ("$SYS/broker/bytes/received", snapshot.bytes_received),
        ];
        for (topic, expected) in exact {
            let value = get(topic)?;
            if value != expected {
                return Err(wrong(topic, value, expected.to_string()));
            }
        }
        let sent = get("$SYS/broker/bytes/sent")?;
        let sent_range = snapshot.bytes_sent..=snapshot.bytes_sent + sent_before_batch;
        if !sent_range.contains(&sent) {
            let expected = match sent_before_batch {
                0 => snapshot.bytes_sent.to_string(),
                more => format!("{} (+ up to {more} handed out in the same input)", snapshot.bytes_sent),
            };
            return Err(wrong("$SYS/broker/bytes/sent", sent, expected));
        }
        let connected = get("$SYS/broker/clients/connected")?;
        let low = snapshot.connected.saturating_sub(closed_in_input) as u64;
        let high = (snapshot.connected + snapshot.undecided) as u64;
        if !(low..=high).contains(&connected) {
            return Err(wrong(
                "$SYS/broker/clients/connected",
                connected,
                format!("between {low} and {high}"),
            ));
        }
        let total = get("$SYS/broker/clients/total")?;
        let disconnected = get("$SYS/broker/clients/disconnected")?;
        if total != connected + disconnected {
            return Err(wrong(
                "$SYS/broker/clients/total",
                total,
                format!("connected + disconnected = {}", connected + disconnected),
            ));
        }
        let maximum = get("$SYS/broker/clients/maximum")?;
        if maximum < connected {
            return Err(wrong(
                "$SYS/broker/clients/maximum",
                maximum,
                format!("at least {connected}"),
            ));
        }
        let received = get("$SYS/broker/messages/received")?;
        if received > snapshot.publishes_read {
            return Err(wrong(
                "$SYS/broker/messages/received",
                received,
                format!("at most the {} PUBLISHes it read", snapshot.publishes_read),
            ));
        }
        for topic in [
            "$SYS/broker/clients/maximum",
            "$SYS/broker/messages/received",
            "$SYS/broker/messages/sent",
            "$SYS/broker/uptime",
        ] {
            let value = get(topic)?;
            let last = self.sys.last.insert(topic.to_string(), value).unwrap_or(0);
            if value < last {
                return Err(wrong(topic, value, format!("at least its last value {last}")));
            }
        }
        self.sys.batches += 1;
        self.coverage.hit(Feature::SysChecked);
        Ok(())
    }
}
