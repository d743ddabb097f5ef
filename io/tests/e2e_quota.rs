//! End-to-end quotas (issue #9): the real binary with quota flags, driven by rumqttc (v3.1.1 and v5).

mod common;

use common::{pump4, pump5, wait_for, BrokerProcess, Events4, Events5};
use rumqttc::v5;
use rumqttc::v5::mqttbytes::v5::{
    ConnectReturnCode as ConnectReturnCode5, DisconnectReasonCode, Packet as Packet5, SubscribeReasonCode as SubRc5,
};
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::{Client, ConnectionError, Event, MqttOptions, Packet, QoS, SubscribeReasonCode};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);

fn client4(broker: &BrokerProcess, id: &str) -> (Client, Events4) {
    let mut opts = MqttOptions::new(id, "127.0.0.1", broker.port());
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, connection) = Client::new(opts, 64);
    (client, pump4(connection))
}

fn client5(broker: &BrokerProcess, id: &str) -> (v5::Client, Events5) {
    let mut opts = v5::MqttOptions::new(id, "127.0.0.1", broker.port());
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, connection) = v5::Client::new(opts, 1024);
    (client, pump5(connection))
}

/// The v5 CONNACK's code: success, or the refusal rumqttc reports as an error.
fn connack5(events: &Events5) -> Option<ConnectReturnCode5> {
    wait_for(events, WAIT, |e| match e {
        Ok(v5::Event::Incoming(Packet5::ConnAck(ack))) => Some(ack.code),
        Err(v5::ConnectionError::ConnectionRefused(code)) => Some(code),
        _ => None,
    })
}

fn connack4(events: &Events4) -> Option<rumqttc::ConnectReturnCode> {
    wait_for(events, WAIT, |e| match e {
        Ok(Event::Incoming(Packet::ConnAck(ack))) => Some(ack.code),
        Err(ConnectionError::ConnectionRefused(code)) => Some(code),
        _ => None,
    })
}

#[test]
fn connections_per_address_beyond_the_limit_are_refused_with_quota_exceeded() {
    let broker = BrokerProcess::start(&["--max-connections-per-address", "2"]);
    let (_a, a_events) = client5(&broker, "quota-a");
    assert_eq!(connack5(&a_events), Some(ConnectReturnCode5::Success));
    let (_b, b_events) = client4(&broker, "quota-b");
    assert_eq!(connack4(&b_events), Some(rumqttc::ConnectReturnCode::Success));
    // Everyone here comes from 127.0.0.1: the third is one too many.
    let (_c, c_events) = client5(&broker, "quota-c");
    assert_eq!(connack5(&c_events), Some(ConnectReturnCode5::QuotaExceeded));
    let (_d, d_events) = client4(&broker, "quota-d");
    assert_eq!(
        connack4(&d_events),
        Some(rumqttc::ConnectReturnCode::ServiceUnavailable)
    );
    // The first two are unaffected.
    assert!(a_events
        .recv_timeout(Duration::from_millis(200))
        .map_or(true, |e| e.is_ok()));
}

#[test]
fn subscriptions_beyond_the_limit_get_quota_exceeded() {
    let broker = BrokerProcess::start(&["--max-subscriptions-per-client", "2"]);
    let (client, events) = client5(&broker, "subs-v5");
    assert_eq!(connack5(&events), Some(ConnectReturnCode5::Success));
    for filter in ["s/1", "s/2", "s/3"] {
        client.subscribe(filter, QoS5::AtLeastOnce).unwrap();
    }
    let mut codes = Vec::new();
    while codes.len() < 3 {
        let more = wait_for(&events, WAIT, |e| match e {
            Ok(v5::Event::Incoming(Packet5::SubAck(ack))) => Some(ack.return_codes),
            _ => None,
        });
        codes.extend(more.expect("SUBACK"));
    }
    assert_eq!(
        codes,
        vec![
            SubRc5::Success(QoS5::AtLeastOnce),
            SubRc5::Success(QoS5::AtLeastOnce),
            SubRc5::QuotaExceeded
        ]
    );

    let (client, events) = client4(&broker, "subs-v311");
    assert_eq!(connack4(&events), Some(rumqttc::ConnectReturnCode::Success));
    for filter in ["s/1", "s/2", "s/3"] {
        client.subscribe(filter, QoS::AtMostOnce).unwrap();
    }
    let mut codes = Vec::new();
    while codes.len() < 3 {
        let more = wait_for(&events, WAIT, |e| match e {
            Ok(Event::Incoming(Packet::SubAck(ack))) => Some(ack.return_codes),
            _ => None,
        });
        codes.extend(more.expect("SUBACK"));
    }
    assert_eq!(
        codes,
        vec![
            SubscribeReasonCode::Success(QoS::AtMostOnce),
            SubscribeReasonCode::Success(QoS::AtMostOnce),
            SubscribeReasonCode::Failure
        ]
    );
}

