//! A stall is a failure, not a hang: every unit of work a run does (a fault-phase step, a network event, a broker
//! Tick) is counted against a budget, simulated time against another, and Ticks at one instant against a third.
//! A run that exceeds one fails with what it was waiting for: the broker's next timer, the next network event,
//! and the sessions still owed messages or acknowledgements.

use super::*;

/// Ticks the broker may ask for at one simulated instant. A correct broker asks once (its timers fire in one
/// Tick; one armed for the same instant during a Tick waits for the next, see `mqtt_core` `Timers::firing`); a
/// few more may follow from inputs at the same instant. Thousands means a timer that keeps re-arming itself.
const MAX_TICKS_PER_INSTANT: u64 = 1_000;

/// Work units per fault-phase step. Measured over seeds 1..=2000: at most 2.9 per step (events and Ticks
/// included, liveness phase too), so 50 is a spin, not a busy seed.
const WORK_PER_STEP: u64 = 50;

/// Work a run may do on top of `WORK_PER_STEP` per step (the liveness phase of a large seed, say).
const WORK_BASE: u64 = 100_000;

/// Simulated time after which a run has stalled. Time jumps (at most 120 s each), will delays and the liveness
/// phase's idle seconds reached 31 minutes at most over seeds 1..=2000; six hours is a run that does not settle.
const MAX_SIMULATED_MS: u64 = 6 * 3_600 * 1_000;

#[derive(Debug, Default)]
pub struct Budget {
    /// Work done so far and the limit.
    pub work: u64,
    max_work: u64,
    /// The instant of the last Tick and how many Ticks it had.
    tick_instant: u64,
    ticks_at_instant: u64,
}

impl Budget {
    pub fn for_steps(steps: usize) -> Budget {
        Budget {
            max_work: WORK_BASE + WORK_PER_STEP * steps as u64,
            ..Budget::default()
        }
    }
}

impl World {
    /// One unit of work. Fails the run if it used up its work or simulated-time budget.
    pub(super) fn spend(&mut self) -> Result<(), Violation> {
        self.budget.work += 1;
        if self.budget.work > self.budget.max_work {
            let why = format!(
                "did not settle within its budget of {} work units",
                self.budget.max_work
            );
            return Err(self.stall(&why));
        }
        if self.now > MAX_SIMULATED_MS {
            let why = format!("simulated time passed its budget of {} s", MAX_SIMULATED_MS / 1_000);
            return Err(self.stall(&why));
        }
        Ok(())
    }

    /// One broker Tick: work, and a spin if the broker asks for too many at one instant.
    pub(super) fn spend_tick(&mut self) -> Result<(), Violation> {
        if self.budget.tick_instant == self.now {
            self.budget.ticks_at_instant += 1;
        } else {
            self.budget.tick_instant = self.now;
            self.budget.ticks_at_instant = 1;
        }
        if self.budget.ticks_at_instant > MAX_TICKS_PER_INSTANT {
            let why = format!(
                "the broker asked for {MAX_TICKS_PER_INSTANT} Ticks at one instant (a timer re-arms itself for now)"
            );
            return Err(self.stall(&why));
        }
        self.spend()
    }

    /// The stall report: why, and what the run was waiting for.
    pub(super) fn stall(&self, why: &str) -> Violation {
        let mut waiting = Vec::new();
        match self.broker.next_timer() {
            Some((at, timer)) => waiting.push(format!("broker timer {timer} due at {}ms", at.as_millis())),
            None => waiting.push("no broker timer".into()),
        }
        if let Some(((at, _), event)) = self.queue.first_key_value() {
            waiting.push(format!(
                "{} network events queued, the next at {at}ms: {}",
                self.queue.len(),
                describe_event(event)
            ));
        }
        for (index, client) in self.clients.iter().enumerate() {
            if let Some((id, state)) = client.outgoing.iter().next() {
                let what = match state {
                    Outgoing::AwaitingAck(p) => format!("{} for its PUBLISH {}", ack_for(p.qos), describe_id(p)),
                    Outgoing::AwaitingComp(_) => "PUBCOMP".to_string(),
                };
                waiting.push(format!("c{index} (session sim-{index}) awaits {what} (packet id {id})"));
            }
            if !client.unacked_in.is_empty() {
                waiting.push(format!(
                    "c{index} has not acknowledged packet ids {:?}",
                    client.unacked_in
                ));
            }
        }
        let owed = undelivered(&self.model);
        if let Some((client, epoch, id)) = owed.first() {
            waiting.push(format!(
                "c{client} (session epoch {epoch}) is owed message {id}{}",
                if owed.len() > 1 {
                    format!(" and {} more", owed.len() - 1)
                } else {
                    String::new()
                }
            ));
        }
        Violation(format!(
            "stalled at {}ms after {} work units: {why}; waiting for: {}",
            self.now,
            self.budget.work,
            waiting.join("; ")
        ))
    }
}

/// QoS 1/2 messages the model expects a live session to get and it has not got yet (as `Model::check_liveness`
/// judges at the end, read here without failing).
fn undelivered(model: &Model) -> Vec<(usize, u64, MsgId)> {
    model
        .expected
        .iter()
        .filter(|((client, epoch, id), qos)| {
            let session = &model.sessions[*client];
            **qos != QoS::AtMostOnce
                && session.exists
                && session.epoch == *epoch
                && !model.delivered.contains_key(&(*client, *epoch, id.clone()))
        })
        .map(|(key, _)| key.clone())
        .collect()
}

fn ack_for(qos: QoS) -> &'static str {
    if qos == QoS::ExactlyOnce {
        "PUBREC"
    } else {
        "PUBACK"
    }
}

fn describe_id(publish: &Publish) -> String {
    message_id(&publish.payload).map_or_else(|| format!("on '{}'", publish.topic), |id| id.to_string())
}

fn describe_event(event: &Event) -> String {
    match event {
        Event::ToBroker { conn, data } => format!("{} bytes to the broker on {conn:?}", data.len()),
        Event::ToClient { conn, data } => format!("{} bytes to the client on {conn:?}", data.len()),
        Event::ClientSeesClose { conn } => format!("the client sees {conn:?} closed"),
        Event::Writable { conn } => format!("{conn:?} becomes writable"),
        Event::AuthVerdict { conn } => format!("the verdict on {conn:?}'s CONNECT"),
    }
}
