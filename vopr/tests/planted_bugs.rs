//! The simulator must find each planted bug within a bounded number of seeds, by the violation that bug should
//! trigger (named in `sim::PLANTED_BUGS`): proof that the right check bites, not merely some check. A seed counts
//! only if it fails with that violation with the bug planted and passes without it, so a real bug in the core
//! (which would fail both ways) cannot stand in for the planted one.
#![cfg(feature = "planted-bugs")]

const MAX_SEEDS: u64 = 200;

/// The first seed that finds `name` by its expected violation; the failures of other kinds seen on the way are
/// reported if none does.
fn finds(name: &str) -> u64 {
    let bug = sim::planted_bug_named(name).expect("known planted bug");
    let (_, expected) = sim::PLANTED_BUGS
        .iter()
        .find(|(n, _)| *n == name)
        .expect("listed planted bug");
    let planted = sim::RunConfig {
        planted_bug: Some(bug),
        ..Default::default()
    };
    let clean = sim::RunConfig::default();
    let mut other = Vec::new();
    for seed in 1..=MAX_SEEDS {
        let Err(failure) = sim::run(seed, &planted) else {
            continue;
        };
        if !failure.violation.contains(expected) {
            other.push(format!("seed {seed}: {}", failure.violation));
            continue;
        }
        if sim::run(seed, &clean).is_ok() {
            println!("planted bug {name} found by seed {seed}: {}", failure.violation);
            return seed;
        }
    }
    panic!(
        "planted bug {name} not found by '{expected}' in {MAX_SEEDS} seeds; other failures: {:?}",
        &other[..other.len().min(5)]
    );
}

/// Like `finds`, and the first seed that finds the bug must fail with `expected_violation` (a substring of the
/// violation), the one the bug should trigger, not merely with any failure.
fn finds_by(name: &str, expected_violation: &str) -> u64 {
    let bug = sim::planted_bug_named(name).expect("known planted bug");
    let planted = sim::RunConfig {
        planted_bug: Some(bug),
        ..Default::default()
    };
    let clean = sim::RunConfig::default();
    for seed in 1..=MAX_SEEDS {
        if let Err(failure) = sim::run(seed, &planted) {
            if sim::run(seed, &clean).is_ok() {
                assert!(
                    failure.violation.contains(expected_violation),
                    "planted bug {name}, seed {seed}: expected a violation containing {expected_violation:?}, got: {}",
                    failure.violation
                );
                println!("planted bug {name} found by seed {seed}: {}", failure.violation);
                return seed;
            }
        }
    }
    panic!("planted bug {name} not found in {MAX_SEEDS} seeds");
}

/// Acknowledgements leave before their records are synced: a power cut loses acknowledged state, which the model
/// still holds (found at seed 2).
#[test]
fn finds_sync_skipped_before_ack() {
    finds_by(
        "sync-skipped-before-ack",
        "recovery after a crash restored a state the model does not allow",
    );
}

/// A snapshot renamed into place before its contents are synced: a power cut leaves a truncated snapshot, and
/// recovery refuses to start although the disk damaged nothing that was synced (found at seed 5).
#[test]
fn finds_snapshot_renamed_before_sync() {
    finds_by(
        "snapshot-renamed-before-sync",
        "but the disk damaged no synced data there",
    );
}

/// Recovery steps over a damaged frame in the middle of the log instead of refusing to start (found at seed 5).
#[test]
fn finds_recovery_skipping_a_damaged_frame() {
    finds_by("recovery-skips-damaged-frame", "without noticing the bit flipped");
}

#[test]
fn finds_qos2_duplicate_delivery() {
    finds("qos2-duplicate");
}

#[test]
fn finds_inflight_dropped_on_reconnect() {
    finds("inflight-dropped");
}

#[test]
fn finds_plus_matching_across_levels() {
    finds("plus-across-levels");
}

#[test]
fn finds_qos2_receipt_not_persisted() {
    finds("qos2-receipt-not-persisted");
}

#[test]
fn finds_queued_message_dropped_with_room() {
    finds("queued-dropped-with-room");
}

/// A session's queue full one message early: an online subscriber's publishers are held with a slot still free,
/// which the model's count of the queue (the inflight window mirrored) says cannot be full [MQTT-4.3.2-2].
#[test]
fn finds_queue_full_one_early() {
    finds("queue-full-one-early");
}

