//! [`Bridged`]'s durability hold against a scripted broker core: the broker's output for a bridge reaches the
//! bridge only after the driver reports it durable, however many loop turns pass before that.

use super::Bridged;
use crate::config::BridgeSettings;
use crate::driver::Core;
use bytes::BytesMut;
use mqtt_core::bridge::{BridgeConfig, Side};
use mqtt_core::broker::{ConnectionId, Input, Output};
use mqtt_core::packet::{ConnAck, Packet, ProtocolVersion};
use mqtt_core::time::Time;
use std::collections::VecDeque;

/// Records the connections opened to it and hands out what the test queues.
#[derive(Default)]
struct Script {
    opened: Vec<ConnectionId>,
    outputs: VecDeque<Output>,
}

impl Core for Script {
    fn handle_input(&mut self, _now: Time, input: Input<'_>) {
        if let Input::Opened { conn, .. } = input {
            self.opened.push(conn);
        }
    }
    fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }
    fn poll_timeout(&self) -> Option<Time> {
        None
    }
}

/// A bridge whose local connection is open and has sent its CONNECT.
fn started(poll: &mio::Poll) -> Bridged<Script> {
    let settings = BridgeSettings {
        // Nothing listens there; the remote side plays no part here.
        address: "127.0.0.1:1".to_string(),
        tls: None,
        core: BridgeConfig::new("test", Vec::new()),
    };
    let mut bridged = Bridged::new(Script::default(), &[settings], 1 << 20).expect("bridge");
    bridged.attach(poll.registry()).expect("attach");
    bridged.handle_input(Time::ZERO, Input::Tick);
    bridged
}

/// The broker answers the bridge's CONNECT; the driver drains the output, which is held from it.
fn hand_out_connack(bridged: &mut Bridged<Script>) {
    let conn = *bridged
        .inner()
        .opened
        .first()
        .expect("the bridge opened its local connection");
    let mut connack = BytesMut::new();
    mqtt_core::codec::encode(&Packet::ConnAck(ConnAck::default()), ProtocolVersion::V5, &mut connack).expect("encode");
    bridged.inner.outputs.push_back(Output::Transmit {
        conn,
        data: connack.freeze(),
    });
    assert!(
        bridged.poll_output().is_none(),
        "output for a bridge is held from the driver"
    );
}

fn connected(bridged: &Bridged<Script>) -> bool {
    bridged.bridges[0].bridge.is_up(Side::Local)
}

#[test]
fn held_output_waits_for_the_durability_report_however_many_turns_pass() {
    let poll = mio::Poll::new().expect("poll");
    let mut bridged = started(&poll);
    hand_out_connack(&mut bridged);
    // A commit that fails (disk full) reports nothing: the turns go on, the CONNACK (in production: a PUBACK the
    // bridge would pass on to the remote) stays held.
    for _ in 0..5 {
        bridged.end_turn(Time::ZERO);
        assert!(!connected(&bridged), "released before it was durable");
    }
    bridged.durable();
    assert_eq!(
        bridged.poll_timeout(),
        Some(Time::ZERO),
        "durable held output wants the next turn at once"
    );
    bridged.end_turn(Time::ZERO);
    assert!(connected(&bridged), "released at the turn after the report");
}

#[test]
fn output_handed_out_after_a_report_waits_for_the_next_one() {
    let poll = mio::Poll::new().expect("poll");
    let mut bridged = started(&poll);
    bridged.durable();
    hand_out_connack(&mut bridged);
    bridged.end_turn(Time::ZERO);
    assert!(
        !connected(&bridged),
        "the report covered only what was held when it came"
    );
    bridged.durable();
    bridged.end_turn(Time::ZERO);
    assert!(connected(&bridged));
}
