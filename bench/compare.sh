#!/usr/bin/env bash
# Runs the same workloads against mqtt-broker, Mosquitto and rumqttd on this machine, side by side and alternating,
# and writes the tables to BENCHMARKS.md. Usage: bench/compare.sh [--quick] [--no-cluster] [--no-rumqttd] [--runs N].
# --no-cluster keeps the cluster section already in BENCHMARKS.md instead of measuring it again; --runs N measures
# every row N times (the brokers alternating each time) and reports each broker's median. Everything stays on
# loopback and is bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=5
cluster=1
rumqttd=1
runs=1
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) duration=2 ;;
    --no-cluster) cluster=0 ;;
    --no-rumqttd) rumqttd=0 ;;
    --runs) runs=$2; shift ;;
    *) echo "usage: bench/compare.sh [--quick] [--no-cluster] [--no-rumqttd] [--runs N]" >&2; exit 2 ;;
  esac
  shift
done

command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || { apt-get update -qq && apt-get install -y -qq mosquitto >/dev/null; }
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)

# rumqttd, the second peer: installed from crates.io into bench/.peers (not the user's cargo bin), pinned, once. If
# the install fails (offline), the comparison runs without it and says so.
RUMQTTD_VERSION=0.20.0
RUMQTTD=bench/.peers/bin/rumqttd
if [ "$rumqttd" = 1 ] && { [ ! -x "$RUMQTTD" ] || ! "$RUMQTTD" --version 2>/dev/null | grep -q "$RUMQTTD_VERSION"; }; then
  echo "compare.sh: installing rumqttd $RUMQTTD_VERSION into bench/.peers (a few minutes, once)" >&2
  # Not --locked: the release's lockfile pins metrics 0.22.1, which current compilers refuse (E0521).
  cargo install --quiet rumqttd --version "$RUMQTTD_VERSION" --root bench/.peers >&2 ||
    echo "compare.sh: rumqttd could not be installed (offline?); comparing with Mosquitto only" >&2
fi
have_rumqttd=0
[ "$rumqttd" = 1 ] && [ -x "$RUMQTTD" ] && have_rumqttd=1

cargo build --release --quiet --bin mqtt-broker --bin mqtt-bench
ulimit -n 65536 2>/dev/null || true

work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
cat > "$work/mosquitto.conf" <<CONF
listener 18883 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 100000
max_inflight_messages 64
CONF
# rumqttd's own default configuration (rumqttd.toml of the release), with loopback ports, room for the idle
# connection row and the 64 KiB payloads, no connection pacing, and no console or metrics listeners.
cat > "$work/rumqttd.toml" <<CONF
id = 0
[router]
id = 0
max_connections = 60000
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = "v4-1"
listen = "127.0.0.1:18885"
next_connection_delay_ms = 0
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 1048576
    max_inflight_count = 100
    dynamic_filters = true
CONF
./target/release/mqtt-broker --listen 127.0.0.1:18884 --data-dir "$work/data" --sys-interval 0 --log-level warn &
ours_pid=$!
pids+=("$ours_pid")
"$MOSQUITTO" -c "$work/mosquitto.conf" >/dev/null 2>&1 &
mosq_pid=$!
pids+=("$mosq_pid")
names=("mqtt-broker" "Mosquitto")
ports=(18884 18883)
bpids=("$ours_pid" "$mosq_pid")
if [ "$have_rumqttd" = 1 ]; then
  "$RUMQTTD" --quiet --config "$work/rumqttd.toml" >"$work/rumqttd.log" 2>&1 &
  rumq_pid=$!
  pids+=("$rumq_pid")
  names+=("rumqttd")
  ports+=(18885)
  bpids+=("$rumq_pid")
