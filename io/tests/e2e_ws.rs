//! End-to-end over WebSockets (MQTT 5.0 section 6; statement ids MQTT-6.0.0-n are from there): the real binary
//! with `ws` and `wss` listeners and tungstenite clients.

mod common;
mod wire;

use bytes::Bytes;
use common::BrokerProcess;
use mqtt_core::packet::{Disconnect, Packet, ProtocolVersion, QoS, ReasonCode, Subscribe, SubscriptionOptions, Will};
use std::io::Write;
use std::time::{Duration, Instant};
use tungstenite::Message;
use wire::*;

#[test]
fn websocket_connect_and_publish_subscribe_round_trip_with_the_mqtt_subprotocol() {
    let broker = ws_broker();
    assert!(
        broker.wait_for_log("(ws path /mqtt, anonymous allowed)", WAIT),
        "{}",
        broker.log_text()
    );
    let (mut sub, response) = ws_client(&broker);
    // [MQTT-6.0.0-4]: the server selects and returns "mqtt".
    assert_eq!(
        response.headers().get("Sec-WebSocket-Protocol").map(|v| v.as_bytes()),
        Some(&b"mqtt"[..])
    );
    let (mut publ, _) = ws_client(&broker);
    assert_eq!(sub.connect("ws-sub", None, None), ReasonCode::SUCCESS);
    assert_eq!(publ.connect("ws-pub", None, None), ReasonCode::SUCCESS);
    round_trip(&mut sub, &mut publ, "ws/topic");
}

#[test]
fn websocket_packets_may_span_frames_and_frames_may_carry_several_packets() {
    // [MQTT-6.0.0-2]: the receiver must not assume packets are aligned on frame boundaries.
    let broker = ws_broker();
    let (mut client, _) = ws_client(&broker);
    let connect = client.encode(&connect_packet(ProtocolVersion::V5, "frames", None, None));
    let (head, tail) = connect.split_at(5);
    client.wire.send(head).expect("send");
    client.wire.send(tail).expect("send");
    assert!(matches!(client.recv(), Some(Packet::ConnAck(a)) if a.reason == ReasonCode::SUCCESS));
    // SUBSCRIBE and PINGREQ in one frame: SUBACK and PINGRESP come back.
    let mut both = client.encode(&Packet::Subscribe(Subscribe {
        packet_id: 3,
        properties: Default::default(),
        filters: vec![("a/b".into(), SubscriptionOptions::default())],
    }));
    both.extend(client.encode(&Packet::PingReq));
    client.wire.send(&both).expect("send");
    assert!(matches!(client.recv(), Some(Packet::SubAck(a)) if a.packet_id == 3));
    assert!(matches!(client.recv(), Some(Packet::PingResp)));
}

#[test]
fn websocket_ping_is_answered_and_close_is_echoed() {
    let broker = ws_broker();
    let (mut client, _) = ws_client(&broker);
    assert_eq!(client.connect("pinger", None, None), ReasonCode::SUCCESS);
    let ws = &mut client.wire.0;
    ws.send(Message::Ping(Bytes::from_static(b"are you there")))
        .expect("ping");
    match ws.read().expect("pong") {
        Message::Pong(payload) => assert_eq!(&payload[..], b"are you there"),
        other => panic!("expected pong, got {other:?}"),
    }
    ws.close(None).expect("close");
    loop {
        match ws.read() {
            Ok(Message::Close(_)) | Ok(_) => continue,
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("unclean close: {e}"),
        }
    }
}

