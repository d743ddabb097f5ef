//! The publish rate limit (`Config::max_publish_rate`, `max_publish_bytes_rate`) as the model predicts it from the
//! configuration and the simulated clock, never from the broker. The broker's documented rule (`core`'s `quota`):
//! per connection, one token bucket per dimension (messages, payload bytes), each holding one second's worth and
//! full at the connection's first PUBLISH, refilled continuously; a PUBLISH passes while every bucket holds more
//! than nothing (a large payload may then run the byte bucket into debt); a PUBLISH over the rate is dropped (QoS
//! 1/2 acknowledged with 0x97 Quota exceeded in MQTT 5, normally in 3.1.1) and its cost adds to an excess that
//! drains at the rate; once the excess is more than ten seconds' worth, DISCONNECT 0x96 Message rate too high ends
//! the connection. Only PUBLISHes the broker reaches the rate check with take from the buckets: not a QoS 2
//! resend whose packet id awaits PUBREC [MQTT-4.3.3-9], not a topic over the size quotas (0x90).
//!
//! Where the model is unsure whether the broker took a token (a QoS 2 resend whose first receipt it cannot pin
//! down), it follows every possibility at once (a few bucket states per connection); a PUBLISH whose verdict
//! differs between them may go either way.

use super::*;
use crate::coverage::Feature;

/// Thousandths of a token: a rate of `r` per second refills exactly `r` thousandths per millisecond.
const MILLI: i128 = 1000;
/// Seconds' worth of refused cost after which a connection is a flood.
const FLOOD_SECONDS: i128 = 10;
/// Bucket states followed per connection at most; beyond, the connection's verdicts are all uncertain.
const MAX_STATES: usize = 8;

/// One dimension of one connection's limit, in thousandths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bucket {
    tokens: i128,
    excess: i128,
}

impl Bucket {
    fn full(rate: u64) -> Bucket {
        Bucket {
            tokens: i128::from(rate) * MILLI,
            excess: 0,
        }
    }

    fn refill(&mut self, elapsed_ms: i128, rate: u64) {
        let gained = elapsed_ms * i128::from(rate);
        self.tokens = (self.tokens + gained).min(i128::from(rate) * MILLI);
        self.excess = (self.excess - gained).max(0);
    }
}

/// The buckets of one connection as of `at` (ms), after its first PUBLISH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Limiter {
    at: u64,
    messages: Bucket,
    bytes: Bucket,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Verdict {
    Pass,
    Refuse,
    Flood,
}

/// The model's view of the publish rate of every connection.
#[derive(Debug, Default)]
pub(super) struct PublishRates {
    /// Per connection, every state its buckets may be in (`None`: before its first PUBLISH; empty: unknown).
    states: BTreeMap<ConnectionId, Vec<Option<Limiter>>>,
    /// MQTT 5 QoS 1/2 PUBLISHes (client, packet id) the model says were refused: their PUBACK/PUBREC must say 0x97.
    refused_acks: BTreeSet<(usize, u16)>,
    /// Messages the model says were dropped by the rate: none may be delivered.
    refused_ids: BTreeSet<MsgId>,
    /// Connections the model says were closed for a flood: the broker reads nothing more from them.
    flooded: BTreeSet<ConnectionId>,
    /// Connections whose last verdict could have been a flood (so an unforeseen DISCONNECT 0x96 is allowed).
    maybe_flooded: BTreeSet<ConnectionId>,
    /// QoS 1/2 PUBLISHes (connection, packet id) the rate may or may not have refused.
    maybe_refused: BTreeSet<(ConnectionId, u16)>,
}

