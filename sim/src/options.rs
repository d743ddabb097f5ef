//! Everything a run varies, derived from its seed ("swarm testing": each seed picks its own mix of features and
//! fault rates, so that rare combinations get explored).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::fmt;

/// Level names; a seed's topic space uses the first `topic_width` of them at every level.
const LEVEL_NAMES: &[&str] = &["a", "b", "c", "d"];

#[derive(Debug, Clone)]
pub struct Options {
    pub seed: u64,
    pub clients: usize,
    /// Share of clients speaking MQTT 5 (the rest 3.1.1).
    pub v5_share: f64,
    pub persistent_share: f64,
    pub qos2: bool,
    pub retained: bool,
    pub shared: bool,
    pub wills: bool,
    pub expiry: bool,
    /// Clients subscribe with `+` and `#` (and the broker offers them); otherwise exact filters only.
    pub wildcards: bool,
    /// Names per topic level and maximum depth: small spaces make many overlaps, large ones few.
    pub topic_width: usize,
    pub topic_depth: usize,
    /// MQTT 5 wills carry a Will Delay Interval (seconds) sometimes.
    pub will_delay: bool,
    /// v5 clients send Topic Aliases when the broker allows them.
    pub client_aliases: bool,
    /// Steps of the fault phase (each step is one event).
    pub steps: usize,
    /// Per-step probabilities of each fault.
    pub cut_rate: f64,
    pub crash_rate: f64,
    pub slow_reader_rate: f64,
    pub time_jump_rate: f64,
    pub garbage_rate: f64,
    /// A client reconnects while its old connection is still open (session takeover).
    pub takeover_rate: f64,
    /// Maximum network delay of one segment, ms (segments of different connections may overtake each other).
    pub max_delay_ms: u64,
    /// Deliver byte streams in random chunks (down to one byte) rather than whole segments.
    pub chunking: bool,
    /// Probability that a client delays an acknowledgement.
    pub slow_ack_rate: f64,
    /// Broker limits.
    pub receive_maximum: u16,
    pub client_receive_maximum: u16,
    /// Broker's cap on messages in flight to one client, whatever its Receive Maximum.
    pub max_inflight: u16,
    /// Broker's per-session queue bound; a small one makes the broker drop messages legitimately.
    pub max_queued_messages: usize,
    /// Broker's Maximum Packet Size; clients keep their publishes below it, misbehaving ones do not.
    pub max_packet_size: u32,
    /// Maximum Packet Size some MQTT 5 clients announce (None: they do not).
    pub client_max_packet_size: Option<u32>,
    /// Broker's Topic Alias Maximum for inbound aliases.
    pub max_topic_alias: u16,
    /// The broker writes persistence records to the simulated disk.
    pub persistence: bool,
    /// Per-step probability that the broker process crashes and restarts from its disk (with persistence).
    pub broker_crash_rate: f64,
    /// Per-step probability that the disk fills up for a while (writes fail as with ENOSPC).
    pub disk_full_rate: f64,
    /// Broker quotas (issue #9; 0 = unlimited). Drawn from a stream of their own, so that a seed's workload and
    /// faults are the same whether or not they are on.
    pub quotas: QuotaOptions,
    /// Some MQTT 5 clients keep their session for seconds only and change that on DISCONNECT (see
    /// `world::expiry`); only without persistence.
    pub short_expiry: bool,
    /// The broker supports no retained messages (`Config::retain_available` off): clients then publish none, and
    /// a misbehaving one that does is disconnected.
    pub retain_unavailable: bool,
    /// PUBLISHes a client sends back to back, due at the broker at the same moment, travel in one segment (as TCP
    /// coalesces them), so that the broker reads several in one input (see `world::coalesce`).
    pub coalesce: bool,
    /// The broker's clock may have been set back or forward while it was down, at every restart (with
    /// persistence; see `world::clock`).
    pub restart_clock_jumps: bool,
    /// Some MQTT 5 clients connect with an empty client identifier and get one assigned (only without access
    /// rules, which name clients by identifier).
    pub assigned_ids: bool,
    /// `Config::shared_payload_min`: payloads at least this long go out shared rather than copied. The
    /// simulated payloads are a few bytes, so small values exercise the shared path and `usize::MAX` the copied one.
    pub shared_payload_min: usize,
    /// The simulated disk's faults (with persistence).
    pub disk: DiskOptions,
    /// The broker's Maximum QoS (`Config::maximum_qos`): below 2 it says so in CONNACK [MQTT-3.2.2-9], grants
    /// subscriptions at most that QoS, and refuses a PUBLISH or will above it (see `world::max_qos`).
    pub maximum_qos: u8,
    /// The broker's publish rate per connection (`Config::max_publish_rate`, `max_publish_bytes_rate`; 0: none),
    /// which the model mirrors (see `world::publish_rate`).
    pub publish_rate: u32,
    pub publish_bytes_rate: u64,
    /// Clients back off before their refused PUBLISHes make a flood (otherwise floods end connections).
    pub publish_rate_polite: bool,
    /// Extra MQTT 5 connections authenticate by an enhanced AUTH exchange, some re-authenticate, some fail (see
    /// `world::enhanced_auth`).
    pub enhanced_auth: bool,
    /// A watcher subscribes to `$SYS/#` and the broker's statistics are checked against the world's own counts
    /// (see `world::sys_topics`); only without persistence.
    pub sys_watch: bool,
    /// The broker's connect rate per address (`Config::max_connects_per_second_per_address`; 0: none), which bursts
    /// from an address of their own exceed (see `world::connect_rate`).
    pub connect_rate: u32,
    /// `Config::timer_compaction_min`: small values make the broker compact its timer queue often (by default
    /// only bursts of 1024 connections do), so that an entry compaction wrongly drops shows (see
    /// `with_timer_compaction`).
    pub timer_compaction_min: usize,
    /// Shares of the well-behaved PUBLISHes that set RETAIN (with `retained`) and, from MQTT 5 clients, carry a
    /// Message Expiry Interval (with `expiry`): raised in some seeds (see `with_retained_expiry`).
    pub retain_share: f64,
    pub expiry_share: f64,
    /// A second listener takes its clients' names from their transport (`Config::identity_as_username`, a TLS
    /// client certificate's name), and extra connections open on it, with a verified name or without (see
    /// `world::identity`).
    pub identity_listener: bool,
}

