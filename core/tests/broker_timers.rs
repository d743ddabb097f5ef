//! The timer queue stays proportional to live connections and sessions however often clients come and go, and
//! compaction never drops a deadline that still matters.

mod common;

use common::*;
use mqtt_core::packet::*;
use std::time::Duration;

fn persistent(client_id: &str, expiry_s: u32) -> Connect {
    let mut connect = v5(client_id);
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(expiry_s);
    connect
}

#[test]
fn reconnect_cycles_do_not_grow_the_timer_queue_and_the_last_expiry_still_fires_mqtt_3_1_2_23() {
    let mut h = harness();
    // Each disconnect arms a session expiry an hour ahead; none fires while the cycles run.
    for _ in 0..20_000 {
        let conn = connected(&mut h, persistent("cycler", 3600));
        h.send(conn, Packet::Disconnect(Disconnect::default()));
        h.advance(Duration::from_millis(10));
    }
    let entries = h.broker.timer_entries();
    assert!(entries < 2_200, "20,000 disconnects left {entries} timer entries");
    // The last disconnect's expiry is intact: an hour later the session is gone [MQTT-3.1.2-23].
    h.advance(Duration::from_secs(3601));
    let (_, connack) = connect_ok(&mut h, persistent("cycler", 3600));
    assert!(!connack.session_present, "the session expired on time [MQTT-3.2.2-2]");
}

#[test]
fn a_will_delay_survives_compaction_mqtt_3_1_3_9() {
    let mut h = harness();
    // No keep alive: the watcher stays connected through the simulated ten minutes without pinging.
    let mut watcher_connect = v5("watcher");
    watcher_connect.keep_alive = 0;
    let watcher = connected(&mut h, watcher_connect);
    subscribe(&mut h, watcher, "wills/#", QoS::AtLeastOnce);
    let mut connect = persistent("author", 3600);
    let will_properties = Properties {
        will_delay_interval: Some(600),
        ..Properties::default()
    };
    connect.will = Some(Will {
        topic: "wills/author".into(),
        payload: "gone".into(),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: will_properties,
    });
    // Many short-lived clients force compactions while the author's will waits.
    let author = connected(&mut h, connect);
    h.drop_connection(author);
    for i in 0..5_000 {
        let conn = connected(&mut h, persistent(&format!("churn{}", i % 50), 3600));
        h.drop_connection(conn);
    }
    let entries = h.broker.timer_entries();
    assert!(entries < 2_200, "{entries} timer entries");
    assert!(
        publishes(&mut h, watcher).is_empty(),
        "not before the Will Delay Interval [MQTT-3.1.3-9]"
    );
    h.advance(Duration::from_secs(601));
    assert_eq!(payloads(&publishes(&mut h, watcher)), vec!["gone"]);
}

#[test]
fn a_session_that_drops_again_within_its_expiry_still_expires_after_compaction_mqtt_4_1_0_2() {
    let mut h = harness();
    // The first drop arms the session's expiry entry for 2 s; the second, half a second later, moves the deadline
    // to 2.5 s, which that entry (earlier) covers: it re-checks and re-arms when it fires.
    let first = connected(&mut h, persistent("author", 2));
    h.drop_connection(first);
    h.advance(Duration::from_millis(500));
    let (second, connack) = connect_ok(&mut h, persistent("author", 2));
    assert!(connack.session_present, "resumed within its expiry [MQTT-3.2.2-2]");
    h.drop_connection(second);
    // Many short-lived connections force compactions while the session is offline (seed 3629 of the simulator:
    // connect-rate bursts).
    for i in 0..3_000 {
        let conn = connected(&mut h, v5(&format!("churn{i}")));
        h.drop_connection(conn);
    }
    // The Session Expiry Interval has passed since the last drop: the broker discarded the session [MQTT-4.1.0-2].
    h.advance(Duration::from_secs(3));
    let (_, connack) = connect_ok(&mut h, persistent("author", 2));
    assert!(
        !connack.session_present,
        "the session expired 2 s after its last drop [MQTT-3.2.2-2]"
    );
}
