#!/usr/bin/env bash
# A local test cluster on loopback ports of its own: a PostgreSQL primary, two
# streaming replicas (pg_basebackup -R, hot standby) and a Redis server with no
# persistence; beside them, TLS: a CA made here with openssl, the PostgreSQL
# servers with ssl=on (certificate for DNS:localhost only, and a login that a
# client certificate from the CA opens) and a TLS-only
# Redis with a password; and a Redis Cluster of three masters and three
# replicas. Data lives under target/seaway-cluster (ignored by git).
#
# Usage: scripts/cluster.sh COMMAND
#   up                 start everything (idempotent); waits until replicas stream
#   down               stop what this script started and remove its data
#   status             what is running
#   env                print DATABASE_URL, READ_REPLICA_URLS, REDIS_URL and the
#                      TLS twins SEAWAY_TLS_* (for eval)
#   lag MS [N]         set replica N's (default 1) recovery_min_apply_delay, reload
#   stop-replica [N]   stop replica N (default 1)
#   start-replica [N]  start replica N again and wait until it streams
#   stop-redis         stop Redis (both: plain and TLS)
#   start-redis        start Redis again (loading its dump.rdb, if one was SAVEd)
#   pause-redis / resume-redis        SIGSTOP / SIGCONT the Redis servers
#   redis-cluster-failover   CLUSTER FAILOVER on each replica of the Redis
#                      Cluster in turn (every master hands over to its replica)
#   redis-cluster-kill PORT   SIGKILL that node; waits until its replica has
#                      taken over (a master killed with no handover)
#   redis-cluster-pause PORT / redis-cluster-resume PORT   SIGSTOP / SIGCONT
#                      one node
#   redis-cluster-start       start every node not running and wait until
#                      the cluster is ok (a killed master rejoins as a replica)
#   stop-redis-cluster / pause-redis-cluster / resume-redis-cluster
#                      the same for all six nodes at once
#   pause-replica [N] / resume-replica [N]   SIGSTOP / SIGCONT replica N's processes
#   stop-primary       stop the primary (replicas keep serving reads)
#   start-primary      start it again and wait until every replica streams
#   psql primary|replica1|replica2 [ARGS]   a psql shell on one server
#
# Ports (override with the variables): SEAWAY_PG_PORT=25432, replica N at
# SEAWAY_PG_PORT+N, a second, independent primary (another cluster, for
# tokens that must not cross clusters) at SEAWAY_PG_PORT+10,
# SEAWAY_REDIS_PORT=26379, the TLS Redis at SEAWAY_REDIS_PORT+1, the Redis
# Cluster's six nodes at SEAWAY_REDIS_PORT+10..+15. All below 32768, outside Linux's
# ephemeral range, and away from the machine's own 5432/6379.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE="${SEAWAY_CLUSTER_DIR:-$ROOT/target/seaway-cluster}"
PG_PORT="${SEAWAY_PG_PORT:-25432}"
REDIS_PORT="${SEAWAY_REDIS_PORT:-26379}"
REPLICAS="${SEAWAY_REPLICAS:-2}"
RUN="$BASE/run"
TLS_DIR="$BASE/tls"
RC_PORT=$((REDIS_PORT + 10))
REDIS_TLS_PORT=$((REDIS_PORT + 1))
# A login that must use TLS and a password; the servers listen on loopback only.
TLS_USER=seaway_tls
# a login with no password that only a client certificate (CN=it) opens
CERT_USER=seaway_cert
TLS_PASSWORD=seaway-tls-test-only

log() { printf 'cluster: %s\n' "$*" >&2; }
die() { printf 'cluster: error: %s\n' "$*" >&2; exit 1; }

is_root() { [ "$(id -u)" = 0 ]; }