/// How the simulated disk under the real storage code misbehaves in a seed (see `simfs`). Drawn from a stream of
/// their own, so that a seed's other choices stay what they were before they existed.
#[derive(Debug, Clone, Copy, Default)]
pub struct DiskOptions {
    /// Per-operation probability of EIO on a write, sync, create, rename or directory sync, and the most a run
    /// sees.
    pub eio_rate: f64,
    pub max_eio: u32,
    /// Per-step probability that a bit flips in synced data (bit rot), and the most a run sees.
    pub flip_rate: f64,
    pub max_flips: u32,
    /// Share of broker crashes that strike in the middle of the storage operations of an input (a commit, a
    /// snapshot, a generation switch) rather than between inputs.
    pub mid_write_share: f64,
    /// Per-step probability of a power cut armed to strike during the next compaction (snapshot writing, rename,
    /// generation switch), on top of the broker crashes.
    pub compaction_cut_rate: f64,
    /// The log is compacted into a new snapshot once it outgrows this (and twice the snapshot): small values make
    /// generation switches, and crashes during them, frequent.
    pub compact_bytes: u64,
}

impl DiskOptions {
    fn from_seed(seed: u64, persistence: bool) -> DiskOptions {
        if !persistence {
            return DiskOptions::default();
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xd15c_fa17_5eed_0001);
        DiskOptions {
            eio_rate: rate(&mut rng, 0.01),
            max_eio: rng.gen_range(1..=20),
            flip_rate: rate(&mut rng, 0.005),
            max_flips: rng.gen_range(1..=4),
            mid_write_share: [0.3, 0.6, 0.9][rng.gen_range(0..3)],
            compaction_cut_rate: rate(&mut rng, 0.004),
            compact_bytes: [256, 1_024, 8_192][rng.gen_range(0..3)],
        }
    }
}

