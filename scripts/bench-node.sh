#!/usr/bin/env bash
# Benchmarks a local `dynamo dev` cluster (3 nodes, N=3 R=2 W=2, 1 KiB values, 50% reads) under
# both sync policies, and `redis-benchmark -t set,get` against a local redis-server in the same
# run as the single-node baseline (in memory, and again with every write fsynced before it is
# acknowledged, `appendfsync always`, the like-for-like baseline of the `always` policy). Prints
# ops/s, latency percentiles and the cluster/Redis ratios, then, for each policy, p99.9 at half of
# the cluster's measured peak rate, with what the machine did meanwhile: the CPUs the cluster
# used, how busy the whole machine was, how much of its time the host took back (steal), and how
# late the load generator's pacer thread woke from its sleeps (the scheduling delay any thread saw
# under that load). Right after each policy's half-rate run the same load generator drives a
# redis-server at that very rate (`dynamo bench --protocol redis`; in memory after `none`, with
# `appendfsync always` after `always`): the tail baseline, one hop to a single-threaded server,
# that shows what this machine's scheduling alone does to a p99.9 at that rate and moment.
#
# The machine this runs on is usually shared and small, and single runs vary by 20% or more, so
# the whole comparison is repeated ROUNDS times, interleaved (Redis, then each policy on a fresh
# cluster: its peak, then half of that peak), and the report gives every round and the medians.
#
# A peak is a system's best rate over the clients in flight in PEAK_CONCURRENCY (default 32, 128
# and 256), for Redis and the cluster alike: a system whose requests take several hops (the
# cluster's go client, coordinator, replicas, back) or wait for a group fsync (both under
# `always`) reaches its peak only with more requests in flight than a single-threaded in-memory
# one. Each half-rate run allows as many in flight as its policy's peak had.
#
# Everything runs on 127.0.0.1. Settings (environment): ROUNDS (default 3), DURATION_S (default
# 10), PEAK_CONCURRENCY (default "32 128 256"; CONCURRENCY=N is taken as the one level N), KEYS
# (default 10000), REDIS_REQUESTS (default 200000), OUT (report directory), PROFILE=1 (record a
# perf profile of the cluster during each policy's first peak run, at the first level, into
# $OUT/profile-*.txt), PIN=1 (the cluster and Redis on every CPU but the last, the
# load generators on the last one, so that neither takes the other's cores; the peak, and so the
# half rate, are then those of the cluster on its share). Each load run starts with one second of
# warm-up that is not counted (connections open, peers finish dialling each other). PGO=0 (default
# 1) measures the plain `dist` build rather than the profile-guided one.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh

ROUNDS=${ROUNDS:-3}
DURATION_S=${DURATION_S:-10}
PEAK_CONCURRENCY=${PEAK_CONCURRENCY:-${CONCURRENCY:-32 128 256}}
KEYS=${KEYS:-10000}
REDIS_REQUESTS=${REDIS_REQUESTS:-200000}
OUT=${OUT:-target/bench-node}
VALUE_BYTES=1024
POLICIES="always none"
# The tail goal's bound: the half-rate runs also report when their requests over it were due
# (`dynamo bench --slow-ms`), to tell a few stalls from steady queueing.
SLOW_MS=5
mkdir -p "$OUT"
rm -f "$OUT"/redis-*.txt "$OUT"/bench-*.txt "$OUT"/concurrency-*.txt
CLK_TCK=$(getconf CLK_TCK)

for tool in curl python3; do
  command -v "$tool" >/dev/null || { echo "$0 needs $tool" >&2; exit 1; }
done
if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
  echo "installing redis-server and redis-tools" >&2
  apt_install redis-server redis-tools
fi

# The binary operators run (the cluster and the load generator both run it): the `dist` profile,
# the release build with whole-program optimisation, guided by a training profile
# (scripts/build-pgo.sh; PGO=0 measures the plain `dist` build instead, and so does a machine
# where the profile tool cannot be had).
BIN=""
if [ "${PGO:-1}" = 1 ] && ! BIN=$(scripts/build-pgo.sh | tail -n 1); then
  echo "the profile-guided build failed: measuring the plain dist build" >&2
  BIN=""
fi
if [ -z "$BIN" ]; then
  cargo build --profile dist -p dynamo-node >&2
  BIN=target/dist/dynamo
fi
echo "measuring $BIN" >&2

