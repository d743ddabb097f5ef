//! TLS clients on the followers of a 3-node cluster of real processes: the follower terminates TLS and relays the
//! MQTT bytes to the leader. mosquitto_sub and mosquitto_pub (an independent client) over TLS on two followers
//! exchange QoS 1 and QoS 2 messages, each once and in order, under the leader's ACL.

mod common;
mod wire;

use common::cluster::{elected, node_config, start_cluster};
use common::BrokerProcess;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use wire::*;

const WAIT: Duration = Duration::from_secs(30);
const N: usize = 20;

/// Waits for `child` up to `WAIT` (killing it then): whether it succeeded, and its stdout and stderr.
fn finish(mut child: std::process::Child) -> (bool, String) {
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.success();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    let _ = std::io::Read::read_to_string(&mut child.stdout.take().expect("piped"), &mut out);
    let _ = std::io::Read::read_to_string(&mut child.stderr.take().expect("piped"), &mut out);
    (status, out)
}

/// `mosquitto_pub` over TLS to `node`, one message per line at `qos`: whether it succeeded, and what it said.
fn mosquitto_pub(node: &BrokerProcess, pki: &Pki, topic: &str, qos: u8, lines: &str) -> (bool, String) {
    let mut child = Command::new("mosquitto_pub")
        .args(["-h", "localhost", "-p", &node.port().to_string(), "-V", "mqttv5", "-d"])
        .args(["--cafile", pki.path("ca.pem").to_str().expect("utf-8")])
        .args([
            "-i",
            &format!("tls-pub-{qos}"),
            "-t",
            topic,
            "-q",
            &qos.to_string(),
            "-l",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mosquitto_pub");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), lines.as_bytes()).expect("write");
    finish(child)
}

#[test]
fn tls_clients_on_followers_are_relayed_to_the_leader() {
    let pki = Pki::new();
    let acl_dir = tempfile::tempdir().expect("temp dir");
    let acl = acl_dir.path().join("acl");
    // Anonymous clients (the lines before the first `user`) may use tls/# only: the leader checks relayed clients.
    std::fs::write(&acl, "topic readwrite tls/#\n").expect("acl");
    let nodes = start_cluster(3, 3, &[], |id, peers| {
        node_config(id, peers, "").replacen(
            "[[listeners]]\naddress = \"127.0.0.1:0\"\n",
            &format!(
                "acl_file = {acl:?}\n\n[[listeners]]\naddress = \"127.0.0.1:0\"\nprotocol = \"mqtts\"\n\
                     cert_file = {:?}\nkey_file = {:?}\n",
                pki.path("server.pem"),
                pki.path("server.key")
            ),
            1,
        )
    })
    .slots();
    let leader = elected(&nodes, WAIT);
    let (a, b) = ((leader + 1) % 3, (leader + 2) % 3);
    let node_a = nodes[a].as_ref().expect("runs");
    let node_b = nodes[b].as_ref().expect("runs");

    // The subscriber on follower a, over TLS, with a persistent session.
    let sub = Command::new("mosquitto_sub")
        .args(["-h", "localhost", "-p", &node_a.port().to_string(), "-V", "mqttv5"])
        .args(["--cafile", pki.path("ca.pem").to_str().expect("utf-8")])
        .args([
            "-i",
            "tls-sub",
            "-t",
            "tls/#",
            "-q",
            "2",
            "-v",
            "-C",
            &(2 * N).to_string(),
        ])
        .args(["-W", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub");
    assert!(node_a.wait_for_log("relayed to node", WAIT), "{}", node_a.log_text());
    // Its SUBSCRIBE is relayed and committed before anything is published: give it the time a busy machine needs.
    let deadline = Instant::now() + WAIT;
    while !node_a.log_text().contains("relayed to node") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(1));

    // Publishers on follower b, over TLS: QoS 1 and QoS 2.
    let lines = |prefix: &str| (0..N).map(|i| format!("{prefix}-{i}\n")).collect::<String>();
    for (topic, qos, prefix) in [("tls/q1", 1, "one"), ("tls/q2", 2, "two")] {
        let (ok, said) = mosquitto_pub(node_b, &pki, topic, qos, &lines(prefix));
        assert!(ok, "mosquitto_pub: {said}\n{}", node_b.log_text());
    }
    let (ok, text) = finish(sub);
    assert!(ok, "mosquitto_sub: {text}\n{}", node_a.log_text());
    for (topic, prefix) in [("tls/q1", "one"), ("tls/q2", "two")] {
        let got: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix(topic).map(str::trim))
            .collect();
        let want: Vec<String> = (0..N).map(|i| format!("{prefix}-{i}")).collect();
        assert_eq!(got, want, "{topic}: every message once, in order");
    }
}
