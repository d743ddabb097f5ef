//! End-to-end over TLS and WebSockets: the real binary, a throwaway PKI made with rcgen, rustls and tungstenite
//! clients speaking raw MQTT packets (encoded and decoded with the core's own codec). WebSocket statement ids
//! (MQTT-6.0.0-n) are from MQTT 5.0 section 6.

mod common;

use bytes::{Bytes, BytesMut};
use common::{BrokerProcess, BIN};
use mqtt_core::codec::{encode, Decoder};
use mqtt_core::packet::{
    Connect, Packet, ProtocolVersion, PubResponse, Publish, QoS, ReasonCode, Subscribe, SubscriptionOptions,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- PKI

/// A CA, a server certificate for "localhost" and client certificates, written as PEM files into a temp dir.
struct Pki {
    dir: tempfile::TempDir,
    ca_params: rcgen::CertificateParams,
    ca_key: rcgen::KeyPair,
    ca_der: CertificateDer<'static>,
}

/// A client certificate and its key, for rustls.
struct ClientCert {
    chain: Vec<CertificateDer<'static>>,
    key: Vec<u8>,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "test CA");
        let ca = ca_params.self_signed(&ca_key).expect("CA");
        let server_key = rcgen::KeyPair::generate().expect("key");
        let server = rcgen::CertificateParams::new(vec!["localhost".into()])
            .expect("params")
            .signed_by(&server_key, &rcgen::Issuer::from_params(&ca_params, &ca_key))
            .expect("server cert");
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("write");
        std::fs::write(dir.path().join("server.pem"), server.pem()).expect("write");
        std::fs::write(dir.path().join("server.key"), server_key.serialize_pem()).expect("write");
        Pki {
            dir,
            ca_der: ca.der().clone(),
            ca_params,
            ca_key,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A client certificate with subject CN `cn`, signed by the CA.
    fn client(&self, cn: &str) -> ClientCert {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let cert = params
            .signed_by(&key, &rcgen::Issuer::from_params(&self.ca_params, &self.ca_key))
            .expect("client cert");
        ClientCert {
            chain: vec![cert.der().clone()],
            key: key.serialize_der(),
        }
    }

    /// The `[[listeners]]` keys of a TLS listener with this PKI's server certificate.
    fn listener_keys(&self) -> String {
        format!(
            "cert_file = {:?}\nkey_file = {:?}\nca_file = {:?}\n",
            self.path("server.pem"),
            self.path("server.key"),
            self.path("ca.pem")
        )
    }

    fn client_config(&self, cert: Option<&ClientCert>) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_der.clone()).expect("CA root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots);
        let config = match cert {
            Some(cert) => builder
                .with_client_auth_cert(
                    cert.chain.clone(),
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key.clone())),
                )
                .expect("client cert"),
            None => builder.with_no_client_auth(),
        };
        Arc::new(config)
    }
}

