//! End-to-end: the real binary, real sockets, real MQTT clients (rumqttc's blocking API, v3.1.1 and v5).
//!
//! These exercise the whole stack, so they pass only with a real broker core behind the driver. Spec statement
//! ids (MQTT-x.y.z-n) are from MQTT 3.1.1 for v3.1.1 tests and from MQTT 5.0 for v5 tests.

mod common;

use common::{pump4, pump5, wait_for, BrokerProcess, Events4, Events5};
use rumqttc::v5;
use rumqttc::v5::mqttbytes::v5::{
    ConnectReturnCode as ConnectReturnCode5, DisconnectReasonCode, Packet as Packet5, SubscribeReasonCode as SubRc5,
};
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::{Client, Event, LastWill, MqttOptions, Packet, QoS, SubscribeReasonCode};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Generous: a debug broker on a shared, busy machine.
const WAIT: Duration = Duration::from_secs(10);

fn opts4(broker: &BrokerProcess, id: &str) -> MqttOptions {
    let mut opts = MqttOptions::new(id, "127.0.0.1", broker.port());
    opts.set_keep_alive(Duration::from_secs(30));
    opts
}

fn opts5(broker: &BrokerProcess, id: &str) -> v5::MqttOptions {
    let mut opts = v5::MqttOptions::new(id, "127.0.0.1", broker.port());
    opts.set_keep_alive(Duration::from_secs(30));
    opts
}

/// Connect a v3.1.1 client and wait for a successful CONNACK.
fn connect4(opts: MqttOptions) -> (Client, Events4) {
    let (client, connection) = Client::new(opts, 64);
    let events = pump4(connection);
    let ack = wait_for(&events, WAIT, |e| match e {
        Ok(Event::Incoming(Packet::ConnAck(ack))) => Some(Ok(ack)),
        Err(e) => Some(Err(e)),
        _ => None,
    });
    match ack {
        Some(Ok(ack)) => assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    (client, events)
}

fn connect5(opts: v5::MqttOptions) -> (v5::Client, Events5) {
    let (client, connection) = v5::Client::new(opts, 64);
    let events = pump5(connection);
    let ack = wait_for(&events, WAIT, |e| match e {
        Ok(v5::Event::Incoming(Packet5::ConnAck(ack))) => Some(Ok(ack)),
        Err(e) => Some(Err(e)),
        _ => None,
    });
    match ack {
        Some(Ok(ack)) => assert_eq!(ack.code, ConnectReturnCode5::Success),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    (client, events)
}

fn subscribe4(client: &Client, events: &Events4, filter: &str, qos: QoS) {
    client.subscribe(filter, qos).unwrap();
    let granted = wait_for(events, WAIT, |e| match e {
        Ok(Event::Incoming(Packet::SubAck(ack))) => Some(ack.return_codes),
        _ => None,
    });
    assert_eq!(
        granted,
        Some(vec![SubscribeReasonCode::Success(qos)]),
        "SUBACK for {filter}"
    );
}

fn subscribe5(client: &v5::Client, events: &Events5, filter: &str, qos: QoS5) {
    client.subscribe(filter, qos).unwrap();
    let granted = wait_for(events, WAIT, |e| match e {
        Ok(v5::Event::Incoming(Packet5::SubAck(ack))) => Some(ack.return_codes),
        _ => None,
    });
    assert_eq!(granted, Some(vec![SubRc5::Success(qos)]), "SUBACK for {filter}");
}

fn next_publish4(events: &Events4) -> Option<rumqttc::Publish> {
    wait_for(events, WAIT, |e| match e {
        Ok(Event::Incoming(Packet::Publish(p))) => Some(p),
        _ => None,
    })
}

fn next_publish5(events: &Events5) -> Option<v5::mqttbytes::v5::Publish> {
    wait_for(events, WAIT, |e| match e {
        Ok(v5::Event::Incoming(Packet5::Publish(p))) => Some(p),
        _ => None,
    })
}

/// True when the connection ends (error or event loop gone) within `timeout`.
fn closed_within<T, E>(events: &Receiver<Result<T, E>>, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        match events.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Err(_)) | Err(RecvTimeoutError::Disconnected) => return true,
            Ok(Ok(_)) => {}
            Err(RecvTimeoutError::Timeout) => return false,
        }
    }
}