/// One state's verdict on a PUBLISH of `bytes` payload bytes at `now` (ms), and the state after it, for a rate of
/// `rate` messages and `byte_rate` bytes per second (0: that dimension is not limited).
fn step(state: Option<Limiter>, now: u64, bytes: usize, rate: u64, byte_rate: u64) -> (Verdict, Limiter) {
    let mut limiter = match state {
        None => Limiter {
            at: now,
            messages: Bucket::full(rate),
            bytes: Bucket::full(byte_rate),
        },
        Some(mut limiter) => {
            let elapsed = i128::from(now.saturating_sub(limiter.at));
            limiter.messages.refill(elapsed, rate);
            limiter.bytes.refill(elapsed, byte_rate);
            limiter.at = now;
            limiter
        }
    };
    let cost = i128::try_from(bytes).unwrap_or(i128::MAX / 4) * MILLI;
    let messages_ok = rate == 0 || limiter.messages.tokens > 0;
    let bytes_ok = byte_rate == 0 || limiter.bytes.tokens > 0;
    if messages_ok && bytes_ok {
        limiter.messages.tokens -= MILLI;
        limiter.bytes.tokens -= cost;
        return (Verdict::Pass, limiter);
    }
    let mut flood = false;
    if !messages_ok {
        limiter.messages.excess += MILLI;
        flood |= limiter.messages.excess > FLOOD_SECONDS * i128::from(rate) * MILLI;
    }
    if !bytes_ok {
        limiter.bytes.excess += cost;
        flood |= limiter.bytes.excess > FLOOD_SECONDS * i128::from(byte_rate) * MILLI;
    }
    (if flood { Verdict::Flood } else { Verdict::Refuse }, limiter)
}

impl World {
    fn rate_limited(&self) -> bool {
        self.opts.publish_rate > 0 || self.opts.publish_bytes_rate > 0
    }

    /// The verdicts the rate may give this PUBLISH of `client` on `conn`, read by the broker now (empty: the
    /// rate is not checked for it), with the connection's states moved on. Called before the model routes it.
    pub(super) fn publish_rate_verdicts(
        &mut self,
        client: usize,
        conn: ConnectionId,
        publish: &Publish,
    ) -> BTreeSet<Verdict> {
        let mut verdicts = BTreeSet::new();
        if !self.rate_limited() || self.model.topic_refused(&publish.topic) {
            return verdicts;
        }
        let key = (client, publish.packet_id);
        let qos2 = publish.qos == QoS::ExactlyOnce;
        // A QoS 2 resend of an id awaiting PUBREL is answered before the rate is checked; one the model is unsure
        // of may or may not be.
        let duplicate = qos2 && self.model.sessions[client].qos2_pending.contains(&publish.packet_id);
        let unsure = qos2 && self.model.qos2_unsure.contains(&key);
        if duplicate && !unsure {
            return verdicts;
        }
        let states = self.rates.states.remove(&conn).unwrap_or_else(|| vec![None]);
        let mut next = Vec::new();
        if states.is_empty() {
            verdicts.extend([Verdict::Pass, Verdict::Refuse, Verdict::Flood]);
        }
        for state in states {
            if duplicate || unsure {
                // The broker may have answered it as a duplicate: no token taken.
                next.push(state);
            }
            if !duplicate || unsure {
                let (rate, byte_rate) = (u64::from(self.opts.publish_rate), self.opts.publish_bytes_rate);
                let (verdict, after) = step(state, self.now, publish.payload.len(), rate, byte_rate);
                verdicts.insert(verdict);
                next.push(Some(after));
            }
        }
        next.dedup();
        if next.len() > MAX_STATES {
            next.clear();
        }
        self.rates.states.insert(conn, next);
        if unsure {
            // It may have been no more than a duplicate: a pass then.
            verdicts.insert(Verdict::Pass);
        }
        verdicts
    }

