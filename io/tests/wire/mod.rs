//! Client side of the transport tests: a throwaway PKI made with rcgen, rustls and tungstenite clients, and raw
//! MQTT packets encoded and decoded with the core's own codec, over any of them.

#![allow(dead_code)] // Each test crate uses its own part.

use crate::common::BrokerProcess;
use bytes::{Bytes, BytesMut};
use mqtt_core::codec::{encode, Decoder};
use mqtt_core::packet::{
    Connect, Packet, ProtocolVersion, PubResponse, Publish, QoS, ReasonCode, Subscribe, SubscriptionOptions,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

pub const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- PKI

/// A CA, a server certificate for "localhost" and client certificates, written as PEM files into a temp dir.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca_params: rcgen::CertificateParams,
    pub ca_key: rcgen::KeyPair,
    pub ca_der: CertificateDer<'static>,
}

/// A client certificate and its key, for rustls.
pub struct ClientCert {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: Vec<u8>,
}

impl Pki {
    pub fn new() -> Pki {
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

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A client certificate with subject CN `cn`, signed by the CA.
    pub fn client(&self, cn: &str) -> ClientCert {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        self.sign_client(params)
    }

    /// A client certificate whose subject names an organization and no Common Name, signed by the CA.
    pub fn client_without_common_name(&self) -> ClientCert {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "no name given");
        self.sign_client(params)
    }

    fn sign_client(&self, params: rcgen::CertificateParams) -> ClientCert {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params
            .signed_by(&key, &rcgen::Issuer::from_params(&self.ca_params, &self.ca_key))
            .expect("client cert");
        ClientCert {
            chain: vec![cert.der().clone()],
            key: key.serialize_der(),
        }
    }

    /// The `[[listeners]]` keys of a TLS listener with this PKI's server certificate.
    pub fn listener_keys(&self) -> String {
        format!(
            "cert_file = {:?}\nkey_file = {:?}\nca_file = {:?}\n",
            self.path("server.pem"),
            self.path("server.key"),
            self.path("ca.pem")
        )
    }

    pub fn client_config(&self, cert: Option<&ClientCert>) -> Arc<ClientConfig> {
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

pub fn tcp(broker: &BrokerProcess) -> TcpStream {
    let stream = TcpStream::connect(broker.addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// A TLS connection whose handshake has completed (or failed: the error is returned).
pub fn tls(broker: &BrokerProcess, config: Arc<ClientConfig>) -> io::Result<TlsStream> {
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
pub trait Wire {
    fn send(&mut self, data: &[u8]) -> io::Result<()>;
    /// The next bytes; empty at the end of the stream.
    fn recv(&mut self) -> io::Result<Vec<u8>>;
}

pub struct Stream<S>(pub S);

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

pub struct Ws<S>(pub WebSocket<S>);

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

pub struct Mqtt<W> {
    pub wire: W,
    pub version: ProtocolVersion,
    pub decoder: Decoder,
}

impl<W: Wire> Mqtt<W> {
    pub fn new(wire: W, version: ProtocolVersion) -> Mqtt<W> {
        Mqtt {
            wire,
            version,
            decoder: Decoder::new(Some(version), 16 << 20),
        }
    }

    pub fn encode(&self, packet: &Packet) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode(packet, self.version, &mut out).expect("encode");
        out.to_vec()
    }

    pub fn send(&mut self, packet: &Packet) {
        let bytes = self.encode(packet);
        self.wire.send(&bytes).expect("send");
    }

    /// The next packet, or `None` when the broker closed the connection.
    pub fn recv(&mut self) -> Option<Packet> {
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

    pub fn connect(&mut self, client_id: &str, username: Option<&str>, password: Option<&[u8]>) -> ReasonCode {
        let packet = connect_packet(self.version, client_id, username, password);
        self.send(&packet);
        match self.recv() {
            Some(Packet::ConnAck(ack)) => ack.reason,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    pub fn subscribe(&mut self, filter: &str) -> ReasonCode {
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

    pub fn publish(&mut self, topic: &str, payload: impl Into<Bytes>) {
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
    pub fn expect_publish(&mut self) -> (String, Bytes) {
        match self.recv() {
            Some(Packet::Publish(p)) => {
                self.send(&Packet::PubAck(PubResponse::new(p.packet_id, ReasonCode::SUCCESS)));
                (p.topic, p.payload)
            }
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
}

pub fn connect_packet(version: ProtocolVersion, id: &str, username: Option<&str>, password: Option<&[u8]>) -> Packet {
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
pub fn round_trip(sub: &mut Mqtt<impl Wire>, publ: &mut Mqtt<impl Wire>, topic: &str) {
    assert_eq!(sub.subscribe(topic), ReasonCode::GRANTED_QOS_1);
    publ.publish(topic, &b"over the wire"[..]);
    let (got_topic, payload) = sub.expect_publish();
    assert_eq!(got_topic, topic);
    assert_eq!(&payload[..], b"over the wire");
}

/// Wait until the broker closes `stream` (EOF or reset).
pub fn closed_within(stream: &mut TcpStream, limit: Duration) {
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
pub fn start(config: &str) -> BrokerProcess {
    BrokerProcess::start_with_config(config, &[])
}

// ---------------------------------------------------------------- WebSockets

pub fn ws_request(
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

pub type WsResponse = tungstenite::handshake::client::Response;

/// Upgrade `stream`; a refusal is returned as its HTTP status (any other failure panics).
pub fn ws_connect<S: Read + Write>(
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

pub fn ws_client(broker: &BrokerProcess) -> (Mqtt<Ws<TcpStream>>, WsResponse) {
    let (ws, response) = ws_connect(tcp(broker), ws_request(broker, "ws", "/mqtt", Some("mqtt"))).expect("upgrade");
    (Mqtt::new(Ws(ws), ProtocolVersion::V5), response)
}

pub fn ws_broker() -> BrokerProcess {
    start("[[listeners]]\naddress = \"127.0.0.1:0\"\nprotocol = \"ws\"\n")
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

pub type AnyClient = Mqtt<Box<dyn Wire + Send>>;

/// Connects per second (TCP + TLS + upgrade + CONNECT/CONNACK, one after another) and QoS 0 throughput (1 KiB
/// payloads, one publisher to one subscriber) for one transport.
pub fn measure(name: &str, connect: &(dyn Fn() -> AnyClient + Sync)) {
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