/// Wait for the v5 DISCONNECT from the server and return its reason code. rumqttc reports it as a connection
/// error carrying the reason code.
fn server_disconnect5(events: &Events5) -> Option<DisconnectReasonCode> {
    wait_for(events, WAIT, |e| match e {
        Ok(v5::Event::Incoming(Packet5::Disconnect(d))) => Some(d.reason_code),
        Err(v5::ConnectionError::MqttState(v5::StateError::ServerDisconnect { reason_code, .. })) => Some(reason_code),
        _ => None,
    })
}

/// MQTT-3.2.0-1: the first packet from the server is CONNACK; return code 0 accepts the connection.
#[test]
fn v311_client_connects_and_gets_connack_accepted() {
    let broker = BrokerProcess::start(&[]);
    let (_client, _events) = connect4(opts4(&broker, "e2e-connect-v311"));
}

/// MQTT-3.2.0-1 (v5): CONNACK with reason code Success.
#[test]
fn v5_client_connects_and_gets_connack_success() {
    let broker = BrokerProcess::start(&[]);
    let (_client, _events) = connect5(opts5(&broker, "e2e-connect-v5"));
}

/// Publish at `qos` to a subscriber granted `qos`: delivered once with that QoS (MQTT-3.8.4-6 on the granted QoS;
/// MQTT-4.3 delivery flows).
fn publish_subscribe_roundtrip_v311(qos: QoS) {
    let broker = BrokerProcess::start(&[]);
    let topic = format!("e2e/qos/{}", qos as u8);
    let (sub, sub_events) = connect4(opts4(&broker, "e2e-sub"));
    subscribe4(&sub, &sub_events, &topic, qos);
    let (publisher, pub_events) = connect4(opts4(&broker, "e2e-pub"));
    publisher
        .publish(topic.as_str(), qos, false, b"hello".to_vec())
        .unwrap();
    let got = next_publish4(&sub_events).expect("subscriber receives the message");
    assert_eq!(got.topic, topic);
    assert_eq!(&got.payload[..], b"hello");
    assert_eq!(got.qos, qos);
    assert!(!got.retain);
    // The publisher's flow completes: PUBACK for QoS 1, PUBREC then PUBCOMP for QoS 2.
    let done = wait_for(&pub_events, WAIT, |e| match (qos, e) {
        (QoS::AtMostOnce, _) => Some(()),
        (QoS::AtLeastOnce, Ok(Event::Incoming(Packet::PubAck(_)))) => Some(()),
        (QoS::ExactlyOnce, Ok(Event::Incoming(Packet::PubComp(_)))) => Some(()),
        _ => None,
    });
    assert!(done.is_some(), "publisher's QoS {qos:?} flow completes");
    // Exactly once for QoS 2: no second copy arrives (MQTT-4.3.3).
    if qos == QoS::ExactlyOnce {
        assert!(next_publish_within(&sub_events, Duration::from_millis(500)).is_none());
    }
}

fn next_publish_within(events: &Events4, timeout: Duration) -> Option<rumqttc::Publish> {
    wait_for(events, timeout, |e| match e {
        Ok(Event::Incoming(Packet::Publish(p))) => Some(p),
        _ => None,
    })
}

#[test]
fn v311_publish_subscribe_qos0() {
    publish_subscribe_roundtrip_v311(QoS::AtMostOnce);
}

#[test]
fn v311_publish_subscribe_qos1() {
    publish_subscribe_roundtrip_v311(QoS::AtLeastOnce);
}

#[test]
fn v311_publish_subscribe_qos2() {
    publish_subscribe_roundtrip_v311(QoS::ExactlyOnce);
}

