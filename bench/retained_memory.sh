#!/usr/bin/env bash
# Retained-message memory (issue #18): stores N retained messages (64 B payloads, distinct fleet-shaped topics
# `site/S/device/D/temp`) in mqtt-broker and in Mosquitto (persistence on), restarts each broker so that it recovers
# them from disk, and reads its resident memory from /proc (VmRSS, and VmHWM: the peak) after the load and after
# recovery; then a `#` subscriber counts what came back (every message must survive the restart). Usage:
#   bench/retained_memory.sh [N]            (default 1000000)
# Ports: free ones are picked at start (other brokers may run on this machine); set OURS_PORT / MOSQ_PORT to choose.
# Installs Mosquitto from apt if missing. Prints a Markdown table and one SUMMARY line.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || { apt-get update -qq && apt-get install -y -qq mosquitto >/dev/null; }
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
cargo build --release --quiet --bin mqtt-broker --bin mqtt-bench
BENCH=./target/release/mqtt-bench

# A port nothing listens on: connecting to it is refused. Picked at random so that two runs started together (or a
# test cluster on a fixed port) do not collide; the broker still fails loudly if another process binds it first.
free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 40000))
    [ "$p" = "${1:-}" ] && continue
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return 0; }
  done
  echo "no free port found" >&2
  return 1
}
OURS_PORT=${OURS_PORT:-$(free_port)}
MOSQ_PORT=${MOSQ_PORT:-$(free_port "$OURS_PORT")}
echo "== ports: mqtt-broker $OURS_PORT, Mosquitto $MOSQ_PORT" >&2

work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
mkdir -p "$work/ours" "$work/mosq"
cat > "$work/mosquitto.conf" <<CONF
listener $MOSQ_PORT 127.0.0.1
allow_anonymous true
persistence true
persistence_location $work/mosq/
autosave_interval 0
max_queued_messages 0
max_inflight_messages 64
CONF
# Run as root, Mosquitto switches to the user `mosquitto`, which could not write its database into our directory.
[ "$(id -u)" = 0 ] && echo "user root" >> "$work/mosquitto.conf"

mib() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }
status() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }
wait_port() {
  for _ in $(seq 1 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.2
  done
  echo "broker on port $1 did not come up" >&2
  return 1
}
start() {
  case $1 in
    ours) ./target/release/mqtt-broker --listen "127.0.0.1:$OURS_PORT" --data-dir "$work/ours" --sync interval \
            --sys-interval 0 --log-level error --max-queued-messages 1000 & pid=$! ;;
    mosq) "$MOSQUITTO" -c "$work/mosquitto.conf" >"$work/mosq.log" 2>&1 & pid=$! ;;
  esac
}
port() { [ "$1" = ours ] && echo "$OURS_PORT" || echo "$MOSQ_PORT"; }
stop() { kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=; }

declare -A row
for b in ours mosq; do
  p=$(port $b)
  start $b
  wait_port "$p"
  echo "== $b: storing $n retained messages" >&2
  t0=$(date +%s.%N)
  $BENCH --broker "127.0.0.1:$p" --workload retained-load --messages "$n" --payload 64 --inflight 256 >/dev/null
  row[$b,load_s]=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  sleep 1
  row[$b,load_rss]=$(mib "$(status "$pid" VmRSS)")
  row[$b,load_hwm]=$(mib "$(status "$pid" VmHWM)")
  stop
  echo "== $b: restarting (recovery from disk)" >&2
  t0=$(date +%s.%N)
  start $b
  wait_port "$p"
  row[$b,recover_s]=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  sleep 2
  row[$b,rec_rss]=$(mib "$(status "$pid" VmRSS)")
  row[$b,rec_hwm]=$(mib "$(status "$pid" VmHWM)")
  echo "== $b: counting with a subscriber to #" >&2
  row[$b,count]=$($BENCH --broker "127.0.0.1:$p" --workload retained-count --messages "$n" --json |
    sed -E 's/.*"received":([0-9]+).*/\1/') || true
  row[$b,count_hwm]=$(mib "$(status "$pid" VmHWM)")
  stop
  row[$b,disk]=$(du -sm "$work/$b" | cut -f1)
done

echo "| $n retained, 64 B | mqtt-broker | Mosquitto $("$MOSQUITTO" -h 2>/dev/null | awk 'NR==1 {print $3}') |"
echo "|---|---|---|"
for k in "load_s:storing (s)" "load_rss:VmRSS after storing (MiB)" "load_hwm:VmHWM after storing (MiB)" \
         "recover_s:restart until listening (s)" "rec_rss:VmRSS after recovery (MiB)" \
         "rec_hwm:VmHWM after recovery (MiB)" "count:received by a \`#\` subscriber after recovery" \
         "count_hwm:VmHWM after that subscribe (MiB)" "disk:data on disk (MiB)"; do
  echo "| ${k#*:} | ${row[ours,${k%%:*}]} | ${row[mosq,${k%%:*}]} |"
done
echo "SUMMARY retained_memory: $n retained; after recovery VmRSS ours ${row[ours,rec_rss]} MiB, Mosquitto ${row[mosq,rec_rss]} MiB; after storing ours ${row[ours,load_rss]} MiB, Mosquitto ${row[mosq,load_rss]} MiB; # subscriber got ${row[ours,count]} / ${row[mosq,count]}"
