#!/usr/bin/env bash
# How together racelab http's buyers arrive, seen on the wire: tcpdump on
# loopback while racelab races `racelab serve`, then release-capture.py reads
# the capture. Checks, as the README states them:
#   - 50 HTTP/1.1 buyers with last-byte sync: every first request completed
#     by a one-byte segment, all within 1 ms (the median of the rounds; a
#     debug build is allowed 2 ms);
#   - 20 HTTP/2 buyers (one connection): their final frames in one segment;
# and prints the same spreads without sync (--sync none) for comparison,
# with the spread racelab serve saw (GET /arrivals) beside each.
#
#   benches/http-release.sh                 # release build, 5 rounds each
#   PROFILE=debug ROUNDS=3 CASES="h1-sync h2-sync" benches/http-release.sh
# Needs root (tcpdump) and python3. Exit 1 when a check fails.
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE=${PROFILE:-release}
ROUNDS=${ROUNDS:-5}
H1_BUYERS=${H1_BUYERS:-50}
H2_BUYERS=${H2_BUYERS:-20}
CASES=${CASES:-"h1-sync h1-none h2-sync h2-none"}
# The bound the README states for HTTP/1.1 with sync: 1 ms for a release
# build. A debug build (what .ci/run builds) is allowed 2 ms: measured here
# on 2 cores at load average 19-28, 7 rounds of a debug build had a median
# of 0.51 ms and a worst round of 0.99 ms (the sweep of one-byte writes is
# system calls, little of it racelab's own code).
if [ "$PROFILE" = release ]; then SPREAD_LIMIT_US=${SPREAD_LIMIT_US-1000}; else SPREAD_LIMIT_US=${SPREAD_LIMIT_US-2000}; fi

command -v tcpdump >/dev/null || { echo "tcpdump not found: apt-get install tcpdump" >&2; exit 3; }
if [ "$PROFILE" = release ]; then
  cargo build --release --quiet
else
  cargo build --quiet
fi
racelab=${CARGO_TARGET_DIR:-$PWD/target}/$PROFILE/racelab
analyze=benches/release-capture.py

