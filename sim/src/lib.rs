//! The deterministic simulator. One u64 seed determines everything: the workload, the broker configuration, the
//! network's delays and chunking, and every fault. The real broker core runs single-threaded under a virtual
//! clock; a reference model checks every delivery, and a liveness phase without faults checks that every promise
//! was eventually kept (in the manner of TigerBeetle's VOPR).

pub mod acl;
pub mod bridge;
pub mod client;
pub mod cluster;
pub mod coverage;
pub mod invariants;
pub mod model;
pub mod options;
pub mod simfs;
pub mod trace;
pub mod world;

use mqtt_core::broker::Config;
pub use options::Options;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::fmt;
use trace::Trace;
use world::{Counts, World};

/// How a run may be adjusted from the outside.
#[derive(Debug, Clone, Default)]
pub struct RunConfig {
    /// Print the trace as it happens.
    pub trace: bool,
    /// Override the number of fault-phase steps.
    pub steps: Option<usize>,
    /// Plant a known bug in the core or the storage code (vopr self-test).
    #[cfg(feature = "planted-bugs")]
    pub planted_bug: Option<PlantedBug>,
}

/// A known bug the vopr's self-test plants, in the core or in the storage code.
#[cfg(feature = "planted-bugs")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlantedBug {
    Core(mqtt_core::broker::PlantedBug),
    Storage(mqtt_storage::PlantedBug),
}

impl RunConfig {
    pub fn new(trace: bool, steps: Option<usize>) -> RunConfig {
        // `..Default::default()` fills `planted_bug`, which exists only with the `planted-bugs` feature.
        #[allow(clippy::needless_update)]
        RunConfig {
            trace,
            steps,
            ..Default::default()
        }
    }
}

/// What a passing run did.
#[derive(Debug, Clone)]
pub struct Report {
    pub seed: u64,
    pub options: Options,
    pub counts: Counts,
    pub deliveries: u64,
    pub simulated_ms: u64,
    pub trace_hash: u64,
    pub trace_lines: u64,
    /// Work units spent (steps, network events, broker Ticks), against the budget (see `world::budget`).
    pub work: u64,
    /// What the run really exercised.
    pub coverage: coverage::Coverage,
}

/// A broken invariant, with what is needed to understand and reproduce it.
#[derive(Debug, Clone)]
pub struct Failure {
    pub seed: u64,
    pub violation: String,
    pub trace_tail: Vec<String>,
    pub trace_hash: u64,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "seed {} FAILED: {}", self.seed, self.violation)?;
        writeln!(f, "last trace lines:")?;
        for line in &self.trace_tail {
            writeln!(f, "  {line}")?;
        }
        write!(f, "reproduce: cargo run -p sim -- --seed {} --trace", self.seed)
    }
}

fn broker_config(options: &Options) -> Config {
    Config {
        receive_maximum: options.receive_maximum,
        max_inflight: options.max_inflight,
        // Usually large enough that no message is dropped on purpose (every drop the checker sees is a bug); a
        // small bound makes drops legal, and the liveness phase then excuses what the broker reports dropped.
        max_queued_messages: options.max_queued_messages,
        max_packet_size: options.max_packet_size,
        max_topic_alias: options.max_topic_alias,
        shared_payload_min: options.shared_payload_min,
        wildcard_subscriptions: options.wildcards,
        shared_subscriptions: options.shared,
        retain_available: !options.retain_unavailable,
        maximum_qos: options.maximum_qos,
        max_publish_rate: options.publish_rate,
        max_publish_bytes_rate: options.publish_bytes_rate,
        max_connects_per_second_per_address: options.connect_rate,
        persistence: options.persistence,
        max_queued_bytes: options.quotas.max_queued_bytes,
        max_queued_bytes_total: options.quotas.max_queued_bytes_total,
        timer_compaction_min: options.timer_compaction_min,
        max_subscriptions_per_client: options.quotas.max_subscriptions_per_client,
        max_topic_levels: options.quotas.max_topic_levels,
        max_topic_length: options.quotas.max_topic_length,
        max_connections_per_address: if options.quotas.per_address_limit {
            options.clients
        } else {
            0
        },
        identity_as_username: if options.identity_listener {
            vec![acl::IDENTITY_LISTENER]
        } else {
            Vec::new()
        },
        ..Config::default()
    }
}

/// The options a seed runs with (what `run` derives first from the seed's random stream), with the overrides.
pub fn options_for(seed: u64, run_config: &RunConfig) -> (Options, ChaCha8Rng) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut options = Options::from_seed(seed, &mut rng);
    if let Some(steps) = run_config.steps {
        options.steps = steps;
    }
    (options, rng)
}