fi
n=${#names[@]}
sleep 1
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

run() { # broker-index args...
  local i=$1; shift
  ./target/release/mqtt-bench --broker "127.0.0.1:${ports[$i]}" --broker-pid "${bpids[$i]}" --duration "$duration" --json "$@"
}
field() { python3 -c "import json,sys; v=json.loads(sys.argv[1])[sys.argv[2]]; print('-' if v is None else v)" "$1" "$2"; }
# The JSON result whose msgs_per_sec is the median of the given ones.
median() { python3 -c "import json,sys; r=sorted((json.loads(a) for a in sys.argv[1:]), key=lambda j: j['msgs_per_sec']); print(json.dumps(r[len(r)//2]))" "$@"; }
# join SEPARATOR VALUES...: the values with the separator between them.
join() { local sep=$1 out=$2; shift 2; for x in "$@"; do out+="$sep$x"; done; echo "$out"; }
slash() { join " / " "$@"; }
cells() { join " | " "$@"; }

# Connections first, while the brokers are fresh, so the RSS growth is what the connections cost. The target is
# 50,000; each side needs a descriptor per connection, so a lower hard limit (containers without CAP_SYS_RESOURCE)
# caps the count, and the table says so.
conns=50000
fd_room=$(( $(ulimit -n) - 100 ))
conn_note=""
if [ "$fd_room" -lt "$conns" ]; then
  conns=$fd_room
  conn_note=" (capped by this machine's open-file hard limit of $(ulimit -Hn); 50,000 needs a higher one)"
fi
conn=()
for i in $(seq 0 $((n - 1))); do
  conn+=("$(run "$i" --workload conn --clients "$conns" || echo '{"connections":"failed","connect_per_sec":"-","bytes_per_connection":null,"alive_after_hold":null}')")
done

rows=""
cpu_rows=""
# workload, clients, QoS, payload, and optionally a fixed rate per publisher (latency at equal offered load).
for spec in "fan-in 4 0 64" "fan-in 4 1 64" "fan-out 16 0 64" "fan-out 16 1 64" "pairs 4 0 64" "pairs 4 1 64" \
            "pairs 4 2 64" "pairs 4 1 16" "pairs 4 1 16384" "fan-out 16 1 16384" "fan-out 16 1 65536" \
            "pairs 4 1 64 2000" "fan-out 16 1 64 1000"; do
  set -- $spec
  rate_args=(); label="$1"
  if [ -n "${5:-}" ]; then rate_args=(--rate "$5"); label="$1 @ $5/s each"; fi
  echo "== $label clients=$2 qos=$3 payload=$4" >&2
  results=()
  for r in $(seq 1 "$runs"); do
    for i in $(seq 0 $((n - 1))); do
      results[$i]+="$(run "$i" --workload "$1" --clients "$2" --qos "$3" --payload "$4" "${rate_args[@]}" ||
        echo '{"msgs_per_sec":0,"p99_us":null,"lost":null,"duplicates":null,"cpu_s_per_million":null}')"$'\n'
    done
  done
  med=(); rate=(); p99=(); lost=(); dups=(); cpu=()
  for i in $(seq 0 $((n - 1))); do
    mapfile -t all < <(printf "%s" "${results[$i]}")
    med[$i]=$(median "${all[@]}")
    rate[$i]=$(field "${med[$i]}" msgs_per_sec)
    p99[$i]=$(field "${med[$i]}" p99_us)
    lost[$i]=$(field "${med[$i]}" lost)
    dups[$i]=$(field "${med[$i]}" duplicates)
    cpu[$i]=$(field "${med[$i]}" cpu_s_per_million)
  done
  unset results
  # Ours against the better peer on this row, and (for the CPU table) against rumqttd when it ran.
  best=$(python3 -c "import sys; print(max(float(v) for v in sys.argv[1:]))" "${rate[@]:1}")
  ratio=$(python3 -c "print(f'{${rate[0]} / max($best, 1):.2f}')")
  printf "%s" "$label $2 clients QoS $3 $4 B" >> "$work/throughput.tsv"
  printf "\t%s" "${rate[@]}" >> "$work/throughput.tsv"
  printf "\n" >> "$work/throughput.tsv"
  rows+="| $label | $2 | $3 | $4 B | $(cells "${rate[@]}") | ${ratio}x | $(slash "${p99[@]}") | $(slash "${lost[@]}") | ${dups[0]} |"$'\n'
  cpu_ratio="-"
  if [ "$n" -ge 3 ]; then
    cpu_ratio=$(python3 -c "import sys; a, b = sys.argv[1:]; print(f'{float(a) / float(b):.2f}x' if '-' not in (a, b) and float(b) > 0 else '-')" "${cpu[0]}" "${cpu[2]}")
  fi
  cpu_rows+="| $label | $2 | $3 | $4 B | $(cells "${cpu[@]}") | $cpu_ratio |"$'\n'
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# The cluster section: its own brokers (a durable single node and a 3-node cluster), after the comparison's.
kill "${pids[@]}" 2>/dev/null || true
if [ "$cluster" = 1 ]; then
  cluster_section=$(bench/cluster.sh "$duration")
else
  cluster_section=$(sed -n '/^## Cluster: /,/^## I\/O drivers/p' BENCHMARKS.md | sed '$d')
fi
# The failover section is measured by tests/cluster/failover_time.py, not here: carried over as it stands.
failover_section=$(sed -n '/^## Cluster failover/,/^Reproduce: `python3 tests\/cluster\/failover_time.py/p' BENCHMARKS.md)
# The I/O drivers section: epoll and io_uring side by side (with CPU and system calls per message), own brokers.
io_section=$(bench/io_drivers.sh "$duration")

