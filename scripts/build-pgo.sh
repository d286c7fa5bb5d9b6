#!/usr/bin/env bash
# Builds the profile-guided `dist` binary of `dynamo` (target/pgo/dist/dynamo) and prints its path
# on the last line of standard output; everything else goes to standard error.
#
#   1. An instrumented `dist` build (target/pgo-gen): every crate, sled, hyper and tokio included,
#      counts its branches and calls into profile files.
#   2. Training: that binary runs a local `dynamo dev` cluster under both sync policies, driven
#      by its own load generator with workloads deliberately unlike the benchmark's (90 % and
#      10 % reads, 256 B and 4 KiB values, other key spaces and concurrencies, closed loop and
#      open loop), so that the profile describes a key-value workload rather than the measured
#      one.
#   3. `llvm-profdata` merges the profiles, and the `dist` build is made again with them
#      (target/pgo): the compiler lays out hot paths and inlines by the measured counts.
#
# The profile tool must match the compiler's LLVM (`rustc -vV`); on Debian it is the package
# llvm-NN, installed here when missing. Training is redone only when the instrumented binary
# changed. Runs on 127.0.0.1 ports 8081-8083 and 9081-9083, like `dynamo dev`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh

llvm=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
profdata=$(command -v "llvm-profdata-$llvm" || true)
if [ -z "$profdata" ]; then
  echo "installing llvm-$llvm for llvm-profdata-$llvm (rustc's LLVM)" >&2
  apt_install "llvm-$llvm"
  profdata=$(command -v "llvm-profdata-$llvm")
fi

work=$PWD/target/pgo-data
mkdir -p "$work"
RUSTFLAGS="-Cprofile-generate=$work/raw" \
  cargo build --profile dist -p dynamo-node --target-dir target/pgo-gen >&2
gen=target/pgo-gen/dist/dynamo

if [ ! -s "$work/merged.profdata" ] || [ "$gen" -nt "$work/merged.profdata" ]; then
  echo "training the instrumented binary" >&2
  rm -rf "$work/raw"
  dev=""
  trap '[ -n "$dev" ] && kill "$dev" 2>/dev/null || true' EXIT
  for sync in none always; do
    "$gen" dev --fresh --data-dir "$work/data" --sync "$sync" >"$work/dev.log" 2>&1 &
    dev=$!
    wait_for_dev
    "$gen" bench --duration-s 4 --warmup-s 0 --concurrency 8 --keys 1000 --value-bytes 256 \
      --read-ratio 0.9 | grep '^RESULT' >&2
    "$gen" bench --duration-s 4 --warmup-s 0 --concurrency 64 --keys 50000 --value-bytes 4096 \
      --read-ratio 0.1 --no-prime | grep '^RESULT' >&2
    "$gen" bench --duration-s 3 --warmup-s 0 --concurrency 16 --keys 2000 --value-bytes 512 \
      --read-ratio 0.7 --rate 3000 | grep '^RESULT' >&2
    kill -INT "$dev"
    wait "$dev" || true
    dev=""
  done
  "$profdata" merge -o "$work/merged.profdata" "$work/raw"
fi

RUSTFLAGS="-Cprofile-use=$work/merged.profdata" \
  cargo build --profile dist -p dynamo-node --target-dir target/pgo >&2
echo target/pgo/dist/dynamo