/// The broker quotas a seed runs with.
#[derive(Debug, Clone, Copy, Default)]
pub struct QuotaOptions {
    /// Payload bytes per session; a small bound makes the broker hold publishers and drop for offline sessions.
    pub max_queued_bytes: u64,
    /// Payload bytes over all sessions; makes the broker refuse (MQTT 5) or hold (3.1.1) and evict.
    pub max_queued_bytes_total: u64,
    /// Subscriptions per client: the model predicts which filters get 0x97.
    pub max_subscriptions_per_client: usize,
    /// Topic levels: the model predicts which PUBLISHes get 0x90 and which filters 0x8F. Never below 2, the
    /// depth of the will topics (`will/{client}`).
    pub max_topic_levels: usize,
    /// Topic bytes: the model predicts refusals as for levels. Never below 6, the length of the will topics; the
    /// longer shared filters (`$share/g0/a/b/c`) are what it refuses.
    pub max_topic_length: usize,
    /// Limit connections per address to the number of clients (who share one address; misbehaving clients and
    /// the retained probe come from another): never reached by well-behaved clients if the count is exact and a
    /// takeover of a half-open connection does not count the connection it replaces.
    pub per_address_limit: bool,
    /// The broker enforces the simulation's access rules (`acl::SimAcl`), which the model predicts.
    pub acl: bool,
    /// One CONNECT in this many (chosen by a hash of the connection id) gets `AuthDecision::Pending` and its
    /// verdict a little later; 0 = never (see `acl::SimAcl::defers`).
    pub deferred_auth: u64,
}

impl QuotaOptions {
    fn from_seed(seed: u64) -> QuotaOptions {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15);
        QuotaOptions {
            max_queued_bytes: [0, 0, 0, 300, 5_000][rng.gen_range(0..5)],
            max_queued_bytes_total: [0, 0, 0, 2_000, 20_000][rng.gen_range(0..5)],
            max_subscriptions_per_client: [0, 0, 0, 2, 6][rng.gen_range(0..5)],
            max_topic_levels: [0, 0, 0, 2][rng.gen_range(0..4)],
            per_address_limit: rng.gen_bool(0.3),
            max_topic_length: [0, 0, 0, 6, 12][rng.gen_range(0..5)],
            acl: rng.gen_bool(0.3),
            deferred_auth: [0, 0, 2, 5][rng.gen_range(0..4)],
        }
    }
}

/// Most seeds have 2 to 8 clients (many overlaps per topic); one in ten has up to 64, so that large subscriber
/// lists, wide fan-out and many connections from one address are exercised. From its own stream, so that the
/// other choices of a seed stay what they were.
fn many_clients_from_seed(seed: u64) -> Option<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6c62_272e_07bb_0142);
    rng.gen_bool(0.1).then(|| rng.gen_range(9..=64))
}

/// From its own stream, so that the other choices of a seed stay what they were before it existed.
fn shared_payload_min_from_seed(seed: u64) -> usize {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5a4e_d0b1_e5ca_1ab5);
    [usize::MAX, 1, 6, 12][rng.gen_range(0..4)]
}

fn rate(rng: &mut ChaCha8Rng, max: f64) -> f64 {
    if rng.gen_bool(0.5) {
        0.0
    } else {
        rng.gen_range(0.0..max)
    }
}