#[test]
fn v5_publish_subscribe_qos0_1_2() {
    let broker = BrokerProcess::start(&[]);
    let (sub, sub_events) = connect5(opts5(&broker, "e2e-sub5"));
    let (publisher, _pub_events) = connect5(opts5(&broker, "e2e-pub5"));
    for qos in [QoS5::AtMostOnce, QoS5::AtLeastOnce, QoS5::ExactlyOnce] {
        let topic = format!("e2e/v5/{}", qos as u8);
        subscribe5(&sub, &sub_events, &topic, qos);
        publisher.publish(topic.as_str(), qos, false, b"five".to_vec()).unwrap();
        let got = next_publish5(&sub_events).expect("subscriber receives the message");
        assert_eq!(&got.topic[..], topic.as_bytes());
        assert_eq!(&got.payload[..], b"five");
        assert_eq!(got.qos, qos);
    }
}

/// A v5 publisher and a v3.1.1 subscriber on the same broker see the same message.
#[test]
fn v5_publisher_reaches_v311_subscriber_through_a_wildcard() {
    let broker = BrokerProcess::start(&[]);
    let (sub, sub_events) = connect4(opts4(&broker, "e2e-sub-mixed"));
    subscribe4(&sub, &sub_events, "e2e/mixed/+", QoS::AtLeastOnce);
    let (publisher, _pub_events) = connect5(opts5(&broker, "e2e-pub-mixed"));
    publisher
        .publish("e2e/mixed/a", QoS5::AtLeastOnce, false, b"x".to_vec())
        .unwrap();
    let got = next_publish4(&sub_events).expect("wildcard subscriber receives the v5 message");
    assert_eq!(got.topic, "e2e/mixed/a");
    assert_eq!(&got.payload[..], b"x");
}

/// MQTT-3.3.1-6: a new subscription receives the last retained message of a matching topic, with RETAIN set
/// (MQTT-3.3.1-8).
#[test]
fn retained_message_is_delivered_to_a_later_subscriber() {
    let broker = BrokerProcess::start(&[]);
    let (publisher, pub_events) = connect4(opts4(&broker, "e2e-retain-pub"));
    publisher
        .publish("e2e/retained", QoS::AtLeastOnce, true, b"kept".to_vec())
        .unwrap();
    let acked = wait_for(&pub_events, WAIT, |e| {
        matches!(e, Ok(Event::Incoming(Packet::PubAck(_)))).then_some(())
    });
    assert!(acked.is_some(), "retained publish acknowledged");

    let (sub, sub_events) = connect4(opts4(&broker, "e2e-retain-sub"));
    subscribe4(&sub, &sub_events, "e2e/#", QoS::AtLeastOnce);
    let got = next_publish4(&sub_events).expect("retained message delivered on subscribe");
    assert_eq!(got.topic, "e2e/retained");
    assert_eq!(&got.payload[..], b"kept");
    assert!(
        got.retain,
        "MQTT-3.3.1-8: RETAIN set on messages sent because of a new subscription"
    );
}

/// MQTT-3.1.2-8: the will is published when the network connection closes without DISCONNECT.
#[test]
fn will_is_published_when_a_client_drops_its_connection() {
    let broker = BrokerProcess::start(&[]);
    let (watcher, watch_events) = connect4(opts4(&broker, "e2e-will-watcher"));
    subscribe4(&watcher, &watch_events, "e2e/will/#", QoS::AtLeastOnce);

    let mut opts = opts4(&broker, "e2e-will-victim");
    opts.set_last_will(LastWill::new("e2e/will/victim", "gone", QoS::AtLeastOnce, false));
    let (victim, mut connection) = Client::new(opts, 8);
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "victim never got CONNACK");
        if let Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) = connection.recv_timeout(Duration::from_millis(200)) {
            break;
        }
    }
    // Dropping the event loop drops the socket: no DISCONNECT is sent.
    drop(connection);
    drop(victim);

    let will = next_publish4(&watch_events).expect("will published");
    assert_eq!(will.topic, "e2e/will/victim");
    assert_eq!(&will.payload[..], b"gone");
}