fn tcp(broker: &BrokerProcess) -> TcpStream {
    let stream = TcpStream::connect(broker.addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// A TLS connection whose handshake has completed (or failed: the error is returned).
fn tls(broker: &BrokerProcess, config: Arc<ClientConfig>) -> io::Result<TlsStream> {
    let name = ServerName::try_from("localhost").expect("name");
    let conn = ClientConnection::new(config, name).expect("client connection");
    let mut stream = StreamOwned::new(conn, tcp(broker));
    // TLS 1.3 reports a refused client certificate only on the first read after the handshake.
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

// ---------------------------------------------------------------- raw MQTT over any transport

/// Bytes in and out, over a byte stream or WebSocket messages.
trait Wire {
    fn send(&mut self, data: &[u8]) -> io::Result<()>;
    /// The next bytes; empty at the end of the stream.
    fn recv(&mut self) -> io::Result<Vec<u8>>;
}

struct Stream<S>(S);

impl<S: Read + Write> Wire for Stream<S> {
    fn send(&mut self, data: &[u8]) -> io::Result<()> {
        self.0.write_all(data)?;
        self.0.flush()
    }
    fn recv(&mut self) -> io::Result<Vec<u8>> {
        let mut buf = vec![0; 16 * 1024];
        let n = self.0.read(&mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }
}

struct Ws<S>(WebSocket<S>);

impl<S: Read + Write> Wire for Ws<S> {
    fn send(&mut self, data: &[u8]) -> io::Result<()> {
        self.0.send(Message::binary(data.to_vec())).map_err(io::Error::other)
    }
    fn recv(&mut self) -> io::Result<Vec<u8>> {
        loop {
            match self.0.read() {
                Ok(Message::Binary(data)) => return Ok(data.to_vec()),
                Ok(Message::Close(_)) => return Ok(Vec::new()),
                Ok(_) => {}
                Err(tungstenite::Error::ConnectionClosed) => return Ok(Vec::new()),
                Err(e) => return Err(io::Error::other(e)),
            }
        }
    }
}

struct Mqtt<W> {
    wire: W,
    version: ProtocolVersion,
    decoder: Decoder,
}

impl<W: Wire> Mqtt<W> {
    fn new(wire: W, version: ProtocolVersion) -> Mqtt<W> {
        Mqtt {
            wire,
            version,
            decoder: Decoder::new(Some(version), 16 << 20),
        }
    }

    fn encode(&self, packet: &Packet) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode(packet, self.version, &mut out).expect("encode");
        out.to_vec()
    }

    fn send(&mut self, packet: &Packet) {
        let bytes = self.encode(packet);
        self.wire.send(&bytes).expect("send");
    }

    /// The next packet, or `None` when the broker closed the connection.
    fn recv(&mut self) -> Option<Packet> {
        loop {
            if let Some(packet) = self.decoder.next_packet().expect("valid packet from broker") {
                return Some(packet);
            }
            let data = self.wire.recv().expect("read before timeout");
            if data.is_empty() {
                return None;
            }
            self.decoder.feed(&data);
        }
    }

    fn connect(&mut self, client_id: &str, username: Option<&str>, password: Option<&[u8]>) -> ReasonCode {
        let packet = connect_packet(self.version, client_id, username, password);
        self.send(&packet);
        match self.recv() {
            Some(Packet::ConnAck(ack)) => ack.reason,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    fn subscribe(&mut self, filter: &str) -> ReasonCode {
        self.send(&Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties: Default::default(),
            filters: vec![(
                filter.to_string(),
                SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    ..Default::default()
                },
            )],
        }));
        match self.recv() {
            Some(Packet::SubAck(ack)) => ack.reasons[0],
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    fn publish(&mut self, topic: &str, payload: impl Into<Bytes>) {
        self.send(&Packet::Publish(Publish {
            qos: QoS::AtLeastOnce,
            topic: topic.to_string(),
            packet_id: 7,
            payload: payload.into(),
            ..Default::default()
        }));
        match self.recv() {
            Some(Packet::PubAck(ack)) => assert_eq!(ack.packet_id, 7),
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }

    /// Receive one QoS 1 PUBLISH and acknowledge it.
    fn expect_publish(&mut self) -> (String, Bytes) {
        match self.recv() {
            Some(Packet::Publish(p)) => {
                self.send(&Packet::PubAck(PubResponse::new(p.packet_id, ReasonCode::SUCCESS)));
                (p.topic, p.payload)
            }
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
}

fn connect_packet(version: ProtocolVersion, id: &str, username: Option<&str>, password: Option<&[u8]>) -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol: version,
        clean_start: true,
        keep_alive: 60,
        properties: Default::default(),
        client_id: id.to_string(),
        will: None,
        username: username.map(str::to_string),
        password: password.map(Bytes::copy_from_slice),
    }))
}

/// Subscribe with `sub`, publish with `publ`, and check the message arrives.
fn round_trip(sub: &mut Mqtt<impl Wire>, publ: &mut Mqtt<impl Wire>, topic: &str) {
    assert_eq!(sub.subscribe(topic), ReasonCode::GRANTED_QOS_1);
    publ.publish(topic, &b"over the wire"[..]);
    let (got_topic, payload) = sub.expect_publish();
    assert_eq!(got_topic, topic);
    assert_eq!(&payload[..], b"over the wire");
}

/// Wait until the broker closes `stream` (EOF or reset).
fn closed_within(stream: &mut TcpStream, limit: Duration) {
    stream.set_read_timeout(Some(limit)).expect("timeout");
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                panic!("still open after {limit:?}")
            }
            Err(_) => return,
        }
    }
}

