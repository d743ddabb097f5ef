//! The model's own mirror of the broker's bounded per-session queues, predicted from the configuration and the
//! traffic alone (never from the broker's counters), so that the model can say on its own:
//! - when a QoS 1/2 PUBLISH must be admitted at once (no online subscriber's queue can be full), and when the
//!   broker may hold or refuse it instead (see `mqtt_core::broker` flow control and quotas);
//! - which drops the configuration allows: a message for an offline session whose queue may be full
//!   (`max_queued_messages`, `max_queued_bytes`), or while the total budget (`max_queued_bytes_total`) may be used
//!   up; every other message routed to a session is owed to it.
//!
//! The broker moves a queued message into the inflight window whenever the session is online and the window
//! (the client's Receive Maximum [MQTT-3.3.4-9], capped by `max_inflight`) has a free slot: on routing, when the
//! broker processes a PUBACK/PUBCOMP, and when the session's client connects again (see `mqtt_core::broker`
//! `pump`). The model mirrors that window itself (`Backlog::set_window`, `Entry::in_window`), so a message counts
//! as queued only while the window is full ahead of it, not until the client happens to read it. What the model
//! may hold that the broker does not (a copy it dropped, a candidate it did not send) only ever counts more, so the
//! count stays an upper bound: a queue that is within its bounds by it is certainly not full. Every delivery counts
//! towards the session's bytes until the broker has processed its PUBACK/PUBCOMP. The queue is FIFO [MQTT-4.6.0-6]: once a client first receives a
//! delivery, every delivery routed to it in an earlier broker input that it has not received was dropped, and that
//! drop must be one the configuration allows.

use super::MsgId;
use std::collections::VecDeque;

/// The broker's queue bounds as configured (0 = unbounded for the byte bounds).
#[derive(Debug, Clone, Copy, Default)]
pub struct QueueLimits {
    pub messages: usize,
    pub bytes: u64,
    pub total: u64,
}

/// One QoS 1/2 delivery routed to a session, as the model counts it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: MsgId,
    pub bytes: u64,
    /// The broker input that routed it: deliveries of one input may reach the queue in an order the model does
    /// not pin down, so only earlier inputs' deliveries are inferred dropped when a later one arrives.
    pub batch: u64,
    pub received: bool,
    /// The broker has moved it into the inflight window (as the model mirrors the window; see the module note).
    pub in_window: bool,
    /// The packet id it was received with (a DUP resend reuses it, and its PUBACK/PUBCOMP names it).
    pub packet_id: u16,
    /// Sent because of a SUBSCRIBE, with RETAIN set [MQTT-3.3.1-9]: a delivery without RETAIN is not this one.
    pub retained_copy: bool,
    /// The configuration allows the broker to drop it (and why).
    pub droppable: Option<&'static str>,
    /// Routed to a shared group this session is a member of: the broker picks one member.
    pub shared: bool,
    /// For a shared one, the shared subscription (`$share/{group}/{filter}`: ShareName and filter together name
    /// it, MQTT 5 section 4.8.2), whose members share the message.
    pub group: String,
    /// Received before the model applied any routing that queued it here (see `Backlog::adopt_unplanned`).
    pub unplanned: bool,
}

/// A session's deliveries not yet completed, in the order routed.
#[derive(Debug, Default, Clone)]
pub struct Backlog {
    entries: VecDeque<Entry>,
    /// The inflight window of the session's connection: 0 while offline (the broker sends nothing then).
    window: usize,
    /// The last window it had online: how many deliveries the broker may hold in flight for it offline.
    last_window: usize,
    /// The sum of the entries' bytes, kept as they come and go: the total budget's checks read every session's at
    /// every admission attempt, which summing the entries each time made quadratic in seeds that hold many
    /// PUBLISHes against long offline queues (seed 2069 spent 62% of its time summing).
    bytes: u64,
}

impl Backlog {
    /// Upper bound of the broker's queue length (messages not yet in the inflight window).
    pub fn queued_upper(&self) -> usize {
        self.entries.iter().filter(|e| !e.in_window).count()
    }

    /// The broker restarted: recovery puts a delivery back in the window only if its `Sent` record survived, so
    /// any of them, received or not, may be queued again until the window takes it (see `mqtt_core::broker`
    /// `durable`).
    pub fn on_broker_restart(&mut self) {
        for entry in &mut self.entries {
            entry.in_window = false;
        }
        self.window = 0;
    }

