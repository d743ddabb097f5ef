#!/usr/bin/env python3
"""A Jepsen-style test of a 3-node mqtt-broker cluster: real processes on loopback, independent clients (Eclipse
Paho, MQTT 5), faults injected from outside, and a checker over every subscriber's history.

- One publisher and one persistent subscriber per node. Each subscriber subscribes (QoS 2) to the topics of the
  publishers of the *other* nodes, so every message crosses nodes (and the relay, unless its node leads).
- Publishers publish numbered QoS 1 and QoS 2 messages one at a time, each exactly once on one connection: a message
  whose acknowledgement (PUBACK, PUBCOMP) arrived is "acknowledged"; one whose connection broke first is
  indeterminate (it may or may not arrive) and is never published again. Publishers use clean sessions.
- Subscribers keep one Paho client (its in-flight QoS 2 state survives reconnects) with Clean Start 0 and a long
  Session Expiry, and reconnect to a random node whenever their connection ends, as behind a load balancer.
- Faults, while the clients run: SIGKILL of a random node (the leader half the time) and its restart on its data
  directory, and SIGSTOP of a node for a few seconds then SIGCONT. At most one node is down at a time, so a
  majority is always there.
- The checker, after the faults heal and the subscribers drain: acknowledged-but-lost (an acknowledged message some
  subscriber of its topic never got), duplicated QoS 2 (a QoS 2 message delivered twice to one subscriber), and
  out-of-order (a message first delivered after a later message of the same publisher and QoS). All must be 0.

Prints progress on stderr and ends with one summary line on stdout; exits 1 if any count is not 0.
"""

import argparse
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

ROOT = Path(__file__).resolve().parents[2]
NODES = 3


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def broker_binary():
    explicit = os.environ.get("MQTT_BROKER_BIN")
    if explicit:
        return explicit
    built = [ROOT / "target" / p / "mqtt-broker" for p in ("release", "debug")]
    built = [b for b in built if b.exists()]
    if not built:
        subprocess.run(["cargo", "build", "--bin", "mqtt-broker"], cwd=ROOT, check=True)
        return str(ROOT / "target" / "debug" / "mqtt-broker")
    return str(max(built, key=lambda b: b.stat().st_mtime))


_handed_out = set()


def ephemeral_range():
    """The kernel's range of automatically chosen local ports (Linux's default if it cannot be read)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(v) for v in f.read().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def free_port():
    """A loopback port free now, outside the kernel's ephemeral range, never handed out twice by this process.

    A port from port 0 (the ephemeral range) can become the local port of any outgoing connection, this test's own
    clients included, before its node binds it or while a SIGKILLed node is down before its restart on the same
    port (as io/src/test_ports.rs explains). Drawn from the system's randomness, not the seeded `random`, so the
    run's schedule is what the seed makes it."""
    low, high = ephemeral_range()
    lo, hi = (max(1024, low - 12768), low) if low > 2024 else (high + 1, 65536)
    draw = random.SystemRandom()
    for _ in range(100):
        port = draw.randrange(lo, hi) if lo < hi else 0
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            port = s.getsockname()[1]
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {lo}-{hi - 1}")


class Node:
    def __init__(self, node_id, root, client_port, peers, tick_ms, snapshot_bytes=0):
        self.id = node_id
        self.client_port = client_port
        self.dir = Path(root) / f"node{node_id}"
        self.dir.mkdir()
        self.config = self.dir / "broker.toml"
        peer_lines = "\n".join(f'  {{ id = {i}, address = "127.0.0.1:{p}" }},' for i, p in peers)
        timing = f"tick_ms = {tick_ms}\n" if tick_ms else ""
        if snapshot_bytes:
            timing += f"snapshot_bytes = {snapshot_bytes}\n"
        self.config.write_text(
            f'data_dir = "{self.dir / "data"}"\n\n[[listeners]]\naddress = "127.0.0.1:{client_port}"\n\n'
            f'[cluster]\nnode_id = {node_id}\ncluster_id = "jepsen"\n{timing}peers = [\n{peer_lines}\n]\n'
        )
        self.log_path = self.dir / "broker.log"
        self.proc = None
        self.stopped = False

    def start(self):
        log_file = open(self.log_path, "a")
        self.proc = subprocess.Popen([broker_binary(), "--config", str(self.config)], stderr=log_file)
        log_file.close()
        self.stopped = False

    def kill(self):
        if self.proc:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)
        self.stopped = True

    def resume(self):
        if self.proc and self.stopped:
            self.proc.send_signal(signal.SIGCONT)
        self.stopped = False

    def up(self):
        return self.proc is not None and not self.stopped

    def role(self):
        """(term, role) from the node's last role change in its log."""
        last = None
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return None
        for m in re.finditer(r"cluster: now (\w+) in term (\d+)", text):
            last = (int(m.group(2)), m.group(1))
        return last


def leader(nodes):
    best = None
    for n in nodes:
        if not n.up():
            continue
        r = n.role()
        if r and r[1] == "Leader" and (best is None or r[0] > best[0]):
            best = (r[0], n)
    return best[1] if best else None


