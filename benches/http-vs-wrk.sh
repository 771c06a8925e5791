#!/usr/bin/env bash
# racelab http against wrk on the same trivial endpoint (racelab serve's
# GET /health), same connections, same duration, one client thread each.
# Prints both tools' requests/s and their ratio (target: >= 0.8).
#
#   benches/http-vs-wrk.sh                      # release build, defaults below
#   PROFILE=debug CONNS="10 50" DURATION=5 benches/http-vs-wrk.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-8}
CONNS=${CONNS:-"10 50"}
PROFILE=${PROFILE:-release}

command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk" >&2; exit 3; }
if [ "$PROFILE" = release ]; then
  cargo build --release --quiet
else
  cargo build --quiet
fi
racelab=${CARGO_TARGET_DIR:-$PWD/target}/$PROFILE/racelab

work=$(mktemp -d)
export RACELAB_STATE_DIR=$work/state
server=""
cleanup() {
  if [ -n "$server" ]; then kill -TERM "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

"$racelab" serve --port 0 --quiet >"$work/serve.out" 2>"$work/serve.err" &
server=$!
for _ in $(seq 1 100); do grep -q '^listening on ' "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
base=$(sed -n 's/^listening on //p' "$work/serve.out")
[ -n "$base" ] || { cat "$work/serve.err" >&2; exit 3; }
url=$base/health
echo "endpoint: GET $url (racelab serve, $PROFILE build), $(nproc) cores, ${DURATION}s per run"

printf '\n%6s | %14s %14s %7s\n' conns "racelab req/s" "wrk req/s" ratio
for c in $CONNS; do
  "$racelab" http "$url" --method GET --success 200 --buyers "$c" --duration "$DURATION" \
    --stock 1000000000000 --no-save --quiet --json >"$work/rl.json"
  rl=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["throughput"]["attempts_per_sec"])' "$work/rl.json")
  wrk -t1 -c "$c" -d "${DURATION}s" "$url" >"$work/wrk.out"
  wk=$(sed -n 's/^Requests\/sec: *\([0-9.]*\)/\1/p' "$work/wrk.out")
  python3 -c 'import sys; c, a, b = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]); print(f"{c:>6} | {a:>14,.0f} {b:>14,.0f} {a / b:>7.2f}")' "$c" "$rl" "$wk"
done
echo
echo "ratio = racelab/wrk requests per second (both one client thread, keep-alive)"