    /// The session's connection is attached with this inflight window (`min(Receive Maximum, max_inflight)`, at
    /// least 1), or 0: offline. What is already in the window stays there (it is resent on reconnect
    /// [MQTT-4.4.0-1]); a window smaller than that takes nothing more until it drains.
    pub fn set_window(&mut self, window: usize) {
        self.window = window;
        if window > 0 {
            self.last_window = window;
        }
        self.pump();
    }

    /// Moves queued deliveries into the window, oldest first, while it has a free slot (the broker's `pump`).
    fn pump(&mut self) {
        let used = self.entries.iter().filter(|e| e.in_window).count();
        let free = self.window.saturating_sub(used);
        for entry in self.entries.iter_mut().filter(|e| !e.in_window).take(free) {
            entry.in_window = true;
        }
    }

    /// A delivery the model counted as queued arrived, so the broker had it in the window: the window the model
    /// mirrors held others instead (a copy routed at a moment the model could not pin down sits later in the
    /// model's order than in the broker's). While the session is online, those beyond the window that the client
    /// has not received count as queued again, newest first, so the count stays an upper bound (seed 684: c3's
    /// queue was full when will w4:1 came, while the model had m6:21 and w5:3 in the window beside the three
    /// delivered).
    fn trim_window(&mut self) {
        if self.window == 0 {
            return;
        }
        let mut excess = self
            .entries
            .iter()
            .filter(|e| e.in_window)
            .count()
            .saturating_sub(self.window);
        for entry in self.entries.iter_mut().rev() {
            if excess == 0 {
                break;
            }
            if entry.in_window && !entry.received {
                entry.in_window = false;
                excess -= 1;
            }
        }
    }

    /// Deliveries of `id` routed to the session and not completed, received or not.
    pub fn copies(&self, id: &str) -> usize {
        self.entries.iter().filter(|e| *e.id == *id).count()
    }

    /// Upper bound of the payload bytes the broker holds for the session (queued and inflight).
    pub fn bytes_upper(&self) -> u64 {
        debug_assert_eq!(self.bytes, self.entries.iter().map(|e| e.bytes).sum::<u64>());
        self.bytes
    }

    /// Counts the entries' bytes anew, after entries left in bulk.
    fn recount(&mut self) {
        self.bytes = self.entries.iter().map(|e| e.bytes).sum();
    }

    /// Whether the queue may be full (`QueueLimits::is_full` in the core), counting `extra` more messages.
    pub fn may_be_full(&self, limits: QueueLimits, extra: (usize, u64)) -> bool {
        self.queued_upper() + extra.0 >= limits.messages
            || (limits.bytes > 0 && self.bytes_upper() + extra.1 >= limits.bytes)
    }

