#!/usr/bin/env bash
# The peer benchmark (issue 29): sealgate beside gator, conftest and Bitnami Sealed Secrets'
# controller, built from their Go modules (testenv/go/*, cached outside the clone), on the same
# inputs, in one run on this machine. Prints each peer's version, the verdict counts (checked to
# agree) and a table of figures, ratios and targets. `cargo test` runs a reduced form of the same
# code (tests/tests/peers.rs, tests/real_cluster/peers.rs), so this cannot rot.
#
#   bench/peers.sh            # everything (about 20 minutes on 2 cores, most of it Bitnami's)
#   bench/peers.sh offline    # gator and conftest only (a few minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
export SEALGATE_PEERS=full SEALGATE_REQUIRE_PEERS=1 SEALGATE_REQUIRE_CLUSTER=1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sealgate/target}"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); $(date -u +%F)"
cargo test --release --locked -q -p sealgate-e2e --test peers -- --nocapture --test-threads 1 2>&1 \
  | grep -v '^\(running\|test \|$\)' || exit 1
if [ "${1:-}" != offline ]; then
  cargo test --release --locked -q -p sealgate-e2e --test real_cluster -- peers --nocapture 2>&1 \
    | grep -v '^\(running\|test \|$\)' || exit 1
fi