#[test]
fn a_flooding_client_is_limited_and_cut_off_while_another_is_unaffected() {
    let broker = BrokerProcess::start(&["--max-publish-rate", "20"]);
    let (sub, sub_events) = client5(&broker, "flood-sub");
    assert_eq!(connack5(&sub_events), Some(ConnectReturnCode5::Success));
    sub.subscribe("quota/#", QoS5::AtLeastOnce).unwrap();
    wait_for(&sub_events, WAIT, |e| match e {
        Ok(v5::Event::Incoming(Packet5::SubAck(_))) => Some(()),
        _ => None,
    })
    .expect("SUBACK");

    let (flood, flood_events) = client5(&broker, "flooder");
    assert_eq!(connack5(&flood_events), Some(ConnectReturnCode5::Success));
    let (calm, calm_events) = client5(&broker, "calm");
    assert_eq!(connack5(&calm_events), Some(ConnectReturnCode5::Success));

    // The flooder sends 1,000 QoS 0 messages as fast as it can: 50 seconds' worth at 20/s.
    let flooder = std::thread::spawn(move || {
        for i in 0..1000 {
            if flood
                .publish("quota/flood", QoS5::AtMostOnce, false, format!("f{i}"))
                .is_err()
            {
                break;
            }
        }
        flood
    });
    // Meanwhile the calm client sends 10 QoS 1 messages, one per 100 ms (half the rate).
    for i in 0..10 {
        calm.publish("quota/calm", QoS5::AtLeastOnce, false, format!("c{i}"))
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    let _flood = flooder.join().expect("flooder thread");

    // The flooder is disconnected with 0x96 Message rate too high.
    let reason = wait_for(&flood_events, WAIT, |e| match e {
        Ok(v5::Event::Incoming(Packet5::Disconnect(d))) => Some(d.reason_code),
        Err(v5::ConnectionError::MqttState(v5::StateError::ServerDisconnect { reason_code, .. })) => Some(reason_code),
        _ => None,
    });
    assert_eq!(reason, Some(DisconnectReasonCode::MessageRateTooHigh));

    // The subscriber gets every calm message and only a burst's worth of the flood.
    let (mut calm_got, mut flood_got) = (0, 0);
    let deadline = Instant::now() + WAIT;
    while calm_got < 10 && Instant::now() < deadline {
        let Some(publish) = wait_for(&sub_events, WAIT, |e| match e {
            Ok(v5::Event::Incoming(Packet5::Publish(p))) => Some(p),
            _ => None,
        }) else {
            break;
        };
        if publish.topic.as_ref() == b"quota/calm" {
            calm_got += 1;
        } else {
            flood_got += 1;
        }
    }
    assert_eq!(calm_got, 10, "every calm message arrives");
    assert!(flood_got <= 60, "the flood is limited to its rate, got {flood_got}");
    // The calm client's acknowledgements were all successes and it is still connected.
    let mut acks = 0;
    while let Ok(event) = calm_events.recv_timeout(Duration::from_millis(500)) {
        match event {
            Ok(v5::Event::Incoming(Packet5::PubAck(ack))) => {
                assert_eq!(ack.reason, v5::mqttbytes::v5::PubAckReason::Success);
                acks += 1;
            }
            Ok(_) => {}
            Err(e) => panic!("calm client lost its connection: {e:?}"),
        }
    }
    assert_eq!(acks, 10);
}

#[test]
fn connects_faster_than_the_rate_of_an_address_are_refused() {
    let broker = BrokerProcess::start(&["--max-connects-per-second-per-address", "2"]);
    let (_a, a_events) = client5(&broker, "rate-a");
    assert_eq!(connack5(&a_events), Some(ConnectReturnCode5::Success));
    let (_b, b_events) = client4(&broker, "rate-b");
    assert_eq!(connack4(&b_events), Some(rumqttc::ConnectReturnCode::Success));
    // A burst of one second's worth (2), then 0x9F Connection rate exceeded (3.1.1: 3 Server unavailable).
    let (_c, c_events) = client5(&broker, "rate-c");
    assert_eq!(connack5(&c_events), Some(ConnectReturnCode5::ConnectionRateExceeded));
    let (_d, d_events) = client4(&broker, "rate-d");
    assert_eq!(
        connack4(&d_events),
        Some(rumqttc::ConnectReturnCode::ServiceUnavailable)
    );
    // A second later the bucket has refilled.
    std::thread::sleep(Duration::from_millis(1100));
    let (_e, e_events) = client5(&broker, "rate-e");
    assert_eq!(connack5(&e_events), Some(ConnectReturnCode5::Success));
}

/// A socket that never sends CONNECT (or only part of one) is closed after `connect_timeout_ms`.
#[test]
fn silent_and_half_connect_sockets_are_closed_after_the_connect_timeout() {
    use std::io::{Read, Write};
    let broker = BrokerProcess::start(&["--connect-timeout-ms", "500"]);
    let mut silent = std::net::TcpStream::connect(broker.addr).unwrap();
    let mut partial = std::net::TcpStream::connect(broker.addr).unwrap();
    // A CONNECT fixed header promising 32 bytes, and two of them.
    partial.write_all(&[0x10, 0x20, 0x00, 0x04]).unwrap();
    let start = Instant::now();
    for stream in [&mut silent, &mut partial] {
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut buf = [0u8; 16];
        // The broker closes without a word: end of stream (or a reset).
        let n = stream.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "expected the broker to close the connection");
    }
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(400), "closed too early: {elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "closed too late: {elapsed:?}");
}