    pub fn push(&mut self, entry: Entry) {
        // The routing of a copy the client already received (see `adopt_unplanned`): that copy is this one.
        let unplanned = |e: &Entry| e.unplanned && e.id == entry.id && e.retained_copy == entry.retained_copy;
        if let Some(received) = self.entries.iter_mut().find(|e| unplanned(e)) {
            received.unplanned = false;
            return;
        }
        self.bytes += entry.bytes;
        self.entries.push_back(entry);
        self.pump();
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// Marks as droppable what the total budget's eviction of at most `need` bytes may take from this offline
    /// session (see `mqtt_core::broker::quota`): it evicts queued messages oldest first, so what it takes here is a
    /// prefix of the queue. The broker's queue order is the model's for deliveries routed at a moment the model
    /// knows, by broker input (within one input the order is not pinned down, so an input's deliveries go
    /// together); a delivery whose routing moment is unknown (`unsure`) or that the model has in the inflight window
    /// may sit anywhere in the broker's queue, so it is marked whatever its place and its bytes do not count. The
    /// model's count of the rest before an evicted message is at most the bytes evicted before it plus what the
    /// model counts and the broker does not hold, so below `need` (the model's total, an upper bound, less the
    /// level the eviction stops at): a delivery beyond that was not evicted.
    pub fn mark_evictable(&mut self, need: u64, unsure: impl Fn(&str) -> bool, why: &'static str) {
        // Only an unmarked delivery can change: none left, nothing to walk (the broker retries every held PUBLISH
        // at every input, each retry an eviction, so most calls find an offline queue already marked).
        if !self.entries.iter().any(|e| !e.received && e.droppable.is_none()) {
            return;
        }
        // Whether each delivery not received was routed at a moment the model cannot pin down, looked up once.
        let unsure: Vec<bool> = self.entries.iter().map(|e| !e.received && unsure(&e.id)).collect();
        // The broker's inflight window (not evicted) may hold deliveries the model counts as queued (seed 1032: c0's
        // m3:59 and m3:60 sent on a connection its client had left, the model's window holding m0:45 and m3:57): up to
        // the last window's worth of them, at most the largest ones' bytes, are no evicted bytes.
        let mut sure: Vec<u64> = self
            .entries
            .iter()
            .zip(&unsure)
            .filter(|(e, unsure)| !e.received && !e.in_window && !**unsure)
            .map(|(e, _)| e.bytes)
            .collect();
        sure.sort_unstable_by(|a, b| b.cmp(a));
        let need = need + sure.iter().take(self.last_window).sum::<u64>();
        let mut walked = 0;
        let mut open_batch = None;
        for (entry, unsure) in self.entries.iter_mut().zip(unsure).filter(|(e, _)| !e.received) {
            let anywhere = entry.in_window || unsure;
            let in_prefix = walked < need || open_batch == Some(entry.batch);
            if !anywhere && in_prefix {
                walked += entry.bytes;
                open_batch = Some(entry.batch);
            }
            if (anywhere || in_prefix) && entry.droppable.is_none() {
                entry.droppable = Some(why);
            }
        }
    }

    /// The copy the client already received that a DUP with `packet_id` resends [MQTT-4.4.0-1], if it is one.
    pub fn resent(&self, id: &str, packet_id: u16, dup: bool) -> Option<&Entry> {
        let resent = |e: &&Entry| e.received && *e.id == *id && e.packet_id == packet_id;
        self.entries.iter().find(resent).filter(|_| dup)
    }

    /// The client received delivery `id` with `packet_id` (0 for QoS 0, which was never queued) for the first
    /// time. Returns whether the backlog had it, and the deliveries that it overtook: those were dropped.
    pub fn on_received(&mut self, id: &str, packet_id: u16, dup: bool, retain: bool) -> (Option<Entry>, Vec<Entry>) {
        // A DUP is the resend of one already sent [MQTT-4.4.0-1], with its packet id: the copy the client already
        // received, if any.
        if let Some(entry) = self.resent(id, packet_id, dup) {
            return (Some(entry.clone()), Vec::new());
        }
        // RETAIN set: a retained copy sent on SUBSCRIBE first (or a delivery with Retain As Published); RETAIN
        // clear: never a retained copy [MQTT-3.3.1-9], [MQTT-3.3.1-12].
        // A DUP never received before is a copy that was in the window when a connection ended, resent first on
        // the next one [MQTT-4.4.0-1]: the copy in the window if the model has one, and it overtook nothing.
        let find = |shared: bool, copy: bool| {
            let candidate = |e: &Entry| !e.received && e.shared == shared && *e.id == *id && e.retained_copy == copy;
            let in_window = |e: &&Entry| candidate(e) && e.in_window;
            let windowed = dup.then(|| self.entries.iter().position(|e| in_window(&e))).flatten();
            windowed.or_else(|| self.entries.iter().position(candidate))
        };
        let position = if retain {
            find(false, true)
                .or_else(|| find(false, false))
                .or_else(|| find(true, false))
        } else {
            find(false, false).or_else(|| find(true, false))
        };
        let Some(position) = position else {
            return (None, Vec::new());
        };
        self.share_droppable_among_copies(id);
        let copy = |e: &Entry| !e.received && !e.shared && !e.retained_copy && *e.id == *id;
        let ambiguous = self.entries.iter().filter(|e| copy(e)).count() > 1;
        let batch = self.entries[position].batch;
        let was_queued = !self.entries[position].in_window;
        self.entries[position].received = true;
        self.entries[position].in_window = true;
        if was_queued {
            self.trim_window();
        }
        self.entries[position].packet_id = packet_id;
        let found = self.entries[position].clone();
        // Retained copies sent on SUBSCRIBE are counted but not placed in the order: the model does not pin down
        // yet where the broker queues them.
        if found.retained_copy && !found.group.is_empty() {
            // The other candidates for the same retained topic (see `Model::on_subscribe_retained`) were not sent.
            let sibling =
                |e: &Entry| !e.received && e.retained_copy && e.group == found.group && e.batch == found.batch;
            self.entries.retain(|e| !sibling(e));
            self.recount();
        }
        self.pump();
        // With several copies of the message owed, the model cannot tell which one arrived, so not which ones it
        // overtook: what never arrives is still found at the end (`Model::check_backlogs`).
        if found.shared || found.retained_copy || ambiguous || dup {
            return (Some(found), Vec::new());
        }
        let mut skipped = Vec::new();
        let mut kept = VecDeque::with_capacity(self.entries.len());
        for (index, entry) in std::mem::take(&mut self.entries).into_iter().enumerate() {
            if index < position && !entry.received && !entry.shared && !entry.retained_copy && entry.batch < batch {
                skipped.push(entry);
            } else {
                kept.push_back(entry);
            }
        }
        self.entries = kept;
        self.recount();
        self.pump();
        (Some(found), skipped)
    }

    /// The client received a QoS 1/2 delivery the backlog has no entry for: a PUBLISH admitted while the model
    /// could not see when (its publisher did not read), whose routing the model applies only once it learns of it.
    /// The broker holds the delivery in the session's inflight window until its PUBACK/PUBCOMP, so it takes a slot
    /// there, and what the model had in that slot counts as queued again (seed 8357: c0 got m1:35 and m1:36 of c1,
    /// which did not read, before the model saw them routed; the model had c0's own m0:44 and m0:45 in the window
    /// the broker had given them, so counted 4 queued where the broker had 5 and held m0:47). The routing, once
    /// applied, is this copy (`push`).
    pub fn adopt_unplanned(&mut self, id: &str, packet_id: u16, bytes: u64, retain: bool) {
        self.bytes += bytes;
        self.entries.push_back(Entry {
            id: id.into(),
            bytes,
            batch: 0,
            received: true,
            in_window: true,
            packet_id,
            retained_copy: retain,
            droppable: None,
            shared: false,
            group: String::new(),
            unplanned: true,
        });
        self.trim_window();
    }

    /// A message routed to the session more than once (a QoS 1 resend is a new publication) arrives under one
    /// id, so which copy arrived the model cannot tell: if the configuration allowed the broker to drop one of
    /// the copies still owed, the dropped one may be any of them.
    fn share_droppable_among_copies(&mut self, id: &str) {
        let copy = |e: &Entry| !e.received && !e.shared && !e.retained_copy && *e.id == *id;
        let Some(why) = self.entries.iter().filter(|e| copy(e)).find_map(|e| e.droppable) else {
            return;
        };
        for entry in self.entries.iter_mut().filter(|e| copy(e) && e.droppable.is_none()) {
            entry.droppable = Some(why);
        }
    }

    /// A shared delivery went to another member of the group: not this session's to receive.
    pub fn remove_shared(&mut self, id: &str, group: &str) {
        let other = |e: &Entry| e.shared && !e.received && *e.id == *id && e.group == group;
        if let Some(position) = self.entries.iter().position(other) {
            self.bytes -= self.entries[position].bytes;
            self.entries.remove(position);
            self.pump();
        }
    }

    /// The broker processed the client's PUBACK/PUBCOMP for `packet_id`: that delivery left the session.
    pub fn complete(&mut self, packet_id: u16) {
        if let Some(position) = self.entries.iter().position(|e| e.received && e.packet_id == packet_id) {
            self.bytes -= self.entries[position].bytes;
            self.entries.remove(position);
            self.pump();
        }
    }

    /// Deliveries not received (after the liveness phase: never delivered).
    pub fn unreceived(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| !e.received)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, batch: u64) -> Entry {
        Entry {
            id: id.into(),
            bytes: 10,
            batch,
            received: false,
            in_window: false,
            packet_id: 0,
            retained_copy: false,
            droppable: None,
            shared: false,
            group: String::new(),
            unplanned: false,
        }
    }

