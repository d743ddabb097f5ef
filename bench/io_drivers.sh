#!/usr/bin/env bash
# The broker's two I/O drivers (epoll and io_uring) side by side, with Mosquitto as the reference: throughput, p99,
# broker CPU seconds per million deliveries, and system calls per delivered message. Prints a Markdown section on
# stdout (progress on stderr). Usage: bench/io_drivers.sh [seconds per run] (bench/compare.sh calls it).
#
# CPU is the broker's utime + stime from /proc from when publishing began (mqtt-bench reads it). System calls
# come from a second, shorter run of the same workload under `strace -c -f` (which slows the broker, so it is not the run that is timed), divided by
# the messages delivered in it. io_uring's sends and receives are not system calls: that is the point.
#
# Conditions (environment), since on a 2-core VM they move every broker's numbers more than the brokers differ:
#   PIN=1   brokers on CPU 0, mqtt-bench on CPU 1 at SCHED_FIFO (needs root): the generator's own scheduling
#           delays are then not what the latency measures, and it does not compete with the broker for a core.
#   SPIN=1  a SCHED_IDLE spinner on each CPU, run only when nothing else wants it: a halted vCPU can take
#           milliseconds to wake (a guest with halt polling off), and without it every broker's p99 measures that.
#           It makes every wake-up a switch from another task, which costs a broker that wakes often more.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-5}
strace_duration=2

command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || { apt-get update -qq && apt-get install -y -qq mosquitto >/dev/null; }
command -v strace >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq strace >/dev/null; } || true
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
cargo build --release --quiet --bin mqtt-broker --bin mqtt-bench
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

work=$(mktemp -d)
pids=()
broker_cpu=(); bench_cpu=(); condition="brokers and mqtt-bench share both CPUs"
if [ "${PIN:-0}" = 1 ]; then
  broker_cpu=(taskset -c 0)
  bench_cpu=(taskset -c 1)
  if chrt -f 1 true 2>/dev/null; then bench_cpu+=(chrt -f 1); fi
  condition="brokers on CPU 0, mqtt-bench on CPU 1 (${bench_cpu[*]})"
fi
if [ "${SPIN:-0}" = 1 ]; then
  for cpu in $(seq 0 $(( $(nproc) - 1 ))); do
    chrt -i 0 taskset -c "$cpu" bash -c 'while :; do :; done' &
    pids+=($!)
  done
  condition="$condition; a SCHED_IDLE spinner on every CPU"
fi
echo "== condition: $condition" >&2
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
cat > "$work/mosquitto.conf" <<CONF
listener 18887 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 100000
max_inflight_messages 64
max_connections -1
CONF
"${broker_cpu[@]}" ./target/release/mqtt-broker --io epoll --listen 127.0.0.1:18885 --data-dir "$work/epoll" --sys-interval 0 \
  --log-level warn --max-connections 100000 --max-connections-per-address 0 2>"$work/epoll.log" &
epoll_pid=$!
"${broker_cpu[@]}" ./target/release/mqtt-broker --io uring --listen 127.0.0.1:18886 --data-dir "$work/uring" --sys-interval 0 \
  --log-level info --max-connections 100000 --max-connections-per-address 0 2>"$work/uring.log" &
uring_pid=$!
"${broker_cpu[@]}" "$MOSQUITTO" -c "$work/mosquitto.conf" >/dev/null 2>&1 &
mosq_pid=$!
pids+=("$epoll_pid" "$uring_pid" "$mosq_pid")
sleep 1
grep -q "io driver: io_uring" "$work/uring.log" || { echo "the io_uring broker did not start on io_uring:" >&2; cat "$work/uring.log" >&2; exit 1; }

tick=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
# Every run is bounded (mqtt-bench bounds each setup wait itself; `timeout` bounds the whole run, with room for its
# draining and 2,000 connections): a slow or stuck peer makes a failed cell, never a hung run.
bench() { # port pid seconds args...
  local port=$1 pid=$2 secs=$3; shift 3
  timeout -k 5 $((secs + 60)) "${bench_cpu[@]}" \
    ./target/release/mqtt-bench --broker "127.0.0.1:$port" --broker-pid "$pid" --duration "$secs" --json "$@"
}

