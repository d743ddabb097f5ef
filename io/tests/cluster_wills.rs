//! Wills of connections lost in a failover, with real processes: the leader of a 3-node cluster is SIGKILLed while
//! two MQTT 5 clients with a delayed will (3 s) and a persistent session are connected through the followers. The
//! one that does not come back has its will published once the Will Delay Interval has passed, not before
//! [MQTT-3.1.2-8]; the one that resumes its session within the delay has its will not sent at all [MQTT-3.1.3-9].
//! Independent client: rumqttc (MQTT 5).

mod common;

use common::clients::try_connect5;
use common::cluster::{elected, node_config, start_cluster};
use common::{wait_for, BrokerProcess, Events5};
use rumqttc::v5::mqttbytes::v5::{LastWill, LastWillProperties, Packet};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{Client, Event, MqttOptions};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);
const WILL_DELAY: u32 = 3;

fn opts(node: &BrokerProcess, id: &str, will: Option<&str>) -> MqttOptions {
    let mut opts = MqttOptions::new(id, "127.0.0.1", node.port());
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_clean_start(false);
    opts.set_session_expiry_interval(Some(300));
    opts.set_connection_timeout(1);
    if let Some(topic) = will {
        let properties = LastWillProperties {
            delay_interval: Some(WILL_DELAY),
            payload_format_indicator: None,
            message_expiry_interval: None,
            content_type: None,
            response_topic: None,
            correlation_data: None,
            user_properties: Vec::new(),
        };
        opts.set_last_will(LastWill::new(
            topic,
            format!("{id} gone"),
            QoS::AtLeastOnce,
            false,
            Some(properties),
        ));
    }
    opts
}

/// Connects; `None` if the node closed the connection without a CONNACK (no leader serves yet).
fn try_connect(opts: MqttOptions) -> Option<(Client, Events5)> {
    try_connect5(opts).map(|(client, events, _)| (client, events))
}

/// Connects to the survivors in turn until one serves the session.
fn reconnect(survivors: &[&BrokerProcess], id: &str, will: Option<&str>) -> (Client, Events5) {
    let deadline = Instant::now() + WAIT;
    for attempt in 0.. {
        assert!(Instant::now() < deadline, "{id} found no serving node");
        if let Some(pair) = try_connect(opts(survivors[attempt % survivors.len()], id, will)) {
            return pair;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    unreachable!()
}

#[test]
fn wills_of_connections_lost_in_a_failover_wait_for_their_delay_and_a_resumed_session_cancels_its_will() {
    let mut nodes = start_cluster(3, 3, &[], |id, peers| node_config(id, peers, "")).slots();
    let leader = elected(&nodes, WAIT);
    let (a, b) = ((leader + 1) % 3, (leader + 2) % 3);
    let (node_a, node_b) = (nodes[a].take().expect("runs"), nodes[b].take().expect("runs"));
    let leader_node = nodes[leader].take().expect("runs");
    let (node_a, node_b) = (&node_a, &node_b);

    let (watcher, watch_events) = try_connect(opts(node_a, "will-watcher", None)).expect("watcher connects");
    watcher.subscribe("wills/#", QoS::AtLeastOnce).expect("subscribe");
    assert!(wait_for(&watch_events, WAIT, |e| matches!(
        e,
        Ok(Event::Incoming(Packet::SubAck(_)))
    )
    .then_some(()))
    .is_some());
    // Their CONNACKs come once their sessions (and armed wills) are committed.
    let (_gone, _gone_events) = try_connect(opts(node_a, "will-gone", Some("wills/gone"))).expect("connects");
    let (_back, _back_events) = try_connect(opts(node_b, "will-back", Some("wills/back"))).expect("connects");

    let killed_at = Instant::now();
    let _dir = leader_node.crash();
    let survivors = [node_a, node_b];

    // "will-back" resumes its session within the delay, on whichever survivor serves first.
    let (_back, _back_events) = reconnect(&survivors, "will-back", Some("wills/back"));
    let resumed_after = killed_at.elapsed();
    assert!(
        resumed_after < Duration::from_secs(u64::from(WILL_DELAY)),
        "the test needs the session resumed within the will delay; it took {resumed_after:?}"
    );
    let (_watcher, watch_events) = reconnect(&survivors, "will-watcher", None);

    // Watch until well past the delay: exactly the will of the client that stayed away arrives, after its delay.
    // On a loaded machine the new leader may take longer to serve it: then watch on until the first will arrives
    // (or WAIT runs out), so a slow election is not taken for a lost will.
    let mut wills = Vec::new();
    let until = killed_at + Duration::from_secs(u64::from(WILL_DELAY) * 2 + 2);
    let give_up = killed_at + WAIT;
    while Instant::now() < until || (wills.is_empty() && Instant::now() < give_up) {
        if let Ok(Ok(Event::Incoming(Packet::Publish(p)))) = watch_events.recv_timeout(Duration::from_millis(100)) {
            wills.push((String::from_utf8_lossy(&p.topic).into_owned(), killed_at.elapsed()));
        }
    }
    let topics: Vec<&str> = wills.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        topics,
        vec!["wills/gone"],
        "only the absent client's will, once: {wills:?}"
    );
    let after = wills[0].1;
    assert!(
        after >= Duration::from_secs(u64::from(WILL_DELAY)),
        "the will went out {after:?} after the leader was lost, before its {WILL_DELAY} s delay"
    );
    eprintln!(
        "cluster wills: session resumed {} ms after the leader's loss (no will); the absent client's will published \
         after {} ms (delay {WILL_DELAY} s)",
        resumed_after.as_millis(),
        after.as_millis()
    );
}