/// Runs one simulation.
pub fn run(seed: u64, run_config: &RunConfig) -> Result<Report, Failure> {
    let (options, rng) = options_for(seed, run_config);
    #[allow(unused_mut)]
    let mut config = broker_config(&options);
    #[cfg(feature = "planted-bugs")]
    {
        config.planted_bug = match run_config.planted_bug {
            Some(PlantedBug::Core(bug)) => Some(bug),
            _ => None,
        };
    }
    #[allow(unused_mut)]
    let mut world = World::new(options.clone(), rng, config, Trace::new(run_config.trace));
    #[cfg(feature = "planted-bugs")]
    if let Some(PlantedBug::Storage(bug)) = run_config.planted_bug {
        world.plant_storage_bug(bug);
    }
    let outcome = (|| {
        for _ in 0..world.opts.steps {
            world.step()?;
        }
        world.settle(200_000)
    })();
    match outcome {
        Ok(()) => Ok(Report {
            coverage: world.finish_coverage(),
            seed,
            options,
            counts: world.counts.clone(),
            deliveries: world.model.deliveries,
            simulated_ms: world.now,
            trace_hash: world.trace.hash(),
            trace_lines: world.trace.lines(),
            work: world.budget.work,
        }),
        Err(violation) => Err(Failure {
            seed,
            violation: violation.0,
            trace_tail: world.trace.tail().collect(),
            trace_hash: world.trace.hash(),
        }),
    }
}

/// The planted bugs by their command-line names.
#[cfg(feature = "planted-bugs")]
pub fn planted_bug_named(name: &str) -> Option<PlantedBug> {
    use mqtt_core::broker::PlantedBug as Core;
    use mqtt_storage::PlantedBug as Storage;
    let core = match name {
        "qos2-duplicate" => Some(Core::Qos2DuplicateDelivered),
        "inflight-dropped" => Some(Core::InflightDroppedOnReconnect),
        "plus-across-levels" => Some(Core::PlusMatchesAcrossLevels),
        "qos2-receipt-not-persisted" => Some(Core::Qos2ReceiptNotPersisted),
        "keep-alive-spin" => Some(Core::KeepAliveRearmsStaleDeadline),
        "disconnect-expiry-ignored" => Some(Core::DisconnectExpiryIgnored),
        "takeover-publishes-delayed-will" => Some(Core::TakeoverPublishesDelayedWill),
        "queued-dropped-with-room" => Some(Core::QueuedMessageDroppedWithRoom),
        "expired-delivered" => Some(Core::ExpiredMessageDelivered),
        "retain-handling-1-ignored" => Some(Core::RetainHandlingIgnoredOnResubscribe),
        "shared-delivered-twice" => Some(Core::SharedDeliveredTwice),
        "will-delay-ignored" => Some(Core::WillDelayIgnored),
        "delayed-will-lost" => Some(Core::DelayedWillLost),
        "expiring-left-queued" => Some(Core::ExpiringLeftQueued),
        "expiring-overtaken" => Some(Core::ExpiringOvertaken),
        "reauth-failure-accepted" => Some(Core::ReauthFailureAccepted),
        "sys-bytes-swapped" => Some(Core::SysBytesSwapped),
        "maximum-qos-0-unlimited" => Some(Core::MaximumQos0Unlimited),
        "connect-rate-shared" => Some(Core::ConnectRateShared),
        "v311-acknowledged-on-full-disk" => Some(Core::V311AcknowledgedOnFullDisk),
        "will-dropped-while-suspended" => Some(Core::WillDroppedWhileSuspended),
        "maximum-qos-not-granted" => Some(Core::MaximumQosNotApplied),
        "publish-rate-whole-seconds" => Some(Core::PublishRateRefillWholeSeconds),
        "restart-deadline-uncapped" => Some(Core::RestartDeadlineUncapped),
        "expired-retained-offered" => Some(Core::ExpiredRetainedOffered),
        "retained-expiry-not-lowered" => Some(Core::RetainedExpiryNotLowered),
        "queue-full-one-early" => Some(Core::QueueFullOneEarly),
        "expiry-timer-compacted-away" => Some(Core::SessionExpiryCompactedAway),
        "qos2-duplicate-overtakes-held" => Some(Core::Qos2DuplicateOvertakesHeld),
        "budget-evicts-online" => Some(Core::BudgetEvictsOnline),
        "budget-evicts-newest" => Some(Core::BudgetEvictsNewest),
        "retained-recovery-clear-ignored" => Some(Core::RetainedRecoveryClearIgnored),
        "capped-deadline-not-recorded" => Some(Core::CappedDeadlineNotRecorded),
        "held-routed-at-arrival" => Some(Core::HeldRoutedAtArrival),
        "held-copy-dropped" => Some(Core::HeldCopyDropped),
        "identity-ignored" => Some(Core::IdentityIgnored),
        "identity-missing-falls-back" => Some(Core::IdentityMissingFallsBack),
        _ => None,
    };
    let storage = match name {
        "sync-skipped-before-ack" => Some(Storage::SyncSkippedBeforeAck),
        "snapshot-renamed-before-sync" => Some(Storage::SnapshotRenamedBeforeSync),
        "recovery-skips-damaged-frame" => Some(Storage::RecoverySkipsDamagedFrame),
        _ => None,
    };
    core.map(PlantedBug::Core).or(storage.map(PlantedBug::Storage))
}

