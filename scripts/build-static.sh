#!/usr/bin/env bash
# Builds mini-runtime statically linked (glibc static-pie) into
# target/x86_64-unknown-linux-gnu/release/mini-runtime. A process start of
# the runtime then skips the dynamic loader (about 0.35 ms here: see the
# README's "Container start"). The explicit --target keeps crt-static away
# from build scripts and proc macros, which must stay dynamic.
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  cargo build --release -p mini-runtime --target x86_64-unknown-linux-gnu "$@"
echo "target/x86_64-unknown-linux-gnu/release/mini-runtime"