    #[test]
    fn a_later_delivery_reveals_earlier_drops_but_not_within_one_input() {
        let mut backlog = Backlog::default();
        backlog.push(entry("m1:1", 1));
        backlog.push(entry("m1:2", 2));
        backlog.push(entry("m1:3", 2));
        // m1:3 came before m1:2 within one input: not a drop; m1:1 of an earlier input was dropped.
        let (found, skipped) = backlog.on_received("m1:3", 7, false, false);
        assert!(found.is_some());
        assert_eq!(skipped.iter().map(|e| &*e.id).collect::<Vec<_>>(), ["m1:1"]);
        assert_eq!(backlog.queued_upper(), 1);
        assert_eq!(backlog.bytes_upper(), 20);
        backlog.complete(7);
        assert_eq!(backlog.bytes_upper(), 10);
    }

    #[test]
    fn candidates_for_one_retained_topic_count_until_one_arrives() {
        // The model cannot pin the retained message of a topic down: each candidate counts towards the bound (the
        // broker's copy may be the largest), and once one arrives the others were never sent.
        let mut backlog = Backlog::default();
        for (id, bytes) in [("m1:1", 10), ("m2:4", 1690)] {
            backlog.push(Entry {
                bytes,
                retained_copy: true,
                group: "retained:a/b".into(),
                ..entry(id, 3)
            });
        }
        backlog.push(entry("m1:2", 4));
        assert_eq!(backlog.queued_upper(), 3);
        assert_eq!(backlog.bytes_upper(), 1710);
        let (found, skipped) = backlog.on_received("m2:4", 1, false, true);
        assert!(found.is_some_and(|e| e.retained_copy));
        assert!(skipped.is_empty());
        assert_eq!(
            backlog.queued_upper(),
            1,
            "the other candidate is gone, m1:2 still queued"
        );
        assert_eq!(backlog.bytes_upper(), 1700);
    }

