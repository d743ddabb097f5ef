//! End-to-end over TLS: the real binary with `mqtts` listeners, server-only and mutual TLS, the client
//! certificate's Common Name as the user name, handshakes that never finish, bad certificate files.

mod common;
mod wire;

use common::{BrokerProcess, BIN};
use mqtt_core::packet::{ProtocolVersion, ReasonCode};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, RootCertStore};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wire::*;

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

/// SIGHUP reloads the certificate and key (a renewed certificate needs no restart): new handshakes present the new
/// certificate, a connection made before keeps working, and a file that cannot be used keeps the previous ones.
#[test]
fn sighup_reloads_the_certificate_for_new_connections_and_keeps_open_ones() {
    let old = Pki::new();
    let broker = start(&format!(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\nprotocol = \"mqtts\"\ncert_file = {:?}\nkey_file = {:?}\n",
        old.path("server.pem"),
        old.path("server.key")
    ));
    assert!(broker.wait_for_log("(mqtts", WAIT), "{}", broker.log_text());
    let mut before = Mqtt::new(
        Stream(tls(&broker, old.client_config(None)).expect("handshake with the old certificate")),
        ProtocolVersion::V5,
    );
    assert_eq!(before.connect("hup-before", None, None), ReasonCode::SUCCESS);

    // The renewal: another CA's certificate and key written over the configured files.
    let renewed = Pki::new();
    for name in ["server.pem", "server.key"] {
        std::fs::copy(renewed.path(name), old.path(name)).expect("replace file");
    }
    broker.signal(libc::SIGHUP);
    assert!(
        broker.wait_for_log("TLS certificates and keys reloaded", WAIT),
        "{}",
        broker.log_text()
    );
    assert!(
        tls(&broker, old.client_config(None)).is_err(),
        "a client trusting only the old CA no longer completes a handshake"
    );
    let mut after = Mqtt::new(
        Stream(tls(&broker, renewed.client_config(None)).expect("handshake with the new certificate")),
        ProtocolVersion::V3_1_1,
    );
    assert_eq!(after.connect("hup-after", None, None), ReasonCode::SUCCESS);
    round_trip(&mut before, &mut after, "hup/topic");

    // A key that is not PEM: the reload is refused and the renewed certificate stays in use.
    std::fs::write(old.path("server.key"), "not a key").expect("write");
    broker.signal(libc::SIGHUP);
    assert!(
        broker.wait_for_log("keeping the previous TLS certificates", WAIT),
        "{}",
        broker.log_text()
    );
    tls(&broker, renewed.client_config(None)).expect("handshake after a failed reload");
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
    // A verified certificate without a Common Name names no one: refused whatever the CONNECT claims, and closed
    // [MQTT-3.1.4-2]; 3.1.1 gets return code 5, which reads back as 0x87.
    let nameless = pki.client_without_common_name();
    for version in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
        let stream = tls(&broker, pki.client_config(Some(&nameless))).expect("handshake");
        let mut client = Mqtt::new(Stream(stream), version);
        assert_eq!(
            client.connect("c3", Some("bob"), Some(b"bpw")),
            ReasonCode::NOT_AUTHORIZED
        );
    }
    assert!(
        broker.wait_for_log("client certificate has no subject Common Name", WAIT),
        "{}",
        broker.log_text()
    );
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