install_if_missing() {
  local need=()
  find_pg_bin >/dev/null 2>&1 || need+=(postgresql)
  command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
  [ ${#need[@]} -eq 0 ] && return 0
  is_root || die "missing ${need[*]}: install Debian's packages (apt-get install ${need[*]}) or run as root"
  log "installing ${need[*]} from Debian's packages"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
}

find_pg_bin() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
  done
  if command -v pg_ctl >/dev/null 2>&1; then dirname "$(command -v pg_ctl)"; return 0; fi
  return 1
}

# PostgreSQL refuses to run as root: run its tools as the postgres user then.
as_pg() {
  if is_root; then runuser -u postgres -- "$@"; else "$@"; fi
}

replica_port() { echo $((PG_PORT + $1)); }
replica_dir() { echo "$BASE/replica$1"; }
pg_running() { [ -f "$1/postmaster.pid" ] && as_pg "$BIN/pg_ctl" -D "$1" status >/dev/null 2>&1; }
q() { psql -X -q -h 127.0.0.1 -p "$1" -U postgres -d postgres -Atc "$2"; }

prepare_dirs() {
  mkdir -p "$BASE" "$RUN"
  if is_root; then chown postgres: "$BASE" "$RUN"; chmod 755 "$BASE"; fi
  # The postgres user must be able to reach the data directory.
  if is_root; then
    local d="$BASE"
    while [ "$d" != / ]; do chmod o+x "$d" 2>/dev/null || true; d="$(dirname "$d")"; done
  fi
}

# A CA and a server certificate for DNS:localhost (not 127.0.0.1: a client
# that verifies the host name and dials the address must refuse it); a client
# certificate from the CA for CERT_USER, and a "rogue" one that no server
# trusts (self-signed, same name).
make_certs() {
  [ -f "$TLS_DIR/rogue.pem" ] && return 0
  command -v openssl >/dev/null 2>&1 || die "openssl is needed for the TLS servers"
  mkdir -p "$TLS_DIR"
  (
    cd "$TLS_DIR"
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=Seaway test CA" \
      -keyout ca.key -out ca.pem 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
      -keyout server.key -out server.csr 2>/dev/null
    printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' >ext.cnf
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
      -extfile ext.cnf -out server.pem 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$CERT_USER" \
      -keyout client.key -out client.csr 2>/dev/null
    printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' >client.cnf
    openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
      -extfile client.cnf -out client.pem 2>/dev/null
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=$CERT_USER" \
      -keyout rogue.key -out rogue.pem 2>/dev/null
    chmod 600 server.key ca.key client.key rogue.key
    chmod 644 ca.pem server.pem client.pem rogue.pem
  )
  if is_root; then chown -R postgres: "$TLS_DIR"; chmod 755 "$TLS_DIR"; fi
}

start_primary() {
  local dir="${1:-$BASE/primary}" port="${2:-$PG_PORT}" name="${3:-primary}"
  if [ ! -f "$dir/PG_VERSION" ]; then
    log "initdb $name"
    as_pg "$BIN/initdb" -D "$dir" -U postgres --auth=trust -E UTF8 --no-locale >/dev/null
    cat >>"$dir/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$RUN'
wal_level = replica
max_wal_senders = 10
max_connections = 300
hot_standby = on
fsync = off
full_page_writes = off
wal_keep_size = 256MB
cluster_name = '$name'
ssl = on
ssl_cert_file = '$TLS_DIR/server.pem'
ssl_key_file = '$TLS_DIR/server.key'
ssl_ca_file = '$TLS_DIR/ca.pem'
EOF
    # the TLS login: TLS and a password, or nothing; the certificate login:
    # TLS and a client certificate from the CA (first match wins)
    { printf 'hostnossl all %s 127.0.0.1/32 reject\nhostssl all %s 127.0.0.1/32 scram-sha-256\n' "$TLS_USER" "$TLS_USER"
      printf 'hostnossl all %s 127.0.0.1/32 reject\nhostssl all %s 127.0.0.1/32 cert\n' "$CERT_USER" "$CERT_USER"
      cat "$dir/pg_hba.conf"
      printf 'host all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust\n'
    } >"$dir/pg_hba.new"
    mv "$dir/pg_hba.new" "$dir/pg_hba.conf"
    if is_root; then chown postgres: "$dir/pg_hba.conf"; fi
  fi
  if ! pg_running "$dir"; then
    log "starting $name on 127.0.0.1:$port"
    as_pg "$BIN/pg_ctl" -D "$dir" -l "$BASE/$name.log" -w -t 60 start >/dev/null
  fi
}

OTHER_PORT=$((PG_PORT + 10))
start_other() { start_primary "$BASE/other" "$OTHER_PORT" other; }

# SIGSTOP/SIGCONT a server and every process it started (a postmaster's
# backends, walreceiver and startup process are its children).
signal_tree() {
  local sig=$1 pid=$2
  [ -n "$pid" ] || die "no such server running"
  kill "-$sig" "$pid"
  pkill "-$sig" -P "$pid" || true
}
pg_pid() { head -1 "$1/postmaster.pid" 2>/dev/null; }

wait_streaming() {
  local n=$1 i
  for i in $(seq 1 300); do
    if [ "$(q "$PG_PORT" "select count(*) from pg_stat_replication where application_name = 'replica$n' and state = 'streaming'" 2>/dev/null)" = 1 ]; then
      return 0
    fi
    sleep 0.2
  done
  die "replica$n is not streaming after 60 s (see $BASE/replica$n.log)"
}

start_replica() {
  local n=$1 dir port
  dir="$(replica_dir "$n")"; port="$(replica_port "$n")"
  if [ ! -f "$dir/PG_VERSION" ]; then
    log "pg_basebackup replica$n"
    rm -rf "$dir"
    as_pg "$BIN/pg_basebackup" -h 127.0.0.1 -p "$PG_PORT" -U postgres -D "$dir" -R -X stream -c fast
    cat >>"$dir/postgresql.conf" <<EOF
port = $port
cluster_name = 'replica$n'
hot_standby_feedback = on
wal_receiver_status_interval = 1s
include_if_exists = 'seaway_lag.conf'
EOF
  fi
  if ! pg_running "$dir"; then
    log "starting replica$n on 127.0.0.1:$port"
    as_pg "$BIN/pg_ctl" -D "$dir" -l "$BASE/replica$n.log" -w -t 60 start >/dev/null
  fi
  wait_streaming "$n"
}

stop_pg() {
  local dir=$1
  if pg_running "$dir"; then as_pg "$BIN/pg_ctl" -D "$dir" -m fast -w -t 60 stop >/dev/null; fi
}

redis_running() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1; }
redis_tls_running() {
  redis-cli --tls --cacert "$TLS_DIR/ca.pem" -h localhost -p "$REDIS_TLS_PORT" \
    --user default --pass "$TLS_PASSWORD" --no-auth-warning ping 2>/dev/null | grep -q PONG
}

