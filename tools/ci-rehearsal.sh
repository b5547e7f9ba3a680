#!/usr/bin/env bash
# What CI does with a commit, here: `.ci/run` on a clean clone of HEAD with ../shared beside it, CI=true
# (so every test that skips for a missing part must run). The clone holds two venvs of torch's CUDA build
# (about 12 GB) and is removed when it ends, pass or fail: clones left behind once filled this machine's
# disk, and the next CI run, which starts from it, failed in `pip install` with "No space left on device".
#   bash tools/ci-rehearsal.sh [LOG]     (LOG: where its output goes; default /tmp/ci-rehearsal.log)
set -u
top=$(git rev-parse --show-toplevel) || exit 2
shared=$(cd "$top/../shared" 2>/dev/null && pwd) || { echo "no ../shared beside $top" >&2; exit 2; }
log=${1:-/tmp/ci-rehearsal.log}
dir=$(mktemp -d /tmp/ci-rehearsal.XXXXXX)
trap 'rm -rf "$dir"' EXIT
git clone -q "$top" "$dir/main" && ln -s "$shared" "$dir/shared" || exit 2
echo "rehearsing $(git -C "$dir/main" log --oneline -1) in $dir (output: $log)"
(cd "$dir/main" && CI=true bash .ci/run) >"$log" 2>&1
rc=$?
grep -E "passed|failed|error" "$log" | grep -E "^=+ |^[0-9]+ (passed|failed)" | tail -2
echo "rc $rc" | tee -a "$log"
exit $rc
