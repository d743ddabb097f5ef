#!/usr/bin/env bash
# Profiles the release broker under one mqtt-bench workload with perf and prints where its time goes: the self time
# of the hottest functions and the inclusive time of the broker's main stages. Usage:
#   bench/profile.sh [mqtt-bench workload args...]     (default: --workload fan-out --clients 16 --qos 1)
# Needs perf (Debian: linux-perf). The recording is left in target/profile.data for `perf report -i`.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 0 ] && set -- --workload fan-out --clients 16 --qos 1
command -v perf >/dev/null 2>&1 || { echo "perf is not installed (Debian: apt-get install linux-perf)" >&2; exit 1; }
cargo build --release --quiet --bin mqtt-broker --bin mqtt-bench

work=$(mktemp -d)
port=18885
./target/release/mqtt-broker --listen "127.0.0.1:$port" --data-dir "$work/data" --sys-interval 0 --log-level error &
broker=$!
trap 'kill $broker 2>/dev/null || true; rm -rf "$work"' EXIT
sleep 0.5

echo "== load: $*" >&2
./target/release/mqtt-bench --broker "127.0.0.1:$port" --duration 5 "$@" 2>/dev/null | tail -n 1 &
load=$!
sleep 1.5
# cpu-clock: virtual machines often have no hardware counters. DWARF call graphs: the release build keeps debug
# line tables but no frame pointers.
perf record -q -e cpu-clock -F 499 --call-graph dwarf,16384 -p "$broker" -o target/profile.data -- sleep 3 >/dev/null 2>&1
wait $load

echo "== self time (top functions)"
perf report -i target/profile.data --no-children --stdio --percent-limit 2 -g none 2>/dev/null |
  grep -E '^ +[0-9]' | sed -E 's/ +\[\.\]| +\[k\]/ /' | head -n 20
echo "== inclusive time of the broker's stages"
perf report -i target/profile.data --children --stdio -g none 2>/dev/null |
  grep -E 'decode_received|Decoder::next_packet|receive_publish|deliver_plan|::pump$|handle_puback|complete_inflight|Conn::flush|__GI___writev|epoll_wait|commit_and_flush' |
  grep -v inlined | awk '{printf "%8s  %s\n", $1, $NF}' | sort -rn | uniq | head -n 14
samples=$(perf report -i target/profile.data --stdio 2>/dev/null | awk '/^# Samples:.*cpu-clock/ && !n {print $3; n=1}')
echo "SUMMARY profile: $* (${samples:-?} samples at 499 Hz over 3 s; recording in target/profile.data)"