work=$(mktemp -d)
chmod 777 "$work" # tcpdump drops to its own user before it writes
export RACELAB_STATE_DIR=$work/state
server=""
dump=""
cleanup() {
  if [ -n "$dump" ]; then kill -INT "$dump" 2>/dev/null || true; wait "$dump" 2>/dev/null || true; fi
  if [ -n "$server" ]; then kill -TERM "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# A big stock: every purchase succeeds, so each buyer's one request is all
# there is to see.
"$racelab" serve --strategy for-update --stock 1000000 --port 0 --quiet \
  >"$work/serve.out" 2>"$work/serve.err" &
server=$!
for _ in $(seq 1 100); do grep -q '^listening on ' "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
base=$(sed -n 's/^listening on //p' "$work/serve.out")
[ -n "$base" ] || { cat "$work/serve.err" >&2; exit 3; }
port=${base##*:}
echo "target: $base/purchase (racelab serve, $PROFILE build), $(nproc) cores, $ROUNDS rounds each, load average $(cut -d' ' -f1 /proc/loadavg)"

failed=0
# round MODE BUYERS EXPECT-SYNC racelab-flags...
round() {
  local mode=$1 buyers=$2 expect=$3
  shift 3
  local pcap=$work/cap.pcap
  rm -f "$pcap"
  curl -s -X POST "$base/reset" >/dev/null
  tcpdump -i lo -B 65536 -w "$pcap" "tcp port $port" 2>"$work/tcpdump.err" &
  dump=$!
  for _ in $(seq 1 50); do grep -q listening "$work/tcpdump.err" 2>/dev/null && break; sleep 0.1; done
  sleep 0.3
  "$racelab" http "$base/purchase" --body '{"buyer": {{buyer}}, "attempt": {{attempt}}}' \
    --buyers "$buyers" --attempts 1 --stock-url "$base/stock" --no-save --quiet --json "$@" \
    >"$work/race.json"
  # Without immediate mode (which wakes tcpdump per packet and so slows the
  # very race it watches) packets reach tcpdump a block at a time, at the
  # latest after its 1 s timeout: wait for that before stopping it.
  sleep 1.5
  kill -INT "$dump"
  wait "$dump" 2>/dev/null || true
  dump=""
  # A capture that lost packets proves nothing either way: say so, retry.
  local dropped
  dropped=$(sed -n 's/^\([0-9]*\) packets dropped by kernel$/\1/p' "$work/tcpdump.err")
  if [ "${dropped:-0}" != 0 ]; then
    echo "  (tcpdump dropped $dropped packets: capturing again)"
    return 2
  fi
  local served
  served=$(curl -s "$base/arrivals" | python3 -c 'import json,sys; print(json.load(sys.stdin)["first_purchase_spread_us"])')
  local own
  own=$(python3 -c 'import json,sys; print((json.load(open(sys.argv[1])).get("contention") or {}).get("release_spread_us", "-"))' "$work/race.json")
  local flags=(--buyers "$buyers")
  [ "$expect" = yes ] && flags+=(--expect-sync)
  local line rc=0
  line=$(python3 "$analyze" "$pcap" "$port" "$mode" "${flags[@]}") || rc=$?
  if python3 -c 'import json,sys; sys.exit(json.loads(sys.argv[1])["spread_us"] is not None)' "$line"; then
    echo "  (the capture holds none of the race: capturing again)"
    return 2
  fi
  [ "$rc" -eq 0 ] || failed=1
  python3 "$analyze" summary "$line" "$served" "$own"
  python3 -c 'import json,sys; print(json.loads(sys.argv[1])["spread_us"])' "$line" >>"$work/spreads"
}

# median of the spreads of the rounds just run
median() {
  python3 -c 'import statistics,sys; v=[int(x) for x in open(sys.argv[1]).read().split()]; print(int(statistics.median(v)))' "$work/spreads"
}

for case in $CASES; do
  case $case in
    h1-sync) spec="h1 $H1_BUYERS yes HTTP/1.1, --sync last-byte" ;;
    h1-none) spec="h1 $H1_BUYERS no HTTP/1.1, --sync none" ;;
    h2-sync) spec="h2 $H2_BUYERS yes HTTP/2, --sync last-byte" ;;
    h2-none) spec="h2 $H2_BUYERS no HTTP/2, --sync none" ;;
    *) echo "unknown case $case (h1-sync h1-none h2-sync h2-none)" >&2; exit 2 ;;
  esac
  read -r mode buyers expect label <<<"$spec"
  echo "== $buyers buyers, $label"
  args=()
  [ "$mode" = h2 ] && args+=(--http2)
  [ "$expect" = no ] && args+=(--sync none)
  : >"$work/spreads"
  for _ in $(seq 1 "$ROUNDS"); do
    for _try in 1 2 3; do
      if round "$mode" "$buyers" "$expect" "${args[@]}"; then break; fi
    done
  done
  m=$(median)
  echo "  median wire spread: $m us"
  if [ "$mode $expect" = "h1 yes" ] && [ -n "$SPREAD_LIMIT_US" ] && [ "$m" -gt "$SPREAD_LIMIT_US" ]; then
    echo "  FAIL: the median spread is over $SPREAD_LIMIT_US us" >&2
    failed=1
  fi
done
echo
echo "wire = first to last completing segment of the buyers' first requests (tcpdump on lo);"
echo "server = first to last first purchase as racelab serve's handlers saw them (GET /arrivals);"
echo "racelab = its own contention.release_spread_us, where the result has it."
if [ "$failed" -ne 0 ]; then
  echo "a check failed" >&2
  exit 1
fi
echo "all checks held"