#[test]
fn disconnect_sent_with_the_close_frame_in_one_write_still_discards_the_will() {
    // MQTT.js ends a WebSocket session with DISCONNECT and the close frame back to back, so the broker often reads
    // both at once: the DISCONNECT must still count, and the will is then not published [MQTT-3.1.2-10].
    let broker = ws_broker();
    let (mut watcher, _) = ws_client(&broker);
    assert_eq!(watcher.connect("watcher", None, None), ReasonCode::SUCCESS);
    assert_eq!(watcher.subscribe("will/t"), ReasonCode::GRANTED_QOS_1);
    for round in 0..5 {
        let (mut leaver, _) = ws_client(&broker);
        let mut connect = connect_packet(ProtocolVersion::V5, &format!("leaver-{round}"), None, None);
        if let Packet::Connect(c) = &mut connect {
            c.will = Some(Will {
                topic: "will/t".into(),
                payload: Bytes::from_static(b"gone"),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: Default::default(),
            });
        }
        leaver.send(&connect);
        assert!(matches!(leaver.recv(), Some(Packet::ConnAck(a)) if a.reason == ReasonCode::SUCCESS));
        let disconnect = leaver.encode(&Packet::Disconnect(Disconnect {
            reason: ReasonCode::SUCCESS,
            properties: Default::default(),
        }));
        let ws = &mut leaver.wire.0;
        // `write` only buffers; `close` queues the close frame and flushes both with one write.
        ws.write(Message::Binary(disconnect.into())).expect("queue DISCONNECT");
        ws.close(None).expect("close");
        while ws.read().is_ok() {}
    }
    // A marker published afterwards is the first thing the watcher gets: no will came before it.
    let (mut marker, _) = ws_client(&broker);
    assert_eq!(marker.connect("marker", None, None), ReasonCode::SUCCESS);
    marker.publish("will/t", &b"marker"[..]);
    let (_, payload) = watcher.expect_publish();
    assert_eq!(&payload[..], b"marker", "a will was published after a DISCONNECT");
}

#[test]
fn websocket_text_frames_close_the_connection() {
    // [MQTT-6.0.0-1]: MQTT Control Packets are sent in binary frames; any other data frame closes the connection.
    let broker = ws_broker();
    let (mut client, _) = ws_client(&broker);
    assert_eq!(client.connect("texter", None, None), ReasonCode::SUCCESS);
    client.wire.0.send(Message::text("{\"hello\":1}")).expect("send");
    loop {
        match client.wire.0.read() {
            Ok(Message::Close(frame)) => {
                let frame = frame.expect("close frame with a code");
                assert_eq!(u16::from(frame.code), 1003);
            }
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => break,
        }
    }
}