/// The default `sync = "always"`: acknowledgements wait for the group commit, and every transport's output
/// (handshake answers, pongs and frames included) must still get out through the one flush path.
fn start(config: &str) -> BrokerProcess {
    BrokerProcess::start_with_config(config, &[])
}

// ---------------------------------------------------------------- TLS

#[test]
fn tls_connect_and_publish_subscribe_round_trip() {
    let pki = Pki::new();
    let broker = start(&format!(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\nprotocol = \"mqtts\"\ncert_file = {:?}\nkey_file = {:?}\n",
        pki.path("server.pem"),
        pki.path("server.key")
    ));
    assert!(
        broker.wait_for_log("(mqtts, anonymous allowed)", WAIT),
        "{}",
        broker.log_text()
    );
    let config = pki.client_config(None);
    let mut sub = Mqtt::new(
        Stream(tls(&broker, config.clone()).expect("handshake")),
        ProtocolVersion::V5,
    );
    let mut publ = Mqtt::new(
        Stream(tls(&broker, config).expect("handshake")),
        ProtocolVersion::V3_1_1,
    );
    assert_eq!(sub.connect("tls-sub", None, None), ReasonCode::SUCCESS);
    assert_eq!(publ.connect("tls-pub", None, None), ReasonCode::SUCCESS);
    round_trip(&mut sub, &mut publ, "tls/topic");
}

#[test]
fn plain_mqtt_on_a_tls_port_is_refused() {
    let pki = Pki::new();
    let broker = start(&format!(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\nprotocol = \"mqtts\"\ncert_file = {:?}\nkey_file = {:?}\n",
        pki.path("server.pem"),
        pki.path("server.key")
    ));
    let mut plain = Mqtt::new(Stream(tcp(&broker)), ProtocolVersion::V3_1_1);
    let packet = connect_packet(ProtocolVersion::V3_1_1, "plain", None, None);
    plain.send(&packet);
    // The broker answers with a TLS alert, never a CONNACK, and closes.
    let mut got = Vec::new();
    loop {
        match plain.wire.recv() {
            Ok(data) if data.is_empty() => break,
            Ok(data) => got.extend(data),
            Err(_) => break,
        }
    }
    assert!(got.first() != Some(&0x20), "CONNACK over a TLS port: {got:?}");
}

#[test]
fn mutual_tls_refuses_a_client_without_a_certificate_and_admits_one_with() {
    let pki = Pki::new();
    let broker = start(&format!(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\nprotocol = \"mqtts\"\n{}require_client_cert = true\n",
        pki.listener_keys()
    ));
    assert!(
        broker.wait_for_log("client certificate required", WAIT),
        "{}",
        broker.log_text()
    );
    // Without a certificate: the handshake, or the first exchange after it, fails; no CONNACK ever comes.
    if let Ok(stream) = tls(&broker, pki.client_config(None)) {
        let mut client = Mqtt::new(Stream(stream), ProtocolVersion::V5);
        let packet = client.encode(&connect_packet(ProtocolVersion::V5, "anon", None, None));
        let _ = client.wire.send(&packet);
        match client.wire.recv() {
            Ok(data) => assert!(data.is_empty(), "got {data:?} without a client certificate"),
            Err(e) => assert!(e.to_string().to_lowercase().contains("certificate"), "{e}"),
        }
    }
    let cert = pki.client("device-1");
    let stream = tls(&broker, pki.client_config(Some(&cert))).expect("handshake with certificate");
    let mut client = Mqtt::new(Stream(stream), ProtocolVersion::V5);
    assert_eq!(client.connect("device-1", None, None), ReasonCode::SUCCESS);
}

#[test]
fn a_certificate_from_another_ca_is_refused() {
    let pki = Pki::new();
    let other = Pki::new();
    let broker = start(&format!(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\nprotocol = \"mqtts\"\n{}require_client_cert = true\n",
        pki.listener_keys()
    ));
    let stranger = other.client("intruder");
    // Trusts the right server CA, but presents a certificate the broker's CA did not sign.
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca_der.clone()).expect("root");
    let config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(
            stranger.chain.clone(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(stranger.key.clone())),
        )
        .expect("client cert");
    if let Ok(stream) = tls(&broker, Arc::new(config)) {
        let mut client = Mqtt::new(Stream(stream), ProtocolVersion::V5);
        let packet = client.encode(&connect_packet(ProtocolVersion::V5, "x", None, None));
        let _ = client.wire.send(&packet);
        assert!(
            client.wire.recv().map_or(true, |d| d.is_empty()),
            "admitted a foreign certificate"
        );
    }
}