/// Every planted bug: its command-line name and a part of the violation it must be found by (the vopr's
/// self-test checks that a seed fails with exactly that, not merely with some failure). One entry per line: the
/// CI counts them.
pub const PLANTED_BUGS: &[(&str, &str)] = &[
    ("qos2-duplicate", "twice [MQTT-4.3.3]"),
    ("inflight-dropped", "was dropped from its queue"),
    ("plus-across-levels", "that none of its filters matches"),
    ("qos2-receipt-not-persisted", "incoming QoS 2 ids"),
    ("queued-dropped-with-room", "although the queue was not full"),
    ("expired-delivered", "after it expired [MQTT-3.3.2-5]"),
    ("retain-handling-1-ignored", "that no SUBSCRIBE of it asked for"),
    ("shared-delivered-twice", "a second member of a group got it"),
    ("will-delay-ignored", "before its Will Delay Interval ran out"),
    ("delayed-will-lost", "owed once its Will Delay Interval ran out"),
    (
        "expiring-left-queued",
        "was never sent although the connection was idle",
    ),
    (
        "v311-acknowledged-on-full-disk",
        "must be closed instead [MQTT-4.8.0-2]",
    ),
    (
        "will-dropped-while-suspended",
        "was dropped from its queue although the queue was not full",
    ),
    (
        "sync-skipped-before-ack",
        "recovery after a crash restored a state the model does not allow",
    ),
    (
        "snapshot-renamed-before-sync",
        "but the disk damaged no synced data there",
    ),
    ("recovery-skips-damaged-frame", "without noticing the bit flipped"),
    ("keep-alive-spin", "stalled"),
    ("maximum-qos-not-granted", "so it must grant"),
    ("publish-rate-whole-seconds", "had room for it in the publish rate"),
    ("restart-deadline-uncapped", "s ago [MQTT-3.3.2-6]"),
    (
        "expired-retained-offered",
        "before the broker read the SUBSCRIBE that matched it",
    ),
    ("expiring-overtaken", "acknowledgements out of order"),
    ("disconnect-expiry-ignored", "Session Present"),
    (
        "takeover-publishes-delayed-will",
        "published although its session resumed",
    ),
    ("reauth-failure-accepted", "after re-authenticating with a wrong answer"),
    ("sys-bytes-swapped", "$SYS/broker/bytes/"),
    ("maximum-qos-0-unlimited", "so it must grant"),
    ("connect-rate-shared", "connect-rate bucket had a token"),
    (
        "expiry-timer-compacted-away",
        "got Session Present true but the model expected Some(false)",
    ),
    ("qos2-duplicate-overtakes-held", "the PUBREC of QoS 2 PUBLISH"),
    ("retained-expiry-not-lowered", "lowered by the time the message waited"),
    ("queue-full-one-early", "although no subscriber's queue could be full"),
    ("budget-evicts-online", "the queued-bytes budget not used up"),
    ("retained-recovery-clear-ignored", "which the model has cleared"),
    (
        "capped-deadline-not-recorded",
        "a retained message is deleted once it expires",
    ),
    (
        "held-routed-at-arrival",
        "without a matching subscription when it was published",
    ),
    ("budget-evicts-newest", "although the queue was not full"),
    ("held-copy-dropped", "although the queue was not full"),
    ("identity-ignored", "identity listener"),
    (
        "identity-missing-falls-back",
        "no verified name on a listener that takes names from the transport",
    ),
];
