//! A broker restarted from its records on a clock that was set back while it was down. The records hold absolute
//! times (session expiry, will delay, message expiry) of the driver's wall-clock-based clock; taken at face value
//! after the jump, each interval would grow by the whole jump (an hour here). A restarted broker keeps at most one
//! full interval from the restart: the interval is neither lost nor stretched beyond that [MQTT-3.1.2-23],
//! [MQTT-3.1.3-9], [MQTT-3.3.2-5].

mod common;

use common::*;
use mqtt_core::broker::Config;
use mqtt_core::harness::Harness;
use mqtt_core::packet::*;
use mqtt_core::time::Time;
use std::time::Duration;

/// How far the clock is set back while the broker is down.
const JUMP_BACK: Duration = Duration::from_secs(3600);

/// A durable broker whose clock starts a day after the epoch, so that it can be set back.
fn durable_harness() -> Harness {
    let mut h = Harness::new(Config {
        persistence: true,
        ..Config::default()
    });
    h.now = Time::from_millis(86_400_000);
    h
}

fn persistent(client_id: &str, expiry: u32) -> Connect {
    let mut connect = v5(client_id);
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(expiry);
    connect
}

/// Restarts the broker from its records with the clock set back by `JUMP_BACK`.
fn restart_with_clock_set_back(h: &mut Harness) {
    h.now = Time::from_millis(h.now.as_millis() - JUMP_BACK.as_millis() as u64);
    h.crash_and_restart();
}

#[test]
fn session_expiry_is_not_stretched_by_a_clock_set_back_across_a_restart_mqtt_3_1_2_23() {
    let mut h = durable_harness();
    for client in ["early", "late"] {
        let conn = connected(&mut h, persistent(client, 60));
        subscribe(&mut h, conn, "t", QoS::AtLeastOnce);
        h.drop_connection(conn);
    }
    restart_with_clock_set_back(&mut h);
    // Within the interval after the restart a session is still there: not lost.
    h.advance(Duration::from_secs(30));
    let (_, connack) = connect_ok(&mut h, persistent("early", 60));
    assert!(
        connack.session_present,
        "30 s after the restart a 60 s session is still there"
    );
    // One interval after the restart the other is gone, not an hour later.
    h.advance(Duration::from_secs(31));
    let (_, connack) = connect_ok(&mut h, persistent("late", 60));
    assert!(
        !connack.session_present,
        "61 s after the restart a 60 s session has expired, whatever the clock did"
    );
}

#[test]
fn a_delayed_will_is_not_held_back_by_a_clock_set_back_across_a_restart_mqtt_3_1_3_9() {
    let mut h = durable_harness();
    let watcher = connected(&mut h, persistent("watcher", 7200));
    subscribe(&mut h, watcher, "wills/#", QoS::AtLeastOnce);
    let connect = with_will(
        persistent("dying", 7200),
        "wills/dying",
        "gone",
        QoS::AtLeastOnce,
        Some(30),
    );
    let dying = connected(&mut h, connect);
    h.drop_connection(dying);
    h.drop_connection(watcher);
    restart_with_clock_set_back(&mut h);
    h.advance(Duration::from_secs(31));
    let (watcher, _) = connect_ok(&mut h, persistent("watcher", 7200));
    assert_eq!(payloads(&publishes(&mut h, watcher)), vec!["gone"]);
}

#[test]
fn message_expiry_is_not_stretched_by_a_clock_set_back_across_a_restart_mqtt_3_3_2_5() {
    let mut h = durable_harness();
    let sub = connected(&mut h, persistent("sub", 7200));
    subscribe(&mut h, sub, "t", QoS::AtLeastOnce);
    h.drop_connection(sub);
    let publisher = connected(&mut h, v5("pub"));
    for (payload, expiry) in [("short", 20), ("long", 600)] {
        let mut packet = publish_packet("t", payload, QoS::AtLeastOnce, 1);
        packet.properties.message_expiry_interval = Some(expiry);
        h.send(publisher, Packet::Publish(packet));
        h.recv_all(publisher);
    }
    restart_with_clock_set_back(&mut h);
    h.advance(Duration::from_secs(21));
    let (sub, _) = connect_ok(&mut h, persistent("sub", 7200));
    let got = publishes(&mut h, sub);
    assert_eq!(
        payloads(&got),
        vec!["long"],
        "the 20 s message expired 21 s after the restart"
    );
    let remaining = got[0].properties.message_expiry_interval.unwrap_or(0);
    assert!(
        remaining <= 600 - 21,
        "the 600 s message has at most 579 s left, not an hour more: {remaining}"
    );
}

/// The deadline a restart capped is the message's deadline from then on: a second restart (the clock steady now)
/// does not cap the recorded one afresh, which would give the message a full interval again and let it outlive its
/// Message Expiry Interval by the time the broker ran in between [MQTT-3.3.2-5], [MQTT-3.3.2-6].
#[test]
fn a_capped_message_expiry_is_not_capped_afresh_by_a_later_restart_mqtt_3_3_2_5() {
    let mut h = durable_harness();
    let sub = connected(&mut h, persistent("sub", 7200));
    subscribe(&mut h, sub, "t", QoS::AtLeastOnce);
    h.drop_connection(sub);
    let publisher = connected(&mut h, v5("pub"));
    for (payload, expiry) in [("short", 100), ("long", 600)] {
        let mut packet = publish_packet("t", payload, QoS::AtLeastOnce, 1);
        packet.properties.message_expiry_interval = Some(expiry);
        h.send(publisher, Packet::Publish(packet));
        h.recv_all(publisher);
    }
    // Capped at a full interval from the first restart; 90 s later the broker restarts again, the clock steady.
    restart_with_clock_set_back(&mut h);
    h.advance(Duration::from_secs(90));
    h.crash_and_restart();
    h.advance(Duration::from_secs(20));
    let (sub, _) = connect_ok(&mut h, persistent("sub", 7200));
    let got = publishes(&mut h, sub);
    assert_eq!(
        payloads(&got),
        vec!["long"],
        "the 100 s message expired 110 s after the first restart, not 100 s after the second"
    );
    let remaining = got[0].properties.message_expiry_interval.unwrap_or(0);
    assert!(
        remaining <= 600 - 110,
        "the 600 s message waited 110 s since the restart that capped it: {remaining} s left"
    );
}
