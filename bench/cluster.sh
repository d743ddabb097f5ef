#!/usr/bin/env bash
# QoS 1 with persistent subscribers: a 3-node cluster (every acknowledgement waits for a majority of nodes, each
# synced) against one broker with sync = "always" (each acknowledgement waits for its own sync), same machine, same
# run. Prints a Markdown section; bench/compare.sh puts it into BENCHMARKS.md. Usage: bench/cluster.sh [SECONDS].
# Needs release builds of mqtt-broker and mqtt-bench (compare.sh builds them).
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-5}
# DIAGNOSTIC=0 skips the diagnostic rows (the same brokers with their data on tmpfs, where a sync costs nothing).
diagnostic=${DIAGNOSTIC:-1}
# BROKER=path runs another build of the broker (both the single node and the cluster), to compare builds run by run.
broker=${BROKER:-./target/release/mqtt-broker}
# SNAPSHOT_BYTES=N sets the cluster's [cluster] snapshot_bytes (e.g. 8388608, so snapshots happen within a cell).
snapshot_bytes=${SNAPSHOT_BYTES:-}
work=$(mktemp -d)
shm=$(mktemp -d /dev/shm/mqtt-cluster-bench.XXXXXX)
pids=()
# Waits for the brokers to exit, so a run right after finds their ports free.
# KEEP_LOGS=dir keeps the cluster nodes' logs there (leader changes, snapshot timings).
keep_logs=${KEEP_LOGS:-}
trap 'kill "${pids[@]}" 2>/dev/null || true; wait; [ -z "$keep_logs" ] || cp "$work"/*.log "$keep_logs"/ 2>/dev/null; rm -rf "$work" "$shm"' EXIT

run() { # port pid args...
  local port=$1 pid=$2; shift 2
  # A cell that fails (a leader change under heavy load closes the clients) is shown as failed, not the whole run lost.
  ./target/release/mqtt-bench --broker "127.0.0.1:$port" --broker-pid "$pid" --duration "$duration" --json "$@" \
    || echo '{"msgs_per_sec": 0, "p99_us": "-", "lost": "failed"}'
}
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
# CPU ticks (utime + stime, fields 14 and 15 of /proc/PID/stat) of each pid given, space-separated.
ticks() {
  local pid
  for pid in "$@"; do
    awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat" 2>/dev/null || echo 0
  done | paste -sd' '
}
# cpu_per_m "BEFORE" "AFTER" RECEIVED: CPU seconds per 10^6 received messages of each pid, then their sum.
cpu_per_m() {
  python3 -c "
import sys
b, a, n = [int(x) for x in sys.argv[1].split()], [int(x) for x in sys.argv[2].split()], max(int(sys.argv[3]), 1)
hz = $(getconf CLK_TCK)
each = [(y - x) / hz / n * 1e6 for x, y in zip(b, a)]
print(' / '.join(f'{c:.2f}' for c in each) + (f' = {sum(each):.2f}' if len(each) > 1 else ''))" "$1" "$2" "$3"
}

"$broker" --listen 127.0.0.1:18890 --data-dir "$work/single" --sync always --sys-interval 0 \
  --log-level warn &
single_pid=$!
pids+=("$single_pid")

# start_cluster NAME DATA_ROOT FIRST: a 3-node cluster whose nodes take client ports 1889{FIRST..FIRST+2} and peer
# ports 1790{FIRST..}, data directories under DATA_ROOT; sets NAME_port and NAME_pid (the leader's client port and pid)
# and NAME_followers (the other nodes' client addresses).
start_cluster() {
  local name=$1 root=$2 first=$3 i n leader=""
  for n in 0 1 2; do
    i=$((first + n))
    cat > "$work/$name$i.toml" <<CONF
data_dir = "$root/$name$i"
[[listeners]]
address = "127.0.0.1:1889$i"
[limits]
sys_interval = 0
[cluster]
node_id = $((n + 1))
cluster_id = "bench-$name"
peers = [
  { id = 1, address = "127.0.0.1:1790$first" },
  { id = 2, address = "127.0.0.1:1790$((first + 1))" },
  { id = 3, address = "127.0.0.1:1790$((first + 2))" },
]
CONF
    [ -n "$snapshot_bytes" ] && echo "snapshot_bytes = $snapshot_bytes" >> "$work/$name$i.toml"
    "$broker" --config "$work/$name$i.toml" --log-level info 2> "$work/$name$i.log" &
    pids+=("$!")
    eval "${name}_pid$i=$!"
  done
  # The leader is the node that logs that it serves clients.
  for _ in $(seq 1 100); do
    leader=$(grep -l "serving clients" "$work/$name"?.log 2>/dev/null | head -1 | sed "s/.*$name\([0-9]\).log/\1/") || true
    [ -n "$leader" ] && break
    sleep 0.1
  done
  [ -n "$leader" ] || { echo "no cluster leader elected" >&2; cat "$work/$name"?.log >&2; exit 1; }
  local pid_var="${name}_pid$leader" followers=""
  eval "${name}_pid=${!pid_var}"
  eval "${name}_port=1889$leader"
  for n in 0 1 2; do
    i=$((first + n))
    [ "$i" = "$leader" ] || followers+="127.0.0.1:1889$i,"
  done
  eval "${name}_followers=${followers%,}"
}

start_cluster node "$work" 1
if [ "$diagnostic" = 1 ]; then
  start_cluster shm "$shm" 4
  "$broker" --listen 127.0.0.1:18897 --data-dir "$shm/single" --sync always --sys-interval 0 \
    --log-level warn &
  shm_single_pid=$!
  pids+=("$shm_single_pid")
