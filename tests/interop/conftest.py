"""Fixtures for the interoperability suite: the real mqtt-broker binary on an ephemeral port, and a synchronous
wrapper around the Eclipse Paho client (paho-mqtt 2.x) for both MQTT 3.1.1 and MQTT 5."""

import os
import queue
import re
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

ROOT = Path(__file__).resolve().parents[2]
WAIT = 5.0


def broker_binary() -> str:
    explicit = os.environ.get("MQTT_BROKER_BIN")
    if explicit:
        return explicit
    # The most recently built one: a stale release binary must not stand in for the code under test.
    built = [ROOT / "target" / profile / "mqtt-broker" for profile in ("release", "debug")]
    built = [candidate for candidate in built if candidate.exists()]
    if built:
        return str(max(built, key=lambda candidate: candidate.stat().st_mtime))
    subprocess.run(["cargo", "build", "--bin", "mqtt-broker"], cwd=ROOT, check=True)
    return str(ROOT / "target" / "debug" / "mqtt-broker")


def io_args() -> list:
    """The I/O driver the suite runs against: MQTT_TEST_IO=uring|epoll (default: the broker's own choice)."""
    io = os.environ.get("MQTT_TEST_IO")
    return ["--io", io] if io else []


class Broker:
    def __init__(self, *extra: str):
        self.data = tempfile.TemporaryDirectory()
        self.proc = subprocess.Popen(
            [broker_binary(), "--listen", "127.0.0.1:0", "--data-dir", self.data.name, "--sys-interval", "1", *io_args(), *extra],
            stderr=subprocess.PIPE,
            text=True,
        )
        self.port = None
        # With --http-listen (port 0 included) the bound HTTP address, from its log line after the listeners'.
        self.http = None
        wants_http = "--http-listen" in extra
        deadline = time.time() + 20
        assert self.proc.stderr is not None
        while time.time() < deadline and (self.port is None or (wants_http and self.http is None)):
            line = self.proc.stderr.readline()
            match = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
            if match and self.port is None:
                self.port = int(match.group(1))
            match = re.search(r"metrics on (http://[^/\s]+)/metrics", line)
            if match:
                self.http = match.group(1)
        assert self.port, "broker did not report its port"
        assert self.http or not wants_http, "broker did not report its HTTP address"
        # Keep draining the log so the broker never blocks on a full pipe.
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.data.cleanup()


@pytest.fixture
def broker():
    b = Broker()
    yield b
    b.stop()


class Client:
    """A paho client with blocking helpers: every callback lands in a queue the test reads with a timeout."""

    def __init__(self, broker: Broker, client_id: str, version: int, clean: bool = True, expiry: int | None = None,
                 will: tuple | None = None, properties: "mqtt.Properties | None" = None, connect: bool = True):
        self.version = version
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=version,
                                  clean_session=clean if version != mqtt.MQTTv5 else None)
        self.messages: "queue.Queue[mqtt.MQTTMessage]" = queue.Queue()
        self.connacks: queue.Queue = queue.Queue()
        self.disconnects: queue.Queue = queue.Queue()
        self.subacks: queue.Queue = queue.Queue()
        self.unsubacks: queue.Queue = queue.Queue()
        self.client.on_message = lambda c, u, m: self.messages.put(m)
        self.client.on_connect = lambda c, u, flags, rc, props: self.connacks.put((flags, rc, props))
        self.client.on_disconnect = lambda c, u, flags, rc, props: self.disconnects.put(rc)
        self.client.on_subscribe = lambda c, u, mid, rcs, props: self.subacks.put(rcs)
        self.client.on_unsubscribe = lambda c, u, mid, rcs, props: self.unsubacks.put(rcs)
        if will:
            topic, payload, qos, retain = will
            self.client.will_set(topic, payload, qos, retain)
        self.broker = broker
        self.clean = clean
        self.expiry = expiry
        self.properties = properties
        if connect:
            self.connect()

    def connect(self):
        props = self.properties
        if self.version == mqtt.MQTTv5 and props is None:
            props = mqtt.Properties(mqtt.PacketTypes.CONNECT)
        if self.version == mqtt.MQTTv5 and self.expiry is not None:
            props.SessionExpiryInterval = self.expiry
        kwargs = {"properties": props} if self.version == mqtt.MQTTv5 else {}
        if self.version == mqtt.MQTTv5:
            kwargs["clean_start"] = self.clean
        self.client.connect("127.0.0.1", self.broker.port, keepalive=30, **kwargs)
        self.client.loop_start()
        flags, rc, props = self.connacks.get(timeout=WAIT)
        assert not rc.is_failure, f"CONNACK refused: {rc}"
        self.session_present = flags.session_present
        self.connack_properties = props
        return flags, rc, props

    def subscribe(self, topic: str, qos: int = 0, **opts):
        if self.version == mqtt.MQTTv5:
            self.client.subscribe(topic, options=mqtt.SubscribeOptions(qos=qos, **opts))
        else:
            self.client.subscribe(topic, qos)
        return self.subacks.get(timeout=WAIT)

    def subscribe_with_id(self, topic: str, qos: int, identifier: int):
        props = mqtt.Properties(mqtt.PacketTypes.SUBSCRIBE)
        props.SubscriptionIdentifier = identifier
        self.client.subscribe(topic, options=mqtt.SubscribeOptions(qos=qos), properties=props)
        return self.subacks.get(timeout=WAIT)

    def publish(self, topic: str, payload, qos: int = 0, retain: bool = False, properties=None):
        info = self.client.publish(topic, payload, qos, retain, properties=properties)
        if qos > 0:
            info.wait_for_publish(timeout=WAIT)
            assert info.is_published(), "publish not acknowledged"
        return info

    def next_message(self, timeout: float = WAIT):
        return self.messages.get(timeout=timeout)

    def no_message(self, timeout: float = 0.7) -> bool:
        try:
            self.messages.get(timeout=timeout)
            return False
        except queue.Empty:
            return True

    def disconnect(self):
        self.client.disconnect()
        self.client.loop_stop()

    def kill(self):
        """Drop the TCP connection without DISCONNECT, as a crashed device would."""
        self.client.loop_stop()
        sock = self.client.socket()
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
            sock.close()


@pytest.fixture
def clients(broker):
    made = []

    def make(client_id: str, version: int, **kwargs) -> Client:
        client = Client(broker, client_id, version, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        try:
            client.client.loop_stop()
            client.client.disconnect()
        except Exception:
            pass