SERVER_PIN=() CLIENT_PIN=()
if [ "${PIN:-0}" = 1 ]; then
  last=$(($(nproc) - 1))
  [ "$last" -ge 1 ] || { echo "PIN=1 needs at least 2 CPUs" >&2; exit 1; }
  SERVER_PIN=(taskset -c "0-$((last - 1))") CLIENT_PIN=(taskset -c "$last")
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

pids=()
cleanup() { for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

median() { python3 -c 'import statistics,sys; print(round(statistics.median(map(float,sys.argv[1:])),3))' "$@"; }

# The request-duration buckets of every node, summed over nodes, operations and outcomes.
server_histograms() {
  { curl -s http://127.0.0.1:808{1,2,3}/metrics || true; } \
    | awk -F'le="' '/^dynamo_request_duration_seconds_bucket/{split($2,a,"\""); n=$0; sub(/.* /,"",n); c[a[1]]+=n}
        END{for(k in c) print k, c[k]}'
}
# server_tail BEFORE AFTER: the share of requests the nodes served in more than 2.5 and 5 ms.
server_tail() {
  python3 - "$1" "$2" <<'PY'
import sys
def load(path):
    return {k: float(v) for k, v in (line.split() for line in open(path) if line.strip())}
a, b = load(sys.argv[1]), load(sys.argv[2])
total = b.get("+Inf", 0) - a.get("+Inf", 0)
def over(le):
    return total - (b.get(le, 0) - a.get(le, 0))
if total > 0:
    print(f"SERVER requests={int(total)} over_2.5ms_pct={100*over('0.0025')/total:.3f} "
          f"over_5ms_pct={100*over('0.005')/total:.3f}")
PY
}

# --- Redis baseline -------------------------------------------------------------------------
# start_redis memory|durable: a fresh redis-server on a free port (REDIS_PORT, REDIS_PID).
# `durable` appends every write to Redis's log and fsyncs it before answering (Redis, like the
# `always` policy, lets one fsync cover the writes of many clients).
start_redis() {
  local persist=(--save '' --appendonly no)
  REDIS_PORT=$(free_port)
  if [ "$1" = durable ]; then
    rm -rf "$OUT/redis-data" && mkdir -p "$OUT/redis-data"
    persist=(--save '' --appendonly yes --appendfsync always --dir "$(cd "$OUT/redis-data" && pwd)")
  fi
  "${SERVER_PIN[@]}" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" "${persist[@]}" \
    --daemonize no --loglevel warning >"$OUT/redis.log" 2>&1 &
  REDIS_PID=$!
  pids+=($REDIS_PID)
  for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
}
stop_redis() {
  redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  wait "$REDIS_PID" 2>/dev/null || true
}

# greater A B: whether rate A is above rate B (B may be empty).
greater() { [ -z "$2" ] || python3 -c "import sys; sys.exit(0 if $1 > $2 else 1)"; }

# run_redis ROUND memory|durable: redis-benchmark's peak rates: at each level of
# PEAK_CONCURRENCY, and the level whose 50/50 mix is fastest is kept (SET, GET, MIX and
# CONCURRENCY lines).
run_redis() {
  local round=$1 mode=$2
  local file="$OUT/redis-$round.txt"
  [ "$mode" = durable ] && file="$OUT/redis-durable-$round.txt"
  start_redis "$mode"
  local c set get mix best=""
  for c in $PEAK_CONCURRENCY; do
    "${CLIENT_PIN[@]}" redis-benchmark -p "$REDIS_PORT" -t set,get -d "$VALUE_BYTES" -c "$c" -n "$REDIS_REQUESTS" -q \
      | tr '\r' '\n' | grep -E '^(SET|GET): [0-9.]+ requests per second' >"$file.c$c"
    set=$(awk '/^SET:/{print $2}' "$file.c$c")
    get=$(awk '/^GET:/{print $2}' "$file.c$c")
    # A 50/50 mix runs at the harmonic mean of the two rates.
    mix=$(python3 -c "print(round(2/(1/$set+1/$get),1))")
    echo "round $round redis ($mode), $c clients: SET $set GET $get, 50/50 $mix" >&2
    if greater "$mix" "$best"; then
      best=$mix
      { cat "$file.c$c"; echo "MIX $mix"; echo "CONCURRENCY $c"; } >"$file"
    fi
    rm -f "$file.c$c"
  done
  stop_redis
}

# cpu_snapshot PID: the process's CPU ticks, the machine's busy ticks (steal included), all its
# ticks, the time, and the ticks the host took back (steal).
cpu_snapshot() {
  local proc
  proc=$(awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0)
  awk -v p="$proc" -v t="$(date +%s.%N)" \
    '/^cpu /{busy=$2+$3+$4+$7+$8+$9; all=busy+$5+$6; print p, busy, all, t, $9}' /proc/stat
}
# cpu_use BEFORE AFTER: the CPUs the process used, how busy the machine was and how much of its
# time the host took (steal) in between.
cpu_use() {
  python3 - "$1" "$2" "$CLK_TCK" <<'PY'
import sys
a, b = (list(map(float, x.split())) for x in sys.argv[1:3])
tck = float(sys.argv[3])
wall = b[3] - a[3]
all_ticks = max(b[2] - a[2], 1)
print(f"CPU cluster_cpus={(b[0]-a[0])/tck/wall:.2f} machine_busy_pct={100*(b[1]-a[1])/all_ticks:.0f}"
      f" steal_pct={100*(b[4]-a[4])/all_ticks:.0f}")
PY
}

# redis_tail ROUND POLICY RATE CONCURRENCY: the same load generator, open loop at RATE with at
# most CONCURRENCY requests in flight, against a fresh redis-server (in memory for `none`,
# `appendfsync always` for `always`).
redis_tail() {
  local round=$1 sync=$2 rate=$3 concurrency=$4 mode=memory
  local file="$OUT/redis-tail-$sync-$round.txt"
  [ "$sync" = always ] && mode=durable
  start_redis "$mode"
  local snap
  snap=$(cpu_snapshot "$REDIS_PID")
  "${CLIENT_PIN[@]}" "$BIN" bench --protocol redis --targets "127.0.0.1:$REDIS_PORT" \
    --concurrency "$concurrency" --keys "$KEYS" --value-bytes "$VALUE_BYTES" --read-ratio 0.5 \
    --duration-s "$DURATION_S" --rate "$rate" --slow-ms "$SLOW_MS" >"$file" 2>&1
  cpu_use "$snap" "$(cpu_snapshot "$REDIS_PID")" | sed 's/cluster_cpus/redis_cpus/' >>"$file"
  stop_redis
  echo "round $round redis ($mode) at $rate ops/s: p99.9 $(field "$file" p999_ms) ms;" \
    "$(grep '^CPU' "$file"); pacer woke late by p99.9 $(field "$file" wakeup_late_p999_ms) ms" >&2
}

# --- The cluster, per sync policy -----------------------------------------------------------
run_cluster() {
  local sync=$1 round=$2
  local data="$OUT/dev-data-$sync"
  "${SERVER_PIN[@]}" "$BIN" dev --fresh --data-dir "$data" --sync "$sync" >"$OUT/dev-$sync.log" 2>&1 &
  local dev=$!
  pids+=($dev)
  wait_for_dev
  local perf_pid=""
  if [ "${PROFILE:-0}" = 1 ] && [ "$round" = 1 ] && command -v perf >/dev/null; then
    (sleep 2; perf record -F 999 -g -p "$dev" -o "$OUT/perf-$sync.data" -- sleep $((DURATION_S - 2)) \
      >/dev/null 2>&1) &
    perf_pid=$!
  fi
  local peak_file="$OUT/bench-$sync-peak-$round.txt" half_file="$OUT/bench-$sync-half-$round.txt"
  # The peak: the best rate over the levels of PEAK_CONCURRENCY (each run's report is kept).
  local c rate best="" best_c=""
  for c in $PEAK_CONCURRENCY; do
    "${CLIENT_PIN[@]}" "$BIN" bench --concurrency "$c" --keys "$KEYS" --value-bytes "$VALUE_BYTES" \
      --read-ratio 0.5 --duration-s "$DURATION_S" >"$OUT/bench-$sync-peak-$round-c$c.txt" 2>&1
    rate=$(field "$OUT/bench-$sync-peak-$round-c$c.txt" ops_per_s)
    echo "round $round sync=$sync: $rate ops/s with $c in flight" >&2
    if greater "$rate" "$best"; then best=$rate; best_c=$c; fi
  done
  { cat "$OUT/bench-$sync-peak-$round-c$best_c.txt"; echo "CONCURRENCY $best_c"; } >"$peak_file"
  if [ -n "$perf_pid" ]; then
    wait "$perf_pid" || true
    perf report -i "$OUT/perf-$sync.data" --no-children --sort dso,sym 2>/dev/null \
      | grep -E '^ +[0-9]' | head -60 >"$OUT/profile-$sync.txt" || true
    echo "profile: $OUT/profile-$sync.txt" >&2
  fi
  local peak half
  peak=$(field "$peak_file" ops_per_s)
  half=$(python3 -c "print(round($peak/2,1))")
  # The nodes' own latency histograms over the counted part of the half-rate run (snapshots
  # after the warm-up and at the end), to tell the servers' share of the tail from the rest
  # (the load generator, the kernel, scheduling on a machine the generator shares).
  # The snapshot runs at the lowest priority, so that its few processes take no CPU the cluster
  # and the load generator want just as the counted part begins.
  (renice -n 19 "$BASHPID" >/dev/null
   sleep 1.2; server_histograms >"$OUT/server-$sync-before.txt"; cpu_snapshot "$dev" >"$OUT/cpu-before.txt") &
  local snap=$!
  "${CLIENT_PIN[@]}" "$BIN" bench --concurrency "$best_c" --keys "$KEYS" --value-bytes "$VALUE_BYTES" \
    --read-ratio 0.5 --duration-s "$DURATION_S" --rate "$half" --slow-ms "$SLOW_MS" >"$half_file" 2>&1
  cpu_snapshot "$dev" >"$OUT/cpu-after.txt"
  wait "$snap" || true
  server_histograms >"$OUT/server-$sync-after.txt"
  server_tail "$OUT/server-$sync-before.txt" "$OUT/server-$sync-after.txt" >>"$half_file"
  cpu_use "$(cat "$OUT/cpu-before.txt")" "$(cat "$OUT/cpu-after.txt")" >>"$half_file"
  curl -s http://127.0.0.1:8081/metrics >"$OUT/metrics-$sync.txt" || true
  kill -INT "$dev"
  wait "$dev" || true
  echo "round $round sync=$sync: peak $peak ops/s, p99.9 at $half ops/s = $(field "$half_file" p999_ms) ms;" \
    "$(grep '^SERVER' "$half_file" || echo 'no server histograms'); $(grep '^CPU' "$half_file");" \
    "pacer woke late by p99.9 $(field "$half_file" wakeup_late_p999_ms) ms" >&2
  redis_tail "$round" "$sync" "$half" "$best_c"
}

for round in $(seq "$ROUNDS"); do
  run_redis "$round" memory
  run_redis "$round" durable
  for sync in $POLICIES; do run_cluster "$sync" "$round"; done
done

echo
echo "=== every round ($BIN, peaks over $PEAK_CONCURRENCY in flight, ${VALUE_BYTES} B values, ${DURATION_S} s per run) ==="
printf '%-6s %-31s %12s %9s %9s %9s %9s %9s\n' round system "ops/s" "p50 ms" "p99 ms" "p99.9 ms" ratio "in flight"
for round in $(seq "$ROUNDS"); do
  mix=$(awk '/^MIX/{print $2}' "$OUT/redis-$round.txt")
  printf '%-6s %-31s %12s %9s %9s %9s %9s %9s\n' "$round" "redis 50/50 (harmonic)" "$mix" "" "" "" "" \
    "$(awk '/^CONCURRENCY/{print $2}' "$OUT/redis-$round.txt")"
  printf '%-6s %-31s %12s %9s %9s %9s %9s %9s\n' "$round" "redis fsync-always 50/50" \
    "$(awk '/^MIX/{print $2}' "$OUT/redis-durable-$round.txt")" "" "" "" "" \
    "$(awk '/^CONCURRENCY/{print $2}' "$OUT/redis-durable-$round.txt")"
  for sync in $POLICIES; do
    for run in peak half; do
      f="$OUT/bench-$sync-$run-$round.txt"
      ratio=""
      [ "$run" = peak ] && ratio=$(python3 -c "print(round($(field "$f" ops_per_s)/$mix,3))")
      printf '%-6s %-31s %12s %9s %9s %9s %9s %9s\n' "$round" "dynamo sync=$sync $run" \
        "$(field "$f" ops_per_s)" "$(field "$f" p50_ms)" "$(field "$f" p99_ms)" "$(field "$f" p999_ms)" "$ratio" \
        "$(awk '/^CONCURRENCY/{print $2}' "$OUT/bench-$sync-peak-$round.txt")"
    done
    f="$OUT/redis-tail-$sync-$round.txt"
    label="redis at that rate"
    [ "$sync" = always ] && label="redis fsync-always at that rate"
    printf '%-6s %-31s %12s %9s %9s %9s\n' "$round" "$label" \
      "$(field "$f" ops_per_s)" "$(field "$f" p50_ms)" "$(field "$f" p99_ms)" "$(field "$f" p999_ms)"
  done
done

echo
echo "=== medians over $ROUNDS rounds ==="
redis_mixes=$(for r in $(seq "$ROUNDS"); do awk '/^MIX/{print $2}' "$OUT/redis-$r.txt"; done)
echo "redis 50/50: $(median $redis_mixes) ops/s"
durable_mixes=$(for r in $(seq "$ROUNDS"); do awk '/^MIX/{print $2}' "$OUT/redis-durable-$r.txt"; done)
echo "redis 50/50 with appendfsync always: $(median $durable_mixes) ops/s"
for sync in $POLICIES; do
  ratios=$(for r in $(seq "$ROUNDS"); do
    mix=$(awk '/^MIX/{print $2}' "$OUT/redis-$r.txt")
    python3 -c "print($(field "$OUT/bench-$sync-peak-$r.txt" ops_per_s)/$mix)"
  done)
  peaks=$(for r in $(seq "$ROUNDS"); do field "$OUT/bench-$sync-peak-$r.txt" ops_per_s; done)
  tails=$(for r in $(seq "$ROUNDS"); do field "$OUT/bench-$sync-half-$r.txt" p999_ms; done)
  over5=$(for r in $(seq "$ROUNDS"); do
    awk '/^SERVER/{for(i=2;i<=NF;i++){split($i,a,"="); if(a[1]=="over_5ms_pct") print a[2]}}' \
      "$OUT/bench-$sync-half-$r.txt"
  done)
  durable=$(for r in $(seq "$ROUNDS"); do
    mix=$(awk '/^MIX/{print $2}' "$OUT/redis-durable-$r.txt")
    python3 -c "print($(field "$OUT/bench-$sync-peak-$r.txt" ops_per_s)/$mix)"
  done)
  redis_tails=$(for r in $(seq "$ROUNDS"); do field "$OUT/redis-tail-$sync-$r.txt" p999_ms; done)
  redis_late=$(for r in $(seq "$ROUNDS"); do
    field "$OUT/redis-tail-$sync-$r.txt" wakeup_late_p999_ms
  done)
  half_field() { for r in $(seq "$ROUNDS"); do
    awk -v k="$1" '/^(SERVER|CPU|RESULT)/{for(i=2;i<=NF;i++){split($i,a,"="); if(a[1]==k) print a[2]}}' \
      "$OUT/bench-$sync-half-$r.txt"
  done; }
  echo "sync=$sync: peak $(median $peaks) ops/s, cluster/redis = $(median $ratios) (goal >= 0.3)" \
    "(against Redis with appendfsync always: $(median $durable)), p99.9 at half peak =" \
    "$(median $tails) ms (goal < 5; rounds: $(echo $tails)), against $(median $redis_tails) ms for" \
    "Redis at the same rate with the same load generator (rounds: $(echo $redis_tails); its" \
    "pacer woke late by p99.9 $(echo $redis_late) ms)." \
    "Meanwhile: served in > 5 ms by the" \
    "nodes themselves $(echo $over5) % of requests; the cluster used $(echo $(half_field cluster_cpus))" \
    "CPUs, the machine ($(nproc) CPUs) was $(echo $(half_field machine_busy_pct)) % busy (the host" \
    "took $(echo $(half_field steal_pct)) % of it), and the" \
    "pacer thread's wake-ups were late by p99.9 $(echo $(half_field wakeup_late_p999_ms)) ms." \
    "The requests over ${SLOW_MS} ms ($(echo $(half_field slow)) in the rounds) were due in" \
    "$(echo $(half_field slow_windows)) windows of 100 ms, the three most crowded holding" \
    "$(echo $(half_field slow_top3_pct)) % of them (per window, with the longest wait before" \
    "being written: $OUT/bench-$sync-half-*.txt)"
done
