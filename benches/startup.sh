#!/usr/bin/env bash
# racelab's own time around a race: the process's wall time minus the
# race's (throughput.wall_seconds) for
#   racelab run --strategy for-update --buyers 100
# on the embedded throwaway cluster, with a warm template (one run first
# makes it). Prints each run, the median of RUNS (default 5), and with
# RACELAB_TIMINGS the phases of the median run.
#
#   benches/startup.sh                # release build, 5 runs
#   RUNS=9 ARGS="--strategy conditional --buyers 10" benches/startup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-5}
ARGS=${ARGS:-"--strategy for-update --buyers 100"}
PROFILE=${PROFILE:-release}
if [ "$PROFILE" = release ]; then cargo build --release --quiet; else cargo build --quiet; fi
racelab=${CARGO_TARGET_DIR:-$PWD/target}/$PROFILE/racelab

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A private state directory: no kept cluster is used, the template is
# racelab's own (made by the warm-up run).
export RACELAB_STATE_DIR=$work/state

one() {
  local start end
  start=$(date +%s.%N)
  RACELAB_TIMINGS=1 "$racelab" run $ARGS --no-save --json >"$work/out.json" 2>"$work/err"
  end=$(date +%s.%N)
  python3 - "$start" "$end" "$work/out.json" <<'PY'
import json, sys
start, end, path = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
race = json.load(open(path))["throughput"]["wall_seconds"]
total = end - start
print(f"{total:.3f} {race:.3f} {total - race:.3f}")
PY
}

echo "racelab run $ARGS ($PROFILE build), $(nproc) cores, load average $(cut -d' ' -f1 /proc/loadavg)"
one >/dev/null # warm the template
: >"$work/runs"
for i in $(seq 1 "$RUNS"); do
  read -r total race own < <(one)
  cp "$work/err" "$work/err.$i"
  echo "$own $i" >>"$work/runs"
  printf '  run %d: process %.3f s, race %.3f s, own %.3f s\n' "$i" "$total" "$race" "$own"
done
median=$(sort -n "$work/runs" | awk -v n="$RUNS" 'NR == int((n + 1) / 2)')
read -r own i <<<"$median"
echo "median own time: $own s (run $i); its phases:"
sed 's/^/  /' "$work/err.$i"
