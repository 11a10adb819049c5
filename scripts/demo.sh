#!/usr/bin/env bash
# The README's main job: installs what is needed, then shows the workspace at work.
# Usage: bash scripts/demo.sh    (as root on Debian 12)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo run --quiet --release --locked -p mini-runtime -- demo
