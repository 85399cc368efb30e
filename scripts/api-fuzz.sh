#!/usr/bin/env bash
# Fuzzes the service's HTTP contract with schemathesis, from the service's own
# OpenAPI document (GET /openapi.json): every check, every phase (examples,
# coverage, fuzzing, stateful), one worker. It runs the service once on the
# embedded SQLite default and, when the cluster's environment is set
# (eval "$(scripts/cluster.sh env)"), once more on the PostgreSQL primary,
# its replicas and Redis, in a database of its own. Any failure (a 5xx, a
# status or body the document does not allow) fails the script.
#
# schemathesis comes from PyPI, pinned, into target/schemathesis-venv. One
# worker: with two (threads), hypothesis parses lambdas with ast.parse in
# both at once, and CPython 3.11 can fail that with "SystemError: AST
# constructor recursion depth mismatch" (a fresh-clone run did, on
# GET /stories/featured), a fault of the tool, not of the service.
# SEAWAY_FUZZ_EXAMPLES (default 100) test cases per operation and phase;
# SEAWAY_FUZZ_SEED (default fixed) for another exploration.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SCHEMATHESIS_VERSION=4.32.5
VENV="target/schemathesis-venv"
EXAMPLES="${SEAWAY_FUZZ_EXAMPLES:-100}"
SEED="${SEAWAY_FUZZ_SEED:-20261203}"

log() { printf 'api-fuzz: %s\n' "$*" >&2; }

if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  log "installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet "schemathesis==$SCHEMATHESIS_VERSION"
fi
cargo build -p seaway-app --quiet
BIN="$PWD/target/debug/seaway-app"

PID=""
WORK=""
cleanup() {
  if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  if [ -n "$WORK" ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT INT TERM

# run_one LABEL PORT [VAR=VALUE ...]: the service with that environment, fuzzed.
run_one() {
  local label=$1 port=$2
  shift 2
  WORK="$(mktemp -d)"
  log "$label: service on 127.0.0.1:$port"
  (cd "$WORK" && exec env -u DATABASE_URL -u READ_REPLICA_URLS -u REDIS_URL \
    LISTEN_ADDR="127.0.0.1:$port" RUST_LOG=warn "$@" "$BIN" >"$WORK/service.log" 2>&1) &
  PID=$!
  local i
  for i in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
    kill -0 "$PID" 2>/dev/null || { cat "$WORK/service.log" >&2; log "$label: the service did not start"; exit 1; }
    sleep 0.1
  done
  local rc=0
  "$VENV/bin/schemathesis" --config-file scripts/schemathesis.toml run \
    "http://127.0.0.1:$port/openapi.json" \
    --checks all --phases examples,coverage,fuzzing,stateful \
    --max-examples "$EXAMPLES" --workers 1 --seed "$SEED" --no-color || rc=$?
  if grep -q "panicked" "$WORK/service.log"; then
    log "$label: the service panicked"; grep -m5 -A5 panicked "$WORK/service.log" >&2; rc=1
  fi
  kill "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  PID=""
  rm -rf "$WORK"
  WORK=""
  [ "$rc" = 0 ] || { log "$label: schemathesis found failures"; exit "$rc"; }
  log "$label: no failures"
}

run_one "embedded SQLite" 23980

if [ -n "${DATABASE_URL:-}" ] && [ -n "${READ_REPLICA_URLS:-}" ] && [ -n "${REDIS_URL:-}" ]; then
  db="fuzz_$(date +%s)_$$"
  psql -X -q "$DATABASE_URL" -c "CREATE DATABASE $db" >/dev/null
  on_db() { local u=$1; echo "${u%/*}/$db"; }
  replicas="$(IFS=,; for u in $READ_REPLICA_URLS; do printf '%s,' "$(on_db "$u")"; done)"
  replicas="${replicas%,}"
  DATABASE_URL="$(on_db "$DATABASE_URL")" "$BIN" migrate >/dev/null
  run_one "PostgreSQL primary, replicas and Redis" 23981 \
    DATABASE_URL="$(on_db "$DATABASE_URL")" READ_REPLICA_URLS="$replicas" \
    REDIS_URL="$REDIS_URL" SEAWAY_CACHE_PREFIX="$db"
fi