start_redis_tls() {
  mkdir -p "$BASE/redis-tls"
  if ! redis_tls_running; then
    log "starting TLS redis on 127.0.0.1:$REDIS_TLS_PORT"
    redis-server --port 0 --tls-port "$REDIS_TLS_PORT" --bind 127.0.0.1 \
      --tls-cert-file "$TLS_DIR/server.pem" --tls-key-file "$TLS_DIR/server.key" \
      --tls-ca-cert-file "$TLS_DIR/ca.pem" --tls-auth-clients optional \
      --requirepass "$TLS_PASSWORD" --save "" --appendonly no \
      --daemonize yes --dir "$BASE/redis-tls" --pidfile "$RUN/redis-tls.pid" \
      --logfile "$BASE/redis-tls.log" >/dev/null
    local i
    for i in $(seq 1 100); do redis_tls_running && return 0; sleep 0.1; done
    die "the TLS redis did not start (see $BASE/redis-tls.log)"
  fi
}

stop_redis_tls() {
  local p i
  p="$(cat "$RUN/redis-tls.pid" 2>/dev/null || true)"
  [ -n "$p" ] || return 0
  kill -CONT "$p" 2>/dev/null || true
  kill "$p" 2>/dev/null || true
  for i in $(seq 1 100); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
}

rc_cli() { redis-cli -h 127.0.0.1 -p "$1" "${@:2}"; }
rc_ok() { rc_cli "$1" cluster info 2>/dev/null | grep -q 'cluster_state:ok'; }

# Node I of the Redis Cluster, unless it answers (a node started again
# rejoins from its nodes.conf: a master that was failed over, as a replica).
start_rc_node() {
  local i=$1 port=$((RC_PORT + $1))
  rc_cli "$port" ping >/dev/null 2>&1 && return 0
  mkdir -p "$BASE/rc$i"
  redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes \
    --cluster-config-file "$BASE/rc$i/nodes.conf" --cluster-node-timeout 1000 \
    --save "" --appendonly no --daemonize yes --dir "$BASE/rc$i" \
    --pidfile "$RUN/rc$i.pid" --logfile "$BASE/rc$i.log" >/dev/null
}

start_redis_cluster() {
  local i nodes=()
  for i in 0 1 2 3 4 5; do
    nodes+=("127.0.0.1:$((RC_PORT + i))")
    start_rc_node "$i"
  done
  for i in 0 1 2 3 4 5; do
    local n
    for n in $(seq 1 100); do rc_cli $((RC_PORT + i)) ping >/dev/null 2>&1 && break; sleep 0.1; done
  done
  if ! rc_ok "$RC_PORT"; then
    log "creating the Redis Cluster on 127.0.0.1:$RC_PORT..$((RC_PORT + 5))"
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >/dev/null
  fi
  wait_redis_cluster
}

