#!/usr/bin/env bash
# The fuzz targets (fuzz/, cargo-fuzz with libFuzzer, no sanitizer: stable
# Rust). With no arguments, as the test command runs it: every target over
# its committed corpus, then a fixed-seed run of a bounded number of inputs,
# each a few seconds. Deterministic; a crash fails it and leaves the input in
# fuzz/artifacts/<target>/.
#
#   bash scripts/fuzz.sh                      # every target, short
#   bash scripts/fuzz.sh layer_apply 3600     # one target for an hour
#
# Long runs grow fuzz/corpus/<target> with what they find: keep a few of
# those new inputs (small ones) in the commit, drop the rest.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

# Inputs per target in the short run: the slow ones touch the disk.
declare -A RUNS=(
  [layer_apply]=4000 [image_import]=1500 [config_json]=20000
  [registry_replies]=200000 [stream_frames]=100000 [cni_result]=200000
  [image_documents]=1500 [cri_requests]=200000
)

cargo fuzz build --sanitizer none

if [ $# -ge 1 ]; then
  target=$1
  secs=${2:-600}
  exec cargo fuzz run --sanitizer none "$target" "corpus/$target" -- -max_total_time="$secs"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for target in "${!RUNS[@]}"; do
  # A copy: libFuzzer adds what it finds to the corpus it is given.
  mkdir -p "$work/$target"
  cp "corpus/$target"/* "$work/$target/"
  start=$(date +%s)
  cargo fuzz run --sanitizer none "$target" "$work/$target" -- \
    -runs="${RUNS[$target]}" -seed=1 -timeout=10 -rss_limit_mb=1024 2>"$work/$target.log" || {
    tail -40 "$work/$target.log" >&2
    echo "fuzz target $target failed; the input is in fuzz/artifacts/$target/" >&2
    exit 1
  }
  echo "fuzz $target: ${RUNS[$target]} inputs, $(( $(date +%s) - start )) s, $(grep -o 'cov: [0-9]*' "$work/$target.log" | tail -1)"
done
