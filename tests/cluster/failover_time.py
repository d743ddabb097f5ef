#!/usr/bin/env python3
"""Failover time of a 3-node mqtt-broker cluster with real processes: a persistent MQTT 5 session (Paho) lives on a
follower; the leader is SIGKILLed; the client reconnects to the surviving nodes in turn until one answers CONNACK
with Session Present = 1. The time from the kill to that CONNACK is one sample. Default Raft timings unless
--tick-ms says otherwise. Prints each sample on stderr and a summary line on stdout."""

import argparse
import os
import subprocess
import random
import statistics
import sys
import tempfile
import threading
import time

import paho.mqtt.client as mqtt

from jepsen import Node, broker_binary, free_port, leader, log, session_props


def connect(port, client_id, timeout=1.0):
    """Session Present of a CONNACK within `timeout`, or None."""
    got = {}
    done = threading.Event()
    client = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        reconnect_on_failure=False,
    )

    def on_connect(c, u, flags, rc, p):
        if not rc.is_failure:
            got["present"] = flags.session_present
        done.set()

    client.on_connect = on_connect
    client.on_disconnect = lambda *a: done.set()
    try:
        client.connect("127.0.0.1", port, keepalive=10, clean_start=False, properties=session_props())
    except OSError:
        return None, None
    client.loop_start()
    done.wait(timeout)
    return got.get("present"), client


def load(node, seconds):
    """QoS 1 fan-out through `node` for `seconds`: a log of committed entries for the next leader to take over."""
    bench = os.path.join(os.path.dirname(broker_binary()), "mqtt-bench")
    started = time.monotonic()
    out = subprocess.run(
        [bench, "--broker", f"127.0.0.1:{node.client_port}", "--workload", "fan-out", "--clients", "16", "--qos", "1",
         "--persistent", "--duration", str(seconds), "--json"],
        capture_output=True, text=True, check=False)
    log(f"load: {time.monotonic() - started:.1f} s through node {node.id}: {out.stdout.strip()[:160]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--stop", action="store_true",
                    help="SIGSTOP the leader instead of SIGKILL: a machine that vanishes without closing its links")
    ap.add_argument("--tick-ms", type=int, default=0, help="Raft tick (0: the default, 100 ms)")
    ap.add_argument("--load-seconds", type=int, default=0,
                    help="before each kill, this many seconds of QoS 1 fan-out to 16 persistent subscribers through the "
                         "leader (mqtt-bench), so the new leader takes over a log full of entries since the last snapshot")
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="failover-")
    peers = [(i + 1, free_port()) for i in range(3)]
    nodes = [Node(i + 1, root, free_port(), peers, args.tick_ms) for i in range(3)]
    for n in nodes:
        n.start()
    samples = []
    for k in range(args.samples):
        deadline = time.time() + 30
        while leader(nodes) is None or not all(n.up() for n in nodes):
            if time.time() > deadline:
                sys.exit("no leader")
            time.sleep(0.1)
        time.sleep(1.5)  # every follower knows the leader
        lead = leader(nodes)
        followers = [n for n in nodes if n is not lead]
        # A node restarted for the previous sample may still be catching up with the log: try for a while.
        for _ in range(30):
            present, client = connect(followers[0].client_port, f"fo-{k}", timeout=5)
            if present is not None:
                break
            if client is not None:
                client.loop_stop()
            time.sleep(1)
        else:
            sys.exit("the session could not be created")
        if args.load_seconds:
            load(lead, args.load_seconds)
        killed_at = time.monotonic()
        if args.stop:
            lead.pause()
        else:
            lead.kill()
        attempt = 0
        while True:
            node = followers[attempt % 2]
            attempt += 1
            t0 = time.monotonic()
            present, c = connect(node.client_port, f"fo-{k}")
            took = time.monotonic() - killed_at
            if c is not None:
                # Joining Paho's network thread takes up to its 1 s poll: not part of the failover.
                c.loop_stop()
            if present:
                break
            if time.monotonic() - killed_at > 30:
                sys.exit("no node resumed the session")
            time.sleep(0.02)
        samples.append(took)
        log(f"sample {k + 1}: leader node {lead.id} {'SIGSTOPped' if args.stop else 'SIGKILLed'} -> Session Present on node {node.id} after "
            f"{took * 1000:.0f} ms ({attempt} attempts)")
        client.loop_stop()
        if args.stop:
            lead.resume()
        else:
            lead.start()
    for n in nodes:
        n.kill()
    print(
        f"failover ({'SIGSTOP' if args.stop else 'SIGKILL'} of the leader): {len(samples)} samples, median {statistics.median(samples) * 1000:.0f} ms, "
        f"max {max(samples) * 1000:.0f} ms, min {min(samples) * 1000:.0f} ms"
    )


if __name__ == "__main__":
    random.seed(0)
    main()
