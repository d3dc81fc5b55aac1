#!/usr/bin/env bash
# Memory per idle connection, the headline figure: a fresh `echoloop` (release build),
# VmRSS before any client, then with N connections open that have each echoed one 64-byte
# message; prints (after - before) / N. Fails if it is above 64 bytes.
#
#   scripts/idle-memory.sh [N]            N connections (default 19000; the client holds N
#                                         descriptors too, so N must stay below `ulimit -Hn`)
#   ECHOLOOP_BIN=path scripts/idle-memory.sh   measure another build the same way
#
# It runs the ignored test `nineteen_thousand_idle_connections` in tests/idle_memory.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
export ECHOLOOP_IDLE_CONNS="${1:-19000}"
exec cargo test --release -q --test idle_memory -- --ignored --nocapture \
	nineteen_thousand_idle_connections
