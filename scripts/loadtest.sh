#!/usr/bin/env bash
# The HTTP load benchmark of BENCHMARKS.md: seeds the cluster's primary with
# 10,000 profiles, 100,000 stories and 200,000 follows, starts the service
# (release build) against the primary, two replicas and Redis, and runs wrk at
# 64 connections: (a) the read mix, (b) the read mix with 5% title writes,
# (c) the read mix with the cache disabled, (d) the read mix with 10% views.
# Each run with the cache on starts from a warm cache: every key the read mix
# can ask for is read once first (scripts/load/warm.lua), so that the runs
# compare what writes cost at the steady state, not how far a slower run got
# in warming 110,000 keys. Prints one RESULT line per run, plus the cache hit
# rate, the replica share of reads and the service's peak RSS.
#
# With LOAD_MIXES="e" (or any list of a-e) it runs those mixes only; (e)
# is title PATCHes alone, for what a write costs. Each run also prints the
# CPU seconds the service, the PostgreSQL servers and Redis used.
#
# Usage: scripts/loadtest.sh [SECONDS]   (default 20 per run)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DURATION="${1:-20}"
PORT="${LOAD_PORT:-23000}"

if ! command -v wrk >/dev/null && [ "$(id -u)" = 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
scripts/cluster.sh up
eval "$(scripts/cluster.sh env)"
cargo build --release -p seaway-app -q
BIN=target/release/seaway-app

admin="$DATABASE_URL"
export DATABASE_URL="${admin%/*}/loadtest"
export READ_REPLICA_URLS="$(echo "$READ_REPLICA_URLS" | sed -E 's#/postgres(,|$)#/loadtest\1#g')"
psql -X -q "$admin" -c "DROP DATABASE IF EXISTS loadtest WITH (FORCE)" -c "CREATE DATABASE loadtest"
$BIN migrate
$BIN seed --profiles 10000 --stories 100000 --follows 200000 --seed 7 2>/dev/null
psql -X -q "$DATABASE_URL" -c "VACUUM ANALYZE"
# Measure the service, not a replica still replaying the seed (a lagging
# replica is skipped and its reads fall back to the primary): wait until
# every replica has replayed what the primary has written.
target_lsn=$(psql -X -At "$DATABASE_URL" -c "SELECT pg_current_wal_lsn()")
for r in ${READ_REPLICA_URLS//,/ }; do
  for _ in $(seq 1 600); do
    [ "$(psql -X -At "$r" -c "SELECT pg_last_wal_replay_lsn() >= '$target_lsn'")" = t ] && break
    sleep 0.1
  done
done

CLUSTER_DIR="${SEAWAY_CLUSTER_DIR:-target/seaway-cluster}"
# CPU time (clock ticks) of a process and its children, of the cluster's
# PostgreSQL servers (every backend, WAL sender and replay process), and of
# its plain Redis
ticks_of() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done; echo "$t"; }
# by role, from each process's title: "primary other replica walsender
# walreceiver startup" (primary: its backends and background processes;
# replica: the replicas' backends and background processes but the
# replication ones)
pg_roles() {
  local d pm p role
  declare -A t=([primary]=0 [replica]=0 [walsender]=0 [walreceiver]=0 [startup]=0)
  for d in primary replica1 replica2; do
    [ -f "$CLUSTER_DIR/$d/postmaster.pid" ] || continue
    pm=$(head -1 "$CLUSTER_DIR/$d/postmaster.pid")
    for p in $pm $(pgrep -P "$pm"); do
      case "$(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline")" in
        *walsender*) role=walsender ;;
        *walreceiver*) role=walreceiver ;;
        *startup*) role=startup ;;
        *) if [ "$d" = primary ]; then role=primary; else role=replica; fi ;;
      esac
      t[$role]=$((${t[$role]} + $(ticks_of "$p")))
    done
  done
  echo "${t[primary]} ${t[walsender]} ${t[walreceiver]} ${t[startup]} ${t[replica]}"
}
redis_ticks() { ticks_of "$(cat "$CLUSTER_DIR/run/redis.pid" 2>/dev/null)"; }

