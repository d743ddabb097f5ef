#!/usr/bin/env bash
# Latency while a large snapshot is written (issue #17): N retained messages (64 B, `site/S/device/D/temp`) are stored
# and the broker restarted (recovery writes them as one snapshot, the log starts empty). Then a paced QoS 1 workload
# runs (mqtt-bench pairs, --rate per publisher) while one retained topic is republished with 1 MiB payloads until the
# log passes the compaction threshold (twice the snapshot), so a snapshot of the N messages is written mid-run. Prints
# the workload's latency, the snapshot as the broker logged it, and the broker's peak resident memory during the run
# (VmHWM reset just before it). Usage:
#   bench/snapshot_latency.sh [N] [BROKER_BINARY...]   (default 1000000, target/release/mqtt-broker)
# With several binaries (say, before and after a change), each runs the same scenario in turn. One SUMMARY line each.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
shift || true
brokers=("$@")
if [ ${#brokers[@]} -eq 0 ]; then
  cargo build --release --quiet --bin mqtt-broker --bin mqtt-bench
  brokers=(./target/release/mqtt-broker)
fi
BENCH=${BENCH:-./target/release/mqtt-bench}
RATE=${RATE:-500}
CLIENTS=${CLIENTS:-4}
DURATION=${DURATION:-30}
PORT=18894

work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
head -c 1048576 /dev/zero | tr '\0' 'x' > "$work/big.bin"

mib() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }
status() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }
wait_port() {
  for _ in $(seq 1 900); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
    sleep 0.2
  done
  echo "broker did not come up" >&2
  return 1
}
start() {
  "$1" --listen "127.0.0.1:$PORT" --data-dir "$work/data" --sync interval --sys-interval 0 --log-level info \
    --max-queued-messages 1000 2>>"$work/broker.log" & pid=$!
  wait_port
}
stop() { kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=; }

for binary in "${brokers[@]}"; do
  rm -rf "$work/data" "$work/broker.log"
  echo "== $binary: storing $n retained messages, restarting" >&2
  start "$binary"
  $BENCH --broker "127.0.0.1:$PORT" --workload retained-load --messages "$n" --payload 64 --inflight 256 >/dev/null
  stop
  start "$binary"
  sleep 2
  snap_mib=$(du -sm "$work"/data/snapshot-*.snap | sort -n | tail -1 | cut -f1)
  rss_before=$(mib "$(status "$pid" VmRSS)")
  echo 5 > "/proc/$pid/clear_refs" # VmHWM := VmRSS: the peak from here on
  : > "$work/broker.log"
  echo "== $binary: paced QoS 1 ($CLIENTS x $RATE msg/s for ${DURATION}s) with a snapshot of ${snap_mib} MiB mid-run" >&2
  $BENCH --broker "127.0.0.1:$PORT" --workload pairs --qos 1 --clients "$CLIENTS" --rate "$RATE" \
    --duration "$DURATION" --json > "$work/paced.json" &
  bench=$!
  sleep $((DURATION / 3))
  # Grow the log past twice the snapshot: 1 MiB retained values on one topic (the state hardly changes). PUSHES=0
  # runs the same workload without a snapshot, for the machine's own noise.
  pushes=${PUSHES:-$(( (2 * snap_mib) + 16 ))}
  for _ in $(seq 1 "$pushes"); do
    mosquitto_pub -p "$PORT" -t big -r -q 1 -f "$work/big.bin"
    grep -q "snapshot [0-9]*:" "$work/broker.log" && break
  done
  wait "$bench"
  sleep 1
  peak=$(mib "$(status "$pid" VmHWM)")
  stop
  snapshot=$(grep -o "snapshot [0-9]*: [0-9]* bytes in [0-9]* ms" "$work/broker.log" | paste -sd ';' || true)
  json=$(cat "$work/paced.json")
  field() { echo "$json" | sed -E "s/.*\"$1\":([0-9.]+).*/\1/"; }
  echo "| $binary | $(field p50_us) | $(field p99_us) | $(field p999_us) | $(field max_us) | $(field lost) | $rss_before | $peak | $snapshot |"
  echo "SUMMARY snapshot_latency $binary: $n retained, paced QoS 1 p50 $(field p50_us) us p99 $(field p99_us) us p99.9 $(field p999_us) us max $(field max_us) us, lost $(field lost); broker VmRSS before $rss_before MiB, peak during the run $peak MiB; ${snapshot:-no snapshot logged}"
done
