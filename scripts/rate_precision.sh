#!/usr/bin/env bash
# Rate-mode precision targets, against an idle echoloop on loopback, server pinned
# to core 0 and generator to core 1: at 1,000 and 20,000 requests/s, the corrected p50 within
# 20 µs of the uncorrected p50, and under 1% of sends late. Prints the figures, including the
# generator's own scheduling error, and exits 1 if a target is missed. These are targets for
# a quiet machine: on a shared, loaded one the scheduler's delays show up as misses.
#
# usage: scripts/rate_precision.sh [DURATION] [extra echoloop-bench flags, e.g. --spin 0]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DURATION=${1:-5s}
shift || true
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
cargo build --release --bins --manifest-path "$ROOT/Cargo.toml" >&2
SERVER_LOG=$(mktemp)
taskset -c 0 "$TARGET_DIR/release/echoloop" --port 0 >"$SERVER_LOG" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true; rm -f "$SERVER_LOG"' EXIT
for _ in $(seq 50); do grep -q '^listening' "$SERVER_LOG" && break; sleep 0.1; done
ADDR=$(sed -n 's/^listening tcp=\([^ ]*\).*/\1/p' "$SERVER_LOG")
[[ -n $ADDR ]] || { echo "rate_precision: server did not start" >&2; exit 2; }
fail=0
for rate in 1000 20000; do
	json=$(taskset -c 1 "$TARGET_DIR/release/echoloop-bench" rate --target "$ADDR" --rate "$rate" \
		-d "$DURATION" --json "$@")
	python3 - "$rate" "$json" <<'PY' || fail=1
import json, sys
rate, d = sys.argv[1], json.loads(sys.argv[2])
c, u, e = d["latency_us"]["p50"], d["latency_uncorrected_us"]["p50"], d["schedule_error_us"]
late = 100.0 * d["late_sends"] / max(d["requests"], 1)
ok = c - u <= 20 and late < 1.0
print(f"rate {rate}/s: corrected p50 {c} us, uncorrected p50 {u} us (diff {c - u}), "
      f"late {late:.2f}%, scheduling error p50 {e['p50']} p99 {e['p99']} max {e['max']} us, "
      f"cpu user {d['cpu']['user_s']} s sys {d['cpu']['sys_s']} s: {'OK' if ok else 'MISSED'}")
sys.exit(0 if ok else 1)
PY
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
exit $fail
