//! Memory per idle connection is a benchmark target (`mqtt-bench --workload conn`); these guard the structure
//! behind it, which an innocent change can undo (a lookup that allocates, a second timer per connection).

use crate::harness::{connect_packet, Harness};
use crate::packet::{Packet, ProtocolVersion};
use std::time::Duration;

fn idle_clients(count: usize) -> (Harness, Vec<super::ConnectionId>) {
    let mut harness = Harness::new(super::Config {
        sys_interval: 0,
        ..super::Config::default()
    });
    let conns = (0..count)
        .map(|i| {
            let mut connect = connect_packet(ProtocolVersion::V3_1_1, &format!("idle-{i}"));
            connect.keep_alive = 60;
            let (conn, connack) = harness.connect(connect);
            assert!(matches!(connack, Some(Packet::ConnAck(_))));
            conn
        })
        .collect();
    (harness, conns)
}

#[test]
fn an_idle_client_allocates_no_out_of_line_state() {
    let (mut harness, conns) = idle_clients(3);
    harness.send(conns[0], Packet::PingReq);
    assert_eq!(harness.recv(conns[0]), Some(Packet::PingResp));
    let broker = &harness.broker;
    for conn in &conns {
        let connection = broker.connections.expected(*conn).expect("open");
        assert!(
            connection.extras.is_none(),
            "no aliases, auth, held publishes or rate limiter"
        );
        assert!(
            connection.outbuf.capacity() == 0,
            "no output buffer kept once handed out"
        );
        let session = &broker.sessions[&connection.session.expect("attached")];
        assert!(session.queue().is_empty() && session.inflight().is_empty());
        assert!(!session.has_traffic(), "no queue or inflight window allocated");
        assert!(std::sync::Arc::ptr_eq(
            connection.client_id.as_ref().expect("set at CONNACK"),
            &session.client_id
        ));
    }
}

#[test]
fn one_timer_entry_per_connection_and_keep_alive_still_enforced_mqtt_3_1_2_22() {
    let (mut harness, conns) = idle_clients(50);
    // The connect timeout's entry is reused for the keep alive check: one entry per connection.
    assert_eq!(harness.broker.timers.len(), conns.len());
    harness.advance(Duration::from_secs(89));
    assert!(conns.iter().all(|conn| !harness.is_closed(*conn)));
    assert_eq!(harness.broker.timers.len(), conns.len());
    // One and a half times the keep alive of 60 s with no packet: closed [MQTT-3.1.2-22].
    harness.advance(Duration::from_secs(2));
    assert!(conns.iter().all(|conn| harness.is_closed(*conn)));
}

/// Timer entries cannot be cancelled: a session that drops and comes back within its expiry must not leave
/// one entry per drop behind, and must still expire on time [MQTT-3.1.2-23].
#[test]
fn a_flapping_session_keeps_one_expiry_timer_entry_and_still_expires_mqtt_3_1_2_23() {
    use crate::packet::Properties;
    let mut harness = crate::harness::Harness::new(super::Config {
        sys_interval: 0,
        ..super::Config::default()
    });
    let connect = |clean_start| crate::packet::Connect {
        clean_start,
        keep_alive: 0,
        properties: Properties {
            session_expiry_interval: Some(3600),
            ..Properties::default()
        },
        ..connect_packet(ProtocolVersion::V5, "flapper")
    };
    let mut most = 0;
    for round in 0..100 {
        let (conn, connack) = harness.connect(connect(round == 0));
        assert!(matches!(connack, Some(Packet::ConnAck(_))));
        harness.drop_connection(conn);
        harness.advance(Duration::from_secs(1));
        most = most.max(harness.broker.timers.len());
    }
    // One connect-timeout entry per connection fires within its 10 s; one expiry entry stays.
    assert!(most <= 12, "{most} timer entries for one session");
    assert_eq!(harness.broker.session_count(), 1);
    // The last drop was 1 s ago: the session expires 3600 s after it, not after the first drop.
    harness.advance(Duration::from_secs(3598));
    assert_eq!(harness.broker.session_count(), 1, "not yet expired");
    harness.advance(Duration::from_secs(2));
    assert_eq!(
        harness.broker.session_count(),
        0,
        "expired 3600 s after its last connection ended"
    );
    assert_eq!(harness.broker.timers.len(), 0);
}