/// MQTT-3.1.2-10: a will is discarded, not published, when the client disconnects normally.
#[test]
fn will_is_not_published_after_a_normal_disconnect() {
    let broker = BrokerProcess::start(&[]);
    let (watcher, watch_events) = connect4(opts4(&broker, "e2e-nowill-watcher"));
    subscribe4(&watcher, &watch_events, "e2e/will/#", QoS::AtLeastOnce);

    let mut opts = opts4(&broker, "e2e-nowill");
    opts.set_last_will(LastWill::new("e2e/will/polite", "gone", QoS::AtLeastOnce, false));
    let (client, events) = connect4(opts);
    client.disconnect().unwrap();
    assert!(closed_within(&events, WAIT), "client event loop ends after DISCONNECT");
    assert!(
        next_publish_within(&watch_events, Duration::from_secs(1)).is_none(),
        "no will after DISCONNECT"
    );
}

/// MQTT-3.1.4-3 (3.1.1 numbering: MQTT-3.1.4-2): a second connection with the same client id takes the session
/// over and the server closes the first one.
#[test]
fn session_takeover_closes_the_existing_v311_connection() {
    let broker = BrokerProcess::start(&[]);
    let (_first, first_events) = connect4(opts4(&broker, "e2e-takeover"));
    let (second, second_events) = connect4(opts4(&broker, "e2e-takeover"));
    assert!(
        closed_within(&first_events, WAIT),
        "first connection closed by the server"
    );
    // The new connection is fully functional.
    subscribe4(&second, &second_events, "e2e/takeover", QoS::AtLeastOnce);
}

/// MQTT-3.1.4-3 (v5): the existing client gets DISCONNECT with reason 0x8E Session taken over, then is closed.
#[test]
fn session_takeover_sends_disconnect_0x8e_to_the_existing_v5_client() {
    let broker = BrokerProcess::start(&[]);
    let (_first, first_events) = connect5(opts5(&broker, "e2e-takeover5"));
    let (second, second_events) = connect5(opts5(&broker, "e2e-takeover5"));
    assert_eq!(
        server_disconnect5(&first_events),
        Some(DisconnectReasonCode::SessionTakenOver)
    );
    subscribe5(&second, &second_events, "e2e/takeover5", QoS5::AtLeastOnce);
}

/// A 1 MB payload crosses the broker intact (it exceeds the driver's 64 KiB read buffer and any socket buffer).
#[test]
fn one_megabyte_payload_round_trips() {
    let broker = BrokerProcess::start(&[]);
    let mut opts = opts4(&broker, "e2e-big");
    opts.set_max_packet_size(2 << 20, 2 << 20);
    let (client, events) = connect4(opts);
    subscribe4(&client, &events, "e2e/big", QoS::AtLeastOnce);
    let payload: Vec<u8> = (0..1_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    client
        .publish("e2e/big", QoS::AtLeastOnce, false, payload.clone())
        .unwrap();
    let got = next_publish4(&events).expect("1 MB message delivered");
    assert_eq!(got.payload.len(), payload.len());
    assert!(got.payload[..] == payload[..], "payload intact");
}

/// A CONNECT for MQTT 3.1.1 with clean session and the given client id.
fn raw_connect_v311(client_id: &str) -> Vec<u8> {
    let id = client_id.as_bytes();
    let id_len = u16::try_from(id.len()).unwrap();
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0b0000_0010, 0, 60];
    body.extend_from_slice(&id_len.to_be_bytes());
    body.extend_from_slice(id);
    let remaining = u8::try_from(body.len()).unwrap();
    assert!(remaining < 128, "single-byte remaining length");
    let mut packet = vec![0x10, remaining];
    packet.extend_from_slice(&body);
    packet
}