/// The total budget's eviction takes online sessions' queued messages too: an online subscriber misses messages
/// routed to it while its queue had room, which only the model's mirror of the eviction (offline sessions alone)
/// tells from an allowed drop [MQTT-4.3.2], [MQTT-4.6.0-6].
#[test]
fn finds_budget_evicts_online() {
    finds("budget-evicts-online");
}

#[test]
fn finds_expired_message_delivered() {
    finds("expired-delivered");
}

#[test]
fn finds_retain_handling_1_ignored_on_resubscribe() {
    finds("retain-handling-1-ignored");
}

#[test]
fn finds_shared_message_delivered_to_two_members() {
    finds("shared-delivered-twice");
}

#[test]
fn finds_delayed_will_published_early() {
    finds("will-delay-ignored");
}

/// A will whose delay runs out while its session stays away in the liveness phase is forgotten: its subscribers
/// are owed it, and the liveness phase finds it missing.
#[test]
fn finds_delayed_will_lost() {
    finds("delayed-will-lost");
}

/// A queued message with an expiry left in the queue after a PUBACK (a lost wakeup): at the liveness phase's first
/// quiet moment the model's clock says it had not expired, and it was never sent.
#[test]
fn finds_expiring_message_left_queued() {
    finds("expiring-left-queued");
}

#[test]
fn finds_v311_publish_acknowledged_on_a_full_disk() {
    finds("v311-acknowledged-on-full-disk");
}

/// A QoS 1/2 will dropped while storage is suspended: its subscribers' queues had room, so the drop check (which
/// no longer excuses seeds whose storage was suspended) finds it; with that excuse the retained checks found it only
/// where the will was retained.
#[test]
fn finds_will_dropped_while_storage_is_suspended() {
    finds("will-dropped-while-suspended");
}

/// A SUBSCRIBE granted above the broker's Maximum QoS: the SUBACK differs from the model's min(asked, Maximum QoS).
#[test]
fn finds_maximum_qos_not_granted() {
    finds("maximum-qos-not-granted");
}

/// A failed re-authentication answered AUTH 0x00 instead of DISCONNECT 0x87: the enhanced-auth connection that
/// re-authenticates with a wrong answer expects the DISCONNECT.
#[test]
fn finds_reauth_failure_accepted() {
    finds("reauth-failure-accepted");
}

/// `$SYS` byte counters swapped: the watcher's batch differs from the world's own byte counts.
#[test]
fn finds_sys_bytes_swapped() {
    finds("sys-bytes-swapped");
}

/// A Maximum QoS of 0 taken for "no limit": SUBACK grants what was asked where the model says QoS 0.
#[test]
fn finds_maximum_qos_0_taken_for_unlimited() {
    finds("maximum-qos-0-unlimited");
}

/// One connect-rate bucket for all addresses: the simulated clients' CONNECTs use up the tokens the world's
/// bucket for the burst address still has.
#[test]
fn finds_connect_rate_shared_between_addresses() {
    finds("connect-rate-shared");
}

/// Recovery without `durable::capped_deadline`: after a restart on a clock set back, a message's expiry deadline is
/// stretched by the jump, so a copy arrives with more of its interval left than the model allows [MQTT-3.3.2-6].
#[test]
fn finds_restart_deadline_uncapped() {
    finds("restart-deadline-uncapped");
}

/// Publish-rate buckets refilled only for whole seconds: a PUBACK 0x97 where the model's buckets had a token.
#[test]
fn finds_publish_rate_refilled_in_whole_seconds() {
    finds("publish-rate-whole-seconds");
}

/// The retained lookup on SUBSCRIBE ignores Message Expiry: a QoS 0 copy of a retained message that expired before
/// the SUBSCRIBE was read reaches the subscriber [MQTT-3.3.2-5] (found at seed 2).
#[test]
fn finds_expired_retained_offered() {
    finds("expired-retained-offered");
}

/// An expiring PUBLISH handled after the one read behind it in the same input: its PUBACK/PUBREC leaves after the
/// later one's [MQTT-4.6.0-2], [MQTT-4.6.0-3] (found at seed 66; the per-publisher delivery order only at 1934).
#[test]
fn finds_expiring_overtaken() {
    finds("expiring-overtaken");
}