# Masters serving slots, not failed, as node 0 sees them.
rc_masters() { rc_masters_seen_by "$RC_PORT"; }

# Until every node says the cluster is ok and sees three masters.
wait_redis_cluster() {
  local n i ok
  for n in $(seq 1 200); do
    ok=1
    for i in 0 1 2 3 4 5; do rc_ok $((RC_PORT + i)) || ok=0; done
    if [ "$ok" = 1 ] && [ "$(rc_masters)" = 3 ]; then return 0; fi
    sleep 0.1
  done
  die "the Redis Cluster did not become ok (see $BASE/rc*.log)"
}

stop_redis_cluster() {
  local i p n pids=()
  for i in 0 1 2 3 4 5; do
    p="$(cat "$RUN/rc$i.pid" 2>/dev/null || true)"
    [ -n "$p" ] || continue
    kill -CONT "$p" 2>/dev/null || true
    kill "$p" 2>/dev/null || true
    pids+=("$p")
  done
  # gone before their directories are removed
  for p in "${pids[@]}"; do
    for n in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
  done
}

# Each replica takes over from its master (CLUSTER FAILOVER: the master
# stops writes until the replica has caught up, then they swap).
redis_cluster_failover() {
  local i port replicas=()
  # the replicas as they are now (a node that has just become one is not
  # failed back over)
  for i in 0 1 2 3 4 5; do
    port=$((RC_PORT + i))
    if [ "$(rc_cli "$port" role 2>/dev/null | head -1)" = slave ]; then replicas+=("$port"); fi
  done
  for port in "${replicas[@]}"; do
    rc_cli "$port" cluster failover >/dev/null
    local n
    for n in $(seq 1 100); do
      [ "$(rc_cli "$port" role 2>/dev/null | head -1)" = master ] && break
      sleep 0.1
    done
  done
  wait_redis_cluster
}

# SIGKILLs the Redis Cluster node on PORT (no shutdown, no handover: its
# replica takes over once the others see it fail), then waits until it has.
redis_cluster_kill() {
  local port=$1 i=$(($1 - RC_PORT)) n id seen
  [ "$i" -ge 0 ] && [ "$i" -le 5 ] || die "redis-cluster-kill: not a cluster port: $port"
  id=$(rc_cli "$port" cluster myid)
  seen=$(( (i + 1) % 6 + RC_PORT ))
  kill -KILL "$(cat "$RUN/rc$i.pid")"
  # until another node counts it failed (not just suspected) and three
  # masters serve the slots again
  for n in $(seq 1 200); do
    if rc_cli "$seen" cluster nodes 2>/dev/null | awk -v id="$id" '$1 == id && $3 ~ /(^|,)fail(,|$)/ { f = 1 } END { exit !f }' \
      && [ "$(rc_masters_seen_by "$seen")" = 3 ]; then
      return 0
    fi
    sleep 0.1
  done
  die "no replica took over from the killed node :$port"
}

# Masters serving slots, not failed, as the node on PORT sees them.
rc_masters_seen_by() {
  rc_cli "$1" cluster nodes 2>/dev/null \
    | awk '$3 ~ /master/ && $3 !~ /fail/ && $9 != "" { n++ } END { print n + 0 }'
}

tls_role() {
  q "$PG_PORT" "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$TLS_USER') THEN CREATE ROLE $TLS_USER LOGIN SUPERUSER PASSWORD '$TLS_PASSWORD'; END IF; END \$\$" >/dev/null
  q "$PG_PORT" "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$CERT_USER') THEN CREATE ROLE $CERT_USER LOGIN SUPERUSER; END IF; END \$\$" >/dev/null
}

start_redis() {
  mkdir -p "$BASE/redis"
  if ! redis_running; then
    log "starting redis on 127.0.0.1:$REDIS_PORT"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
      --daemonize yes --dir "$BASE/redis" --pidfile "$RUN/redis.pid" \
      --logfile "$BASE/redis.log" >/dev/null
    local i
    for i in $(seq 1 100); do redis_running && return 0; sleep 0.1; done
    die "redis did not start (see $BASE/redis.log)"
  fi
}

stop_redis() {
  if redis_running; then
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
    local i
    for i in $(seq 1 100); do redis_running || return 0; sleep 0.1; done
  fi
}

