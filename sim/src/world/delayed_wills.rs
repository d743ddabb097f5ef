//! Delayed wills owed after the liveness phase. During the fault phase a delayed will goes out at a moment the model
//! does not pin down (a broker Tick after its delay, with the subscribers of that moment), so it is only checked
//! for timing there. In the liveness phase some clients whose will is pending stay away until its delay has run
//! out: nothing else changes the subscriptions meanwhile, so the model publishes the will itself at the broker Tick
//! that is due to publish it [MQTT-3.1.2-8], and every matching subscriber is owed it as for any message. The
//! other clients reconnect within the delay, which must cancel their wills [MQTT-3.1.3-9].

use super::*;
use crate::coverage::Feature;

/// A will waiting for its Will Delay Interval, with what the model needs to publish it itself.
#[derive(Debug, Clone)]
struct Pending {
    client: usize,
    due_at: u64,
    qos: QoS,
    retain: bool,
    /// Broker restarts when it was delayed: a restart since may have restored it or not (a commit torn by the
    /// power cut), so only a will delayed since the last restart is owed.
    restarts: u64,
}

/// The delayed wills of a run and the clients that stay away for theirs in the liveness phase.
#[derive(Debug, Default)]
pub struct DelayedWills {
    pending: BTreeMap<MsgId, Pending>,
    /// Client → the will it stays away for, until the will has gone out.
    away: BTreeMap<usize, MsgId>,
    /// Wills the model published at their due Tick: owed to every matching subscriber.
    owed: BTreeSet<MsgId>,
    /// Fault-phase wills counted in their subscribers' queues once due (see `count_due_wills`).
    counted: BTreeSet<MsgId>,
    /// Clients that come back with a will with this delay (seconds), to leave again at once.
    rearm: BTreeMap<usize, u32>,
    /// The liveness phase's own random stream for these choices.
    rng: Option<ChaCha8Rng>,
}

impl DelayedWills {
    /// The broker's clock was set forward by `jump_ms` across a restart: each delay runs out that much sooner.
    pub(super) fn clock_set_forward(&mut self, jump_ms: u64) {
        for pending in self.pending.values_mut() {
            pending.due_at = pending.due_at.saturating_sub(jump_ms);
        }
    }
}

impl World {
    /// `client`'s will `id` goes out at `due_at` (ms) unless its session resumes first.
    pub(super) fn will_delayed(&mut self, client: usize, id: &MsgId, due_at: u64, qos: QoS, retain: bool) {
        self.model.wills.insert(id.clone(), WillState::Delayed { due_at });
        self.model.delayed_wills.insert(client, id.clone());
        let restarts = self.counts.broker_restarts;
        let pending = Pending {
            client,
            due_at,
            qos,
            retain,
            restarts,
        };
        self.delayed_wills.pending.insert(id.clone(), pending);
    }