    #[test]
    fn the_budget_evicts_a_prefix_of_an_offline_queue_no_longer_than_needed() {
        let why = "evicted";
        let marked = |backlog: &Backlog| -> Vec<String> {
            backlog
                .unreceived()
                .filter(|e| e.droppable.is_some())
                .map(|e| e.id.to_string())
                .collect()
        };
        let mut backlog = Backlog::default();
        for (id, batch) in [("m1:1", 1), ("m1:2", 2), ("m1:3", 3), ("m1:4", 3)] {
            backlog.push(entry(id, batch));
        }
        // 15 bytes: the oldest two (10 bytes each) may go, the rest stays; m1:4 of m1:3's input goes with it.
        backlog.mark_evictable(15, |_| false, why);
        assert_eq!(marked(&backlog), ["m1:1", "m1:2"]);
        backlog.mark_evictable(25, |_| false, why);
        assert_eq!(marked(&backlog), ["m1:1", "m1:2", "m1:3", "m1:4"]);
        // Routed at a moment the model cannot pin down: anywhere in the queue.
        let mut backlog = Backlog::default();
        for (id, batch) in [("m1:1", 1), ("m1:2", 2), ("m1:3", 3)] {
            backlog.push(entry(id, batch));
        }
        backlog.mark_evictable(5, |id| id == "m1:3", why);
        assert_eq!(marked(&backlog), ["m1:1", "m1:3"]);
        // A session that was online with a window of 1: the broker may hold any one of them in flight, so one
        // more entry's bytes are no evicted bytes.
        let mut backlog = Backlog::default();
        backlog.set_window(1);
        backlog.set_window(0);
        for (id, batch) in [("m1:1", 1), ("m1:2", 2), ("m1:3", 3)] {
            backlog.push(entry(id, batch));
        }
        backlog.mark_evictable(5, |_| false, why);
        assert_eq!(marked(&backlog), ["m1:1", "m1:2"]);
    }

