#!/usr/bin/env bash
# QoS 1 with persistent subscribers: a 3-node cluster (every acknowledgement waits for a majority of nodes, each
# synced) against one broker with sync = "always" (each acknowledgement waits for its own sync), same machine, same
# run. Prints a Markdown section; bench/compare.sh puts it into BENCHMARKS.md. Usage: bench/cluster.sh [SECONDS].
# Needs release builds of mqtt-broker and mqtt-bench (compare.sh builds them).
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-5}
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT

run() { # port pid args...
  local port=$1 pid=$2; shift 2
  ./target/release/mqtt-bench --broker "127.0.0.1:$port" --broker-pid "$pid" --duration "$duration" --json "$@"
}
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }

./target/release/mqtt-broker --listen 127.0.0.1:18890 --data-dir "$work/single" --sync always --sys-interval 0 \
  --log-level warn &
single_pid=$!
pids+=("$single_pid")

for i in 1 2 3; do
  cat > "$work/node$i.toml" <<CONF
data_dir = "$work/node$i"
[[listeners]]
address = "127.0.0.1:1889$i"
[limits]
sys_interval = 0
[cluster]
node_id = $i
cluster_id = "bench"
peers = [
  { id = 1, address = "127.0.0.1:17901" },
  { id = 2, address = "127.0.0.1:17902" },
  { id = 3, address = "127.0.0.1:17903" },
]
CONF
  ./target/release/mqtt-broker --config "$work/node$i.toml" --log-level info 2> "$work/node$i.log" &
  pids+=("$!")
  eval "node${i}_pid=$!"
done
# The leader is the node that logs that it serves clients.
leader=""
for _ in $(seq 1 100); do
  leader=$(grep -l "serving clients" "$work"/node?.log 2>/dev/null | head -1 | sed 's/.*node\([0-9]\).log/\1/') || true
  [ -n "$leader" ] && break
  sleep 0.1
done
[ -n "$leader" ] || { echo "no cluster leader elected" >&2; cat "$work"/node?.log >&2; exit 1; }
leader_pid_var="node${leader}_pid"
leader_pid=${!leader_pid_var}
leader_port=1889$leader

rows=""
# The other nodes' client ports, for the rows whose clients are spread over all three nodes.
followers=$(for i in 1 2 3; do [ "$i" = "$leader" ] || printf "127.0.0.1:1889%s," "$i"; done)
followers=${followers%,}
for spec in "pairs 4 leader" "fan-out 16 leader" "pairs 6 spread" "fan-out 16 spread"; do
  set -- $spec
  echo "== cluster vs single: $1 clients=$2 qos=1 persistent, cluster clients on the $3" >&2
  spread=()
  [ "$3" = spread ] && spread=(--spread "$followers")
  single=$(run 18890 "$single_pid" --workload "$1" --clients "$2" --qos 1 --payload 64 --persistent)
  cluster=$(run "$leader_port" "$leader_pid" --workload "$1" --clients "$2" --qos 1 --payload 64 --persistent "${spread[@]}")
  s=$(field "$single" msgs_per_sec); c=$(field "$cluster" msgs_per_sec)
  ratio=$(python3 -c "print(f'{$c / max($s, 1):.2f}')")
  where=$([ "$3" = spread ] && echo "all three nodes" || echo "the leader")
  rows+="| $1 | $2 | $where | $s | $c | ${ratio}x | $(field "$single" p99_us) | $(field "$cluster" p99_us) | $(field "$single" lost) / $(field "$cluster" lost) |"$'\n'
done

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
