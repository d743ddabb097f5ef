"""Eclipse Paho (Python) over the broker's other transports: MQTT over WebSockets (MQTT 5.0 section 6; Paho offers
the subprotocol "mqtt" as browsers' MQTT.js does), secure WebSockets, TLS and mutual TLS with the client
certificate's Common Name as the user name. Certificates are made with the openssl command-line tool."""

import queue
import re
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from conftest import WAIT, broker_binary, io_args


def openssl(*args: str, cwd: Path):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki():
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    tmp = tempfile.TemporaryDirectory()
    d = Path(tmp.name)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=interop CA", cwd=d)
    (d / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, subject in (("server", "/CN=localhost"), ("alice", "/CN=alice")):
        openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=d)
        ext = "server.ext" if name == "server" else "client.ext"
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "2", "-extfile", ext, cwd=d)
    yield d
    tmp.cleanup()


class ConfiguredBroker:
    """The broker with a configuration file; `ports` lists each listener's bound port in order."""

    def __init__(self, config: str, count: int):
        self.dir = tempfile.TemporaryDirectory()
        path = Path(self.dir.name) / "broker.toml"
        path.write_text(config)
        self.proc = subprocess.Popen(
            [broker_binary(), "--config", str(path), "--data-dir", str(Path(self.dir.name) / "data"),
             *io_args()],
            stderr=subprocess.PIPE, text=True)
        self.ports = []
        deadline = time.time() + 20
        while time.time() < deadline and len(self.ports) < count:
            line = self.proc.stderr.readline()
            match = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
            if match:
                self.ports.append(int(match.group(1)))
        assert len(self.ports) == count, "broker did not report its ports"
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.dir.cleanup()


@pytest.fixture
def transports(pki):
    tls = f'cert_file = "{pki / "server.pem"}"\nkey_file = "{pki / "server.key"}"\n'
    mutual = tls + f'ca_file = "{pki / "ca.pem"}"\nuse_identity_as_username = true\n'
    config = (
        'acl_file = "ACL"\n'
        '[[listeners]]\naddress = "127.0.0.1:0"\nprotocol = "ws"\n'
        f'[[listeners]]\naddress = "127.0.0.1:0"\nprotocol = "wss"\nws_path = "/secure"\n{tls}'
        f'[[listeners]]\naddress = "127.0.0.1:0"\nprotocol = "mqtts"\n{tls}'
        f'[[listeners]]\naddress = "127.0.0.1:0"\nprotocol = "mqtts"\n{mutual}'
    )
    acl = Path(pki) / "acl"
    acl.write_text("topic readwrite #\nuser alice\ntopic readwrite alice/#\n")
    broker = ConfiguredBroker(config.replace("ACL", str(acl)), 4)
    yield dict(zip(("ws", "wss", "mqtts", "mutual"), broker.ports))
    broker.stop()


def client(client_id: str, port: int, version=mqtt.MQTTv5, transport="tcp", path=None, tls=None):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=version, transport=transport)
    if path:
        c.ws_set_options(path=path)
    if tls:
        c.tls_set(**tls)
    events = {"connack": queue.Queue(), "suback": queue.Queue(), "message": queue.Queue()}
    c.on_connect = lambda cl, u, flags, rc, props: events["connack"].put(rc)
    c.on_subscribe = lambda cl, u, mid, rcs, props: events["suback"].put(rcs)
    c.on_message = lambda cl, u, m: events["message"].put(m)
    c.connect("localhost", port, keepalive=30)
    c.loop_start()
    rc = events["connack"].get(timeout=WAIT)
    assert not rc.is_failure, f"CONNACK refused: {rc}"
    c.events = events
    return c


def round_trip(sub, pub, topic: str):
    rcs = sub.subscribe(topic, 1)
    assert not sub.events["suback"].get(timeout=WAIT)[0].is_failure
    info = pub.publish(topic, b"hello over " + topic.encode(), 1)
    info.wait_for_publish(timeout=WAIT)
    message = sub.events["message"].get(timeout=WAIT)
    assert message.topic == topic and message.payload == b"hello over " + topic.encode()
    for c in (sub, pub):
        c.disconnect()
        c.loop_stop()
    return rcs


def test_paho_over_websockets_v5_and_v311(transports):
    sub = client("ws-sub", transports["ws"], transport="websockets", path="/mqtt")
    pub = client("ws-pub", transports["ws"], version=mqtt.MQTTv311, transport="websockets", path="/mqtt")
    round_trip(sub, pub, "ws/paho")


def test_paho_over_secure_websockets(transports, pki):
    tls = {"ca_certs": str(pki / "ca.pem")}
    sub = client("wss-sub", transports["wss"], transport="websockets", path="/secure", tls=tls)
    pub = client("wss-pub", transports["wss"], transport="websockets", path="/secure", tls=tls)
    round_trip(sub, pub, "wss/paho")


def test_paho_over_tls(transports, pki):
    tls = {"ca_certs": str(pki / "ca.pem")}
    sub = client("tls-sub", transports["mqtts"], tls=tls)
    pub = client("tls-pub", transports["mqtts"], version=mqtt.MQTTv311, tls=tls)
    round_trip(sub, pub, "tls/paho")


def test_paho_mutual_tls_certificate_name_is_the_user_name(transports, pki):
    tls = {"ca_certs": str(pki / "ca.pem"), "certfile": str(pki / "alice.pem"), "keyfile": str(pki / "alice.key")}
    alice = client("alice-1", transports["mutual"], tls=tls)
    alice.subscribe("alice/#", 1)
    assert not alice.events["suback"].get(timeout=WAIT)[0].is_failure
    # Only alice's section applies, so a topic outside it is refused (0x87) though anonymous clients may use it.
    alice.subscribe("other/#", 1)
    assert alice.events["suback"].get(timeout=WAIT)[0].is_failure
    alice.disconnect()
    alice.loop_stop()
    # Without a certificate the TLS handshake fails (TLS 1.2) or the broker's alert follows it (TLS 1.3): no CONNACK.
    with pytest.raises((ssl.SSLError, ConnectionError, OSError, queue.Empty)):
        client("nobody", transports["mutual"], tls={"ca_certs": str(pki / "ca.pem")})
