#!/usr/bin/env bash
# Every test tier, as CI runs it: formatting, lints, the protocol core's dependency rule, then all
# tests in release mode (unit and quickcheck laws, paper scenarios, 1,000-seed simulations per
# quorum mode, model checks and mutants, history checkers, loopback clusters with kill -9), the
# doc tests, and the loom model tests of the node's shared send buffer.
set -euxo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
if cargo tree -p dynamo-model -e normal --prefix none | grep -E '^(tokio|sled|stateright|hyper|axum) '; then
  echo "dynamo-model must not depend on an I/O runtime or the checker" >&2
  exit 1
fi
# The production node must never be built with the protocol's seeded bugs.
if cargo tree -p dynamo-node -e features -i dynamo-model 2>/dev/null | grep -q 'feature "mutants"'; then
  echo "dynamo-node must not enable dynamo-model's mutants feature" >&2
  exit 1
fi
cargo test --workspace --release
# The model checker's CLI on the small named configurations, so that the CI log shows each
# property's outcome (the tests above already assert them).
for mode in --sloppy --strict; do
  cargo run --release -q -p dynamo-checker --bin dynamo-check -- model --config tiny "$mode"
done
# The loom tests: every interleaving of the driver and a peer link's connection task over the
# link's send buffer (node/src/outbox.rs). `--cfg dynamo_loom` changes every crate's build, so
# they get a target directory of their own and leave the main build's cache alone.
export RUSTFLAGS="--cfg dynamo_loom" CARGO_TARGET_DIR=target/loom
cargo clippy -p dynamo-node --tests -- -D warnings
cargo test -p dynamo-node --release --test loom_outbox -- --nocapture --test-threads 1