print_env() {
  local urls=() n
  for n in $(seq 1 "$REPLICAS"); do urls+=("postgres://postgres@127.0.0.1:$(replica_port "$n")/postgres"); done
  echo "export DATABASE_URL=postgres://postgres@127.0.0.1:$PG_PORT/postgres"
  echo "export READ_REPLICA_URLS=$(IFS=,; echo "${urls[*]}")"
  echo "export REDIS_URL=redis://127.0.0.1:$REDIS_PORT/"
  echo "export SEAWAY_OTHER_PRIMARY_URL=postgres://postgres@127.0.0.1:$OTHER_PORT/postgres"
  echo "export SEAWAY_CLUSTER=$ROOT/scripts/cluster.sh"
  local tls="sslmode=verify-full&sslrootcert=$TLS_DIR/ca.pem" turls=()
  for n in $(seq 1 "$REPLICAS"); do turls+=("postgres://$TLS_USER:$TLS_PASSWORD@localhost:$(replica_port "$n")/postgres?$tls"); done
  echo "export SEAWAY_REDIS_CLUSTER_URLS=redis://127.0.0.1:$RC_PORT/,redis://127.0.0.1:$((RC_PORT + 1))/,redis://127.0.0.1:$((RC_PORT + 2))/"
  echo "export SEAWAY_TLS_CA='$TLS_DIR/ca.pem'"
  echo "export SEAWAY_TLS_DATABASE_URL='postgres://$TLS_USER:$TLS_PASSWORD@localhost:$PG_PORT/postgres?$tls'"
  echo "export SEAWAY_TLS_READ_REPLICA_URLS='$(IFS=,; echo "${turls[*]}")'"
  echo "export SEAWAY_TLS_REDIS_URL='rediss://default:$TLS_PASSWORD@localhost:$REDIS_TLS_PORT/'"
  echo "export SEAWAY_TLS_CERT_USER=$CERT_USER"
  echo "export SEAWAY_TLS_CLIENT_CERT='$TLS_DIR/client.pem' SEAWAY_TLS_CLIENT_KEY='$TLS_DIR/client.key'"
  echo "export SEAWAY_TLS_ROGUE_CERT='$TLS_DIR/rogue.pem' SEAWAY_TLS_ROGUE_KEY='$TLS_DIR/rogue.key'"
}

set_lag() {
  local ms=$1 n=${2:-1} dir
  [[ "$ms" =~ ^[0-9]+$ ]] || die "lag takes milliseconds, got '$ms'"
  dir="$(replica_dir "$n")"
  echo "recovery_min_apply_delay = '${ms}ms'" >"$dir/seaway_lag.conf"
  is_root && chown postgres: "$dir/seaway_lag.conf"
  as_pg "$BIN/pg_ctl" -D "$dir" reload >/dev/null
  # reload is asynchronous: wait until the server shows the new value
  local i
  for i in $(seq 1 100); do
    [ "$(q "$(replica_port "$n")" "select setting from pg_settings where name = 'recovery_min_apply_delay'" 2>/dev/null)" = "$ms" ] && return 0
    sleep 0.05
  done
  die "replica$n did not take recovery_min_apply_delay=$ms"
}

