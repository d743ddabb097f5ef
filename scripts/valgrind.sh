#!/usr/bin/env bash
# Memory errors and leaks under valgrind memcheck (issue 16):
#   1. the release mqtt-broker through a short end-to-end workload (scripts/valgrind_workload.py: connect, subscribe,
#      QoS 0/1/2, retained, a will, a persistent session, a takeover, TLS, WebSockets, secure WebSockets), ended by
#      SIGTERM with clients connected;
#   2. the core's unit tests (release build) but the randomized and very-deep ones, which take 20+ minutes under
#      memcheck and exercise no code the others do not (`--core-filter PATTERN` narrows further).
# Fails on any invalid read or write (any memcheck error) and on any definitely or indirectly lost block. Installs
# valgrind, openssl and paho-mqtt if they are missing. Prints one "valgrind:" summary line.
set -euo pipefail
cd "$(dirname "$0")/.."

core_filter=""
while [ $# -gt 0 ]; do
  case "$1" in
    --core-filter) core_filter="$2"; shift 2 ;;
    *) echo "usage: scripts/valgrind.sh [--core-filter PATTERN]" >&2; exit 2 ;;
  esac
done

if ! command -v valgrind >/dev/null 2>&1 || ! command -v openssl >/dev/null 2>&1; then
  (apt-get update -qq && apt-get install -y -qq valgrind openssl) >/dev/null
fi
python3 -c "import paho.mqtt" 2>/dev/null ||
  python3 -m pip install --quiet --disable-pip-version-check paho-mqtt 2>&1 | grep -v "WARNING: Running pip as" || true

work=$(mktemp -d)
# The memcheck logs stay here for reading after a failure.
logs=target/valgrind
mkdir -p "$logs"
broker_pid=""
cleanup() {
  [ -n "$broker_pid" ] && kill -KILL "$broker_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Memcheck errors of any kind and definite/indirect leaks count; "possibly lost" and "still reachable" do not (thread
# stacks and statics alive at exit).
memcheck=(valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite,indirect
  --errors-for-leak-kinds=definite,indirect --error-exitcode=99 --track-origins=yes --num-callers=30
  --suppressions=scripts/valgrind.supp)

# The verdict of one valgrind log: prints the error and leak lines, fails unless both are zero.
verdict() {
  local log="$1" errors definite indirect
  errors=$(grep -Eo 'ERROR SUMMARY: [0-9,]+ errors' "$log" | tail -n 1 | grep -Eo '[0-9,]+' | head -n 1 | tr -d ,)
  definite=$(grep -Eo 'definitely lost: [0-9,]+ bytes' "$log" | grep -Eo '[0-9,]+' | tr -d , | awk '{s+=$1} END {print s+0}')
  indirect=$(grep -Eo 'indirectly lost: [0-9,]+ bytes' "$log" | grep -Eo '[0-9,]+' | tr -d , | awk '{s+=$1} END {print s+0}')
  echo "$errors errors, $definite bytes definitely lost, $indirect bytes indirectly lost"
  [ "${errors:-1}" = 0 ] && [ "$definite" = 0 ] && [ "$indirect" = 0 ]
}

echo "== valgrind: the release broker through the end-to-end workload"
cargo build --release --quiet --bin mqtt-broker
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
(
  cd "$work"
  openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.pem -days 2 -subj "/CN=valgrind CA" 2>/dev/null
  echo "subjectAltName=DNS:localhost,IP:127.0.0.1" >server.ext
  openssl req "${ec[@]}" -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 \
    -extfile server.ext 2>/dev/null
)
tls="cert_file = \"$work/server.pem\"
key_file = \"$work/server.key\""
cat >"$work/broker.toml" <<TOML
[[listeners]]
address = "127.0.0.1:0"
protocol = "mqtt"
[[listeners]]
address = "127.0.0.1:0"
protocol = "mqtts"
$tls
[[listeners]]
address = "127.0.0.1:0"
protocol = "ws"
[[listeners]]
address = "127.0.0.1:0"
protocol = "wss"
$tls
TOML
# On epoll: memcheck cannot see what the kernel writes through an io_uring ring (received bytes land in provided
# buffers unseen), and it holds signals while a thread blocks in io_uring_enter, so SIGTERM waits for the ring's
# timeout. The io_uring driver's own paths are covered by the end-to-end suite, which runs on it by default.
"${memcheck[@]}" --log-file="$logs/broker.log" ./target/release/mqtt-broker --config "$work/broker.toml" \
  --data-dir "$work/data" --io epoll 2>"$work/broker.log" &
broker_pid=$!
ports=()
for _ in $(seq 1 600); do
  mapfile -t ports < <(grep -Eo 'listening on 127\.0\.0\.1:[0-9]+' "$work/broker.log" | grep -Eo '[0-9]+$' || true)
  [ "${#ports[@]}" -ge 4 ] && break
  sleep 0.1
done
[ "${#ports[@]}" -ge 4 ] || { cat "$work/broker.log"; echo "the broker did not report its 4 listeners"; exit 1; }
python3 scripts/valgrind_workload.py "${ports[0]}" "${ports[1]}" "${ports[2]}" "${ports[3]}" "$work/ca.pem" "$broker_pid"
status=0
wait "$broker_pid" || status=$?
broker_pid=""
grep -E 'ERROR SUMMARY|definitely lost|indirectly lost|Invalid|uninitialised' "$logs/broker.log" | head -n 20 || true
broker_verdict=$(verdict "$logs/broker.log") || { cat "$logs/broker.log" | tail -n 80; echo "broker: $broker_verdict"; exit 1; }
[ "$status" = 0 ] || { tail -n 80 "$logs/broker.log"; echo "the broker exited with $status after SIGTERM"; exit 1; }
echo "broker: $broker_verdict, exit 0 after SIGTERM"

echo "== valgrind: the core's unit tests"
test_bin=$(cargo test --release -p mqtt-core --lib --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["lib"]:
        print(m["executable"])')
[ -n "$test_bin" ] || { echo "no core test binary"; exit 1; }
# One test thread: memcheck serialises threads anyway, and the log stays in order.
"${memcheck[@]}" --log-file="$logs/core-tests.log" "$test_bin" --test-threads=1 -q --skip random_ --skip very_deep_ \
  $core_filter | tail -n 3
core_verdict=$(verdict "$logs/core-tests.log") || { tail -n 80 "$logs/core-tests.log"; echo "core tests: $core_verdict"; exit 1; }
echo "core tests: $core_verdict"

echo "valgrind: broker workload ($broker_verdict) and core unit tests ($core_verdict) clean"