    #[test]
    fn a_message_routed_twice_may_have_lost_either_copy() {
        // m1:1 routed twice (a QoS 1 resend is a new publication); the first copy may have been dropped (the
        // offline queue may have been full), the second not. One copy arrives: which one the model cannot tell, so
        // the copy left over is excused; a lone message is still blamed.
        let mut backlog = Backlog::default();
        backlog.push(Entry {
            droppable: Some("full"),
            ..entry("m1:1", 1)
        });
        backlog.push(entry("m2:1", 2));
        backlog.push(entry("m1:1", 3));
        backlog.push(entry("m2:2", 4));
        let (found, skipped) = backlog.on_received("m1:1", 1, false, false);
        assert!(found.is_some_and(|e| e.batch == 1));
        assert!(skipped.is_empty());
        let (_, skipped) = backlog.on_received("m2:2", 2, false, false);
        let why: Vec<(&str, bool)> = skipped.iter().map(|e| (&*e.id, e.droppable.is_some())).collect();
        assert_eq!(why, [("m2:1", false), ("m1:1", true)]);
    }

    #[test]
    fn the_window_takes_from_the_queue_as_the_broker_does() {
        // Window 2 [MQTT-3.3.4-9]: of three deliveries routed while online, two are in flight before the client
        // reads anything, so one is queued; a PUBACK frees a slot and the third moves in.
        let mut backlog = Backlog::default();
        backlog.set_window(2);
        for (id, batch) in [("m1:1", 1), ("m1:2", 2), ("m1:3", 3)] {
            backlog.push(entry(id, batch));
        }
        assert_eq!(backlog.queued_upper(), 1);
        backlog.on_received("m1:1", 1, false, false);
        assert_eq!(
            backlog.queued_upper(),
            1,
            "received, but its slot is not free until the PUBACK"
        );
        backlog.complete(1);
        assert_eq!(backlog.queued_upper(), 0);
        // Offline: what arrives stays queued, and the window keeps what it had; a client back with Receive
        // Maximum 1 takes nothing more while two are in flight.
        backlog.set_window(0);
        backlog.push(entry("m1:4", 4));
        backlog.push(entry("m1:5", 5));
        assert_eq!(backlog.queued_upper(), 2);
        backlog.set_window(1);
        assert_eq!(backlog.queued_upper(), 2, "the resent window is still full");
        backlog.on_received("m1:2", 2, true, false);
        backlog.complete(2);
        assert_eq!(backlog.queued_upper(), 2, "one still in flight fills a window of 1");
        backlog.on_received("m1:3", 3, false, false);
        backlog.complete(3);
        assert_eq!(backlog.queued_upper(), 1);
    }

    #[test]
    fn a_delivery_received_before_its_routing_was_seen_takes_a_window_slot() {
        // Window 2 holding m1:1 and m1:2; the client gets m2:1 (admitted while its publisher did not read, so the
        // model has not applied its routing): the broker had it in the window, so m1:2 counts as queued again
        // [MQTT-3.3.4-9]. Its routing, applied later, is that copy, not one more queued.
        let mut backlog = Backlog::default();
        backlog.set_window(2);
        backlog.push(entry("m1:1", 1));
        backlog.push(entry("m1:2", 2));
        assert_eq!(backlog.queued_upper(), 0);
        let (found, _) = backlog.on_received("m2:1", 5, false, false);
        assert!(found.is_none());
        backlog.adopt_unplanned("m2:1", 5, 10, false);
        assert_eq!(backlog.queued_upper(), 1, "m1:2 is out of the window");
        assert_eq!(backlog.bytes_upper(), 30);
        backlog.push(entry("m2:1", 3));
        assert_eq!(backlog.queued_upper(), 1, "the routing of m2:1 is the copy received");
        backlog.complete(5);
        assert_eq!(backlog.queued_upper(), 0);
        assert_eq!(backlog.bytes_upper(), 20);
    }

    #[test]
    fn fullness_is_an_upper_bound() {
        let limits = QueueLimits {
            messages: 2,
            bytes: 25,
            total: 0,
        };
        let mut backlog = Backlog::default();
        backlog.push(entry("m1:1", 1));
        assert!(!backlog.may_be_full(limits, (0, 0)));
        assert!(
            backlog.may_be_full(limits, (1, 0)),
            "two queued reach max_queued_messages"
        );
        assert!(backlog.may_be_full(limits, (0, 15)), "25 bytes reach max_queued_bytes");
        backlog.on_received("m1:1", 1, false, false);
        assert_eq!(
            backlog.queued_upper(),
            0,
            "received: in the inflight window, not queued"
        );
        assert_eq!(backlog.bytes_upper(), 10, "still held until acknowledged");
    }
}
