//! Bridges against a real Mosquitto (`/usr/sbin/mosquitto`, started by each test on a free port) as the remote:
//! messages both ways at QoS 0/1/2 with prefixes, MQTT 5 and 3.1.1 bridges, a Mosquitto restart in the middle
//! of a QoS 1 stream, and no loop with direction `both`. Independent clients: rumqttc (MQTT 3.1.1).

mod common;
mod wire;

use common::ports::free_addr;
use common::{pump4, wait_for, BrokerProcess, Events4 as Events};
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MOSQUITTO: &str = "/usr/sbin/mosquitto";
const WAIT: Duration = Duration::from_secs(15);

/// A Mosquitto process with persistence in its own directory, killed when dropped.
struct Mosquitto {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Mosquitto {
    fn start() -> Mosquitto {
        let port = free_addr().port();
        let dir = tempfile::tempdir().expect("temp dir");
        Mosquitto::spawn(port, dir, "")
    }

    /// `listener` lines are added to the listener's section (TLS files, say).
    fn spawn(port: u16, dir: tempfile::TempDir, listener: &str) -> Mosquitto {
        let conf = dir.path().join("mosquitto.conf");
        let text = format!(
            "listener {port} 127.0.0.1\n{listener}allow_anonymous true\npersistence true\npersistence_location {}/\n\
             max_queued_messages 10000\nlog_dest stderr\nuser {}\n",
            dir.path().display(),
            // As root Mosquitto would switch to the user "mosquitto", who cannot write the test's directory.
            std::env::var("USER").unwrap_or_else(|_| "root".into())
        );
        std::fs::write(&conf, text).expect("write mosquitto.conf");
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mosquitto");
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Mosquitto { child, port, dir }
    }