/// 1,000 simultaneous connections each get CONNACK accepted with Session Present 0 (MQTT-3.2.0-1,
/// MQTT-3.2.2-1). Raw TCP: 1,000 rumqttc clients would mean 1,000 runtimes and threads.
#[test]
fn a_thousand_concurrent_clients_each_get_connack() {
    const CLIENTS: usize = 1000;
    let broker = BrokerProcess::start(&[]);
    let mut streams = Vec::with_capacity(CLIENTS);
    for i in 0..CLIENTS {
        let mut stream = TcpStream::connect(broker.addr).expect("connect");
        stream
            .write_all(&raw_connect_v311(&format!("e2e-many-{i:04}")))
            .expect("send CONNECT");
        streams.push(stream);
    }
    for (i, stream) in streams.iter_mut().enumerate() {
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut connack = [0u8; 4];
        stream
            .read_exact(&mut connack)
            .unwrap_or_else(|e| panic!("client {i}: no CONNACK: {e}"));
        assert_eq!(
            connack,
            [0x20, 0x02, 0x00, 0x00],
            "client {i}: CONNACK accepted, no session present"
        );
    }
    // All of them are still connected at once: a PINGREQ on each gets a PINGRESP (MQTT-3.12.4-1).
    for stream in &mut streams {
        stream.write_all(&[0xC0, 0x00]).unwrap();
    }
    for (i, stream) in streams.iter_mut().enumerate() {
        let mut pingresp = [0u8; 2];
        stream
            .read_exact(&mut pingresp)
            .unwrap_or_else(|e| panic!("client {i}: no PINGRESP: {e}"));
        assert_eq!(pingresp, [0xD0, 0x00]);
    }
}

/// SIGTERM: v5 clients get DISCONNECT 0x8B Server shutting down, v3.1.1 clients are closed, the broker exits 0.
#[test]
fn graceful_shutdown_sends_disconnect_0x8b_and_exits_0() {
    let mut broker = BrokerProcess::start(&[]);
    let (_client5, events5) = connect5(opts5(&broker, "e2e-shutdown-v5"));
    let (_client4, events4) = connect4(opts4(&broker, "e2e-shutdown-v311"));
    broker.signal(libc::SIGTERM);
    assert_eq!(
        server_disconnect5(&events5),
        Some(DisconnectReasonCode::ServerShuttingDown)
    );
    assert!(closed_within(&events4, WAIT), "v3.1.1 connection closed at shutdown");
    let status = broker.wait_exit(WAIT).expect("broker exits after SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", broker.log_text());
}

/// The connect and disconnect log lines come from the core's events.
#[test]
fn connects_and_disconnects_are_logged() {
    let broker = BrokerProcess::start(&[]);
    let (client, events) = connect4(opts4(&broker, "e2e-logged"));
    assert!(
        broker.wait_for_log("client connected: client_id=\"e2e-logged\"", WAIT),
        "{}",
        broker.log_text()
    );
    client.disconnect().unwrap();
    assert!(closed_within(&events, WAIT));
    assert!(
        broker.wait_for_log("client disconnected: client_id=\"e2e-logged\"", WAIT),
        "{}",
        broker.log_text()
    );
}

