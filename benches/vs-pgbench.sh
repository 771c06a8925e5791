#!/usr/bin/env bash
# racelab against pgbench on the same server and the same transaction.
#
# Starts one kept cluster, then for each strategy and client count runs
# racelab and pgbench alternately, ROUNDS times, each from a freshly reset
# lab (same clients, zero think time, same duration, stock large enough
# never to sell out), and prints the medians of both tools' transactions/s,
# their ratio, and each tool's client CPU per 1,000 transactions. A third
# client runs between them: the same transaction as a bare loop over sqlx on
# racelab's runtime (`examples/sqlx_floor.rs`), the floor of any sqlx
# client here, so that racelab's own cost and its driver's can be told
# apart. Stops the cluster at the end. About 9 minutes with the defaults.
#
#   benches/vs-pgbench.sh                 # defaults below
#   DURATION=5 CLIENTS="1 10" STRATEGIES=conditional benches/vs-pgbench.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5}
CLIENTS=${CLIENTS:-"1 10 100"}
STRATEGIES=${STRATEGIES:-"conditional for-update"}
ROUNDS=${ROUNDS:-3}
STOCK=1000000000000

pgbin=${RACELAB_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
pgbench="$pgbin/pgbench"
[ -x "$pgbench" ] || { echo "pgbench not found (set RACELAB_PG_BIN)" >&2; exit 3; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time not found: apt-get install time" >&2; exit 3; }

cargo build --release --quiet --bin racelab --example sqlx_floor
racelab=${CARGO_TARGET_DIR:-$PWD/target}/release/racelab
floor=${CARGO_TARGET_DIR:-$PWD/target}/release/examples/sqlx_floor

work=$(mktemp -d)
export RACELAB_STATE_DIR=$work/state
cleanup() { "$racelab" db stop >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

url=$("$racelab" db start --max-connections 300 2>/dev/null)
echo "server: $url ($("$pgbin/postgres" --version)), $(nproc) cores, duration ${DURATION}s per run"
schema=bench

# Client CPU seconds (user + sys) of a command, from /usr/bin/time.
cpu_of() { awk '{ printf "%.3f", $1 + $2 }' "$1"; }

# One run of each tool; both start from a freshly reset lab. Prints
# "tps cpu_seconds transactions".
run_racelab() {
  /usr/bin/time -f "%U %S" -o "$work/rl.time" \
    "$racelab" run --database-url "$url" --schema "$schema" --strategy "$1" \
    --buyers "$2" --stock "$STOCK" --think-ms 0 --duration "$DURATION" \
    --no-save --quiet --json >"$work/rl.json"
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); t=d["throughput"]; print(t["attempts_per_sec"], d["outcomes"]["attempts"], t["client_cpu_us_per_attempt"])' "$work/rl.json" \
    | { read -r tps n race_cpu; echo "$tps $(cpu_of "$work/rl.time") $n $race_cpu"; }
}
# A one-attempt racelab run resets the lab (fresh schema, same stock).
reset_lab() {
  "$racelab" run --database-url "$url" --schema "$schema" --strategy "$1" --buyers 1 \
    --attempts 1 --stock "$STOCK" --think-ms 0 --no-save --quiet >/dev/null
}
# "tps cpu_us_per_transaction transactions" of the bare sqlx loop.
run_floor() {
  reset_lab "$1"
  "$floor" "$url" "$schema" "$1" "$2" "$DURATION" | { read -r n tps cpu; echo "$tps $cpu $n"; }
}
run_pgbench() {
  reset_lab "$1"
  PGOPTIONS="-c search_path=$schema" /usr/bin/time -f "%U %S" -o "$work/pg.time" \
    "$pgbench" -n -M prepared -c "$2" -j 1 -T "$DURATION" \
    -f "benches/pgbench/$1.sql" "$url" >"$work/pg.out" 2>"$work/pg.err" \
    || { cat "$work/pg.err" >&2; exit 3; }
  tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' "$work/pg.out")
  n=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$work/pg.out")
  echo "$tps $(cpu_of "$work/pg.time") $n"
}

: >"$work/all"
for strategy in $STRATEGIES; do
  for clients in $CLIENTS; do
    for round in $(seq 1 "$ROUNDS"); do
      # Alternate which tool goes first, so neither always meets a warmer server.
      if [ $((round % 2)) = 1 ]; then
        rl=$(run_racelab "$strategy" "$clients"); fl=$(run_floor "$strategy" "$clients")
        pg=$(run_pgbench "$strategy" "$clients")
      else
        pg=$(run_pgbench "$strategy" "$clients"); fl=$(run_floor "$strategy" "$clients")
        rl=$(run_racelab "$strategy" "$clients")
      fi
      echo "$strategy $clients $rl $pg $fl" | tee -a "$work/all" >&2
    done
  done
done

python3 - "$work/all" <<'PY'
import sys, statistics
rows = {}
for line in open(sys.argv[1]):
    s, c, rl, rlc, rln, rlr, pg, pgc, pgn, fl, flr, fln = line.split()
    rows.setdefault((s, int(c)), []).append((float(rl), float(rlc), int(rln), float(pg), float(pgc), int(pgn), float(rlr), float(fl), float(flr)))
print(f"\n{'strategy':<12} {'clients':>7} | {'racelab tx/s':>12} {'pgbench tx/s':>12} {'ratio':>6} {'sqlx loop':>9} | {'racelab CPU/1k':>14} {'race only':>10} {'pgbench CPU/1k':>14} {'ratio':>6} {'sqlx loop':>9}")
for (s, c), runs in rows.items():
    rl = statistics.median(r[0] for r in runs)
    pg = statistics.median(r[3] for r in runs)
    ratio = statistics.median(r[0] / r[3] for r in runs)
    rlk = statistics.median(1e6 * r[1] / r[2] for r in runs)
    pgk = statistics.median(1e6 * r[4] / r[5] for r in runs)
    # client_cpu_us_per_attempt is CPU microseconds per attempt, which is
    # CPU milliseconds per 1,000 attempts.
    rlr = statistics.median(r[6] for r in runs)
    cpu_ratio = statistics.median(r[6] / (1e6 * r[4] / r[5]) for r in runs)
    fl = statistics.median(r[7] for r in runs)
    flr = statistics.median(r[8] for r in runs)
    print(f"{s:<12} {c:>7} | {rl:>12,.0f} {pg:>12,.0f} {ratio:>6.2f} {fl:>9,.0f} | {rlk:>11.1f} ms {rlr:>7.1f} ms {pgk:>11.1f} ms {cpu_ratio:>6.2f} {flr:>6.1f} ms")
print(f"(medians of {len(next(iter(rows.values())))} rounds; ratio = median of per-round racelab/pgbench)")
PY
echo
echo "ratio = racelab/pgbench throughput; CPU/1k = client user+sys CPU per 1,000 transactions"
echo "(racelab CPU/1k is the whole process, start-up and audit included; race only is"
echo " throughput.client_cpu_us_per_attempt, the race alone; the last ratio is race only/pgbench;"
echo " sqlx loop = the same transaction as a bare loop over sqlx on racelab's runtime, its"
echo " transactions/s and its CPU per 1,000 measured the same way as race only)"
