"""/metrics scraped with an independent parser (Python prometheus_client's OpenMetrics parser) after a known
workload: every value below is what that workload must produce, not just the presence of a name."""

import socket
import time
import urllib.error
import urllib.request

import paho.mqtt.client as mqtt
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from conftest import WAIT, Broker, Client


@pytest.fixture
def metered():
    # Port 0: the broker binds it and logs the address (a port picked here and freed could be taken meanwhile).
    b = Broker("--http-listen", "127.0.0.1:0")
    yield b
    b.stop()


def scrape(broker) -> dict:
    """Every sample as {(name, sorted label pairs): value}."""
    with urllib.request.urlopen(broker.http + "/metrics", timeout=WAIT) as response:
        assert response.status == 200
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels):
    return samples[(name, tuple(sorted(labels.items())))]


def refuse_empty_client_id(port: int) -> bytes:
    """A 3.1.1 CONNECT with an empty client id and Clean Session 0: refused with return code 2 [MQTT-3.1.3-8]."""
    connect = bytes([0x10, 12, 0, 4]) + b"MQTT" + bytes([4, 0x00, 0, 60, 0, 0])
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
        s.sendall(connect)
        return s.recv(4)


def test_metrics_count_a_known_workload(metered):
    port = metered.port
    listener = f"127.0.0.1:{port}"
    sub = Client(metered, "m-sub", mqtt.MQTTv5)
    sub.subscribe("m/#", qos=2)
    offline = Client(metered, "m-offline", mqtt.MQTTv311, clean=False)
    offline.subscribe("q/#", qos=1)
    offline.disconnect()
    pub = Client(metered, "m-pub", mqtt.MQTTv311)

    # Delivered: 3 x QoS 0 (10 B), 2 x QoS 1 (20 B), 1 x QoS 2 (30 B).
    for _ in range(3):
        pub.publish("m/x", b"a" * 10, qos=0)
    for _ in range(2):
        pub.publish("m/x", b"b" * 20, qos=1)
    pub.publish("m/x", b"c" * 30, qos=2)
    for _ in range(6):
        sub.next_message()
    # Retained, matching nobody: 2 messages of QoS 1, 5 + 7 bytes.
    pub.publish("r/1", b"x" * 5, qos=1, retain=True)
    pub.publish("r/2", b"y" * 7, qos=1, retain=True)
    # For the offline session: 4 x QoS 1 of 8 bytes are queued, 1 x QoS 0 is dropped (QoS 0 is not queued).
    for _ in range(4):
        pub.publish("q/1", b"z" * 8, qos=1)
    pub.publish("q/1", b"w" * 9, qos=0)
    assert refuse_empty_client_id(port) == bytes([0x20, 2, 0, 2])
    time.sleep(0.3)

    s = scrape(metered)
    assert value(s, "mqtt_messages_received_total", qos="0") == 4
    assert value(s, "mqtt_messages_received_total", qos="1") == 2 + 2 + 4
    assert value(s, "mqtt_messages_received_total", qos="2") == 1
    assert value(s, "mqtt_payload_bytes_received_total", qos="0") == 30 + 9
    assert value(s, "mqtt_payload_bytes_received_total", qos="1") == 40 + 12 + 32
    assert value(s, "mqtt_payload_bytes_received_total", qos="2") == 30
    assert value(s, "mqtt_messages_sent_total", qos="0") == 3
    assert value(s, "mqtt_messages_sent_total", qos="1") == 2
    assert value(s, "mqtt_messages_sent_total", qos="2") == 1
    assert value(s, "mqtt_payload_bytes_sent_total", qos="2") == 30
    assert value(s, "mqtt_messages_dropped_total", cause="offline") == 1
    assert value(s, "mqtt_messages_dropped_total", cause="queue_full") == 0
    assert value(s, "mqtt_retained_messages") == 2
    assert value(s, "mqtt_retained_bytes") == 12
    assert value(s, "mqtt_queued_messages") == 4
    assert value(s, "mqtt_queued_bytes") == 32
    assert value(s, "mqtt_inflight_messages") == 0
    assert value(s, "mqtt_subscriptions") == 2
    assert value(s, "mqtt_sessions") == 3
    assert value(s, "mqtt_clients_connected") == 2
    assert value(s, "mqtt_connections", listener=listener, transport="mqtt", protocol="5.0") == 1
    assert value(s, "mqtt_connections", listener=listener, transport="mqtt", protocol="3.1.1") == 1
    assert value(s, "mqtt_connects_total", listener=listener, transport="mqtt", protocol="3.1.1") == 2
    assert value(s, "mqtt_connects_total", listener=listener, transport="mqtt", protocol="5.0") == 1
    assert value(s, "mqtt_connects_refused_total", code="0x85", reason="Client Identifier not valid") == 1
    assert value(s, "mqtt_bytes_received_total") > 30 + 84 + 30 + 9
    assert value(s, "mqtt_storage_writable") == 1
    # sync = always: every group commit that wrote records ends with one fdatasync.
    commits = value(s, "mqtt_storage_commit_seconds_count")
    assert commits >= 1
    assert value(s, "mqtt_storage_fsyncs_total") == commits
    assert value(s, "mqtt_storage_records_total") > 0

    # Counters only grow, and gauges follow: the subscriber leaves, its connection is no longer counted.
    sub.disconnect()
    time.sleep(0.3)
    s = scrape(metered)
    assert value(s, "mqtt_connections", listener=listener, transport="mqtt", protocol="5.0") == 0
    assert value(s, "mqtt_connects_total", listener=listener, transport="mqtt", protocol="5.0") == 1
    assert value(s, "mqtt_messages_received_total", qos="1") == 8
    pub.disconnect()


def test_health_is_200_and_unknown_paths_404(metered):
    with urllib.request.urlopen(metered.http + "/health", timeout=WAIT) as response:
        assert response.status == 200
        assert response.read() == b"ok\n"
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(metered.http + "/other", timeout=WAIT)
    assert err.value.code == 404