run() {
  local name=$1 ttl=$2 write_pct=$3 view_pct=${4:-0} pid
  LISTEN_ADDR="127.0.0.1:$PORT" CACHE_TTL_SECS="$ttl" SEAWAY_CACHE_PREFIX="load-$name-$$" \
    RUST_LOG=warn $BIN serve >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do curl -fs "127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done
  if [ "$ttl" != 0 ] && [ "$write_pct" != 100 ]; then
    # every key once, as warm.lua reads them; wrk waits out its -d even
    # when its threads stop, so it is stopped when /stats has seen them all
    local t0=$SECONDS wpid
    wrk -t2 -c64 -d600s -s scripts/load/warm.lua "http://127.0.0.1:$PORT" >/dev/null &
    wpid=$!
    # as many cached reads as warm.lua makes: each story, each feed (two:
    # its ids, then its rows; an empty one its ids and the profile), 100
    # pages, featured
    local keys=$((${LOAD_STORIES:-100000} + 2 * ${LOAD_PROFILES:-10000} + 100 + 1))
    until [ "$(curl -fs "127.0.0.1:$PORT/stats" | python3 -c "import json, sys; c = json.load(sys.stdin)['cache']; print(int(c['loads'] + c['l1']['hits'] + c['l2']['hits'] >= $keys))")" = 1 ]; do
      sleep 0.5
    done
    sleep 1
    kill $wpid
    wait $wpid 2>/dev/null || true
    echo "WARM every key of the read mix read once in $((SECONDS - t0)) s"
  fi
  # warm-up of the mix itself (not measured), then the measured run
  WRITE_PCT=$write_pct VIEW_PCT=$view_pct wrk -t2 -c64 -d3s -s scripts/load/reads.lua "http://127.0.0.1:$PORT" >/dev/null
  curl -fs "127.0.0.1:$PORT/stats" >"/tmp/seaway-load-before-$name.json"
  echo "== ($name) cache ttl=$ttl writes=${write_pct}% views=${view_pct}% for ${DURATION}s at 64 connections"
  local s0 r0 hz roles0; s0=$(ticks_of "$pid"); roles0=$(pg_roles); r0=$(redis_ticks); hz=$(getconf CLK_TCK)
  WRITE_PCT=$write_pct VIEW_PCT=$view_pct wrk -t2 -c64 -d"${DURATION}s" --timeout 5s -s scripts/load/reads.lua "http://127.0.0.1:$PORT" | grep RESULT
  # a process that started or ended during the run counts only its part seen
  echo "$roles0 $(pg_roles)" | awk -v hz="$hz" -v s="$(( $(ticks_of "$pid") - s0 ))" -v r="$(( $(redis_ticks) - r0 ))" '{
    for (i = 1; i <= 5; i++) { d[i] = ($(i + 5) - $i) / hz; p += d[i] }
    printf "CPU seconds over the run: service=%.2f postgresql=%.2f redis=%.2f\n", s / hz, p, r / hz
    printf "PostgreSQL CPU seconds by role: primary=%.2f walsenders=%.2f walreceivers=%.2f replay=%.2f replicas_other=%.2f\n", d[1], d[2], d[3], d[4], d[5]
  }'
  curl -fs "127.0.0.1:$PORT/stats" >"/tmp/seaway-load-after-$name.json"
  python3 - "$name" <<'PY'
import json, sys
n = sys.argv[1]
b = json.load(open(f"/tmp/seaway-load-before-{n}.json")); a = json.load(open(f"/tmp/seaway-load-after-{n}.json"))
d = lambda *k: (lambda x, y: y - x)(*(__import__("functools").reduce(lambda o, kk: o[kk], k, s) for s in (b, a)))
hits = d("cache", "l1", "hits") + d("cache", "l2", "hits"); loads = d("cache", "loads")
rep, pri = d("routing", "replica_reads"), d("routing", "primary_reads")
print(f"STATS cache_hit_rate={hits / max(1, hits + loads):.3f} replica_share_of_db_reads={rep / max(1, rep + pri):.3f} "
      f"db_reads={rep + pri} writes={d('routing', 'writes')} fallbacks={d('routing', 'fallbacks')}")
PY
  echo "RSS peak_mib=$(awk '/VmHWM/ {printf "%.0f", $2/1024}' /proc/$pid/status)"
  kill $pid; wait $pid 2>/dev/null || true
}

for mix in ${LOAD_MIXES:-a b c d}; do
  case $mix in
    a) run a 300 0 ;;
    b) run b 300 5 ;;
    c) run c 0 0 ;;
    d) run d 300 0 10 ;;
    # what a write costs alone: title PATCHes only (no warm-up: nothing is read)
    e) run e 300 100 ;;
    *) echo "LOAD_MIXES: unknown mix $mix (a b c d e)" >&2; exit 2 ;;
  esac
done
