"""The end-to-end workload scripts/valgrind.sh drives the broker through (under valgrind memcheck): connect,
subscribe, QoS 0/1/2 both ways, retained messages, a will, a persistent session's queue, a session takeover, TLS,
WebSockets and secure WebSockets. Every step asserts what it received, so a broker that misbehaves under valgrind
fails here rather than passing silently. Usage: valgrind_workload.py MQTT_PORT MQTTS_PORT WS_PORT WSS_PORT CA_PEM BROKER_PID (it ends with SIGTERM)."""

import os
import queue
import signal
import socket
import sys
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes

# Under valgrind the broker runs tens of times slower than natively.
WAIT = 60.0


def client(client_id, port, version=mqtt.MQTTv5, transport="tcp", path=None, ca=None, clean=True, expiry=None):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=version, transport=transport,
                    clean_session=None if version == mqtt.MQTTv5 else clean)
    # The TCP connect and the TLS handshake, which under memcheck on a busy machine take longer than Paho's 5 s.
    c.connect_timeout = WAIT
    if path:
        c.ws_set_options(path=path)
    if ca:
        c.tls_set(ca_certs=ca)
    c.events = {"connack": queue.Queue(), "suback": queue.Queue(), "message": queue.Queue(),
                "disconnect": queue.Queue()}
    c.on_connect = lambda cl, u, flags, rc, props: c.events["connack"].put((flags, rc))
    c.on_subscribe = lambda cl, u, mid, rcs, props: c.events["suback"].put(rcs)
    c.on_message = lambda cl, u, m: c.events["message"].put(m)
    c.on_disconnect = lambda cl, u, flags, rc, props: c.events["disconnect"].put(rc)
    properties = None
    if version == mqtt.MQTTv5 and expiry is not None:
        properties = mqtt.Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = expiry
    if version == mqtt.MQTTv5:
        c.connect("localhost", port, keepalive=60, clean_start=clean, properties=properties)
    else:
        c.connect("localhost", port, keepalive=60)
    c.loop_start()
    flags, rc = c.events["connack"].get(timeout=WAIT)
    assert not rc.is_failure, f"{client_id}: CONNACK refused: {rc}"
    c.session_present = flags.session_present
    return c


def subscribe(c, topic, qos):
    c.subscribe(topic, qos)
    rcs = c.events["suback"].get(timeout=WAIT)
    assert not rcs[0].is_failure, f"SUBACK refused: {rcs}"


def expect(c, topic, payload, retained=None):
    m = c.events["message"].get(timeout=WAIT)
    assert (m.topic, m.payload) == (topic, payload), f"got {m.topic} {m.payload!r}, wanted {topic} {payload!r}"
    if retained is not None:
        assert m.retain == retained, f"{topic}: retain flag {m.retain}"
    return m


def close(*clients):
    for c in clients:
        c.disconnect()
        c.loop_stop()


def step(name):
    print(f"workload: {name}", flush=True)


def raw_connect_with_will(port):
    """A 3.1.1 CONNECT with a will on w/will, then the socket is dropped without DISCONNECT."""
    def string(s):
        b = s.encode()
        return len(b).to_bytes(2, "big") + b
    flags = 0x02 | 0x04 | (1 << 3)  # clean session, will flag, will QoS 1
    body = string("MQTT") + bytes([4, flags]) + (60).to_bytes(2, "big") + string("will-client")
    body += string("w/will") + string("gone")
    s = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    s.sendall(bytes([0x10, len(body)]) + body)
    assert s.recv(4)[:2] == b"\x20\x02", "CONNACK"
    s.close()


def main():
    mqtt_port, mqtts_port, ws_port, wss_port = (int(p) for p in sys.argv[1:5])
    ca = sys.argv[5]
    broker_pid = int(sys.argv[6])

    step("connect, subscribe, QoS 0/1/2 (MQTT 5 subscriber, 3.1.1 publisher)")
    sub = client("sub", mqtt_port)
    subscribe(sub, "w/#", 2)
    pub = client("pub", mqtt_port, version=mqtt.MQTTv311)
    for qos in (0, 1, 2):
        pub.publish(f"w/q{qos}", f"qos {qos}".encode(), qos).wait_for_publish(timeout=WAIT)
        expect(sub, f"w/q{qos}", f"qos {qos}".encode())

    step("retained: set, delivered at subscribe, cleared")
    pub.publish("r/x", b"kept", 1, retain=True).wait_for_publish(timeout=WAIT)
    late = client("late", mqtt_port)
    subscribe(late, "r/#", 1)
    expect(late, "r/x", b"kept", retained=True)
    pub.publish("r/x", b"", 1, retain=True).wait_for_publish(timeout=WAIT)
    expect(late, "r/x", b"")
    close(late)

    step("will: published when its connection drops")
    raw_connect_with_will(mqtt_port)
    expect(sub, "w/will", b"gone")

    step("persistent session: queued while offline, delivered on return")
    keeper = client("keeper", mqtt_port, clean=True, expiry=300)
    subscribe(keeper, "p/#", 1)
    close(keeper)
    pub.publish("p/1", b"while away", 1).wait_for_publish(timeout=WAIT)
    keeper = client("keeper", mqtt_port, clean=False, expiry=300)
    assert keeper.session_present, "session kept"
    expect(keeper, "p/1", b"while away")
    close(keeper)

    step("takeover: the first connection gets DISCONNECT 0x8E")
    first = client("twin", mqtt_port)
    second = client("twin", mqtt_port)
    reason = first.events["disconnect"].get(timeout=WAIT)
    assert reason.value == 0x8E, f"takeover reason {reason}"
    first.loop_stop()
    close(second)

    step("TLS, WebSockets, secure WebSockets")
    for name, port, transport, path, tls in (("tls", mqtts_port, "tcp", None, ca), ("ws", ws_port, "websockets",
                                             "/mqtt", None), ("wss", wss_port, "websockets", "/mqtt", ca)):
        s = client(f"{name}-sub", port, transport=transport, path=path, ca=tls)
        subscribe(s, f"{name}/t", 2)
        p = client(f"{name}-pub", port, version=mqtt.MQTTv311, transport=transport, path=path, ca=tls)
        p.publish(f"{name}/t", name.encode() * 100, 2).wait_for_publish(timeout=WAIT)
        expect(s, f"{name}/t", name.encode() * 100)
        close(s, p)

    step("SIGTERM with clients connected: the MQTT 5 one is told 0x8B (server shutting down)")
    os.kill(broker_pid, signal.SIGTERM)
    reason = sub.events["disconnect"].get(timeout=WAIT)
    assert reason.value == 0x8B, f"shutdown reason {reason}"
    sub.loop_stop()
    pub.loop_stop()
    print("workload: done", flush=True)


if __name__ == "__main__":
    main()