/// Timer compaction drops a session's expiry entry after a later disconnect moved its deadline (the broker's bug
/// fixed in 9f3436a, seed 3629): the session never expires, and a CONNECT after its Session Expiry Interval gets
/// Session Present 1 where the model says 0 [MQTT-4.1.0-2], [MQTT-3.2.2-2]. Found in seeds that compact the timer
/// queue often (`Options::timer_compaction_min`; first at seed 12).
#[test]
fn finds_session_expiry_entry_compacted_away() {
    finds("expiry-timer-compacted-away");
}

/// A QoS 2 resend of an id awaiting PUBREL read behind a held PUBLISH answered at once (the broker's bug fixed in
/// 2cbb263, seed 2703): its PUBREC overtakes the held one's, which the acknowledgement-order check finds
/// [MQTT-4.6.0-3]. Found in the seeds pressed against full queues (`Options::with_budget_pressure`; first at 81).
#[test]
fn finds_qos2_duplicate_overtaking_a_held_publish() {
    finds("qos2-duplicate-overtakes-held");
}

/// A retained copy sent on SUBSCRIBE with the full Message Expiry Interval it was published with, not the interval
/// lowered by its wait in the store [MQTT-3.3.2-6] (first at seed 2; seeds that retain and expire much of what they
/// publish, `Options::with_retained_expiry`, find it often).
#[test]
fn finds_retained_expiry_not_lowered() {
    finds("retained-expiry-not-lowered");
}

/// Recovery into the broker's tree (the binary's path, which the simulator's restarts take too) ignores a clear
/// record: a deleted retained message [MQTT-3.3.1-10] is back after the restart.
#[test]
fn finds_retained_recovery_clear_ignored() {
    finds("retained-recovery-clear-ignored");
}

/// A restart that caps a deadline (clock set back) does not record the capped one, so the next restart caps it
/// afresh from the original and the message outlives its interval [MQTT-3.3.2-5] (`Options::with_restart_storm`
/// makes two restarts inside one interval likely).
#[test]
fn finds_capped_deadline_not_recorded() {
    finds("capped-deadline-not-recorded");
}

/// A held PUBLISH routed to the subscriptions it had when first held: a session that unsubscribed while it waited
/// gets it, which the delivery check (the PUBLISH routed when its acknowledgement leaves, to the subscriptions of
/// that moment) finds at seed 8 [MQTT-3.10.4-2], [MQTT-4.7]. While held PUBLISHes excused drops, a client's
/// matching filter on receipt was enough there, and only recovery's check of each queue found it (seed 71).
#[test]
fn finds_held_routed_at_arrival() {
    finds("held-routed-at-arrival");
}

/// The total budget's eviction takes each offline session's newest queued message instead of its oldest: the
/// session back online gets a later message while an earlier one, which the model's mirror of the eviction (a
/// prefix of the queue) kept, is gone [MQTT-4.3.2], [MQTT-4.6.0-6]. Found by the drop check only since held
/// PUBLISHes no longer excuse drops (seed 538; before, the drop went unchecked in every seed that held a PUBLISH,
/// and seed 2428 of 1..3000 was the first to find it, by recovery), hence its own seed budget.
#[test]
fn finds_budget_evicts_newest() {
    let (seed, took) = found_by(
        "budget-evicts-newest",
        "although the queue was not full",
        1_000,
        std::time::Duration::from_secs(900),
    );
    eprintln!("budget-evicts-newest found at seed {seed} in {took:?}");
}

/// A PUBLISH held for a subscriber's full queue skips that subscriber once admitted: the subscriber gets later
/// messages and never this one, although the publisher was acknowledged [MQTT-4.3.2-2], [MQTT-4.3.3-2]. Every seed
/// where this happens held a PUBLISH, so the waiver for held PUBLISHes (gone) excused exactly these drops.
#[test]
fn finds_held_copy_dropped() {
    finds("held-copy-dropped");
}

