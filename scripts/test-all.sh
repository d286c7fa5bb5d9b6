#!/usr/bin/env bash
# Every test tier, as CI runs it: formatting, lints, the protocol core's dependency rule, then all
# tests in release mode (unit and quickcheck laws, paper scenarios, 1,000-seed simulations per
# quorum mode, model checks and mutants, history checkers, loopback clusters with kill -9) and the
# doc tests.
set -euxo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
if cargo tree -p dynamo-model -e normal --prefix none | grep -E '^(tokio|sled|stateright|hyper|axum) '; then
  echo "dynamo-model must not depend on an I/O runtime or the checker" >&2
  exit 1
fi
cargo test --workspace --release