#[test]
fn shutdown_sends_disconnect_then_a_normal_websocket_close() {
    let broker = ws_broker();
    let (mut client, _) = ws_client(&broker);
    assert_eq!(client.connect("leaving", None, None), ReasonCode::SUCCESS);
    broker.signal(libc::SIGTERM);
    match client.recv() {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::SERVER_SHUTTING_DOWN),
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
    match client.wire.0.read() {
        Ok(Message::Close(Some(frame))) => assert_eq!(u16::from(frame.code), 1000),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

#[test]
fn websocket_wrong_path_gets_404_and_wrong_subprotocol_is_refused() {
    let broker = ws_broker();
    assert_eq!(
        ws_connect(tcp(&broker), ws_request(&broker, "ws", "/elsewhere", Some("mqtt"))).err(),
        Some(404)
    );
    assert_eq!(
        ws_connect(tcp(&broker), ws_request(&broker, "ws", "/mqtt", Some("chat"))).err(),
        Some(400)
    );
    // MQTT 3.1 clients offer "mqttv3.1".
    let (_, response) = ws_connect(tcp(&broker), ws_request(&broker, "ws", "/mqtt", Some("mqttv3.1"))).expect("ok");
    assert_eq!(
        response.headers().get("Sec-WebSocket-Protocol").map(|v| v.as_bytes()),
        Some(&b"mqttv3.1"[..])
    );
}

#[test]
fn an_unfinished_websocket_upgrade_is_closed_after_the_connect_timeout() {
    let broker = BrokerProcess::start_with_config(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\nprotocol = \"ws\"\n",
        &["--sync", "none", "--connect-timeout-ms", "500"],
    );
    let opened = Instant::now();
    let mut partial = tcp(&broker);
    partial.write_all(b"GET /mqtt HTTP/1.1\r\nHost: x\r\n").expect("write");
    closed_within(&mut partial, Duration::from_secs(5));
    let took = opened.elapsed();
    assert!(took >= Duration::from_millis(300), "closed too early: {took:?}");
}

#[test]
fn secure_websocket_round_trip_on_a_custom_path() {
    let pki = Pki::new();
    let broker = start(&format!(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\nprotocol = \"wss\"\nws_path = \"/broker\"\ncert_file = {:?}\nkey_file = {:?}\n",
        pki.path("server.pem"),
        pki.path("server.key")
    ));
    let connect = |path: &str| {
        let stream = tls(&broker, pki.client_config(None)).expect("TLS handshake");
        ws_connect(stream, ws_request(&broker, "wss", path, Some("mqtt")))
    };
    assert_eq!(connect("/mqtt").err(), Some(404));
    let (sub, _) = connect("/broker").expect("upgrade");
    let (publ, _) = connect("/broker").expect("upgrade");
    let mut sub = Mqtt::new(Ws(sub), ProtocolVersion::V5);
    let mut publ = Mqtt::new(Ws(publ), ProtocolVersion::V3_1_1);
    assert_eq!(sub.connect("wss-sub", None, None), ReasonCode::SUCCESS);
    assert_eq!(publ.connect("wss-pub", None, None), ReasonCode::SUCCESS);
    round_trip(&mut sub, &mut publ, "wss/topic");
}

#[test]
fn large_messages_cross_secure_websockets_intact() {
    let pki = Pki::new();
    let broker = start(&format!(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\nprotocol = \"wss\"\ncert_file = {:?}\nkey_file = {:?}\n",
        pki.path("server.pem"),
        pki.path("server.key")
    ));
    let connect = || {
        let stream = tls(&broker, pki.client_config(None)).expect("TLS handshake");
        let (ws, _) = ws_connect(stream, ws_request(&broker, "wss", "/mqtt", Some("mqtt"))).expect("upgrade");
        Mqtt::new(Ws(ws), ProtocolVersion::V5)
    };
    let (mut sub, mut publ) = (connect(), connect());
    assert_eq!(sub.connect("big-sub", None, None), ReasonCode::SUCCESS);
    assert_eq!(publ.connect("big-pub", None, None), ReasonCode::SUCCESS);
    assert_eq!(sub.subscribe("big"), ReasonCode::GRANTED_QOS_1);
    // Larger than any TLS record, WebSocket read buffer or socket buffer: it crosses all of them in pieces.
    let payload: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    for _ in 0..2 {
        publ.publish("big", payload.clone());
        let (_, got) = sub.expect_publish();
        assert!(got[..] == payload[..], "payload corrupted");
    }
}

/// `cargo test --release -p mqtt-io --test e2e_ws -- --ignored --nocapture`
#[test]
#[ignore]
fn measure_connects_and_throughput_per_transport() {
    let pki = Pki::new();
    let tls_keys = format!(
        "cert_file = {:?}\nkey_file = {:?}\n",
        pki.path("server.pem"),
        pki.path("server.key")
    );
    for protocol in ["mqtt", "mqtts", "ws", "wss"] {
        let keys = if protocol.ends_with('s') && protocol != "ws" {
            tls_keys.as_str()
        } else {
            ""
        };
        let broker = start(&format!(
            "[[listeners]]\naddress = \"127.0.0.1:0\"\nprotocol = \"{protocol}\"\n{keys}"
        ));
        let config = pki.client_config(None);
        let connect = || -> AnyClient {
            let wire: Box<dyn Wire + Send> = match protocol {
                "mqtt" => Box::new(Stream(tcp(&broker))),
                "mqtts" => Box::new(Stream(tls(&broker, config.clone()).expect("TLS"))),
                "ws" => Box::new(Ws(ws_connect(
                    tcp(&broker),
                    ws_request(&broker, "ws", "/mqtt", Some("mqtt")),
                )
                .expect("upgrade")
                .0)),
                _ => {
                    let stream = tls(&broker, config.clone()).expect("TLS");
                    Box::new(Ws(ws_connect(
                        stream,
                        ws_request(&broker, "wss", "/mqtt", Some("mqtt")),
                    )
                    .expect("upgrade")
                    .0))
                }
            };
            Mqtt::new(wire, ProtocolVersion::V5)
        };
        measure(protocol, &connect);
    }
}
