#!/usr/bin/env bash
# What cgroups cost a `run` of /bin/true on a pure cgroup v2 host: the VM of
# scripts/vm/run.sh (Debian's cloud kernel under TCG, so absolute times are
# slow; compare the ratios). Interleaved runs of mini-runtime with runc's
# default config (its device rule in linux.resources), with memory, pids and
# cpu limits, and without linux.resources; with a baseline binary (one built
# from a commit before cgroups, say) also its run of the bundle without
# linux.resources.
#
#   cargo build --release -p mini-runtime
#   bash benches/cgroup_cost_vm.sh [--runs 100] [--baseline BIN]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=100
baseline=
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --baseline) baseline=$2; shift 2 ;;
    *) echo "usage: $0 [--runs N] [--baseline BIN]" >&2; exit 2 ;;
  esac
done
bin=target/release/mini-runtime
[ -x "$bin" ] || { echo "$bin missing: cargo build --release -p mini-runtime" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The guest's busybox date has no nanoseconds: a small static timer that runs
# a command and prints how long it took.
cat > "$work/timeit.c" <<'C'
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
    struct timespec a, b;
    int st = 0;
    if (argc < 2) return 2;
    clock_gettime(CLOCK_MONOTONIC, &a);
    pid_t p = fork();
    if (p == 0) { execv(argv[1], argv + 1); _exit(127); }
    waitpid(p, &st, 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%lld\n", (long long)(b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec));
    return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}
C
gcc -static -O2 -o "$work/timeit" "$work/timeit.c"

make_bundle() { # NAME RESOURCES-JSON ("" for none)
  local b=$work/$1
  mkdir -p "$b/rootfs/bin" "$b/rootfs/proc" "$b/rootfs/sys" "$b/rootfs/dev"
  cp /bin/busybox "$b/rootfs/bin/busybox"
  ln -s busybox "$b/rootfs/bin/true"
  "$bin" spec --bundle "$b"
  python3 - "$b/config.json" "$2" <<'PY'
import json, sys
path, res = sys.argv[1], sys.argv[2]
c = json.load(open(path))
c["process"]["terminal"] = False
c["process"]["args"] = ["/bin/true"]
if res:
    c["linux"]["resources"] = json.loads(res)
else:
    c["linux"].pop("resources", None)
json.dump(c, open(path, "w"))
PY
}
make_bundle plain ""
make_bundle default '{"devices": [{"allow": false, "access": "rwm"}]}'
make_bundle limited '{"devices": [{"allow": false, "access": "rwm"}], "memory": {"limit": 67108864}, "pids": {"limit": 64}, "cpu": {"shares": 512, "quota": 50000, "period": 100000}}'

includes=(--include "$work/timeit:/bin/timeit" --include "$bin:/bin/mini-runtime"
  --include "$work/plain:/work/plain" --include "$work/default:/work/default"
  --include "$work/limited:/work/limited")
cases="plain:mini-runtime:/work/plain default:mini-runtime:/work/default limited:mini-runtime:/work/limited"
if [ -n "$baseline" ]; then
  includes+=(--include "$baseline:/bin/baseline")
  cases="baseline:baseline:/work/plain $cases"
fi
# In the guest: interleave the cases, one line "case nanoseconds" per run, then
# the median per case.
script="
for i in \$(seq $runs); do
  for c in $cases; do
    name=\${c%%:*}; rest=\${c#*:}; b=\${rest%%:*}; bundle=\${rest#*:}
    t=\$(timeit /bin/\$b --root /run/mr run -b \$bundle x\$i\$name) || exit 1
    echo \"\$name \$t\"
  done
done > /tmp/times
for c in $cases; do
  name=\${c%%:*}
  grep \"^\$name \" /tmp/times | cut -d' ' -f2 | sort -n | awk -v n=\"\$name\" '{a[NR]=\$1} END {printf \"median %-10s %8.2f ms (%d runs)\\n\", n, a[int((NR+1)/2)]/1e6, NR}'
done"
bash scripts/vm/run.sh "${includes[@]}" -- sh -c "$script" | tr -d '\r' | grep -ao 'median .*'
