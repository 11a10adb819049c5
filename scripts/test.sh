#!/usr/bin/env bash
# Runs every check and test of the workspace, installing what they need first.
# Usage: bash scripts/test.sh    (as root on Debian 12; CI runs exactly this)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cri-api builds with no protoc anywhere and with every feature combination"
PATH="$(printf '%s' "$PATH" | tr ':' '\n' | while read -r d; do [ -x "$d/protoc" ] || printf '%s:' "$d"; done)" \
  PROTOC=/nonexistent cargo build --locked -p cri-api
for features in "" client server transport "client,server"; do
  cargo check --locked -q -p cri-api --no-default-features --features "$features"
done

step "cargo test --workspace"
cargo test --workspace --locked --all-targets
cargo test --workspace --locked --doc

step "oci-runtime with its tokio feature"
cargo clippy --locked -p oci-runtime --features tokio --all-targets -- -D warnings
cargo test --locked -p oci-runtime --features tokio --test host

step "fuzz targets: each over its corpus, then a short fixed-seed run"
bash scripts/fuzz.sh

step "soak, short: CLI and serve cycles, pods under load, kill -9 of serve; nothing may leak"
.venv/bin/python benches/soak.py --short --bin target/debug/mini-runtime