#[test]
fn the_certificate_common_name_is_the_user_name_for_authentication_and_acls() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let passwd = dir.path().join("users.pw");
    let out = std::process::Command::new(BIN)
        .arg("passwd")
        .arg(&passwd)
        .args(["bob", "--password", "bpw"])
        .output()
        .expect("passwd");
    assert!(out.status.success());
    let acl = dir.path().join("acl");
    std::fs::write(
        &acl,
        "user alice\ntopic readwrite home/alice/#\nuser bob\ntopic readwrite home/bob/#\n",
    )
    .expect("acl");
    let broker = start(&format!(
        "password_file = {passwd:?}\nacl_file = {acl:?}\n\n[[listeners]]\naddress = \"127.0.0.1:0\"\n\
         protocol = \"mqtts\"\nallow_anonymous = false\n{}use_identity_as_username = true\n",
        pki.listener_keys()
    ));
    assert!(
        broker.wait_for_log("client certificate name as user name", WAIT),
        "{}",
        broker.log_text()
    );
    let alice = pki.client("alice");
    let stream = tls(&broker, pki.client_config(Some(&alice))).expect("handshake");
    let mut client = Mqtt::new(Stream(stream), ProtocolVersion::V5);
    // The CONNECT claims to be bob with a wrong password: the certificate decides, so this is alice, admitted
    // without a password-file entry.
    assert_eq!(client.connect("c1", Some("bob"), Some(b"wrong")), ReasonCode::SUCCESS);
    assert_eq!(client.subscribe("home/alice/#"), ReasonCode::GRANTED_QOS_1);
    assert_eq!(client.subscribe("home/bob/#"), ReasonCode::NOT_AUTHORIZED);
    // No user name at all in the CONNECT: still alice (anonymous access is off on this listener).
    let stream = tls(&broker, pki.client_config(Some(&alice))).expect("handshake");
    let mut client = Mqtt::new(Stream(stream), ProtocolVersion::V3_1_1);
    assert_eq!(client.connect("c2", None, None), ReasonCode::SUCCESS);
}

#[test]
fn an_idle_or_unfinished_tls_handshake_is_closed_after_the_connect_timeout() {
    let pki = Pki::new();
    let broker = BrokerProcess::start_with_config(
        &format!(
            "[[listeners]]\naddress = \"127.0.0.1:0\"\nprotocol = \"mqtts\"\n{}",
            pki.listener_keys()
        ),
        &["--sync", "none", "--connect-timeout-ms", "500"],
    );
    let opened = Instant::now();
    let mut silent = tcp(&broker);
    // Half a TLS record header: the handshake starts and never finishes.
    let mut partial = tcp(&broker);
    partial.write_all(&[0x16, 0x03, 0x01]).expect("write");
    for stream in [&mut silent, &mut partial] {
        closed_within(stream, Duration::from_secs(5));
        let took = opened.elapsed();
        assert!(took >= Duration::from_millis(300), "closed too early: {took:?}");
    }
}

// ---------------------------------------------------------------- WebSockets

fn ws_request(
    broker: &BrokerProcess,
    scheme: &str,
    path: &str,
    protocol: Option<&str>,
) -> tungstenite::handshake::client::Request {
    let mut request = format!("{scheme}://localhost:{}{path}", broker.port())
        .into_client_request()
        .expect("request");
    if let Some(protocol) = protocol {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", protocol.parse().expect("header value"));
    }
    request
}

type WsResponse = tungstenite::handshake::client::Response;

/// Upgrade `stream`; a refusal is returned as its HTTP status (any other failure panics).
fn ws_connect<S: Read + Write>(
    stream: S,
    request: tungstenite::handshake::client::Request,
) -> Result<(WebSocket<S>, WsResponse), u16> {
    match tungstenite::client::client(request, stream) {
        Ok(pair) => Ok(pair),
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
            Err(response.status().as_u16())
        }
        Err(tungstenite::HandshakeError::Failure(e)) => panic!("upgrade failed: {e}"),
        Err(tungstenite::HandshakeError::Interrupted(_)) => panic!("blocking stream interrupted"),
    }
}