    /// SIGTERM (Mosquitto saves its persistence file), then start again on the same port and directory.
    fn restart(mut self) -> Mosquitto {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits");
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let _ = self.child.wait();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
        Mosquitto::spawn(self.port, dir, "")
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Our broker with one bridge to `remote`; `topics` are `[[bridges.topics]]` tables.
fn bridged_broker(remote: &Mosquitto, version: &str, topics: &str) -> BrokerProcess {
    bridged_broker_with(remote, version, "", topics)
}

/// The same with more `[[bridges]]` keys (`extra`, TLS say).
fn bridged_broker_with(remote: &Mosquitto, version: &str, extra: &str, topics: &str) -> BrokerProcess {
    let config = format!(
        r#"
[[listeners]]
address = "127.0.0.1:0"

[[bridges]]
name = "cloud"
address = "127.0.0.1:{port}"
client_id = "site1-{version}"
protocol_version = "{version}"
keep_alive = 5
reconnect_delay_min_ms = 100
reconnect_delay_max_ms = 500
{extra}
{topics}
"#,
        port = remote.port
    );
    let broker = BrokerProcess::start_with_config(&config, &[]);
    assert!(
        broker.wait_for_log("bridge cloud: connected to the Remote broker", WAIT),
        "{}",
        broker.log_text()
    );
    broker
}

fn client(port: u16, id: &str, clean: bool) -> (Client, Events) {
    let mut opts = MqttOptions::new(id, "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_clean_session(clean);
    opts.set_inflight(50);
    let (client, connection) = Client::new(opts, 500);
    let events = pump4(connection);
    let connected = wait_for(&events, WAIT, |e| match e {
        Ok(Event::Incoming(Packet::ConnAck(_))) => Some(()),
        _ => None,
    });
    assert!(connected.is_some(), "{id} connects to port {port}");
    (client, events)
}

fn subscribe(port: u16, id: &str, clean: bool, filter: &str) -> (Client, Events) {
    let (c, events) = client(port, id, clean);
    c.subscribe(filter, QoS::ExactlyOnce).expect("subscribe");
    let acked = wait_for(&events, WAIT, |e| match e {
        Ok(Event::Incoming(Packet::SubAck(_))) => Some(()),
        _ => None,
    });
    assert!(acked.is_some(), "{id} subscribed to {filter}");
    (c, events)
}

/// (topic, payload, qos) of every PUBLISH until `quiet` passes without one.
fn collect(events: &Events, quiet: Duration) -> Vec<(String, String, QoS)> {
    let mut got = Vec::new();
    while let Some(p) = wait_for(events, quiet, |e| match e {
        Ok(Event::Incoming(Packet::Publish(p))) => Some(p),
        _ => None,
    }) {
        got.push((p.topic, String::from_utf8_lossy(&p.payload).into_owned(), p.qos));
    }
    got
}

const RULES: &str = r#"
[[bridges.topics]]
pattern = "sensors/#"
direction = "out"
qos = 2
remote_prefix = "site1/"

[[bridges.topics]]
pattern = "cmd/#"
direction = "in"
qos = 2
local_prefix = "from-cloud/"
remote_prefix = "site1/"
"#;

fn messages_cross_both_ways(version: &str) {
    assert!(
        Path::new(MOSQUITTO).exists(),
        "{MOSQUITTO} is needed (apt-get install mosquitto)"
    );
    let remote = Mosquitto::start();
    let broker = bridged_broker(&remote, version, RULES);
    let (_far, far_events) = subscribe(remote.port, "far-sub", true, "site1/sensors/#");
    let (_near, near_events) = subscribe(broker.port(), "near-sub", true, "from-cloud/#");
    let (near_pub, _near_pub_events) = client(broker.port(), "near-pub", true);
    let (far_pub, _far_pub_events) = client(remote.port, "far-pub", true);
    for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        near_pub
            .publish("sensors/t", qos, false, format!("out-{i}"))
            .expect("publish");
        far_pub
            .publish("site1/cmd/go", qos, false, format!("in-{i}"))
            .expect("publish");
    }
    let far = collect(&far_events, Duration::from_secs(2));
    let near = collect(&near_events, Duration::from_secs(1));
    let expect = |topic: &str, what: &str| -> Vec<(String, String, QoS)> {
        [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
            .into_iter()
            .enumerate()
            .map(|(i, qos)| (topic.to_string(), format!("{what}-{i}"), qos))
            .collect()
    };
    assert_eq!(far, expect("site1/sensors/t", "out"), "local to remote ({version})");
    assert_eq!(near, expect("from-cloud/cmd/go", "in"), "remote to local ({version})");
}

#[test]
fn messages_cross_both_ways_at_every_qos_with_prefixes_mqttv5() {
    messages_cross_both_ways("mqttv5");
}

#[test]
fn messages_cross_both_ways_at_every_qos_with_prefixes_mqttv311() {
    messages_cross_both_ways("mqttv311");
}

#[test]
fn mosquitto_restarted_mid_qos1_stream_loses_nothing_acknowledged() {
    const N: usize = 300;
    let remote = Mosquitto::start();
    let broker = bridged_broker(&remote, "mqttv5", RULES);
    // The far subscriber has a persistent session, so what reaches Mosquitto while it is away waits for it.
    let (far, far_events) = subscribe(remote.port, "far-sub", false, "site1/#");
    let (publ, pub_events) = client(broker.port(), "near-pub", true);
    std::thread::spawn(move || {
        for i in 0..N {
            if publ
                .publish("sensors/s", QoS::AtLeastOnce, false, format!("m{i}"))
                .is_err()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    // Restart Mosquitto once a third is acknowledged (by our broker: from then on it owns them).
    let mut acked = 0;
    let mut received: BTreeMap<String, usize> = BTreeMap::new();
    let count = |received: &mut BTreeMap<String, usize>, events: &Events, quiet: Duration| {
        for (_, payload, _) in collect(events, quiet) {
            *received.entry(payload).or_default() += 1;
        }
    };
    let deadline = Instant::now() + WAIT;
    while acked < N / 3 && Instant::now() < deadline {
        if let Ok(Ok(Event::Incoming(Packet::PubAck(_)))) = pub_events.recv_timeout(Duration::from_millis(50)) {
            acked += 1;
        }
    }
    count(&mut received, &far_events, Duration::from_millis(10));
    drop(far);
    let remote = remote.restart();
    // Dropping the rumqttc `Client` does not end its connection (the event loop holds a request sender of its
    // own): the first far-sub connection stays up until Mosquitto stops, receiving and acknowledging whatever
    // Mosquitto delivers after the quiet gap `count` stopped at. Mosquitto removes those from the session, so
    // they are counted here, from the old connection's events, which end when the restart closes it.
    for payload in drain(&far_events) {
        *received.entry(payload).or_default() += 1;
    }
    // The bridge reconnects (back-off 100..500 ms) and resends what Mosquitto had not acknowledged.
    let (_far, far_events) = client(remote.port, "far-sub", false);
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked < N && Instant::now() < deadline {
        if let Ok(Ok(Event::Incoming(Packet::PubAck(_)))) = pub_events.recv_timeout(Duration::from_millis(50)) {
            acked += 1;
        }
    }
    assert_eq!(acked, N, "our broker acknowledged every message");
    count(&mut received, &far_events, Duration::from_secs(3));
    let missing: Vec<usize> = (0..N).filter(|i| !received.contains_key(&format!("m{i}"))).collect();
    assert!(
        missing.is_empty(),
        "acknowledged messages lost across the bridge: {missing:?}\n{}",
        broker.log_text()
    );
    assert!(
        broker.wait_for_log("bridge cloud: Remote connection lost", Duration::from_secs(1)),
        "the restart was seen"
    );
}

/// The payload of every PUBLISH until the connection behind `events` has ended (its pump thread stops at the
/// first error and drops the sender).
fn drain(events: &Events) -> Vec<String> {
    let mut got = Vec::new();
    loop {
        match events.recv_timeout(WAIT) {
            Ok(Ok(Event::Incoming(Packet::Publish(p)))) => got.push(String::from_utf8_lossy(&p.payload).into_owned()),
            Ok(_) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return got,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("the old connection did not end"),
        }
    }
}

fn no_loop_with_both(version: &str) {
    let remote = Mosquitto::start();
    let rules = "[[bridges.topics]]\npattern = \"chat/#\"\ndirection = \"both\"\nqos = 1\n";
    let broker = bridged_broker(&remote, version, rules);
    let (_far, far_events) = subscribe(remote.port, "far-sub", true, "chat/#");
    let (_near, near_events) = subscribe(broker.port(), "near-sub", true, "chat/#");
    let (near_pub, _e1) = client(broker.port(), "near-pub", true);
    let (far_pub, _e2) = client(remote.port, "far-pub", true);
    near_pub
        .publish("chat/a", QoS::AtLeastOnce, false, "from-near")
        .expect("publish");
    far_pub
        .publish("chat/b", QoS::AtLeastOnce, false, "from-far")
        .expect("publish");
    let mut far: Vec<String> = collect(&far_events, Duration::from_secs(3))
        .into_iter()
        .map(|m| m.1)
        .collect();
    let mut near: Vec<String> = collect(&near_events, Duration::from_secs(1))
        .into_iter()
        .map(|m| m.1)
        .collect();
    far.sort();
    near.sort();
    assert_eq!(
        far,
        ["from-far", "from-near"],
        "each message once at the remote ({version})"
    );
    assert_eq!(near, ["from-far", "from-near"], "each message once locally ({version})");
}

#[test]
fn direction_both_does_not_loop_mqttv5() {
    no_loop_with_both("mqttv5");
}

#[test]
fn direction_both_does_not_loop_mqttv311_with_the_bridge_bit() {
    no_loop_with_both("mqttv311");
}

#[test]
fn a_tls_bridge_verifies_mosquittos_certificate_and_carries_messages() {
    let pki = wire::Pki::new();
    let free = || free_addr().port();
    let (tls_port, plain_port) = (free(), free());
    // The bridge takes the TLS listener; the test's clients the plain one.
    let listener = format!(
        "certfile {}\nkeyfile {}\nlistener {plain_port} 127.0.0.1\n",
        pki.path("server.pem").display(),
        pki.path("server.key").display()
    );
    let remote = Mosquitto::spawn(tls_port, tempfile::tempdir().expect("temp dir"), &listener);
    let tls = format!(
        "protocol = \"mqtts\"\nca_file = {:?}\nserver_name = \"localhost\"\n",
        pki.path("ca.pem")
    );
    let broker = bridged_broker_with(&remote, "mqttv5", &tls, RULES);
    let (_far, far_events) = subscribe(plain_port, "far-sub", true, "site1/sensors/#");
    let (_near, near_events) = subscribe(broker.port(), "near-sub", true, "from-cloud/#");
    let (near_pub, _e1) = client(broker.port(), "near-pub", true);
    let (far_pub, _e2) = client(plain_port, "far-pub", true);
    near_pub
        .publish("sensors/tls", QoS::ExactlyOnce, false, "out")
        .expect("publish");
    far_pub
        .publish("site1/cmd/tls", QoS::ExactlyOnce, false, "in")
        .expect("publish");
    let far = collect(&far_events, Duration::from_secs(2));
    let near = collect(&near_events, Duration::from_secs(1));
    assert_eq!(
        far,
        [("site1/sensors/tls".to_string(), "out".to_string(), QoS::ExactlyOnce)]
    );
    assert_eq!(
        near,
        [("from-cloud/cmd/tls".to_string(), "in".to_string(), QoS::ExactlyOnce)]
    );
}

#[test]
fn a_tls_bridge_refuses_a_certificate_from_another_ca() {
    let (pki, other) = (wire::Pki::new(), wire::Pki::new());
    let port = free_addr().port();
    let listener = format!(
        "certfile {}\nkeyfile {}\n",
        pki.path("server.pem").display(),
        pki.path("server.key").display()
    );
    let remote = Mosquitto::spawn(port, tempfile::tempdir().expect("temp dir"), &listener);
    let config = format!(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\n\n[[bridges]]\nname = \"cloud\"\naddress = \"127.0.0.1:{}\"\n\
         protocol = \"mqtts\"\nca_file = {:?}\nserver_name = \"localhost\"\nreconnect_delay_min_ms = 100\n{RULES}",
        remote.port,
        other.path("ca.pem")
    );
    let broker = BrokerProcess::start_with_config(&config, &[]);
    assert!(
        broker.wait_for_log("bridge cloud: Remote connection lost", WAIT),
        "{}",
        broker.log_text()
    );
    assert!(!broker.log_text().contains("connected to the Remote broker"));
}