def session_props():
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    return props


class Subscriber(threading.Thread):
    def __init__(self, name, nodes, topics, rng):
        super().__init__(daemon=True)
        self.name_ = name
        self.nodes = nodes
        self.topics = topics
        self.rng = rng
        self.history = []  # (publisher, qos, seq) in delivery order
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.stop = threading.Event()
        self.connected = False
        self.connects = 0
        self.resumed = 0
        self.client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5
        )
        self.client.on_connect = self.on_connect
        self.client.on_disconnect = self.on_disconnect
        self.client.on_message = self.on_message
        self.client.on_subscribe = lambda *a: self.subscribed.set()

    def on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            return
        self.connected = True
        self.connects += 1
        if flags.session_present:
            self.resumed += 1
        elif not self.subscribed.is_set():
            client.subscribe([(t, 2) for t in self.topics])
        else:
            log(f"{self.name_}: session lost (Session Present 0 after subscribing)")
            client.subscribe([(t, 2) for t in self.topics])

    def on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.connected = False

    def on_message(self, client, userdata, msg):
        publisher, qos, seq = msg.payload.decode().split(":")
        with self.lock:
            self.history.append((publisher, int(qos), int(seq)))

    def run(self):
        while not self.stop.is_set():
            node = self.rng.choice(self.nodes)
            try:
                self.client.connect("127.0.0.1", node.client_port, keepalive=3, clean_start=False,
                                    properties=session_props())
            except OSError:
                time.sleep(0.1)
                continue
            started = time.time()
            while not self.stop.is_set():
                rc = self.client.loop(timeout=0.1)
                if rc != mqtt.MQTT_ERR_SUCCESS:
                    break
                if not self.connected and time.time() - started > 3:
                    break  # no CONNACK in time (a stopped node): try elsewhere
            if self.stop.is_set():
                self.client.disconnect()
            # Otherwise the next connect() closes what is left of this connection.
            self.connected = False
            time.sleep(0.05)


def published(info):
    """Whether the broker acknowledged the message (PUBACK, or PUBCOMP for QoS 2)."""
    try:
        return info.is_published()
    except (RuntimeError, ValueError):
        return False  # the connection failed before it was acknowledged


class Publisher(threading.Thread):
    def __init__(self, name, nodes, rng):
        super().__init__(daemon=True)
        self.name_ = name
        self.nodes = nodes
        self.rng = rng
        self.acked = set()  # (qos, seq)
        self.sent = 0
        self.stop = threading.Event()
        self.seq = 0

    def run(self):
        while not self.stop.is_set():
            node = self.rng.choice(self.nodes)
            # No automatic reconnect: Paho would publish the unacknowledged message again into a new (clean)
            # session, a second copy the broker rightly delivers; this test publishes every message once.
            client = mqtt.Client(
                callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                client_id=self.name_,
                protocol=mqtt.MQTTv5,
                reconnect_on_failure=False,
            )
            ready = threading.Event()
            client.on_connect = lambda c, u, f, rc, p: (not rc.is_failure) and ready.set()
            try:
                client.connect("127.0.0.1", node.client_port, keepalive=3, clean_start=True)
            except OSError:
                time.sleep(0.1)
                continue
            client.loop_start()
            if not ready.wait(3):
                client.loop_stop()
                client.socket() and client.socket().close()
                time.sleep(0.05)
                continue
            while not self.stop.is_set() and client.is_connected():
                self.seq += 1
                qos = 1 if self.seq % 2 else 2
                info = client.publish(f"j/{self.name_}/q{qos}", f"{self.name_}:{qos}:{self.seq}", qos=qos)
                self.sent += 1
                deadline = time.time() + 3
                while not published(info) and time.time() < deadline and client.is_connected():
                    time.sleep(0.002)
                if published(info):
                    self.acked.add((qos, self.seq))
                else:
                    break  # indeterminate; never published again
                time.sleep(0.01)
            client.loop_stop()
            try:
                client.disconnect()
            except Exception:
                pass


