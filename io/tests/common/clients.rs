//! rumqttc clients (3.1.1 and 5) as the end-to-end tests use them: connect, read the CONNACK, publish a stream and
//! count its acknowledgements.

use super::{pump4, pump5, wait_for, BrokerProcess, Events4, Events5};
use rumqttc::v5;
use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode as Rc5, Packet as Packet5};
use rumqttc::{Client, ConnectReturnCode, ConnectionError, Event, MqttOptions, Packet, QoS};
use std::time::{Duration, Instant};

/// How long a client waits for the broker's reply: generous, for a debug build on a busy machine (and a cluster's
/// relay through the leader).
pub const REPLY_WAIT: Duration = Duration::from_secs(20);

/// A 3.1.1 client with Clean Session `clean`, 50 messages in flight, connected (the CONNACK is awaited).
pub fn connect4(broker: &BrokerProcess, id: &str, clean: bool) -> (Client, Events4) {
    let mut opts = MqttOptions::new(id, "127.0.0.1", broker.port());
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_clean_session(clean);
    opts.set_inflight(50);
    let (client, connection) = Client::new(opts, 200);
    let events = pump4(connection);
    let connected = wait_for(&events, REPLY_WAIT, |e| match e {
        Ok(Event::Incoming(Packet::ConnAck(ack))) => Some(ack.session_present),
        _ => None,
    });
    assert!(connected.is_some(), "{id} connects: {}", broker.log_text());
    (client, events)
}

/// A 3.1.1 client, not yet known to be connected (see `connack4`).
pub fn client4(broker: &BrokerProcess, id: &str, credentials: Option<(&str, &str)>) -> (Client, Events4) {
    let mut opts = MqttOptions::new(id, "127.0.0.1", broker.port());
    opts.set_keep_alive(Duration::from_secs(30));
    if let Some((user, password)) = credentials {
        opts.set_credentials(user, password);
    }
    let (client, connection) = Client::new(opts, 64);
    (client, pump4(connection))
}

/// An MQTT 5 client, not yet known to be connected (see `connack5`).
pub fn client5(broker: &BrokerProcess, id: &str, credentials: Option<(&str, &str)>) -> (v5::Client, Events5) {
    let mut opts = v5::MqttOptions::new(id, "127.0.0.1", broker.port());
    opts.set_keep_alive(Duration::from_secs(30));
    if let Some((user, password)) = credentials {
        opts.set_credentials(user, password);
    }
    let (client, connection) = v5::Client::new(opts, 64);
    (client, pump5(connection))
}

/// Connects with `opts`: the client, its events and Session Present, or `None` if the broker closed the connection
/// without a CONNACK (in a cluster: no leader serves yet).
pub fn try_connect5(opts: v5::MqttOptions) -> Option<(v5::Client, Events5, bool)> {
    let (client, connection) = v5::Client::new(opts, 64);
    let events = pump5(connection);
    let present = wait_for(&events, Duration::from_secs(2), |e| match e {
        Ok(v5::Event::Incoming(Packet5::ConnAck(ack))) => Some(Some(ack.session_present)),
        Err(_) => Some(None),
        _ => None,
    })
    .flatten()?;
    Some((client, events, present))
}

/// The CONNACK code, whether accepted or refused.
pub fn connack4(events: &Events4) -> Option<ConnectReturnCode> {
    wait_for(events, REPLY_WAIT, |e| match e {
        Ok(Event::Incoming(Packet::ConnAck(ack))) => Some(ack.code),
        Err(ConnectionError::ConnectionRefused(code)) => Some(code),
        _ => None,
    })
}

/// The CONNACK reason code, whether accepted or refused.
pub fn connack5(events: &Events5) -> Option<Rc5> {
    wait_for(events, REPLY_WAIT, |e| match e {
        Ok(v5::Event::Incoming(Packet5::ConnAck(ack))) => Some(ack.code),
        Err(v5::ConnectionError::ConnectionRefused(code)) => Some(code),
        _ => None,
    })
}

/// Publishes `count` messages `{prefix}-{i}` on `topic` as fast as the window allows, on its own thread (which
/// stops at the first refused publish).
pub fn publish_stream(client: Client, topic: &'static str, qos: QoS, prefix: &'static str, count: usize) {
    std::thread::spawn(move || {
        for i in 0..count {
            if client
                .publish(topic, qos, false, format!("{prefix}-{i}").into_bytes())
                .is_err()
            {
                return;
            }
        }
    });
}

/// Counts acknowledgements: PUBACK for QoS 1, PUBREC for QoS 2 (from then on the broker owns the message), until
/// `stop_at`, `until` or the connection's end. The broker acknowledges in order, so `n` acks cover messages `0..n`.
pub fn count_acks(events: &Events4, qos: QoS, until: Instant, stop_at: usize) -> usize {
    let mut acks = 0;
    while acks < stop_at && Instant::now() < until {
        match events.recv_timeout(Duration::from_millis(50)) {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) if qos == QoS::AtLeastOnce => acks += 1,
            Ok(Ok(Event::Incoming(Packet::PubRec(_)))) if qos == QoS::ExactlyOnce => acks += 1,
            Ok(Err(_)) => break,
            _ => {}
        }
    }
    acks
}