    /// The model's part of a PUBLISH the broker reads: `None` if the rate certainly drops it (the model routes it
    /// nowhere), else whether the rate may drop it (`Some(true)`: owed to nobody). What the broker must answer is
    /// noted for the checks below.
    pub(super) fn publish_rate_admits(&mut self, client: usize, conn: ConnectionId, publish: &Publish) -> Option<bool> {
        let verdicts = self.publish_rate_verdicts(client, conn, publish);
        let key = (client, publish.packet_id);
        if publish.qos != QoS::AtMostOnce {
            self.rates.refused_acks.remove(&key);
            self.rates.maybe_refused.remove(&(conn, publish.packet_id));
        }
        if verdicts.contains(&Verdict::Flood) {
            self.rates.maybe_flooded.insert(conn);
        }
        // A resend (on a new connection) of a message dropped before may pass this time.
        let id = message_id(&publish.payload);
        if verdicts.len() > 1 {
            self.rates.maybe_refused.insert((conn, publish.packet_id));
            if let Some(id) = &id {
                self.rates.refused_ids.remove(id);
            }
            return Some(true);
        }
        if verdicts.is_empty() || verdicts.contains(&Verdict::Pass) {
            if let Some(id) = &id {
                self.rates.refused_ids.remove(id);
            }
            return Some(false);
        }
        let v5 = self.clients[client].version.is_v5();
        if verdicts.contains(&Verdict::Flood) {
            self.log(format!(
                "c{client} {conn:?}: the publish rate ends the connection (flood)"
            ));
            self.rates.flooded.insert(conn);
        } else {
            self.log(format!(
                "c{client} {conn:?}: PUBLISH id={} over the publish rate, dropped",
                publish.packet_id
            ));
            if publish.qos != QoS::AtMostOnce && v5 {
                self.rates.refused_acks.insert(key);
            }
        }
        // Dropped now, but a copy routed from an earlier send of it (a resend after a lost PUBACK) stays owed.
        if let Some(id) = id.filter(|id| !self.model.messages.contains_key(id)) {
            self.rates.refused_ids.insert(id);
        }
        None
    }

    /// Whether the broker reads nothing more from `conn`: the model said the rate closed it.
    pub(super) fn flooded(&self, conn: ConnectionId) -> bool {
        self.rates.flooded.contains(&conn)
    }

    /// Whether the publish rate may have refused this QoS 1/2 PUBLISH the model routed, unsure (see
    /// `admission`); `None` without a rate limit.
    pub(super) fn rate_may_refuse(&mut self, conn: ConnectionId, packet_id: u16) -> Option<bool> {
        self.rate_limited()
            .then(|| self.rates.maybe_refused.remove(&(conn, packet_id)))
    }

    /// A PUBACK/PUBREC for a PUBLISH the model says the rate refused must say 0x97 (MQTT 5.0 section 3.4.2.1);
    /// one the model says passed must not (checked with the other refusals, `admission`).
    pub(super) fn check_rate_ack(&mut self, client: usize, ack: &PubResponse) -> Result<(), Violation> {
        if !self.rates.refused_acks.remove(&(client, ack.packet_id)) {
            return Ok(());
        }
        if ack.reason != ReasonCode::QUOTA_EXCEEDED {
            return Err(Violation(format!(
                "c{client}: PUBLISH id={} went over the publish rate ({}/s, {} B/s) and was acknowledged with \
                 {:?}, not 0x97 Quota exceeded",
                ack.packet_id, self.opts.publish_rate, self.opts.publish_bytes_rate, ack.reason
            )));
        }
        self.coverage.hit(Feature::PublishRateRefused);
        Ok(())
    }

    /// A message the rate dropped is never delivered; a DISCONNECT 0x96 only where the model saw a flood coming.
    pub(super) fn check_rate_delivery(&mut self, client: usize, packet: &Packet) -> Result<(), Violation> {
        match packet {
            Packet::Publish(publish) => {
                let refused = message_id(&publish.payload).filter(|id| self.rates.refused_ids.contains(id));
                if let Some(id) = refused {
                    return Err(Violation(format!(
                        "c{client} got {id}, which the publish rate ({}/s, {} B/s) dropped",
                        self.opts.publish_rate, self.opts.publish_bytes_rate
                    )));
                }
            }
            Packet::Disconnect(d) if d.reason == ReasonCode::MESSAGE_RATE_TOO_HIGH => {
                let conn = self.clients[client].conn;
                let foreseen = conn.is_some_and(|c| self.rates.maybe_flooded.contains(&c));
                if !foreseen {
                    return Err(Violation(format!(
                        "c{client}: DISCONNECT 0x96 Message rate too high, but its connection's refused PUBLISHes \
                         never exceeded ten seconds' worth of the rate ({}/s, {} B/s)",
                        self.opts.publish_rate, self.opts.publish_bytes_rate
                    )));
                }
                self.coverage.hit(Feature::PublishRateFlood);
            }
            _ => {}
        }
        Ok(())
    }