cmd="${1:-}"
shift || true
case "$cmd" in
  up)
    install_if_missing
    BIN="$(find_pg_bin)" || die "no PostgreSQL binaries under /usr/lib/postgresql/*/bin or on PATH"
    prepare_dirs
    make_certs
    start_primary
    tls_role
    for n in $(seq 1 "$REPLICAS"); do start_replica "$n"; done
    start_other
    start_redis
    start_redis_tls
    start_redis_cluster
    log "up: primary :$PG_PORT, replicas :$(replica_port 1)..:$(replica_port "$REPLICAS"), redis :$REDIS_PORT"
    ;;
  down)
    if BIN="$(find_pg_bin)"; then
      for n in $(seq 1 "$REPLICAS"); do
        d="$(replica_dir "$n")"; p="$(pg_pid "$d")"
        if [ -n "$p" ]; then signal_tree CONT "$p" 2>/dev/null || true; fi
        stop_pg "$d"
      done
      stop_pg "$BASE/primary"
      stop_pg "$BASE/other"
    fi
    if [ -f "$RUN/redis.pid" ]; then kill -CONT "$(cat "$RUN/redis.pid")" 2>/dev/null || true; fi
    command -v redis-cli >/dev/null 2>&1 && stop_redis
    stop_redis_tls
    stop_redis_cluster
    rm -rf "$BASE"
    log "down"
    ;;
  status)
    BIN="$(find_pg_bin)" || die "no PostgreSQL binaries"
    pg_running "$BASE/primary" && echo "primary: running :$PG_PORT" || echo "primary: stopped"
    for n in $(seq 1 "$REPLICAS"); do
      pg_running "$(replica_dir "$n")" && echo "replica$n: running :$(replica_port "$n")" || echo "replica$n: stopped"
    done
    redis_running && echo "redis: running :$REDIS_PORT" || echo "redis: stopped"
    redis_tls_running && echo "redis-tls: running :$REDIS_TLS_PORT" || echo "redis-tls: stopped"
    rc_ok "$RC_PORT" && echo "redis-cluster: ok :$RC_PORT..$((RC_PORT + 5))" || echo "redis-cluster: down"
    ;;
  env) print_env ;;
  lag)
    BIN="$(find_pg_bin)" || die "no PostgreSQL binaries"
    set_lag "${1:?lag MS [N]}" "${2:-1}"
    ;;
  stop-replica)
    BIN="$(find_pg_bin)" || die "no PostgreSQL binaries"
    stop_pg "$(replica_dir "${1:-1}")"
    ;;
  start-replica)
    BIN="$(find_pg_bin)" || die "no PostgreSQL binaries"
    start_replica "${1:-1}"
    ;;
  stop-primary)
    BIN="$(find_pg_bin)" || die "no PostgreSQL binaries"
    stop_pg "$BASE/primary"
    ;;
  start-primary)
    BIN="$(find_pg_bin)" || die "no PostgreSQL binaries"
    start_primary
    for n in $(seq 1 "$REPLICAS"); do
      pg_running "$(replica_dir "$n")" && wait_streaming "$n"
    done
    ;;
  # Redis faults hit both servers, plain and TLS (a suite may run over either)
  stop-redis) stop_redis; stop_redis_tls ;;
  start-redis) start_redis; start_redis_tls ;;
  pause-redis)
    signal_tree STOP "$(cat "$RUN/redis.pid" 2>/dev/null)"
    signal_tree STOP "$(cat "$RUN/redis-tls.pid" 2>/dev/null)"
    ;;
  resume-redis)
    signal_tree CONT "$(cat "$RUN/redis.pid" 2>/dev/null)"
    signal_tree CONT "$(cat "$RUN/redis-tls.pid" 2>/dev/null)"
    ;;
  redis-cluster-failover) redis_cluster_failover ;;
  redis-cluster-kill) redis_cluster_kill "${1:?redis-cluster-kill PORT}" ;;
  # every node at once, for a suite that runs on the Redis Cluster
  stop-redis-cluster) stop_redis_cluster ;;
  pause-redis-cluster | resume-redis-cluster)
    [ "$cmd" = pause-redis-cluster ] && sig=STOP || sig=CONT
    for i in 0 1 2 3 4 5; do kill "-$sig" "$(cat "$RUN/rc$i.pid" 2>/dev/null)" 2>/dev/null || true; done
    ;;
  redis-cluster-pause | redis-cluster-resume)
    port="${1:?$cmd PORT}"
    i=$((port - RC_PORT))
    [ "$i" -ge 0 ] && [ "$i" -le 5 ] || die "$cmd: :$port is not a node of the Redis Cluster"
    [ "$cmd" = redis-cluster-pause ] && sig=STOP || sig=CONT
    kill "-$sig" "$(cat "$RUN/rc$i.pid")"
    ;;
  redis-cluster-start)
    for i in 0 1 2 3 4 5; do start_rc_node "$i"; done
    wait_redis_cluster
    ;;
  pause-replica) signal_tree STOP "$(pg_pid "$(replica_dir "${1:-1}")")" ;;
  resume-replica) signal_tree CONT "$(pg_pid "$(replica_dir "${1:-1}")")" ;;
  psql)
    target="${1:-primary}"; shift || true
    case "$target" in
      primary) port=$PG_PORT ;;
      replica*) port=$(replica_port "${target#replica}") ;;
      *) die "psql primary|replicaN" ;;
    esac
    exec psql -X -h 127.0.0.1 -p "$port" -U postgres -d postgres "$@"
    ;;
  *)
    sed -n '2,42p' "$0" | sed 's/^# \{0,1\}//'
    [ -z "$cmd" ] || exit 2
    ;;
esac
