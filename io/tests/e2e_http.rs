//! The optional HTTP listener of the real binary: `/health` follows the broker's state, `/metrics` is served in the
//! OpenMetrics text format. (CI also scrapes it with Python's `prometheus_client` parser against a known workload:
//! `tests/interop/test_metrics.py`.)

mod common;

use common::http::{get, http_addr, poll};
use common::{pump4, wait_for, BrokerProcess};
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

fn connect(broker: &BrokerProcess, id: &str) -> (Client, common::Events4) {
    let mut opts = MqttOptions::new(id, "127.0.0.1", broker.port());
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_clean_session(false);
    let (client, connection) = Client::new(opts, 20);
    let events = pump4(connection);
    let acked = wait_for(&events, WAIT, |e| {
        matches!(e, Ok(Event::Incoming(Packet::ConnAck(_)))).then_some(())
    });
    assert!(acked.is_some(), "{id} connects");
    (client, events)
}

/// `/health` is 200 while the broker accepts clients and can write its data directory, 503 (saying why) while the
/// disk refuses writes, and 200 again once it takes them.
#[test]
fn health_follows_the_data_directory_being_writable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().to_path_buf();
    let broker = BrokerProcess::start_with_env(
        dir,
        &path,
        &["--http-listen", "127.0.0.1:0"],
        &[("MQTT_BROKER_FAULT_INJECTION", "1")],
    );
    let http = http_addr(&broker);
    assert_eq!(get(http, "/health"), (200, "ok\n".to_string()));

    // A persistent subscriber makes a QoS 1 message durable state, so publishing it needs the disk.
    let (subscriber, sub_events) = connect(&broker, "health-sub");
    subscriber.subscribe("stored/#", QoS::AtLeastOnce).expect("subscribe");
    let subacked = wait_for(&sub_events, WAIT, |e| {
        matches!(e, Ok(Event::Incoming(Packet::SubAck(_)))).then_some(())
    });
    assert!(subacked.is_some());
    let (publisher, _pub_events) = connect(&broker, "health-pub");
    std::fs::write(path.join("fault-disk-full"), b"").expect("fault file");
    publisher
        .publish("stored/1", QoS::AtLeastOnce, false, b"one".to_vec())
        .expect("publish");
    assert!(broker.wait_for_log("the disk is full", WAIT), "{}", broker.log_text());
    let (status, body) = get(http, "/health");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("refuses writes"), "{body}");
    let (_, metrics) = get(http, "/metrics");
    assert!(metrics.contains("\nmqtt_storage_writable 0\n"), "{metrics}");

    std::fs::remove_file(path.join("fault-disk-full")).expect("remove fault file");
    assert!(broker.wait_for_log("writable again", WAIT), "{}", broker.log_text());
    assert_eq!(poll(http, "/health", |(s, _)| *s == 200), (200, "ok\n".to_string()));
    let (_, metrics) = get(http, "/metrics");
    assert!(metrics.contains("\nmqtt_storage_writable 1\n"), "{metrics}");
    // Resuming wrote a snapshot; it is timed.
    assert!(
        metrics.contains("\nmqtt_storage_snapshot_seconds_count 1\n"),
        "{metrics}"
    );
}

/// `/metrics` is OpenMetrics text that ends with `# EOF`, counts the connected clients per listener and protocol,
/// and unknown paths get 404.
#[test]
fn metrics_are_served_and_unknown_paths_are_404() {
    let broker = BrokerProcess::start(&["--http-listen", "127.0.0.1:0"]);
    let http = http_addr(&broker);
    let (_client, _events) = connect(&broker, "metrics-client");
    let (status, body) = get(http, "/metrics");
    assert_eq!(status, 200);
    assert!(body.ends_with("# EOF\n"), "{body}");
    let line = format!(
        "mqtt_connections{{listener=\"{}\",transport=\"mqtt\",protocol=\"3.1.1\"}} 1",
        broker.addr
    );
    assert!(body.contains(&line), "{line} missing in {body}");
    assert!(body.contains("mqtt_clients_connected 1\n"), "{body}");
    assert_eq!(get(http, "/nope").0, 404);
}

/// Off by default: no HTTP listener unless configured.
#[test]
fn no_http_listener_unless_configured() {
    let broker = BrokerProcess::start(&[]);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !broker.log_text().contains("metrics on http://"),
        "{}",
        broker.log_text()
    );
}
