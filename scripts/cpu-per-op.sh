#!/usr/bin/env bash
# CPU per operation of a local `dynamo dev` cluster against the offered load: for each rate given
# (ops/s, or `peak` for the closed loop), a fresh cluster, one `dynamo bench` run (N=3 R=2 W=2,
# 1 KiB values, 50% reads, concurrency 32), and the CPU time the cluster process used over a 5 s
# window inside the run (utime + stime from /proc, which the kernel keeps from the scheduler's own
# clock) divided by the requests the nodes answered in that same window (their /metrics), and the
# fsyncs the nodes made per request in it, and what sled's I/O pool (its `sled-io` threads) did in
# that window: the CPUs it used and its context switches per fsync. Prints one line per rate.
#
#   scripts/cpu-per-op.sh peak 7000 3500 1000
#
# Settings (environment): SYNC (default none), DURATION_S (default 8, of which the middle 5 s are
# measured), BIN (default target/dist/dynamo, built if missing), OUT (default target/cpu-per-op),
# DEV_ARGS (more flags for `dynamo dev`, for example `--threads 1`).
# Everything runs on 127.0.0.1 ports 8081-8083 and 9081-9083.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh

SYNC=${SYNC:-none}
DURATION_S=${DURATION_S:-8}
OUT=${OUT:-target/cpu-per-op}
BIN=${BIN:-target/dist/dynamo}
[ "$#" -ge 1 ] || { echo "usage: $0 RATE|peak..." >&2; exit 2; }
[ "$DURATION_S" -ge 8 ] || { echo "DURATION_S must be at least 8" >&2; exit 2; }
[ -x "$BIN" ] || cargo build --profile dist -p dynamo-node >&2
mkdir -p "$OUT"
CLK_TCK=$(getconf CLK_TCK)

dev=""
cleanup() { [ -n "$dev" ] && kill "$dev" 2>/dev/null || true; }
trap cleanup EXIT

# snapshot: the cluster's CPU ticks, the requests it has answered, the time, its fsyncs (the
# `always` and `interval` policies), and the CPU ticks and context switches of sled's I/O threads.
snapshot() {
  local ticks=0 switches=0 t
  for t in /proc/"$dev"/task/*; do
    case "$(cat "$t/comm" 2>/dev/null)" in
      sled-io*)
        ticks=$((ticks + $(awk '{print $14 + $15}' "$t/stat" 2>/dev/null || echo 0)))
        switches=$((switches + $(awk '/ctxt_switches/ {n += $2} END {print n + 0}' "$t/status" 2>/dev/null || echo 0)))
        ;;
    esac
  done
  echo "$(awk '{print $14 + $15}' "/proc/$dev/stat")" "$(served_requests)" "$(date +%s.%N)" \
    "$(metric_total dynamo_syncs_total)" "$ticks" "$switches"
}

for rate in "$@"; do
  rate_args=()
  [ "$rate" = peak ] || rate_args=(--rate "$rate")
  rm -rf "$OUT/data"
  "$BIN" dev --fresh --data-dir "$OUT/data" --sync "$SYNC" ${DEV_ARGS:-} >"$OUT/dev.log" 2>&1 &
  dev=$!
  wait_for_dev
  "$BIN" bench --concurrency 32 --keys 10000 --value-bytes 1024 --read-ratio 0.5 \
    --duration-s "$DURATION_S" "${rate_args[@]}" >"$OUT/bench-$rate.txt" 2>&1 &
  bench=$!
  # The bench primes every key, then warms up for a second; measure well inside the counted run.
  sleep 2
  before=$(snapshot)
  sleep 5
  after=$(snapshot)
  wait "$bench"
  kill -INT "$dev"
  wait "$dev" || true
  dev=""
  python3 - "$rate" "$before" "$after" "$CLK_TCK" "$OUT/bench-$rate.txt" <<'PY'
import sys
rate, a, b, tck, path = sys.argv[1], *sys.argv[2:4], float(sys.argv[4]), sys.argv[5]
a, b = (list(map(float, x.split())) for x in (a, b))
result = next(l for l in open(path) if l.startswith("RESULT"))
fields = dict(kv.split("=") for kv in result.split()[1:])
wall = b[2] - a[2]
ops = (b[1] - a[1]) / wall
cpus = (b[0] - a[0]) / tck / wall
fsyncs = b[3] - a[3]
per_fsync = f"{(b[5] - a[5]) / fsyncs:.1f}" if fsyncs > 0 else "-"
print(f"rate {rate:>6}: {ops:9.1f} ops/s  cluster {cpus:.2f} CPUs  {cpus / max(ops, 1e-9) * 1e6:5.0f} us/op  "
      f"{fsyncs / max(b[1] - a[1], 1):.3f} fsyncs/op  "
      f"sled-io {(b[4] - a[4]) / tck / wall:.2f} CPUs {per_fsync} switches/fsync  "
      f"p99 {fields['p99_ms']} ms  p99.9 {fields['p999_ms']} ms")
PY
done