def check(publishers, subscribers, topics_of):
    lost = dup_q2 = out_of_order = 0
    examples = []
    for sub in subscribers:
        with sub.lock:
            history = list(sub.history)
        seen = {}
        last_first = {}
        for publisher, qos, seq in history:
            key = (publisher, qos, seq)
            seen[key] = seen.get(key, 0) + 1
            if seen[key] == 1:
                stream = (publisher, qos)
                if last_first.get(stream, 0) > seq:
                    out_of_order += 1
                    examples.append(f"{sub.name_}: {publisher} q{qos} #{seq} after #{last_first[stream]}")
                last_first[stream] = max(last_first.get(stream, 0), seq)
            elif qos == 2 and seen[key] == 2:
                dup_q2 += 1
                examples.append(f"{sub.name_}: {publisher} q2 #{seq} twice")
        for pub in publishers:
            if pub.name_ not in topics_of[sub.name_]:
                continue
            for qos, seq in pub.acked:
                if (pub.name_, qos, seq) not in seen:
                    lost += 1
                    examples.append(f"{sub.name_}: acknowledged {pub.name_} q{qos} #{seq} never arrived")
    return lost, dup_q2, out_of_order, examples


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=60, help="seconds of faults")
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--tick-ms", type=int, default=50, help="Raft tick (0: the default)")
    ap.add_argument("--drain", type=float, default=20, help="seconds the subscribers get to catch up at the end")
    ap.add_argument(
        "--snapshot-bytes",
        type=int,
        default=0,
        help="[cluster] snapshot_bytes (0: the default), small to have kills land while snapshots are written",
    )
    args = ap.parse_args()
    rng = random.Random(args.seed)
    log(f"seed {args.seed}, binary {broker_binary()}")
    root = tempfile.mkdtemp(prefix="jepsen-")
    peer_ports = [(i + 1, free_port()) for i in range(NODES)]
    nodes = [Node(i + 1, root, free_port(), peer_ports, args.tick_ms, args.snapshot_bytes) for i in range(NODES)]
    for n in nodes:
        n.start()
    deadline = time.time() + 30
    while leader(nodes) is None:
        if time.time() > deadline:
            sys.exit("no leader elected")
        time.sleep(0.1)
    log(f"node {leader(nodes).id} leads")
    time.sleep(0.5)

    names = [f"n{n.id}" for n in nodes]
    topics_of = {f"sub-{me}": [f"pub-{o}" for o in names if o != me] for me in names}
    subscribers = [
        Subscriber(f"sub-{me}", nodes, [f"j/pub-{o}/#" for o in names if o != me], random.Random(rng.random()))
        for me in names
    ]
    for s in subscribers:
        s.start()
    for s in subscribers:
        if not s.subscribed.wait(30):
            sys.exit(f"{s.name_} could not subscribe")
    log("subscribers subscribed; publishing")
    publishers = [Publisher(f"pub-{me}", nodes, random.Random(rng.random())) for me in names]
    for p in publishers:
        p.start()

    kills = stops = leader_kills = 0
    end = time.time() + args.duration
    while time.time() < end:
        time.sleep(rng.uniform(2, 5))
        lead = leader(nodes)
        if rng.random() < 0.7:
            victim = lead if (lead and rng.random() < 0.5) else rng.choice(nodes)
            was_leader = victim is lead
            log(f"SIGKILL node {victim.id}{' (the leader)' if was_leader else ''}")
            victim.kill()
            kills += 1
            leader_kills += was_leader
            time.sleep(rng.uniform(0.5, 3))
            log(f"restart node {victim.id}")
            victim.start()
        else:
            victim = rng.choice(nodes)
            log(f"SIGSTOP node {victim.id}{' (the leader)' if victim is lead else ''}")
            victim.pause()
            stops += 1
            time.sleep(rng.uniform(1, 4))
            log(f"SIGCONT node {victim.id}")
            victim.resume()
        # Let the cluster settle before the next fault, so at most one node is ever out.
        settle = time.time() + 15
        while leader(nodes) is None and time.time() < settle:
            time.sleep(0.1)

    for p in publishers:
        p.stop.set()
    for p in publishers:
        p.join(10)
    log(f"faults over ({kills} kills, {leader_kills} of the leader, {stops} stops); draining")
    # Drain: until every acknowledged message reached its subscribers, or the drain time is out.
    drain_end = time.time() + args.drain
    while time.time() < drain_end:
        lost, _, _, _ = check(publishers, subscribers, topics_of)
        if lost == 0:
            break
        time.sleep(0.5)
    time.sleep(1)
    for s in subscribers:
        s.stop.set()
    for s in subscribers:
        s.join(5)
    lost, dup_q2, out_of_order, examples = check(publishers, subscribers, topics_of)
    for e in examples[:20]:
        log(e)
    for n in nodes:
        n.resume()
        n.kill()
    acked = sum(len(p.acked) for p in publishers)
    sent = sum(p.sent for p in publishers)
    delivered = sum(len(s.history) for s in subscribers)
    reconnects = sum(s.connects for s in subscribers)
    resumed = sum(s.resumed for s in subscribers)
    print(
        f"jepsen: seed {args.seed}, {args.duration:.0f} s, {kills} SIGKILLs ({leader_kills} of the leader), "
        f"{stops} SIGSTOPs; {sent} published, {acked} acknowledged, {delivered} delivered, "
        f"{reconnects} subscriber connects ({resumed} resumed a session); "
        f"acknowledged-but-lost {lost}, duplicated QoS 2 {dup_q2}, out-of-order {out_of_order}"
    )
    if lost or dup_q2 or out_of_order:
        log(f"node logs kept in {root}")
        sys.exit(1)
    if os.environ.get("JEPSEN_KEEP_LOGS"):
        log(f"node logs kept in {root}")
        return
    subprocess.run(["rm", "-rf", root])


if __name__ == "__main__":
    main()
