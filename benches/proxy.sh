#!/usr/bin/env bash
# The wire proxy's cost: pgbench's default transaction (TPC-B-like, 7
# statements, simple protocol) at CLIENTS clients against one server,
# three ways in alternating rounds: straight to the server, through
# PgBouncer (session pooling; written in C, records nothing), and through
# `racelab proxy --record FILE` (release build, every statement recorded).
# Prints the median transactions/s of each, the ratios racelab/PgBouncer
# and racelab/direct, and the latency the proxy adds per statement
# ((racelab's mean latency - direct's) / 7). About 4 minutes by default.
#
#   benches/proxy.sh                     # defaults below
#   ROUNDS=3 DURATION=5 benches/proxy.sh
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10}
CLIENTS=${CLIENTS:-10}
SCALE=${SCALE:-10}

pgbin=${RACELAB_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
pgbench="$pgbin/pgbench"
[ -x "$pgbench" ] || { echo "pgbench not found (set RACELAB_PG_BIN)" >&2; exit 3; }
pgbouncer=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
[ -x "$pgbouncer" ] || { echo "pgbouncer not found: apt-get install pgbouncer" >&2; exit 3; }

cargo build --release --quiet --bin racelab
racelab=${CARGO_TARGET_DIR:-$PWD/target}/release/racelab

work=$(mktemp -d)
chmod 755 "$work"
export RACELAB_STATE_DIR=$work/state
bouncer_pid=""
proxy_pid=""
cleanup() {
  [ -n "$proxy_pid" ] && kill -INT "$proxy_pid" 2>/dev/null && wait "$proxy_pid" 2>/dev/null || true
  [ -n "$bouncer_pid" ] && kill -INT "$bouncer_pid" 2>/dev/null || true
  "$racelab" db stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

url=$("$racelab" db start --max-connections 300 2>/dev/null)
port=${url##*:}; port=${port%%/*}
echo "server: $url ($("$pgbin/postgres" --version)), $(nproc) cores, ${CLIENTS} clients, ${DURATION}s per run, scale $SCALE"
"$pgbench" -i -q -s "$SCALE" "$url" >/dev/null 2>&1

# PgBouncer, session pooling, on a port it picks from a few tries (it
# refuses to run as root: as root, as the postgres user).
as_server_user() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
for try in 1 2 3 4 5; do
  bport=$((20000 + RANDOM % 30000))
  cat >"$work/pgbouncer.ini" <<INI
[databases]
postgres = host=127.0.0.1 port=$port dbname=postgres user=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $bport
unix_socket_dir =
auth_type = any
pool_mode = session
default_pool_size = $((CLIENTS + 5))
max_client_conn = $((CLIENTS * 2 + 10))
logfile = $work/pgbouncer.log
INI
  chmod 644 "$work/pgbouncer.ini"
  as_server_user "$pgbouncer" "$work/pgbouncer.ini" >/dev/null 2>&1 &
  bouncer_pid=$!
  for _ in $(seq 100); do
    "$pgbin/pg_isready" -q -h 127.0.0.1 -p "$bport" && break
    kill -0 "$bouncer_pid" 2>/dev/null || break
    sleep 0.05
  done
  "$pgbin/pg_isready" -q -h 127.0.0.1 -p "$bport" && break
  bouncer_pid=""
done
[ -n "$bouncer_pid" ] || { echo "pgbouncer did not start: $(cat "$work/pgbouncer.log" 2>/dev/null)" >&2; exit 3; }

# racelab's proxy, recording everything.
"$racelab" proxy --quiet --upstream "$url" --record "$work/record.jsonl" >"$work/proxy.out" &
proxy_pid=$!
for _ in $(seq 100); do grep -q listening "$work/proxy.out" && break; sleep 0.05; done
pport=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$work/proxy.out")
[ -n "$pport" ] || { echo "racelab proxy did not start" >&2; exit 3; }

# "tps latency_ms" of one pgbench run against HOST PORT.
run() {
  "$pgbench" -n -c "$CLIENTS" -j 1 -T "$DURATION" -h 127.0.0.1 -p "$1" -U postgres postgres \
    >"$work/run.out" 2>"$work/run.err" || { cat "$work/run.err" >&2; exit 3; }
  tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' "$work/run.out")
  lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' "$work/run.out")
  echo "$tps $lat"
}

: >"$work/all"
for round in $(seq 1 "$ROUNDS"); do
  d=$(run "$port"); b=$(run "$bport"); r=$(run "$pport")
  echo "$d $b $r" >>"$work/all"
  echo "round $round: direct $d | pgbouncer $b | racelab proxy $r (tps, ms)"
done
statements=$(grep -c '"type":"statement"' "$work/record.jsonl" || true)
python3 - "$work/all" "$statements" <<'PY'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
med = lambda i: statistics.median(r[i] for r in rows)
d, b, r = med(0), med(2), med(4)
dl, rl = med(1), med(5)
print(f"median tps: direct {d:.0f}, pgbouncer {b:.0f}, racelab proxy {r:.0f} (recorded {int(sys.argv[2])} statements)")
print(f"racelab proxy / pgbouncer = {r / b:.2f}")
print(f"racelab proxy / direct    = {r / d:.2f}")
print(f"pgbouncer / direct        = {b / d:.2f}")
print(f"added latency per statement through racelab proxy: {(rl - dl) * 1000 / 7:.0f} us")
PY