impl Options {
    pub fn from_seed(seed: u64, rng: &mut ChaCha8Rng) -> Options {
        Options {
            seed,
            clients: rng.gen_range(2..=8),
            v5_share: rng.gen_range(0.0..=1.0),
            persistent_share: rng.gen_range(0.0..=1.0),
            qos2: rng.gen_bool(0.7),
            retained: rng.gen_bool(0.6),
            shared: rng.gen_bool(0.4),
            wills: rng.gen_bool(0.5),
            expiry: rng.gen_bool(0.3),
            wildcards: rng.gen_bool(0.8),
            topic_width: rng.gen_range(1..=LEVEL_NAMES.len()),
            topic_depth: rng.gen_range(1..=3),
            will_delay: rng.gen_bool(0.3),
            client_aliases: rng.gen_bool(0.5),
            steps: rng.gen_range(1_000..4_000),
            cut_rate: rate(rng, 0.02),
            crash_rate: rate(rng, 0.01),
            slow_reader_rate: rate(rng, 0.01),
            time_jump_rate: rate(rng, 0.005),
            garbage_rate: rate(rng, 0.005),
            takeover_rate: rate(rng, 0.01),
            max_delay_ms: [0, 1, 5, 50][rng.gen_range(0..4)],
            chunking: rng.gen_bool(0.5),
            slow_ack_rate: rate(rng, 0.5),
            receive_maximum: [2, 10, 1024][rng.gen_range(0..3)],
            client_receive_maximum: [1, 3, 20, 65535][rng.gen_range(0..4)],
            max_inflight: [1, 3, 1024][rng.gen_range(0..3)],
            max_queued_messages: [1_000_000, 1_000_000, 30, 5][rng.gen_range(0..4)],
            max_packet_size: [1 << 20, 4096, 600][rng.gen_range(0..3)],
            max_topic_alias: [0, 2, 16][rng.gen_range(0..3)],
            client_max_packet_size: [None, None, Some(300), Some(1200)][rng.gen_range(0..4)],
            persistence: false,
            broker_crash_rate: 0.0,
            disk_full_rate: 0.0,
            quotas: QuotaOptions::from_seed(seed),
            shared_payload_min: shared_payload_min_from_seed(seed),
            disk: DiskOptions::default(),
            short_expiry: false,
            retain_unavailable: false,
            assigned_ids: false,
            maximum_qos: 2,
            publish_rate: 0,
            publish_bytes_rate: 0,
            publish_rate_polite: false,
            coalesce: false,
            restart_clock_jumps: false,
            enhanced_auth: false,
            sys_watch: false,
            connect_rate: 0,
            timer_compaction_min: mqtt_core::broker::Config::default().timer_compaction_min,
            retain_share: 0.15,
            expiry_share: 0.2,
            identity_listener: false,
        }
        .with_durability(rng)
        .with_many_clients(seed)
        .with_short_expiry(seed)
        .with_qos_and_rate_limits(seed)
        .with_coalescing(seed)
        .with_restart_clock_jumps(seed)
        .with_enhanced_auth(seed)
        .with_maximum_qos_0(seed)
        .with_timer_compaction(seed)
        .with_budget_pressure(seed)
        .with_retained_expiry(seed)
        .with_restart_storm(seed)
        .with_identity_listener(seed)
    }

