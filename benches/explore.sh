#!/usr/bin/env bash
# How long `racelab explore` takes to cover its bounded spaces.
#
# Starts one kept cluster (in a private state directory, so no other
# racelab sees it), then explores every built-in with 2 buyers at the
# default bound (2 preemptions) and exhaustively (`all`), and for-update,
# conditional and naive with 3 buyers at the default bound, ROUNDS times
# each; prints per case the schedules explored, the unsafe ones, the
# statements run, and the median wall time of the exploration itself (the
# cluster's start is not in it) with the time per schedule. Checks on the
# way that every round found the same counts. Stops the cluster at the end.
#
#   benches/explore.sh                    # defaults below
#   ROUNDS=1 CASES="naive:2:all for-update:3:2" benches/explore.sh
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
BUILTINS="naive for-update conditional optimistic advisory serializable repeatable-read check-constraint skip-locked"
default_cases() {
  for s in $BUILTINS; do echo "$s:2:2 $s:2:all"; done
  echo "for-update:3:2 conditional:3:2 naive:3:2"
}
CASES=${CASES:-$(default_cases | tr '\n' ' ')}

cargo build --release --quiet
racelab=$PWD/target/release/racelab

work=$(mktemp -d)
export RACELAB_STATE_DIR=$work/state
cleanup() { "$racelab" db stop >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

url=$("$racelab" db start --max-connections 100 2>/dev/null)
echo "server: $url, $(nproc) cores, $ROUNDS rounds per case (median wall time)"
printf '%-17s %6s %5s | %9s %6s %10s %9s | %8s %12s\n' \
  strategy buyers bound schedules unsafe statements deadlocks "wall s" "ms/schedule"

for case in $CASES; do
  IFS=: read -r strategy buyers bound <<<"$case"
  walls=()
  first=""
  for _ in $(seq "$ROUNDS"); do
    "$racelab" explore --database-url "$url" --schema bench --strategy "$strategy" \
      --buyers "$buyers" --preemptions "$bound" --no-save --quiet --json >"$work/r.json"
    line=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["schedules_explored"], d["unsafe_schedules"], d["steps"], d["deadlocks"], d["complete"], d["wall_seconds"])' "$work/r.json")
    read -r n unsafe steps deadlocks complete wall <<<"$line"
    counts="$n $unsafe $steps $deadlocks $complete"
    if [ -z "$first" ]; then
      first=$counts
    elif [ "$counts" != "$first" ]; then
      echo "NOT DETERMINISTIC: $case gave '$first' then '$counts'" >&2
      exit 1
    fi
    walls+=("$wall")
  done
  median=$(printf '%s\n' "${walls[@]}" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
  read -r n unsafe steps deadlocks complete <<<"$first"
  [ "$complete" = "True" ] || echo "note: $case did not cover its space" >&2
  printf '%-17s %6s %5s | %9s %6s %10s %9s | %8.2f %12.1f\n' \
    "$strategy" "$buyers" "$bound" "$n" "$unsafe" "$steps" "$deadlocks" "$median" \
    "$(python3 -c "print(1000 * $median / max($n, 1))")"
done
