#!/usr/bin/env bash
# Benchmarks a local `dynamo dev` cluster (3 nodes, N=3 R=2 W=2, 1 KiB values, 50% reads) under
# both sync policies, and `redis-benchmark -t set,get` against a local redis-server in the same
# run as the single-node baseline. Prints ops/s, latency percentiles and the cluster/Redis ratio,
# then, for each policy, p99.9 at half of the cluster's measured peak rate.
#
# Everything runs on 127.0.0.1. Settings (environment): DURATION_S (default 10), CONCURRENCY
# (default 32), KEYS (default 10000), REDIS_REQUESTS (default 200000), OUT (report directory),
# PROFILE=1 (record a perf profile of the cluster during each peak run into $OUT/profile-*.txt).
# Each load run starts with one second of warm-up that is not counted (connections open, peers
# finish dialling each other).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION_S=${DURATION_S:-10}
CONCURRENCY=${CONCURRENCY:-32}
KEYS=${KEYS:-10000}
REDIS_REQUESTS=${REDIS_REQUESTS:-200000}
OUT=${OUT:-target/bench-node}
VALUE_BYTES=1024
mkdir -p "$OUT"

if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
  echo "installing redis-server and redis-tools" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null
fi

cargo build --release -p dynamo-node >&2
BIN=target/release/dynamo

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

pids=()
cleanup() { for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# --- Redis baseline -------------------------------------------------------------------------
REDIS_PORT=$(free_port)
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
  --daemonize no --loglevel warning >"$OUT/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-benchmark -p "$REDIS_PORT" -t set,get -d "$VALUE_BYTES" -c "$CONCURRENCY" -n "$REDIS_REQUESTS" -q \
  | tr '\r' '\n' | grep -E '^(SET|GET): [0-9.]+ requests per second' | tee "$OUT/redis.txt"
redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
redis_set=$(awk '/^SET:/{print $2}' "$OUT/redis.txt")
redis_get=$(awk '/^GET:/{print $2}' "$OUT/redis.txt")
# A 50/50 mix runs at the harmonic mean of the two rates.
redis_mix=$(python3 -c "print(round(2/(1/$redis_set+1/$redis_get),1))")

# --- The cluster, per sync policy -----------------------------------------------------------
run_cluster() {
  local sync=$1
  local data="$OUT/dev-data-$sync"
  "$BIN" dev --fresh --data-dir "$data" --sync "$sync" >"$OUT/dev-$sync.log" 2>&1 &
  local dev=$!
  pids+=($dev)
  for _ in $(seq 100); do curl -sf http://127.0.0.1:8083/status >/dev/null && break; sleep 0.1; done
  local perf_pid=""
  if [ "${PROFILE:-0}" = 1 ] && command -v perf >/dev/null; then
    (sleep 2; perf record -F 999 -g -p "$dev" -o "$OUT/perf-$sync.data" -- sleep $((DURATION_S - 2)) \
      >/dev/null 2>&1) &
    perf_pid=$!
  fi
  "$BIN" bench --concurrency "$CONCURRENCY" --keys "$KEYS" --value-bytes "$VALUE_BYTES" \
    --read-ratio 0.5 --duration-s "$DURATION_S" | tee "$OUT/bench-$sync-peak.txt" >&2
  if [ -n "$perf_pid" ]; then
    wait "$perf_pid" || true
    perf report -i "$OUT/perf-$sync.data" --no-children --sort dso,sym 2>/dev/null \
      | grep -E '^ +[0-9]' | head -60 >"$OUT/profile-$sync.txt" || true
    echo "profile: $OUT/profile-$sync.txt" >&2
  fi
  local peak
  peak=$(awk -F'[= ]' '/^RESULT/{print $3}' "$OUT/bench-$sync-peak.txt")
  local half
  half=$(python3 -c "print(round($peak/2,1))")
  "$BIN" bench --concurrency "$CONCURRENCY" --keys "$KEYS" --value-bytes "$VALUE_BYTES" \
    --read-ratio 0.5 --duration-s "$DURATION_S" --rate "$half" | tee "$OUT/bench-$sync-half.txt" >&2
  curl -s http://127.0.0.1:8081/metrics >"$OUT/metrics-$sync.txt" || true
  kill -INT "$dev"
  wait "$dev" || true
}
run_cluster always
run_cluster none

field() { awk -v k="$2" '/^RESULT/{for(i=2;i<=NF;i++){split($i,a,"="); if(a[1]==k) print a[2]}}' "$1"; }
echo
echo "=== results (concurrency $CONCURRENCY, ${VALUE_BYTES} B values, ${DURATION_S} s per run) ==="
printf '%-28s %12s %9s %9s %9s\n' "system" "ops/s" "p50 ms" "p99 ms" "p99.9 ms"
printf '%-28s %12s\n' "redis SET" "$redis_set"
printf '%-28s %12s\n' "redis GET" "$redis_get"
printf '%-28s %12s\n' "redis 50/50 (harmonic)" "$redis_mix"
for sync in always none; do
  for run in peak half; do
    f="$OUT/bench-$sync-$run.txt"
    printf '%-28s %12s %9s %9s %9s\n' "dynamo sync=$sync $run" "$(field "$f" ops_per_s)" \
      "$(field "$f" p50_ms)" "$(field "$f" p99_ms)" "$(field "$f" p999_ms)"
  done
done
for sync in always none; do
  peak=$(field "$OUT/bench-$sync-peak.txt" ops_per_s)
  ratio=$(python3 -c "print(round($peak/$redis_mix,3))")
  p999=$(field "$OUT/bench-$sync-half.txt" p999_ms)
  echo "sync=$sync: cluster/redis = $ratio (goal >= 0.3); p99.9 at half peak = $p999 ms (goal < 5)"
done