    /// One seed in four (from a stream of its own, so that the others stay what they were) has a listener whose
    /// clients are authenticated by the name their transport verified.
    fn with_identity_listener(mut self, seed: u64) -> Options {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x1d3e_7171_7ce4_7001);
        self.identity_listener = rng.gen_bool(0.25);
        self
    }

    /// Half the seeds whose restarts jump the clock (from a stream of its own) restart the broker often, with
    /// persistent subscribers that come and go and most messages expiring and retained, so that a message lives
    /// through two restarts inside its interval: the second must cap its deadline from the first's capped one, not
    /// afresh from the original [MQTT-3.3.2-5] (without this profile, 0 seeds in 1,000 did).
    fn with_restart_storm(mut self, seed: u64) -> Options {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5707_4e57_a127_0b0e);
        if self.restart_clock_jumps && rng.gen_bool(0.5) {
            self.broker_crash_rate = self.broker_crash_rate.max(rng.gen_range(0.02..0.05));
            // Crashes between inputs: one armed for the middle of a compaction holds every later one back until
            // a compaction comes. Message expiry is MQTT 5.0's.
            self.disk.mid_write_share = self.disk.mid_write_share.min(0.2);
            self.v5_share = self.v5_share.max(0.8);
            self.expiry = true;
            self.expiry_share = 0.7;
            self.retained = !self.retain_unavailable;
            self.retain_share = self.retain_share.max(0.4);
            self.persistent_share = self.persistent_share.max(0.8);
            self.cut_rate = self.cut_rate.max(rng.gen_range(0.005..0.02));
        }
        self
    }

    /// One seed in four (from a stream of its own) retains and expires much of what it publishes, so that retained
    /// messages with an expiry often wait in the store before a SUBSCRIBE matches them: the copy sent then carries
    /// the interval lowered by the wait [MQTT-3.3.2-6] (a broker that stamped the full interval was otherwise found
    /// first at seed 436).
    fn with_retained_expiry(mut self, seed: u64) -> Options {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x4e7a_12ed_0e59_1a7e);
        if rng.gen_bool(0.25) {
            self.expiry = true;
            self.retained = !self.retain_unavailable;
            self.retain_share = 0.4;
            self.expiry_share = 0.6;
        }
        self
    }

    /// One seed in four (from a stream of its own) is pressed against full queues and the total queued-bytes budget:
    /// slow subscribers, mostly 3.1.1 clients (whose PUBLISHes the broker holds, rather than refuses, while the
    /// budget is used up), QoS 2, persistent sessions, cut connections and takeovers, so that a reconnecting
    /// client's resent window meets held PUBLISHes: a QoS 2 resend of an id awaiting PUBREL read behind a held one
    /// must wait its turn [MQTT-4.6.0-3] (the broker's bug of seed 2703, otherwise seen in about one seed in 700).
    fn with_budget_pressure(mut self, seed: u64) -> Options {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x0b0d_9e77_4e1d_5eed);
        if rng.gen_bool(0.25) {
            self.quotas.max_queued_bytes_total = 2_000;
            self.client_receive_maximum = self.client_receive_maximum.min(20);
            self.v5_share *= 0.3;
            self.qos2 = true;
            self.cut_rate = self.cut_rate.max(rng.gen_range(0.003..0.01));
            self.takeover_rate = self.takeover_rate.max(rng.gen_range(0.002..0.01));
            self.slow_ack_rate = self.slow_ack_rate.max(0.2);
            self.persistent_share = self.persistent_share.max(0.7);
        }
        self
    }

    /// From a stream of its own, so that the rest of a seed's options and workload stay as they were. Two in three
    /// seeds compact the broker's timer queue as soon as it doubled (the broker's bug of seed 3629, a session's
    /// expiry entry compacted away, was otherwise found only where connect-rate bursts armed 1024 entries).
    fn with_timer_compaction(mut self, seed: u64) -> Options {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7153_c0de_a11e_0e57);
        self.timer_compaction_min = [self.timer_compaction_min, 16, 2][rng.gen_range(0..3)];
        self
    }

    /// From a stream of its own, so that the rest of a seed's options and workload stay as they were.
    fn with_restart_clock_jumps(mut self, seed: u64) -> Options {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x1b87_3593_cc9e_2d51);
        self.restart_clock_jumps = self.persistence && rng.gen_bool(0.5);
        self
    }

    /// Maximum QoS 0 in some seeds (from a stream of its own, so that the other choices stay what they were).
    fn with_maximum_qos_0(mut self, seed: u64) -> Options {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x0c05_0000_7e57_0b05);
        if rng.gen_bool(0.08) {
            self.maximum_qos = 0;
        }
        self.connect_rate = if rng.gen_bool(0.2) { 100 } else { 0 };
        self
    }

    /// From a stream of its own, so that the rest of a seed's options and workload stay as they were.
    fn with_enhanced_auth(mut self, seed: u64) -> Options {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7f4a_7c15_9e37_79b9);
        self.enhanced_auth = rng.gen_bool(0.3);
        self.sys_watch = !self.persistence && rng.gen_bool(0.4);
        self
    }

    /// From its own stream, so that the other choices of a seed stay what they were before it existed.
    fn with_qos_and_rate_limits(mut self, seed: u64) -> Options {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x3c6e_f372_fe94_f82b);
        self.maximum_qos = if rng.gen_bool(0.2) { 1 } else { 2 };
        self.publish_rate = [0, 0, 0, 0, 0, 0, 1, 2, 5][rng.gen_range(0..9)];
        self.publish_bytes_rate = [0, 0, 0, 0, 0, 0, 0, 2_500, 5_000][rng.gen_range(0..9)];
        self.publish_rate_polite = rng.gen_bool(0.6);
        // A client resends its whole window of unacknowledged PUBLISHes at once when it reconnects
        // [MQTT-4.4.0-1]; a window wider than the flood line (ten seconds' worth of refusals) would be
        // disconnected for the resend itself, on every reconnect, for as long as an earlier PUBLISH is held for a
        // full queue (the refusals behind it unacknowledged): rates only where the broker's Receive Maximum keeps
        // the window (at most 10 PUBLISHes of at most ~2 KB) below it.
        if self.receive_maximum > 10 {
            self.publish_rate = 0;
            self.publish_bytes_rate = 0;
        }
        self
    }

    /// The highest QoS the well-behaved clients publish (and arm wills) with: the seed's choice, within the broker's
    /// Maximum QoS, which MQTT 5 clients learn from CONNACK [MQTT-3.2.2-11] and 3.1.1 clients from configuration.
    pub fn publish_qos_max(&self) -> u8 {
        let wanted = if self.qos2 { 2 } else { 1 };
        wanted.min(self.maximum_qos)
    }

    /// From a stream of its own, so that the rest of a seed's options and workload stay as they were.
    fn with_coalescing(mut self, seed: u64) -> Options {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15);
        // With persistence and retained messages too: the model stores a QoS 0 RETAIN PUBLISH read behind a QoS 1/2
        // one on its topic in the same segment after it, as the broker does (seed 767, `retain_after_chunk`), and
        // processes nothing behind a PUBLISH that closes a 3.1.1 connection while storage is suspended (seeds 865,
        // 4010, ..., `transient_close`).
        self.coalesce = rng.gen_bool(0.5);
        self
    }

    fn with_short_expiry(mut self, seed: u64) -> Options {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x2545_f491_4f6c_dd1d);
        self.short_expiry = !self.persistence && rng.gen_bool(0.5);
        self.retain_unavailable = rng.gen_bool(0.15);
        if self.retain_unavailable {
            self.retained = false;
        }
        self.assigned_ids = !self.quotas.acl && rng.gen_bool(0.3);
        self
    }

    fn with_many_clients(mut self, seed: u64) -> Options {
        if let Some(clients) = many_clients_from_seed(seed) {
            self.clients = clients;
            // The will topics (`will/{client}`) stay within the topic length quota, as with fewer clients.
            if self.quotas.max_topic_length > 0 {
                let longest = format!("will/{}", clients - 1).len();
                self.quotas.max_topic_length = self.quotas.max_topic_length.max(longest);
            }
        }
        self
    }

    /// Drawn last, so that the other choices of a seed stay what they were before durability existed.
    fn with_durability(mut self, rng: &mut ChaCha8Rng) -> Options {
        self.persistence = rng.gen_bool(0.5);
        self.broker_crash_rate = if self.persistence { rate(rng, 0.004) } else { 0.0 };
        self.disk_full_rate = if self.persistence { rate(rng, 0.003) } else { 0.0 };
        self.disk = DiskOptions::from_seed(self.seed, self.persistence);
        self
    }

    /// Whether the broker may drop queued QoS 1/2 messages by design (small queues, byte bounds).
    pub fn queues_bounded(&self) -> bool {
        self.max_queued_messages < 1_000 || self.quotas.max_queued_bytes > 0 || self.quotas.max_queued_bytes_total > 0
    }

    /// Every topic of the seed's topic space: all paths of 1..=depth levels over `topic_width` names.
    pub fn topics(&self) -> Vec<String> {
        let names = &LEVEL_NAMES[..self.topic_width.clamp(1, LEVEL_NAMES.len())];
        let mut topics: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut level = topics.clone();
        for _ in 1..self.topic_depth {
            level = level
                .iter()
                .flat_map(|prefix| names.iter().map(move |n| format!("{prefix}/{n}")))
                .collect();
            topics.extend(level.iter().cloned());
        }
        topics
    }

    /// A filter for `topic`: itself, or (with wildcards) with levels replaced by `+` or a tail replaced by `#`.
    pub fn filter_for(&self, topic: &str, rng: &mut ChaCha8Rng) -> String {
        if !self.wildcards || rng.gen_bool(0.3) {
            return topic.to_string();
        }
        let levels: Vec<&str> = topic.split('/').collect();
        // [MQTT-4.7.1-2]: `#` is last and alone in its level; [MQTT-4.7.1-3]: `+` fills a whole level.
        if rng.gen_bool(0.35) {
            let keep = rng.gen_range(0..=levels.len());
            let mut out: Vec<&str> = levels[..keep].to_vec();
            out.push("#");
            return out.join("/");
        }
        levels
            .iter()
            .map(|l| if rng.gen_bool(0.4) { "+" } else { l })
            .collect::<Vec<_>>()
            .join("/")
    }
}

