#!/usr/bin/env bash
# Runs every test: starts the local cluster (PostgreSQL primary, two streaming
# replicas, Redis; scripts/cluster.sh), runs the whole workspace's tests with
# the cluster required, and stops the cluster even when tests fail.
#
# Extra arguments go to `cargo test` (e.g. scripts/test.sh -p seaway).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cleanup() { scripts/cluster.sh down || true; }
trap cleanup EXIT INT TERM

scripts/cluster.sh down >/dev/null 2>&1 || true
scripts/cluster.sh up
eval "$(scripts/cluster.sh env)"
export SEAWAY_REQUIRE_CLUSTER=1
# Test binaries run one after another (cargo test), so a fault injected by one
# binary never meets another; inside a binary, tests/common serializes them.
# --nocapture: the fault and latency tests print their counts and figures.
cargo test --workspace --all-targets "$@" -- --nocapture
cargo test --workspace --doc
# The HTTP contract fuzzed from its OpenAPI document (schemathesis from PyPI,
# every check and phase), on the embedded default and on the cluster.
scripts/api-fuzz.sh
# Once more over TLS (verify-full against the cluster's CA, passwords,
# rediss://): routing, the cache, and the faults.
SEAWAY_TEST_TLS=1 cargo test -p seaway-tests --test routing --test cache --test faults -- --nocapture
# Once more with L2, versions and the bus on the Redis Cluster (its Redis
# faults hit every node): the cache, the faults and the cache's promises.
SEAWAY_TEST_REDIS_CLUSTER=1 cargo test -p seaway-tests --test cache --test faults --test consistency -- --nocapture
# The library builds with no optional part, with each driver alone, and its
# documentation builds without a warning (broken links included).
for features in "" sqlite postgres "postgres,redis" "sqlite,axum,metrics" "postgres,redis,rustls" "postgres,schema-sync"; do
    cargo check -p seaway --no-default-features --features "$features"
done
RUSTDOCFLAGS="-D warnings" cargo doc -p seaway --no-deps --all-features