    /// A polite client keeps below the flood line: it does not publish while its connection's refused cost, as
    /// the model counts it, is over three seconds' worth.
    pub(super) fn publish_rate_backs_off(&self, client: usize) -> bool {
        if !self.rate_limited() || !self.opts.publish_rate_polite {
            return false;
        }
        let Some(conn) = self.clients[client].conn else {
            return false;
        };
        let (rate, byte_rate) = (
            i128::from(self.opts.publish_rate),
            i128::from(self.opts.publish_bytes_rate),
        );
        self.rates.states.get(&conn).is_some_and(|states| {
            states.iter().flatten().any(|l| {
                let drained = i128::from(self.now.saturating_sub(l.at));
                (l.messages.excess - drained * rate) > 3 * rate * MILLI
                    || (l.bytes.excess - drained * byte_rate) > 3 * byte_rate * MILLI
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Verdicts for PUBLISHes of `bytes` at the given times (ms), from a fresh connection.
    fn verdicts(times: &[u64], bytes: usize, rate: u64, byte_rate: u64) -> Vec<Verdict> {
        let mut state = None;
        times
            .iter()
            .map(|now| {
                let (verdict, after) = step(state, *now, bytes, rate, byte_rate);
                state = Some(after);
                verdict
            })
            .collect()
    }

    #[test]
    fn a_bucket_holds_one_seconds_worth_and_refills_continuously() {
        use Verdict::*;
        // 2/s: two at once pass, the third is refused; a bucket holding any part of a token lets one through
        // (into debt), so 1 ms later one passes and the next, 1 ms after that, is refused again.
        assert_eq!(verdicts(&[0, 0, 0, 1, 2], 1, 2, 0), [Pass, Pass, Refuse, Pass, Refuse]);
        assert_eq!(
            verdicts(&[0, 0, 1, 500, 501], 1, 2, 0),
            [Pass, Pass, Pass, Refuse, Pass]
        );
        // A long pause refills no more than the capacity.
        assert_eq!(
            verdicts(&[0, 60_000, 60_000, 60_000], 1, 2, 0),
            [Pass, Pass, Pass, Refuse]
        );
    }

    #[test]
    fn a_large_payload_passes_once_and_leaves_a_debt() {
        use Verdict::*;
        // 100 B/s: 1000 bytes pass on a full bucket, then the debt (900 B) takes 9 s to pay back.
        assert_eq!(verdicts(&[0, 9_000], 1000, 0, 100), [Pass, Refuse]);
        assert_eq!(verdicts(&[0, 9_001], 1000, 0, 100), [Pass, Pass]);
    }

    #[test]
    fn refused_cost_over_ten_seconds_worth_is_a_flood() {
        // 1/s, all at once: one passes, the next ten are refused (excess 10 = ten seconds' worth), the 12th floods.
        let got = verdicts(&[0; 12], 1, 1, 0);
        assert_eq!(got[0], Verdict::Pass);
        assert!(got[1..11].iter().all(|v| *v == Verdict::Refuse), "{got:?}");
        assert_eq!(got[11], Verdict::Flood);
        // The excess drains at the rate: 1/s for 5 s after five refusals leaves room for ten more.
        let mut times = vec![0; 6];
        times.extend([5_000; 11]);
        let got = verdicts(&times, 1, 1, 0);
        assert!(!got.contains(&Verdict::Flood), "{got:?}");
    }
}