# One cell group: "msg/s | p99 µs | CPU s per 10^6 | syscalls/msg" for one broker and workload.
measure() { # port pid args...
  local port=$1 pid=$2; shift 2
  local before after out received cpu syscalls="n/a"
  before=$(cpu_ticks "$pid")
  if ! out=$(bench "$port" "$pid" "$duration" "$@"); then
    echo "== run failed or timed out on port $port" >&2
    echo "failed | - | - | -"
    return
  fi
  after=$(cpu_ticks "$pid")
  received=$(field "$out" received)
  # From when publishing began, as mqtt-bench measures it (connecting 16,000 clients is not a delivery's cost);
  # the whole run from /proc where it could not.
  cpu=$(python3 -c "import json,sys; v=json.loads(sys.argv[1]).get('cpu_s_per_million'); print(f'{float(v):.1f}' if v not in (None, 'null') else f'{($after - $before) / $tick / max($received, 1) * 1e6:.1f}')" "$out")
  if command -v strace >/dev/null 2>&1; then
    # strace detaches on SIGINT; `timeout` sends it after the longest the traced run may take, so a broker slowed
    # by tracing cannot hold the script (the traced run itself is bounded by `bench`).
    rm -f "$work/strace.txt"
    timeout -s INT $((strace_duration + 70)) strace -c -f -p "$pid" -o "$work/strace.txt" 2>/dev/null &
    local strace_pid=$!
    sleep 0.5
    local traced=""
    traced=$(bench "$port" "$pid" "$strace_duration" "$@") || traced=""
    kill -INT "$strace_pid" 2>/dev/null || true
    wait "$strace_pid" 2>/dev/null || true
    local calls
    calls=$(awk '$NF == "total" {print $4}' "$work/strace.txt" 2>/dev/null || true)
    if [ -n "$traced" ] && [ -n "$calls" ]; then
      syscalls=$(python3 -c "print(f'{$calls / max($(field "$traced" received), 1):.2f}')")
    else
      echo "== traced run failed or timed out on port $port" >&2
      syscalls="failed"
    fi
  fi
  echo "$(field "$out" msgs_per_sec) | $(field "$out" p99_us) | $cpu | $syscalls"
}

rows=""
# workload, clients, QoS, payload, and optionally a fixed rate per publisher.
for spec in "fan-in 4 0 64" "fan-in 4 1 64" "fan-out 16 0 64" "fan-out 16 1 64" "pairs 4 1 64" \
            "pairs 4 1 16384" "fan-out 16 1 16384" "fan-in 2000 1 64 8" "fan-in 16000 1 64 1"; do
  set -- $spec
  rate_args=(); label="$1"
  if [ -n "${5:-}" ]; then rate_args=(--rate "$5"); label="$1 @ $5/s each"; fi
  # Paced publishers share one event loop in mqtt-bench, one descriptor each; the broker holds one per client too.
  if [ "$2" -gt $(( $(ulimit -n) - 200 )) ]; then
    echo "== skipping $label clients=$2: open-file limit $(ulimit -n)" >&2
    continue
  fi
  echo "== $label clients=$2 qos=$3 payload=$4" >&2
  args=(--workload "$1" --clients "$2" --qos "$3" --payload "$4" "${rate_args[@]}")
  e=$(measure 18885 "$epoll_pid" "${args[@]}")
  u=$(measure 18886 "$uring_pid" "${args[@]}")
  m=$(measure 18887 "$mosq_pid" "${args[@]}")
  rows+="| $label | $2 | $3 | $4 B | $e | $u | $m |"$'\n'
  echo "| $label | $2 | $3 | $4 B | $e | $u | $m |" >&2
done

echo "## I/O drivers: epoll and io_uring"
echo
echo "The same broker on each driver (\`--io epoll\`, \`--io uring\`) and Mosquitto, measured by \`bench/io_drivers.sh\`."
echo "Each cell group is msg/s, p99 µs, broker CPU seconds per million delivered messages (utime + stime from /proc, from when"
echo "publishing began),"
echo "and system calls per delivered message (a separate ${strace_duration}s run under \`strace -c -f\`). Condition: $condition."
echo
echo "| workload | clients | QoS | payload | epoll msg/s | p99 µs | CPU s/10⁶ | syscalls/msg | io_uring msg/s | p99 µs | CPU s/10⁶ | syscalls/msg | Mosquitto msg/s | p99 µs | CPU s/10⁶ | syscalls/msg |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
printf "%s" "$rows"