    /// At the start of the liveness phase: some persistent MQTT 5 clients come back with a will with a delay and then
    /// leave abruptly (see `rearm`), and some clients whose will is already pending stay away until it goes out
    /// (from a stream of its own, so that the rest of the seed's choices stay what they were).
    pub(super) fn choose_absent(&mut self) -> Result<(), Violation> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.opts.seed ^ 0x003a_11d1_e50f_face);
        // At Maximum QoS 0 a will owed to its watcher (QoS 1, see `connect`) would be refused with 0x9B
        // [MQTT-3.2.2-12]; a QoS 0 one is owed to nobody: no client comes back to arm one.
        if self.opts.wills && self.opts.maximum_qos > 0 {
            let eligible: Vec<usize> = (0..self.clients.len())
                .filter(|c| self.clients[*c].persistent && self.clients[*c].version.is_v5())
                .collect();
            for client in eligible {
                if self.delayed_wills.rearm.len() < 4 && rng.gen_bool(0.5) {
                    self.delayed_wills.rearm.insert(client, rng.gen_range(1..=4));
                }
            }
        }
        let restarts = self.counts.broker_restarts;
        let candidates: Vec<(usize, MsgId)> = self
            .model
            .delayed_wills
            .iter()
            .filter(|(_, id)| {
                let delayed =
                    matches!(self.model.wills.get(*id), Some(WillState::Delayed { due_at }) if *due_at > self.now);
                let known = self
                    .delayed_wills
                    .pending
                    .get(*id)
                    .is_some_and(|p| p.restarts == restarts);
                delayed && known
            })
            .map(|(client, id)| (*client, id.clone()))
            .collect();
        for (client, id) in candidates {
            if rng.gen_bool(0.8) && !self.previous_open(client) {
                self.log(format!("c{client} stays away until its will {id} has gone out"));
                self.delayed_wills.away.insert(client, id);
            }
        }
        self.watch_wills(&mut rng);
        self.delayed_wills.rng = Some(rng);
        let leaving: Vec<usize> = self.delayed_wills.rearm.keys().copied().collect();
        for client in leaving {
            if self.clients[client].conn.is_some() {
                self.log(format!("c{client} leaves to come back with a delayed will"));
                self.drop_client_connection(client, false)?;
            }
        }
        Ok(())
    }

    /// The Will Delay Interval (seconds) `client` connects with while it comes back to leave again (see `rearm`).
    pub(super) fn rearming_delay(&self, client: usize) -> Option<u32> {
        self.delayed_wills.rearm.get(&client).copied()
    }

    /// A client that came back with a delayed will leaves abruptly once connected, and stays away until its will
    /// has gone out; a client now watches its will topic. Returns whether it left.
    pub(super) fn rearm(&mut self, client: usize) -> Result<bool, Violation> {
        let connected = self.clients[client].conn.is_some() && self.clients[client].connacked;
        if !self.delayed_wills.rearm.contains_key(&client) || !connected {
            return Ok(false);
        }
        self.delayed_wills.rearm.remove(&client);
        self.log(format!("c{client} leaves abruptly with its will armed"));
        self.drop_client_connection(client, false)?;
        let will = self.model.delayed_wills.get(&client).cloned();
        let pending = will.filter(|id| matches!(self.model.wills.get(id), Some(WillState::Delayed { .. })));
        if let Some(id) = pending {
            self.log(format!("c{client} stays away until its will {id} has gone out"));
            self.delayed_wills.away.insert(client, id);
            if let Some(mut rng) = self.delayed_wills.rng.take() {
                self.watch_will_of(&mut rng, client);
                self.delayed_wills.rng = Some(rng);
            }
        }
        Ok(true)
    }

    /// A client that is online and stays subscribes to the will topic of each absent client, so that their wills
    /// are owed to someone: the broker reads the SUBSCRIBE well before any of the delays runs out (a second at the
    /// least), and the model follows it as for any SUBSCRIBE.
    fn watch_wills(&mut self, rng: &mut ChaCha8Rng) {
        if self.delayed_wills.away.is_empty() {
            return;
        }
        let Some((watcher, qos, v5)) = self.pick_watcher(rng) else {
            return;
        };
        let absent: Vec<usize> = self.delayed_wills.away.keys().copied().collect();
        for client in absent {
            self.watch(watcher, client, qos, v5);
        }
    }

    /// A client that is online and stays subscribes to the will topic of the absent `client`.
    fn watch_will_of(&mut self, rng: &mut ChaCha8Rng, client: usize) {
        if let Some((watcher, qos, v5)) = self.pick_watcher(rng) {
            self.watch(watcher, client, qos, v5);
        }
    }

    /// A watcher for absent clients' wills: an online client that stays, with the QoS of its subscription and
    /// whether it speaks MQTT 5 (`None`: nobody can watch).
    fn pick_watcher(&self, rng: &mut ChaCha8Rng) -> Option<(usize, QoS, bool)> {
        let watchers: Vec<usize> = (0..self.clients.len())
            .filter(|c| {
                let w = &self.clients[*c];
                w.conn.is_some() && w.connacked && !w.shared_only && !self.stays_away(*c)
            })
            .collect();
        if watchers.is_empty() {
            return None;
        }
        let watcher = watchers[rng.gen_range(0..watchers.len())];
        let qos = if self.opts.qos2 && rng.gen_bool(0.5) {
            QoS::ExactlyOnce
        } else {
            QoS::AtLeastOnce
        };
        Some((watcher, qos, self.clients[watcher].version.is_v5()))
    }

    fn watch(&mut self, watcher: usize, client: usize, qos: QoS, v5: bool) {
        let options = SubscriptionOptions {
            qos,
            ..Default::default()
        };
        self.log(format!("c{watcher} watches will/{client}"));
        self.send_subscribe(watcher, format!("will/{client}"), options, v5);
    }

    /// Whether `client` stays away in the liveness phase for its delayed will.
    pub(super) fn stays_away(&self, client: usize) -> bool {
        self.delayed_wills.away.contains_key(&client)
    }

    /// Whether some client still stays away (the liveness phase is not quiet until all are back).
    pub(super) fn someone_away(&self) -> bool {
        !self.delayed_wills.away.is_empty() || !self.delayed_wills.rearm.is_empty()
    }

    /// A fault-phase delayed will whose delay has run out goes out at the broker's next Tick (or has, for a Clean
    /// Start), to the subscribers of that moment, which the model does not pin down: from now on its copies may
    /// sit in their queues. They count towards the queue bounds, owed to none and droppable, so the count stays
    /// an upper bound (seed 2382: will w3:2 filled c1's offline queue to its 30, and the broker rightly dropped
    /// the resend of m3:17 the model had counted room for).
    pub(super) fn count_due_wills(&mut self) {
        let due: Vec<(MsgId, Pending)> = self
            .delayed_wills
            .pending
            .iter()
            .filter(|(id, p)| {
                !self.delayed_wills.counted.contains(*id)
                    && !self.delayed_wills.away.contains_key(&p.client)
                    && matches!(self.model.wills.get(*id), Some(WillState::Delayed { due_at }) if *due_at <= self.now)
            })
            .map(|(id, p)| (id.clone(), p.clone()))
            .collect();
        for (id, pending) in due {
            self.delayed_wills.counted.insert(id.clone());
            let will = Publish {
                qos: pending.qos,
                retain: pending.retain,
                topic: format!("will/{}", pending.client),
                payload: Bytes::from(id.to_string()),
                ..Default::default()
            };
            let mut plan = self.model.plan_publish(None, &will, Some(id));
            self.model.unpin(&mut plan);
            plan.make_optional(plan.clone());
            plan.maybe_dropped = true;
            self.model.apply_publish(plan);
        }
    }

    /// Before the broker's timers fire at `now`: a will of a client that stays away is due at its Tick, and the
    /// model publishes it to the subscribers of this moment. Its client comes back once the will is out.
    pub(super) fn publish_delayed_wills_due(&mut self) {
        let due: Vec<(usize, MsgId)> = self
            .delayed_wills
            .away
            .iter()
            .filter(|(_, id)| {
                self.delayed_wills
                    .pending
                    .get(*id)
                    .is_some_and(|p| p.due_at <= self.now)
            })
            .map(|(client, id)| (*client, id.clone()))
            .collect();
        for (client, id) in due {
            let Some(pending) = self.delayed_wills.pending.get(&id).cloned() else {
                continue;
            };
            // Still pending: the session did not resume, nor end with a Clean Start (which the model applied).
            if !matches!(self.model.wills.get(&id), Some(WillState::Delayed { .. })) {
                continue;
            }
            self.model.delayed_wills.remove(&client);
            self.log(format!(
                "c{} stayed away: its will {id} is due now (delay ran out at {}ms) [MQTT-3.1.2-8]",
                pending.client, pending.due_at
            ));
            self.publish_will(client, &id, pending.qos, pending.retain);
            self.delayed_wills.owed.insert(id);
        }
    }

    /// Once the liveness phase is quiet: the absent clients whose will delay has run out come back, after a check
    /// that every online subscriber owed the will got it. Returns whether any came back.
    pub(super) fn return_absent(&mut self) -> Result<bool, Violation> {
        let back: Vec<(usize, MsgId)> = self
            .delayed_wills
            .away
            .iter()
            .filter(|(_, id)| self.delayed_wills.pending.get(*id).is_none_or(|p| p.due_at < self.now))
            .map(|(client, id)| (*client, id.clone()))
            .collect();
        for (client, id) in &back {
            self.check_will_received(Some(id))?;
            self.log(format!("c{client} comes back after its will {id}"));
            self.delayed_wills.away.remove(client);
        }
        Ok(!back.is_empty())
    }

    /// Whether `id` is a delayed will the model published at its due Tick.
    pub(super) fn owed_after_delay(&self, id: &str) -> bool {
        self.delayed_wills.owed.contains(id)
    }

    pub(super) fn observe_owed_will(&mut self, id: &str) {
        if self.owed_after_delay(id) {
            self.coverage.hit(Feature::WillOwedAfterDelay);
        }
    }

    /// After the liveness phase: every online subscriber owed a delayed will got it, unless the configuration
    /// allowed the broker to drop it (a queue that may have been full).
    pub(super) fn check_delayed_wills(&self) -> Result<(), Violation> {
        self.check_will_received(None)
    }

    /// Every online subscriber owed will `only` (or any delayed will the model published) got it.
    fn check_will_received(&self, only: Option<&MsgId>) -> Result<(), Violation> {
        for (client, session) in self.model.sessions.iter().enumerate() {
            if !session.exists || !session.online {
                continue;
            }
            let missing = session
                .backlog
                .unreceived()
                .filter(|e| only.is_none_or(|id| *id == e.id))
                .find(|e| !e.shared && e.droppable.is_none() && self.delayed_wills.owed.contains(&e.id));
            if let Some(entry) = missing {
                return Err(Violation(format!(
                    "c{client} never got will {}, owed once its Will Delay Interval ran out with its session still \
                     away [MQTT-3.1.2-8], [MQTT-3.1.3-9]",
                    entry.id
                )));
            }
        }
        Ok(())
    }
}
