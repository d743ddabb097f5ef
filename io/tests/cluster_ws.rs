//! Clients over WebSockets on the followers of a 3-node cluster of real processes: the follower terminates the
//! WebSocket transport [MQTT-6.0.0-4] and relays the MQTT bytes to the leader, as for TCP.

mod common;
mod wire;

use common::cluster::{cluster_section, elected, start_cluster};
use std::net::SocketAddr;
use std::time::Duration;
use wire::*;

const WAIT: Duration = Duration::from_secs(20);

fn ws_node_config(id: u64, peers: &[SocketAddr]) -> String {
    format!(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\nprotocol = \"ws\"\n\n{}",
        cluster_section(id, "ws", peers, "")
    )
}

#[test]
fn websocket_clients_on_two_followers_meet_through_the_leader() {
    let nodes = start_cluster(3, 3, &[], ws_node_config).nodes;
    let leader = elected(&nodes, WAIT);
    let (a, b) = (&nodes[(leader + 1) % 3], &nodes[(leader + 2) % 3]);
    let (mut sub, _) = ws_client(a);
    let (mut publ, _) = ws_client(b);
    assert_eq!(
        sub.connect("ws-relay-sub", None, None),
        mqtt_core::packet::ReasonCode::SUCCESS
    );
    assert_eq!(
        publ.connect("ws-relay-pub", None, None),
        mqtt_core::packet::ReasonCode::SUCCESS
    );
    round_trip(&mut sub, &mut publ, "ws/relayed");
    for f in [a, b] {
        // The log is read on another thread: wait for the line rather than race it.
        assert!(f.wait_for_log("relayed to node", WAIT), "{}", f.log_text());
    }
}