/// Fan-in at QoS 1 into a subscriber slower than its publishers, with a tiny session queue: every acknowledged
/// message arrives, in order per publisher (MQTT-4.6.0-2), because the broker holds PUBACKs instead of dropping.
#[test]
fn slow_subscriber_loses_no_acknowledged_message_under_fan_in() {
    const PUBLISHERS: usize = 4;
    const PER_PUBLISHER: u32 = 400;
    let broker = BrokerProcess::start(&["--max-queued-messages", "4", "--max-inflight", "2"]);
    let (sub, sub_events) = connect4(opts4(&broker, "e2e-slow-sub"));
    subscribe4(&sub, &sub_events, "e2e/fanin/+", QoS::AtLeastOnce);
    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let (client, events) = connect4(opts4(&broker, &format!("e2e-fanin-{p}")));
        let topic = format!("e2e/fanin/{p}");
        let sender = client.clone();
        std::thread::spawn(move || {
            for seq in 0..PER_PUBLISHER {
                if sender
                    .publish(topic.as_str(), QoS::AtLeastOnce, false, seq.to_be_bytes().to_vec())
                    .is_err()
                {
                    return;
                }
            }
        });
        publishers.push((client, events));
    }
    let mut next_seq = [0u32; PUBLISHERS];
    let mut received = 0;
    while received < PUBLISHERS * PER_PUBLISHER as usize {
        let Some(publish) = next_publish_within(&sub_events, WAIT) else {
            panic!("stalled after {received} messages: {next_seq:?}");
        };
        let p: usize = publish
            .topic
            .rsplit('/')
            .next()
            .and_then(|s| s.parse().ok())
            .expect("publisher index");
        let seq = u32::from_be_bytes(publish.payload[..4].try_into().expect("4-byte payload"));
        // QoS 1 may repeat a message, never skip one.
        assert!(seq <= next_seq[p], "publisher {p}: got {seq}, expected {}", next_seq[p]);
        if seq == next_seq[p] {
            next_seq[p] += 1;
            received += 1;
        }
        if received % 100 == 0 {
            // Be slow now and then, so the queue fills.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert_eq!(next_seq, [PER_PUBLISHER; PUBLISHERS]);
    // Every publisher got all its PUBACKs.
    for (p, (_, events)) in publishers.iter().enumerate() {
        let mut acks = 0;
        while acks < PER_PUBLISHER {
            match wait_for(events, WAIT, |e| {
                matches!(e, Ok(Event::Incoming(Packet::PubAck(_)))).then_some(())
            }) {
                Some(()) => acks += 1,
                None => panic!("publisher {p}: only {acks} PUBACKs"),
            }
        }
    }
}

/// The Assigned Client Identifier of a v5 client connecting with an empty id [MQTT-3.1.3-6], [MQTT-3.2.2-16].
fn assigned_client_id(broker: &BrokerProcess) -> String {
    let (client, connection) = v5::Client::new(opts5(broker, ""), 64);
    let events = pump5(connection);
    let ack = wait_for(&events, WAIT, |e| match e {
        Ok(v5::Event::Incoming(Packet5::ConnAck(ack))) => Some(ack),
        _ => None,
    })
    .expect("CONNACK");
    assert_eq!(ack.code, ConnectReturnCode5::Success);
    let _ = client.disconnect();
    ack.properties
        .and_then(|p| p.assigned_client_identifier)
        .expect("an empty client id gets an Assigned Client Identifier [MQTT-3.2.2-16]")
}

/// Without `--seed`, the seed (hash keys, assigned identifiers) comes from the operating system and is not logged:
/// two brokers started the same way assign different identifiers, and nothing a client can read (the log, the start
/// time, the pid) reveals the seed.
#[test]
fn production_seed_is_secret_and_assigned_ids_differ_between_runs() {
    let first = BrokerProcess::start(&[]);
    let second = BrokerProcess::start(&[]);
    let (a, b) = (assigned_client_id(&first), assigned_client_id(&second));
    assert_ne!(a, b, "assigned client identifiers must not repeat across starts");
    for broker in [&first, &second] {
        assert!(broker.wait_for_log("seed from the operating system's randomness (not logged)", WAIT));
        let log = broker.log.lock().unwrap();
        let shows_a_seed = |line: &String| {
            line.split("seed ")
                .skip(1)
                .any(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        };
        assert!(!log.iter().any(shows_a_seed), "the seed must not be logged: {log:?}");
    }
    // With --seed the operator chose it: it is logged, with a warning that ids become predictable.
    let seeded = BrokerProcess::start(&["--seed", "42"]);
    assert!(seeded.wait_for_log("seed 42 (from --seed", WAIT));
    let (x, y) = (assigned_client_id(&seeded), assigned_client_id(&seeded));
    assert_ne!(x, y, "two clients of one broker never get the same identifier");
}
