#!/usr/bin/env bash
# racelab against pgbench on the same server and the same transaction.
#
# Starts one kept cluster, then for each strategy and client count runs
# racelab and pgbench alternately (same clients, zero think time, same
# duration, stock large enough never to sell out) and prints both tools'
# transactions/s, their ratio, and each tool's client CPU per 1,000
# transactions. Stops the cluster at the end.
#
#   benches/vs-pgbench.sh                 # defaults below
#   DURATION=5 CLIENTS="1 10" STRATEGIES=conditional benches/vs-pgbench.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-8}
CLIENTS=${CLIENTS:-"1 10 100"}
STRATEGIES=${STRATEGIES:-"conditional for-update"}
ROUNDS=${ROUNDS:-1}
STOCK=1000000000000

pgbin=${RACELAB_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
pgbench="$pgbin/pgbench"
[ -x "$pgbench" ] || { echo "pgbench not found (set RACELAB_PG_BIN)" >&2; exit 3; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time not found: apt-get install time" >&2; exit 3; }

cargo build --release --quiet
racelab=$PWD/target/release/racelab

work=$(mktemp -d)
export RACELAB_STATE_DIR=$work/state
cleanup() { "$racelab" db stop >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

url=$("$racelab" db start --max-connections 300 2>/dev/null)
echo "server: $url ($("$pgbin/postgres" --version)), $(nproc) cores, duration ${DURATION}s per run"
schema=bench

# Client CPU seconds (user + sys) of a command, from /usr/bin/time.
cpu_of() { awk '{ printf "%.3f", $1 + $2 }' "$1"; }

printf '\n%-12s %7s | %12s %12s %7s | %16s %16s\n' strategy clients "racelab tx/s" "pgbench tx/s" ratio "racelab CPU/1k" "pgbench CPU/1k"
for strategy in $STRATEGIES; do
  for clients in $CLIENTS; do
    for round in $(seq 1 "$ROUNDS"); do
      # racelab: resets the lab (schema `bench`), seeds the stock, races.
      /usr/bin/time -f "%U %S" -o "$work/rl.time" \
        "$racelab" run --database-url "$url" --schema "$schema" --strategy "$strategy" \
        --buyers "$clients" --stock "$STOCK" --think-ms 0 --duration "$DURATION" \
        --no-save --quiet --json >"$work/rl.json"
      rl_tps=$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["throughput"]["attempts_per_sec"], 1))' "$work/rl.json")
      rl_n=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["outcomes"]["attempts"])' "$work/rl.json")
      rl_cpu=$(cpu_of "$work/rl.time")

      # pgbench: the same statements on the same lab, one thread like racelab.
      PGOPTIONS="-c search_path=$schema" /usr/bin/time -f "%U %S" -o "$work/pg.time" \
        "$pgbench" -n -M prepared -c "$clients" -j 1 -T "$DURATION" \
        -f "benches/pgbench/$strategy.sql" "$url" >"$work/pg.out" 2>"$work/pg.err" \
        || { cat "$work/pg.err" >&2; exit 3; }
      pg_tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' "$work/pg.out")
      pg_n=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$work/pg.out")
      pg_cpu=$(cpu_of "$work/pg.time")

      python3 - "$strategy" "$clients" "$rl_tps" "$pg_tps" "$rl_cpu" "$rl_n" "$pg_cpu" "$pg_n" <<'PY'
import sys
s, c, rl, pg, rlc, rln, pgc, pgn = sys.argv[1:]
rl, pg, rlc, rln, pgc, pgn = float(rl), float(pg), float(rlc), int(rln), float(pgc), int(pgn)
per_k = lambda cpu, n: f"{1000 * cpu / n * 1000:.1f} ms" if n else "-"
print(f"{s:<12} {c:>7} | {rl:>12,.0f} {pg:>12,.0f} {rl / pg:>7.2f} | {per_k(rlc, rln):>16} {per_k(pgc, pgn):>16}")
PY
    done
  done
done
echo
echo "ratio = racelab/pgbench throughput; CPU/1k = client user+sys CPU per 1,000 transactions"
echo "(racelab's CPU includes its start-up: connecting, resetting and auditing the lab)"