/// The name a listener in `identity_as_username` should authenticate dropped for the CONNECT's own credentials: a
/// certified simulated client claiming a retired user name is refused 0x86 where it must be admitted as its verified
/// name [MQTT-3.1.4-2] (with the simulated clients on the plain listener, the identity connections' CONNACK and
/// SUBACK predictions found it, at seeds 1 and 2).
#[test]
fn finds_identity_ignored() {
    finds("identity-ignored");
}

/// A connection without a verified name on an identity listener authenticated by its CONNECT's credentials instead
/// of refused with 0x87: the identity connections without a name find it [MQTT-3.1.4-2].
#[test]
fn finds_identity_missing_falling_back() {
    finds("identity-missing-falls-back");
}

/// Every listed bug has a test above (the CI counts the `finds_` tests that pass against this list).
#[test]
fn every_planted_bug_is_known_by_name() {
    for (name, expected) in sim::PLANTED_BUGS {
        assert!(sim::planted_bug_named(name).is_some(), "{name}");
        assert!(!expected.is_empty(), "{name} names no expected violation");
    }
}

#[test]
fn parallel_runner_reports_every_seed() {
    let plan = vopr::Plan {
        first_seed: 1,
        seeds: Some(20),
        budget: None,
        threads: 2,
        stop_on_failure: false,
        run: sim::RunConfig::default(),
        progress: false,
    };
    let outcome = vopr::run(&plan);
    assert_eq!(outcome.seeds_run, 20);
}

/// A planted bug found by the violation it should trigger (not merely by any failure), within a bounded number of
/// seeds and of wall time: the seed that finds it and the time it took.
fn found_by(name: &str, expected: &str, max_seeds: u64, max_wall: std::time::Duration) -> (u64, std::time::Duration) {
    let bug = sim::planted_bug_named(name).expect("known planted bug");
    let planted = sim::RunConfig {
        planted_bug: Some(bug),
        ..Default::default()
    };
    let clean = sim::RunConfig::default();
    let started = std::time::Instant::now();
    for seed in 1..=max_seeds {
        assert!(
            started.elapsed() < max_wall,
            "planted bug {name} not found within {max_wall:?} (at seed {seed})"
        );
        match sim::run(seed, &planted) {
            Err(failure) if failure.violation.contains(expected) => {
                assert!(sim::run(seed, &clean).is_ok(), "seed {seed} fails without the bug too");
                println!("planted bug {name} found by seed {seed}: {}", failure.violation);
                return (seed, started.elapsed());
            }
            Err(failure) => panic!(
                "seed {seed}: {name} found by the wrong violation: {}",
                failure.violation
            ),
            Ok(_) => {}
        }
    }
    panic!("planted bug {name} not found in {max_seeds} seeds");
}

/// A keep-alive timer that re-arms itself for a deadline already past makes the broker ask for Ticks forever at one
/// instant: the run must fail as stalled (naming the timer), not hang.
#[test]
fn finds_keep_alive_spin_as_a_stall() {
    let (seed, took) = found_by(
        "keep-alive-spin",
        "stalled",
        MAX_SEEDS,
        std::time::Duration::from_secs(120),
    );
    eprintln!("keep-alive-spin found at seed {seed} in {took:?}");
}

/// A Session Expiry Interval set on DISCONNECT that the broker ignores: the session outlives (or falls short of)
/// what the client asked, so a later CONNECT gets the wrong Session Present.
#[test]
fn finds_disconnect_expiry_ignored_by_session_present() {
    let (seed, took) = found_by(
        "disconnect-expiry-ignored",
        "Session Present",
        MAX_SEEDS,
        std::time::Duration::from_secs(300),
    );
    eprintln!("disconnect-expiry-ignored found at seed {seed} in {took:?}");
}

/// A takeover that publishes the old connection's will although the session resumes within its Will Delay: the
/// will model (decided when the broker takes the connection over) finds it. The swarm options added on 2026-12-05
/// (coalesced PUBLISHes, Maximum QoS, publish rates, each from its own stream) moved the first finding seed from 23
/// to 262, hence its own seed budget.
#[test]
fn finds_takeover_publishing_a_delayed_will() {
    let expected = "published although its session resumed";
    let (seed, took) = found_by(
        "takeover-publishes-delayed-will",
        expected,
        1_000,
        std::time::Duration::from_secs(300),
    );
    eprintln!("takeover-publishes-delayed-will found at seed {seed} in {took:?}");
}