peer_names=$(slash "${names[@]:1}")
header_cols=$(printf " %s msg/s |" "${names[@]}")
sep_cols=$(printf -- "---|%.0s" "${names[@]}")
{
  echo "# Benchmarks"
  echo
  echo "mqtt-broker against $(echo "$peer_names" | sed 's| / | and |'), measured by \`bench/compare.sh\` with \`mqtt-bench\` (its own MQTT 3.1.1"
  echo "client, independent of mqtt-core), the brokers running side by side and the workloads alternating between them."
  echo
  echo "- Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/ {print $2}') GiB, Linux $(uname -r)"
  echo "- Brokers: mqtt-broker $(./target/release/mqtt-broker --version | awk '{print $2}') (release build), $("$MOSQUITTO" -h 2>/dev/null | head -1) (persistence off)$([ "$have_rumqttd" = 1 ] && echo ", rumqttd $RUMQTTD_VERSION (its default configuration, loopback listener)")"
  echo "- Date: $(date -u +%Y-%m-%d). Each workload publishes for ${duration}s; publishers keep 64 QoS 1/2 messages in flight."
  echo "- Each row is the median of $runs run(s) per broker. Load average (1, 5, 15 min) before: $load_before; after: $load_after."
  echo "- The load generator runs on the same 2 cores as the brokers, so absolute numbers are modest; the ratio is the point."
  echo
  echo "| workload | clients | QoS | payload |$header_cols ratio to the better peer | p99 µs ($(slash "${names[@]}")) | lost ($(slash "${names[@]}")) | duplicates (ours) |"
  echo "|---|---|---|---|${sep_cols}---|---|---|---|"
  printf "%s" "$rows"
  echo
  echo "Broker CPU seconds (user + system, from /proc/<pid>/stat) per million delivered messages, same runs; lower is"
  echo "better. It counts only the broker process, so it is not skewed by the load generator sharing the cores."
  echo
  echo "| workload | clients | QoS | payload |$(printf " %s |" "${names[@]}") ours / rumqttd |"
  echo "|---|---|---|---|${sep_cols}---|"
  printf "%s" "$cpu_rows"
  echo
  echo "| idle connections |$(printf " %s |" "${names[@]}")"
  echo "|---|${sep_cols}"
  printf "| %s held%s |" "$conns" "$conn_note"; for c in "${conn[@]}"; do printf " %s |" "$(field "$c" connections)"; done; echo
  printf "| connects/s |"; for c in "${conn[@]}"; do printf " %s |" "$(field "$c" connect_per_sec)"; done; echo
  printf "| answered a PINGREQ after the hold |"; for c in "${conn[@]}"; do printf " %s |" "$(field "$c" alive_after_hold)"; done; echo
  printf "| broker memory per idle connection (bytes, RSS growth / connections) |"; for c in "${conn[@]}"; do printf " %s |" "$(field "$c" bytes_per_connection)"; done; echo
  echo
  echo "Reading the table: unpaced rows measure saturation throughput (their latency is queueing delay at overload);"
  echo "rows marked \"@ N/s\" offer the same fixed load to every broker and compare latency, measured from each"
  echo "message's scheduled send time (a broker that stalls the publisher is charged for every message that waited)."
  echo "Mosquitto's losses at QoS 1 come from its queue limit (max_queued_messages) when a subscriber falls behind. With"
  echo "64 KiB payloads to 16 subscribers the brokers are bound by the kernel copying gigabytes per second through"
  echo "loopback sockets (the broker itself shares payloads and copies none). Idle clients are MQTT 3.1.1, clean"
  echo "session, keep alive 600 s, connected one after another from 16 loopback source addresses; the script raises"
  echo "the open-file limit as far as allowed for the brokers and the load generator."
  echo
  echo "![Messages per second, every broker, log scale](bench/throughput.svg)"
  echo
  echo "Where the broker's time goes under these loads (perf profiles): [bench/PROFILE.md](bench/PROFILE.md)."
  echo
  echo "$cluster_section"
  echo
  echo "$io_section"
  echo
  if [ -n "$failover_section" ]; then
    echo "$failover_section"
    echo
  fi
  echo "Reproduce: \`bench/compare.sh\` (about 14 minutes with rumqttd and the I/O drivers; \`--quick\` for a shorter run, \`--runs 3\` for medians)."
} > "$work/generated.md"
# Sections written by hand (findings, before/after tables) stay, each after the generated section it followed.
python3 bench/carry_sections.py BENCHMARKS.md "$work/generated.md" > "$work/merged.md"
mv "$work/merged.md" BENCHMARKS.md
python3 bench/plot.py "$work/throughput.tsv" "${names[@]}" > bench/throughput.svg
cat BENCHMARKS.md