fi
leader_pid=$node_pid
leader_port=$node_port
followers=$node_followers
# The cluster's pids, the leader first (CPU per message is counted for each node over each cell).
node_pids="$leader_pid"
for n in 1 2 3; do
  v="node_pid$n"
  [ "${!v}" = "$leader_pid" ] || node_pids+=" ${!v}"
done

rows=""
cpu_rows=""
# ROWS="fan-out 16 leader" runs only the rows named (comma-separated), e.g. to measure one row's CPU per message.
IFS=, read -ra specs <<< "${ROWS:-pairs 4 leader,fan-out 16 leader,pairs 6 spread,fan-out 16 spread}"
for spec in "${specs[@]}"; do
  set -- $spec
  echo "== cluster vs single: $1 clients=$2 qos=1 persistent, cluster clients on the $3" >&2
  spread=()
  [ "$3" = spread ] && spread=(--spread "$followers")
  before=$(ticks "$single_pid")
  single=$(run 18890 "$single_pid" --workload "$1" --clients "$2" --qos 1 --payload 64 --persistent)
  single_cpu=$(cpu_per_m "$before" "$(ticks "$single_pid")" "$(field "$single" received 2>/dev/null || echo 0)")
  before=$(ticks $node_pids)
  cluster=$(run "$leader_port" "$leader_pid" --workload "$1" --clients "$2" --qos 1 --payload 64 --persistent "${spread[@]}")
  cluster_cpu=$(cpu_per_m "$before" "$(ticks $node_pids)" "$(field "$cluster" received 2>/dev/null || echo 0)")
  s=$(field "$single" msgs_per_sec); c=$(field "$cluster" msgs_per_sec)
  ratio=$(python3 -c "print(f'{$c / max($s, 1):.2f}')")
  where=$([ "$3" = spread ] && echo "all three nodes" || echo "the leader")
  rows+="| $1 | $2 | $where | $s | $c | ${ratio}x | $(field "$single" p99_us) | $(field "$cluster" p99_us) | $(field "$single" lost) / $(field "$cluster" lost) |"$'\n'
  cpu_rows+="| $1 | $2 | $where | $single_cpu | $cluster_cpu | $(cut -d' ' -f1 /proc/loadavg) |"$'\n'
done

diag_rows=""
if [ "$diagnostic" = 1 ]; then
  for spec in "pairs 4" "fan-out 16"; do
    set -- $spec
    echo "== diagnostic, data on tmpfs: $1 clients=$2 qos=1 persistent" >&2
    single=$(run 18890 "$single_pid" --workload "$1" --clients "$2" --qos 1 --payload 64 --persistent)
    cluster=$(run "$shm_port" "$shm_pid" --workload "$1" --clients "$2" --qos 1 --payload 64 --persistent)
    single_shm=$(run 18897 "$shm_single_pid" --workload "$1" --clients "$2" --qos 1 --payload 64 --persistent)
    s=$(field "$single" msgs_per_sec); c=$(field "$cluster" msgs_per_sec); t=$(field "$single_shm" msgs_per_sec)
    ratio=$(python3 -c "print(f'{$c / max($s, 1):.2f}')")
    ratio_shm=$(python3 -c "print(f'{$c / max($t, 1):.2f}')")
    diag_rows+="| $1 | $2 | $s | $c | ${ratio}x | $t | ${ratio_shm}x | $(field "$cluster" p99_us) | $(field "$cluster" lost) |"$'\n'
  done
fi

echo "## Cluster: 3 nodes against one durable node"
echo
echo "QoS 1, 64 B payloads, subscribers with persistent sessions (Clean Session 0). One broker with \`sync = \"always\"\`"
echo "against a 3-node cluster (\`examples/cluster/\`-style configuration, all on this machine and its one disk),"
echo "measured by \`bench/cluster.sh\` in the same run, ${duration}s each. In the cluster every acknowledgement waits until"
echo "its record is committed on two of three nodes, each synced. The clients talk to the leader, or are spread over all"
echo "three nodes (followers relay them to the leader; each subscriber on another node than its publisher). Load average when"
echo "measured: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores (all three nodes, the single broker and the load"
echo "generator share them), so the rows vary from run to run; compare the two columns of one row."
echo
echo "| workload | clients | cluster clients on | single node msg/s | 3-node cluster msg/s | ratio | p99 µs (single) | p99 µs (cluster) | lost (single / cluster) |"
echo "|---|---|---|---|---|---|---|---|---|"
printf "%s" "$rows"
echo
echo "CPU seconds per 10^6 received messages of each process over its cell (utime + stime from /proc), same run:"
echo
echo "| workload | clients | cluster clients on | single node | leader / follower / follower = 3 nodes | load (1 min) after |"
echo "|---|---|---|---|---|---|"
printf "%s" "$cpu_rows"
if [ "$diagnostic" = 1 ]; then
  echo
  echo "Diagnostic, not a durability setting: the same workloads against a second 3-node cluster whose data directories"
  echo "are on tmpfs (\`/dev/shm\`, where \`fdatasync\` returns at once and nothing survives a power cut), and against one"
  echo "broker with \`sync = \"always\"\` on tmpfs, clients on the leader. It separates what the disk's syncs cost from what the"
  echo "protocol (hops, Raft, relays of a turn) costs. Same run as above."
  echo
  echo "| workload | clients | single node msg/s (disk) | cluster msg/s (tmpfs) | ratio | single node msg/s (tmpfs) | ratio (both tmpfs) | p99 µs (cluster, tmpfs) | lost |"
  echo "|---|---|---|---|---|---|---|---|---|"
  printf "%s" "$diag_rows"
fi
