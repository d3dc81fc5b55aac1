#!/usr/bin/env bash
# The flood, echoloop beside the tokio echo server (examples/tokio_echo.rs): N connections
# that each write 64 KiB chunks as fast as they can while reading their echo in 16 KiB reads.
# What a server queues for such a peer shows as its RSS and as the chunks' latency (from a
# chunk's write returning to its last byte read back); the echo rate is what it buys.
#
#   scripts/flood-compare.sh [--rounds 3] [--secs 8] [--conns 10] [--before BIN]
#                            [--echoloop BIN] [--tokio BIN] [--out DIR]
#
# Builds the release binaries, then runs the ignored benchmark `flood_against_tokio`
# (tests/pending_bound.rs) in release mode: servers in turn each round (echoloop, tokio, and
# --before, an older echoloop build, if given), default flags. Writes DIR (default
# results/flood-<UTC time>/): raw.jsonl (one JSON object per run), summary.md (medians,
# min-max, ratios to tokio and to --before) and machine.txt (machine, toolchain, commit,
# command). Exit status: 0 when every run echoed every byte back in order, 1 otherwise,
# 2 for bad arguments.
set -euo pipefail

usage() {
	awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
}

rounds=3
secs=8
conns=10
before=""
echoloop_bin=""
tokio_bin=""
out=""
cd "$(dirname "$0")/.."
target_dir=${CARGO_TARGET_DIR:-target}
while [[ $# -gt 0 ]]; do
	case "$1" in
	--rounds) rounds="${2:?--rounds needs a number}"; shift ;;
	--secs) secs="${2:?--secs needs a number}"; shift ;;
	--conns) conns="${2:?--conns needs a number}"; shift ;;
	--before) before="${2:?--before needs a path}"; shift ;;
	--echoloop) echoloop_bin="${2:?--echoloop needs a path}"; shift ;;
	--tokio) tokio_bin="${2:?--tokio needs a path}"; shift ;;
	--out) out="${2:?--out needs a directory}"; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "flood-compare.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
	esac
	shift
done
for n in "$rounds" "$secs" "$conns"; do
	[[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "flood-compare.sh: '$n' is not a positive number" >&2; exit 2; }
done
for bin in "$before" "$echoloop_bin" "$tokio_bin"; do
	[[ -z "$bin" || -x "$bin" ]] || { echo "flood-compare.sh: '$bin' is not an executable" >&2; exit 2; }
done

cargo build --release --bin echoloop --example tokio_echo
echoloop_bin=${echoloop_bin:-$target_dir/release/echoloop}
tokio_bin=${tokio_bin:-$target_dir/release/examples/tokio_echo}
out=${out:-results/flood-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"

env_before=()
[[ -n "$before" ]] && env_before=(ECHOLOOP_FLOOD_BEFORE_BIN="$(realpath "$before")")
{
	echo "command: scripts/flood-compare.sh --rounds $rounds --secs $secs --conns $conns${before:+ --before $before}"
	echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (dirty)')"
	echo "uname: $(uname -srm)"
	echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores"
	echo "memory: $(grep MemTotal /proc/meminfo | awk '{print $2 " kB"}')"
	echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "rustc: $(rustc --version)"
	echo "echoloop: $echoloop_bin; tokio: $tokio_bin${before:+; before: $before}"
} > "$out/machine.txt"

status=0
env ECHOLOOP_FLOOD_BIN="$(realpath "$echoloop_bin")" TOKIO_ECHO_BIN="$(realpath "$tokio_bin")" \
	"${env_before[@]}" ECHOLOOP_FLOOD_ROUNDS="$rounds" ECHOLOOP_FLOOD_SECS="$secs" \
	ECHOLOOP_FLOOD_CONNS="$conns" \
	cargo test --release --test pending_bound flood_against_tokio -- --ignored --nocapture \
	--test-threads=1 > "$out/stdout.txt" || status=1
# libtest prints "test NAME ... " in front of the first JSON line: keep only the objects.
grep -o '{"server".*}' "$out/stdout.txt" > "$out/raw.jsonl" || true
rm -f "$out/stdout.txt"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/machine.txt"

python3 - "$out" <<'PY'
import json, statistics, sys
out = sys.argv[1]
runs = [json.loads(l) for l in open(f"{out}/raw.jsonl")]
by = {}
for r in runs:
    r["rss_growth_mib"] = (r["rss_peak_kib"] - r["rss_baseline_kib"]) / 1024
    r["rss_peak_mib"] = r["rss_peak_kib"] / 1024
    by.setdefault(r["server"], []).append(r)
keys = [("mib_per_s", "echo MiB/s"), ("p50_ms", "p50 ms"), ("p95_ms", "p95 ms"),
        ("p99_ms", "p99 ms"), ("rss_peak_mib", "peak RSS MiB"), ("rss_growth_mib", "RSS growth MiB")]
med = {s: {k: statistics.median(r[k] for r in rs) for k, _ in keys} for s, rs in by.items()}
lines = ["# Flood: echoloop beside tokio", "",
         f"{len(runs)} runs; medians (min-max). Runs alternate servers within each round.", "",
         "| server | " + " | ".join(h for _, h in keys) + " |",
         "|---|" + "---|" * len(keys)]
for s, rs in by.items():
    cells = [f"{med[s][k]:.1f} ({min(r[k] for r in rs):.1f}-{max(r[k] for r in rs):.1f})" for k, _ in keys]
    lines.append(f"| {s} | " + " | ".join(cells) + " |")
lines.append("")
if "echoloop" in med and "tokio" in med:
    e, t = med["echoloop"], med["tokio"]
    lines += [f"- echoloop / tokio: throughput {e['mib_per_s'] / t['mib_per_s']:.2f}x, "
              f"p95 {e['p95_ms'] / t['p95_ms']:.2f}x (target at most 1.2x), peak RSS "
              f"{e['rss_peak_mib']:.1f} MiB against 2 x {t['rss_peak_mib']:.1f} + 16 = "
              f"{2 * t['rss_peak_mib'] + 16:.1f} MiB (the target's bound)"]
if "echoloop" in med and "echoloop-before" in med:
    e, b = med["echoloop"], med["echoloop-before"]
    lines += [f"- echoloop / the --before build: throughput {e['mib_per_s'] / b['mib_per_s']:.2f}x "
              f"(target within 10%), p95 {e['p95_ms'] / b['p95_ms']:.2f}x, peak RSS "
              f"{e['rss_peak_mib']:.1f} vs {b['rss_peak_mib']:.1f} MiB"]
open(f"{out}/summary.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
echo "flood-compare.sh: results in $out"
exit $status