fn ws_client(broker: &BrokerProcess) -> (Mqtt<Ws<TcpStream>>, WsResponse) {
    let (ws, response) = ws_connect(tcp(broker), ws_request(broker, "ws", "/mqtt", Some("mqtt"))).expect("upgrade");
    (Mqtt::new(Ws(ws), ProtocolVersion::V5), response)
}

fn ws_broker() -> BrokerProcess {
    start("[[listeners]]\naddress = \"127.0.0.1:0\"\nprotocol = \"ws\"\n")
}

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

// ---------------------------------------------------------------- configuration

fn run_with_config(text: &str) -> std::process::Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("broker.toml");
    std::fs::write(&path, text).expect("write");
    std::process::Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .arg("--check-config")
        .output()
        .expect("run")
}

#[test]
fn a_bad_certificate_or_key_file_exits_2_naming_the_file() {
    let pki = Pki::new();
    std::fs::write(pki.path("junk.pem"), "-----BEGIN CERTIFICATE-----\n!!!\n").expect("write");
    let missing = pki.path("nowhere.key");
    let cases: [(PathBuf, PathBuf, &Path); 2] = [
        (pki.path("junk.pem"), pki.path("server.key"), &pki.path("junk.pem")),
        (pki.path("server.pem"), missing.clone(), &missing),
    ];
    for (cert, key, named) in cases {
        let out = run_with_config(&format!(
            "[[listeners]]\naddress = \"127.0.0.1:0\"\nprotocol = \"mqtts\"\ncert_file = {cert:?}\nkey_file = {key:?}\n"
        ));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(&named.display().to_string()), "{stderr}");
    }
    let good = run_with_config(&format!(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\nprotocol = \"wss\"\n{}",
        pki.listener_keys()
    ));
    assert!(good.status.success(), "{}", String::from_utf8_lossy(&good.stderr));
}

// ---------------------------------------------------------------- measurement (not a correctness test)

impl Wire for Box<dyn Wire + Send> {
    fn send(&mut self, data: &[u8]) -> io::Result<()> {
        (**self).send(data)
    }
    fn recv(&mut self) -> io::Result<Vec<u8>> {
        (**self).recv()
    }
}

type AnyClient = Mqtt<Box<dyn Wire + Send>>;

/// Connects per second (TCP + TLS + upgrade + CONNECT/CONNACK, one after another) and QoS 0 throughput (1 KiB
/// payloads, one publisher to one subscriber) for one transport.
fn measure(name: &str, connect: &(dyn Fn() -> AnyClient + Sync)) {
    const CONNECTS: u32 = 1000;
    const MESSAGES: usize = 200_000;
    let start = Instant::now();
    for i in 0..CONNECTS {
        let mut client = connect();
        assert_eq!(client.connect(&format!("m{i}"), None, None), ReasonCode::SUCCESS);
    }
    let connect_rate = f64::from(CONNECTS) / start.elapsed().as_secs_f64();
    let mut sub = connect();
    assert_eq!(sub.connect("m-sub", None, None), ReasonCode::SUCCESS);
    assert_eq!(sub.subscribe("m"), ReasonCode::GRANTED_QOS_1);
    let mut publ = connect();
    assert_eq!(publ.connect("m-pub", None, None), ReasonCode::SUCCESS);
    let one = publ.encode(&Packet::Publish(Publish {
        topic: "m".into(),
        payload: Bytes::from(vec![7u8; 1024]),
        ..Default::default()
    }));
    let batch: Vec<u8> = one.iter().copied().cycle().take(one.len() * 100).collect();
    let start = Instant::now();
    let receiver = std::thread::spawn(move || {
        let mut got = 0;
        while got < MESSAGES {
            match sub.recv() {
                Some(Packet::Publish(_)) => got += 1,
                Some(_) => {}
                None => break,
            }
        }
        got
    });
    for _ in 0..MESSAGES / 100 {
        publ.wire.send(&batch).expect("send");
    }
    let got = receiver.join().expect("receiver");
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{name:>5}: {connect_rate:8.0} connects/s, {:8.0} msgs/s ({:.1} MB/s), {got}/{MESSAGES} delivered",
        got as f64 / secs,
        (got * one.len()) as f64 / secs / 1e6
    );
}

/// `cargo test --release -p mqtt-io --test e2e_transport -- --ignored --nocapture`
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