impl fmt::Display for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed={} clients={} v5_share={:.2} persistent_share={:.2} qos2={} retained={} shared={} wills={} \
             expiry={} wildcards={} topics={}x{} will_delay={} client_aliases={} steps={} cut={:.4} crash={:.4} slow_reader={:.4} time_jump={:.4} garbage={:.4} takeover={:.4} \
             max_delay={}ms chunking={} slow_ack={:.2} receive_max={} client_receive_max={} max_inflight={} max_queued={} max_packet={} max_topic_alias={} client_max_packet={:?} \
             max_queued_bytes={} max_queued_bytes_total={} max_subscriptions={} max_topic_levels={} max_topic_length={} per_address_limit={} acl={} deferred_auth={} \
             persistence={} broker_crash={:.4} disk_full={:.4} disk_eio={:.4}x{} bit_flip={:.4}x{} mid_write_crash={:.1} compaction_cut={:.4} \
             compact_bytes={} shared_payload_min={} short_expiry={} \
             retain_unavailable={} assigned_ids={} maximum_qos={} publish_rate={}/s,{}B/s polite={} coalesce={} restart_clock_jumps={} enhanced_auth={} sys_watch={} connect_rate={} timer_compaction_min={} retain_share={} expiry_share={} identity_listener={}",
            self.seed,
            self.clients,
            self.v5_share,
            self.persistent_share,
            self.qos2,
            self.retained,
            self.shared,
            self.wills,
            self.expiry,
            self.wildcards,
            self.topic_width,
            self.topic_depth,
            self.will_delay,
            self.client_aliases,
            self.steps,
            self.cut_rate,
            self.crash_rate,
            self.slow_reader_rate,
            self.time_jump_rate,
            self.garbage_rate,
            self.takeover_rate,
            self.max_delay_ms,
            self.chunking,
            self.slow_ack_rate,
            self.receive_maximum,
            self.client_receive_maximum,
            self.max_inflight,
            self.max_queued_messages,
            self.max_packet_size,
            self.max_topic_alias,
            self.client_max_packet_size,
            self.quotas.max_queued_bytes,
            self.quotas.max_queued_bytes_total,
            self.quotas.max_subscriptions_per_client,
            self.quotas.max_topic_levels,
            self.quotas.max_topic_length,
            self.quotas.per_address_limit,
            self.quotas.acl,
            self.quotas.deferred_auth,
            self.persistence,
            self.broker_crash_rate,
            self.disk_full_rate,
            self.disk.eio_rate,
            self.disk.max_eio,
            self.disk.flip_rate,
            self.disk.max_flips,
            self.disk.mid_write_share,
            self.disk.compaction_cut_rate,
            self.disk.compact_bytes,
            self.shared_payload_min,
            self.short_expiry,
            self.retain_unavailable,
            self.assigned_ids,
            self.maximum_qos,
            self.publish_rate,
            self.publish_bytes_rate,
            self.publish_rate_polite,
            self.coalesce,
            self.restart_clock_jumps,
            self.enhanced_auth,
            self.sys_watch,
            self.connect_rate,
            self.timer_compaction_min,
            self.retain_share,
            self.expiry_share,
            self.identity_listener
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mqtt_core::topic::{validate_topic_filter, validate_topic_name};

    #[test]
    fn topic_spaces_and_filters_are_valid() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for seed in 0..50 {
            let options = Options::from_seed(seed, &mut rng);
            let topics = options.topics();
            let expected: usize = (1..=options.topic_depth as u32)
                .map(|d| options.topic_width.pow(d))
                .sum();
            assert_eq!(topics.len(), expected);
            for topic in &topics {
                assert!(validate_topic_name(topic).is_ok(), "{topic}");
                let filter = options.filter_for(topic, &mut rng);
                assert!(validate_topic_filter(&filter).is_ok(), "{filter}");
                assert!(crate::model::matches(&filter, topic), "{filter} should match {topic}");
            }
        }
    }
}
