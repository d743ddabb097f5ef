#!/usr/bin/env bash
# Runs the same workloads against mqtt-broker and Mosquitto on this machine, alternating, and writes the table to
# BENCHMARKS.md. Usage: bench/compare.sh [--quick]. Everything stays on loopback and is bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=5
[ "${1:-}" = "--quick" ] && duration=2

command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || { apt-get update -qq && apt-get install -y -qq mosquitto >/dev/null; }
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
cargo build --release --quiet --bin mqtt-broker --bin mqtt-bench
ulimit -n 65536 2>/dev/null || true

work=$(mktemp -d)
trap 'kill $ours_pid $theirs_pid 2>/dev/null || true; rm -rf "$work"' EXIT
cat > "$work/mosquitto.conf" <<CONF
listener 18883 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 100000
max_inflight_messages 64
CONF
./target/release/mqtt-broker --listen 127.0.0.1:18884 --data-dir "$work/data" --sys-interval 0 --log-level warn &
ours_pid=$!
"$MOSQUITTO" -c "$work/mosquitto.conf" >/dev/null 2>&1 &
theirs_pid=$!
sleep 1

run() { # broker-port pid args...
  local port=$1 pid=$2; shift 2
  ./target/release/mqtt-bench --broker "127.0.0.1:$port" --broker-pid "$pid" --duration "$duration" --json "$@"
}
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }

# Connections first, while both brokers are fresh, so the RSS growth is what the connections cost. The target is
# 50,000; each side needs a descriptor per connection, so a lower hard limit (containers without CAP_SYS_RESOURCE)
# caps the count, and the table says so.
conns=50000
fd_room=$(( $(ulimit -n) - 100 ))
conn_note=""
if [ "$fd_room" -lt "$conns" ]; then
  conns=$fd_room
  conn_note=" (capped by this machine's open-file hard limit of $(ulimit -Hn); 50,000 needs a higher one)"
fi
conn_ours=$(run 18884 $ours_pid --workload conn --clients "$conns")
conn_theirs=$(run 18883 $theirs_pid --workload conn --clients "$conns")
rows=""
# workload, clients, QoS, payload, and optionally a fixed rate per publisher (latency at equal offered load).
for spec in "fan-in 4 0 64" "fan-in 4 1 64" "fan-out 16 0 64" "fan-out 16 1 64" "pairs 4 0 64" "pairs 4 1 64" \
            "pairs 4 2 64" "pairs 4 1 16" "pairs 4 1 16384" "fan-out 16 1 16384" "fan-out 16 1 65536" \
            "pairs 4 1 64 2000" "fan-out 16 1 64 1000"; do
  set -- $spec
  rate_args=(); label="$1"
  if [ -n "${5:-}" ]; then rate_args=(--rate "$5"); label="$1 @ $5/s each"; fi
  echo "== $label clients=$2 qos=$3 payload=$4" >&2
  ours=$(run 18884 $ours_pid --workload "$1" --clients "$2" --qos "$3" --payload "$4" "${rate_args[@]}")
  theirs=$(run 18883 $theirs_pid --workload "$1" --clients "$2" --qos "$3" --payload "$4" "${rate_args[@]}")
  o=$(field "$ours" msgs_per_sec); t=$(field "$theirs" msgs_per_sec)
  ratio=$(python3 -c "print(f'{$o / max($t, 1):.2f}')")
  printf "%s\t%s\t%s\n" "$label $2 clients QoS $3 $4 B" "$o" "$t" >> "$work/throughput.tsv"
  rows+="| $label | $2 | $3 | $4 B | $o | $t | ${ratio}x | $(field "$ours" p99_us) | $(field "$theirs" p99_us) | $(field "$ours" lost) / $(field "$theirs" lost) |"$'\n'
done

# The cluster section: its own brokers (a durable single node and a 3-node cluster), after the comparison's.
kill $ours_pid $theirs_pid 2>/dev/null || true
cluster_section=$(bench/cluster.sh "$duration")
# The I/O drivers section: epoll and io_uring side by side (with CPU and system calls per message), own brokers.
io_section=$(bench/io_drivers.sh "$duration")

{
  echo "# Benchmarks"
  echo
  echo "mqtt-broker against Mosquitto, measured by \`bench/compare.sh\` with \`mqtt-bench\` (its own MQTT 3.1.1 client, independent of"
  echo "mqtt-core), the two brokers running side by side and the workloads alternating between them."
  echo
  echo "- Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/ {print $2}') GiB, Linux $(uname -r)"
  echo "- Brokers: mqtt-broker $(./target/release/mqtt-broker --version | awk '{print $2}') (release build), $("$MOSQUITTO" -h 2>/dev/null | head -1) (persistence off)"
  echo "- Date: $(date -u +%Y-%m-%d). Each workload publishes for ${duration}s; publishers keep 64 QoS 1/2 messages in flight."
  echo "- The load generator runs on the same 2 cores as the broker, so absolute numbers are modest; the ratio is the point."
  echo
  echo "| workload | clients | QoS | payload | mqtt-broker msg/s | Mosquitto msg/s | ratio | p99 µs (ours) | p99 µs (Mosquitto) | lost (ours / Mosquitto) |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  printf "%s" "$rows"
  echo
  echo "| idle connections | mqtt-broker | Mosquitto |"
  echo "|---|---|---|"
  echo "| $conns held$conn_note | $(field "$conn_ours" connections) | $(field "$conn_theirs" connections) |"
  echo "| connects/s | $(field "$conn_ours" connect_per_sec) | $(field "$conn_theirs" connect_per_sec) |"
  echo "| broker memory per idle connection (bytes, RSS growth / connections) | $(field "$conn_ours" bytes_per_connection) | $(field "$conn_theirs" bytes_per_connection) |"
  echo
  echo "Reading the table: unpaced rows measure saturation throughput (their latency is queueing delay at overload);"
  echo "rows marked \"@ N/s\" offer the same fixed load to both brokers and compare latency. Mosquitto's losses at QoS 1 come"
  echo "from its queue limit (max_queued_messages) when a subscriber falls behind. With 64 KiB payloads to 16"
  echo "subscribers both brokers are bound by the kernel copying gigabytes per second through loopback sockets (the"
  echo "broker itself shares payloads and copies none). Idle clients are MQTT 3.1.1, clean"
  echo "session, keep alive 600 s, connected one after another from 16 loopback source addresses; the script raises"
  echo "the open-file limit as far as allowed for both brokers and the load generator."
  echo
  echo "![Messages per second, both brokers, log scale](bench/throughput.svg)"
  echo
  echo "Where the broker's time goes under these loads (perf profiles): [bench/PROFILE.md](bench/PROFILE.md)."
  echo
  echo "$cluster_section"
  echo
  echo "$io_section"
  echo
  echo "Reproduce: \`bench/compare.sh\` (about 4 minutes; \`--quick\` for a shorter run)."
} > BENCHMARKS.md
python3 bench/plot.py "$work/throughput.tsv" > bench/throughput.svg
cat BENCHMARKS.md
