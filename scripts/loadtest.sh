#!/usr/bin/env bash
# Load test for echoloop: sweep connections x sizes x modes with echoloop-bench, keep the raw
# evidence, and summarise it with scripts/report.py. Run `scripts/loadtest.sh --help`.
#
# Shape of a run:
#   build -> start server (core 0) -> for each point: read server CPU, run generator (core 1),
#   read server CPU, keep its JSON -> SIGTERM server, keep its `summary` line -> report.py
#   (packs raw/ into one raw.jsonl; CSV, summary.md, report.html, cross-check of server
#   counters vs generator totals).
set -euo pipefail

usage() {
	cat <<'EOF'
usage: scripts/loadtest.sh [options]

Sweeps echoloop-bench over connections x sizes x modes against a fresh echoloop (or another
server) and writes raw.jsonl (every run's raw results, one JSON object per line), runs.csv,
summary.md, machine.txt and report.html.

options:
  --connections "LIST"  connection counts (default "1 10 100 1000 10000")
  --sizes "LIST"        message sizes, e.g. "64 1K 64K" (default "64 1K 64K")
  --modes "LIST"        generator modes (default "pingpong stream"); any of
                        pingpong pipeline stream rate churn udp
  --repeats N           runs per matrix point (default 3)
  --duration D          measured time per run, passed to the generator (default 3s)
  --warmup W            warmup per run, passed to the generator (default 1s)
  --threads T           generator threads (default: the generator's own default)
  --rate R              messages per second across all connections in mode rate
                        (default 10k; e.g. 1000, 50k, 1.5M)
  --out DIR             results directory (default results/<UTC timestamp>)
  --quick               smoke test in well under a minute: connections "1 10 100",
                        sizes "64 1K", repeats 1, duration 1s, warmup 0.3s (options
                        given explicitly win, before or after --quick)
  --compare             also sweep examples/tokio_echo (same pinning), its runs taking turns
                        with echoloop's (A B A B), and report echoloop/tokio ratios per pair
                        of runs with their spread (the peer is checked too, and measured
                        even though it fails deadlock-10m: marked as such in the report)
  --target HOST:PORT    benchmark an already running server instead: nothing is started,
                        so there is no server CPU and no cross-check
  --tolerance F         cross-check slack as a fraction of bytes (default 0.01): bytes still
                        in flight when the generator closes may be echoed but never read
  --max-buffer-bytes B  skip points where connections*size exceeds B (default 268435456)
  --generators K        run K generator processes at once per point (connections split
                        between them) and merge their reports exactly (echoloop-bench merge)
  --knee P99            also find each server's knee: the highest rate with p99 <= P99
                        (e.g. 1ms; 64 B, 50 connections, TCP), curve in report.html
  --measure-anyway      benchmark a server even if it fails `echoloop-bench check --quick`
                        (run before measuring each server; by default a failing server
                        is not measured: fast wrong figures are worse than none)
  --no-build            do not run cargo build (use the binaries already built)
  -h, --help            print this help

environment:
  CARGO_TARGET_DIR      where the binaries are (default ./target)
  ECHOLOOP_BIN, ECHOLOOP_BENCH_BIN, TOKIO_ECHO_BIN
                        override the binaries (e.g. to test another build)

Exit status: 0 if every run passed verification and every cross-check agreed; 1 if a run
failed, a cross-check disagreed, or a server failed the conformance check (and was not
measured); 2 on usage or setup errors.
EOF
}

die() {
	echo "loadtest: $*" >&2
	# Once the results folder exists, it says why it stops here (see finish_early).
	[[ -z ${RAW:-} || ! -d ${RAW:-/nonexistent} ]] || note_outcome "stopped by a setup error: $*"
	exit 2
}
log() { echo "loadtest: $*" >&2; }

# ---------------------------------------------------------------- options
CONNECTIONS="1 10 100 1000 10000"
SIZES="64 1K 64K"
MODES="pingpong stream"
REPEATS=3
DURATION=3s
WARMUP=1s
THREADS=""
RATE=10k
OUT=""
COMPARE=0
TARGET=""
TOLERANCE=0.01
MAX_BUFFER_BYTES=$((256 * 1024 * 1024))
BUILD=1
GENERATORS=1
KNEE=""
MEASURE_ANYWAY=0
QUICK=0
ORIG_ARGS=("$@")
declare -A GIVEN=() # options given explicitly: --quick does not override them

need_value() { [[ $# -ge 2 ]] || die "$1 needs a value (see --help)"; }
while [[ $# -gt 0 ]]; do
	case "$1" in
	-h | --help) usage; exit 0 ;;
	--connections) need_value "$@"; CONNECTIONS=$2; GIVEN[connections]=1; shift 2 ;;
	--sizes) need_value "$@"; SIZES=$2; GIVEN[sizes]=1; shift 2 ;;
	--modes) need_value "$@"; MODES=$2; GIVEN[modes]=1; shift 2 ;;
	--repeats) need_value "$@"; REPEATS=$2; GIVEN[repeats]=1; shift 2 ;;
	--duration) need_value "$@"; DURATION=$2; GIVEN[duration]=1; shift 2 ;;
	--warmup) need_value "$@"; WARMUP=$2; GIVEN[warmup]=1; shift 2 ;;
	--threads) need_value "$@"; THREADS=$2; shift 2 ;;
	--rate) need_value "$@"; RATE=$2; shift 2 ;;
	--out) need_value "$@"; OUT=$2; shift 2 ;;
	--target) need_value "$@"; TARGET=$2; shift 2 ;;
	--tolerance) need_value "$@"; TOLERANCE=$2; shift 2 ;;
	--max-buffer-bytes) need_value "$@"; MAX_BUFFER_BYTES=$2; shift 2 ;;
	--quick) QUICK=1; shift ;;
	--compare) COMPARE=1; shift ;;
	--no-build) BUILD=0; shift ;;
	--generators) need_value "$@"; GENERATORS=$2; shift 2 ;;
	--knee) need_value "$@"; KNEE=$2; shift 2 ;;
	--measure-anyway) MEASURE_ANYWAY=1; shift ;;
	*) die "unknown option '$1' (see --help)" ;;
	esac
done

# --quick sets what was not given, wherever it stands on the command line.
if ((QUICK)); then
	[[ -v GIVEN[connections] ]] || CONNECTIONS="1 10 100"
	[[ -v GIVEN[sizes] ]] || SIZES="64 1K"
	[[ -v GIVEN[modes] ]] || MODES="pingpong stream"
	[[ -v GIVEN[repeats] ]] || REPEATS=1
	[[ -v GIVEN[duration] ]] || DURATION=1s
	[[ -v GIVEN[warmup] ]] || WARMUP=0.3s
fi

# Validate everything that ends up in file names or JSON before anything runs.
for c in $CONNECTIONS; do [[ $c =~ ^[1-9][0-9]*$ ]] || die "invalid connection count '$c'"; done
for s in $SIZES; do [[ $s =~ ^[1-9][0-9]*[KkMm]?$ ]] || die "invalid size '$s' (use e.g. 64, 1K, 64K, 1M)"; done
for m in $MODES; do
	[[ $m =~ ^(pingpong|pipeline|stream|rate|churn|udp)$ ]] || die "invalid mode '$m'"
done
[[ -n $CONNECTIONS && -n $SIZES && -n $MODES ]] || die "empty --connections, --sizes or --modes"
[[ $REPEATS =~ ^[1-9][0-9]*$ ]] || die "invalid --repeats '$REPEATS'"
[[ $RATE =~ ^[0-9]+(\.[0-9]+)?[kKmM]?$ && ! $RATE =~ ^0+(\.0+)?[kKmM]?$ ]] || die "invalid --rate '$RATE' (use e.g. 1000, 50k, 1.5M)"
[[ $GENERATORS =~ ^[1-9][0-9]*$ ]] || die "invalid --generators '$GENERATORS'"
[[ -z $KNEE || $KNEE =~ ^[0-9]+(\.[0-9]+)?(us|ms|s)$ ]] || die "invalid --knee '$KNEE' (e.g. 1ms, 500us)"
[[ -z $THREADS || $THREADS =~ ^[1-9][0-9]*$ ]] || die "invalid --threads '$THREADS'"
[[ $MAX_BUFFER_BYTES =~ ^[1-9][0-9]*$ ]] || die "invalid --max-buffer-bytes '$MAX_BUFFER_BYTES'"
[[ $TOLERANCE =~ ^[0-9]*\.?[0-9]+$ ]] || die "invalid --tolerance '$TOLERANCE'"
if [[ -n $TARGET ]]; then
	[[ $TARGET =~ ^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):[0-9]+$ ]] || die "invalid --target '$TARGET' (HOST:PORT)"
	[[ $COMPARE -eq 0 ]] || die "--compare starts its own servers; it cannot be combined with --target"
fi

# "3s" / "300ms" / "1m" / "2" -> whole seconds, rounded up (only used for timeouts).
to_seconds() {
	local v=$1 n unit
	[[ $v =~ ^([0-9]*\.?[0-9]+)(ms|s|m)?$ ]] || die "cannot read duration '$v' (use e.g. 3s, 300ms)"
	n=${BASH_REMATCH[1]}
	unit=${BASH_REMATCH[2]:-s}
	case $unit in
	ms) awk -v n="$n" 'BEGIN { printf "%d\n", n / 1000 + 0.999 }' ;;
	s) awk -v n="$n" 'BEGIN { printf "%d\n", n + 0.999 }' ;;
	m) awk -v n="$n" 'BEGIN { printf "%d\n", n * 60 + 0.999 }' ;;
	esac
}
DURATION_S=$(to_seconds "$DURATION")
WARMUP_S=$(to_seconds "$WARMUP")

size_to_bytes() {
	local s=${1^^}
	case $s in
	*K) echo $((${s%K} * 1024)) ;;
	*M) echo $((${s%M} * 1024 * 1024)) ;;
	*) echo "$s" ;;
	esac
}

# ---------------------------------------------------------------- paths and build
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
case $TARGET_DIR in /*) ;; *) TARGET_DIR=$ROOT/$TARGET_DIR ;; esac
ECHOLOOP_BIN=${ECHOLOOP_BIN:-$TARGET_DIR/release/echoloop}
BENCH_BIN=${ECHOLOOP_BENCH_BIN:-$TARGET_DIR/release/echoloop-bench}
TOKIO_BIN=${TOKIO_ECHO_BIN:-$TARGET_DIR/release/examples/tokio_echo}

command -v python3 >/dev/null || die "python3 is required for scripts/report.py"

if [[ $BUILD -eq 1 ]]; then
	log "building release binaries"
	cargo build --release --bins >&2 || die "cargo build --release --bins failed"
	if [[ $COMPARE -eq 1 ]]; then
		cargo build --release --example tokio_echo >&2 || die "cargo build --release --example tokio_echo failed"
	fi
fi
[[ -x $BENCH_BIN ]] || die "generator not found at $BENCH_BIN (build it, or set ECHOLOOP_BENCH_BIN)"
if [[ -z $TARGET ]]; then
	[[ -x $ECHOLOOP_BIN ]] || die "server not found at $ECHOLOOP_BIN (build it, or set ECHOLOOP_BIN)"
fi
if [[ $COMPARE -eq 1 ]]; then
	[[ -x $TOKIO_BIN ]] || die "tokio_echo not found at $TOKIO_BIN (build it, or set TOKIO_ECHO_BIN)"
fi

# ---------------------------------------------------------------- limits and pinning
# Each process has its own RLIMIT_NOFILE: at N connections the generator holds N sockets and
# the server N more, so each needs N plus a margin for listeners, epoll, stdio and libraries.
# Children inherit the limit, so raising the soft limit to the hard limit here covers both.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || log "could not raise the open-file soft limit"
NOFILE=$(ulimit -n)
[[ $NOFILE == unlimited ]] && NOFILE=1048576
FD_MARGIN=64

PIN_SERVER=()
PIN_GEN=()
PINNING="none"
if command -v taskset >/dev/null && [[ $(nproc) -ge 2 ]] && taskset -c 1 true 2>/dev/null; then
	PIN_SERVER=(taskset -c 0)
	PIN_GEN=(taskset -c 1)
	PINNING="server on core 0, generator on core 1 (taskset)"
else
	PINNING="none (taskset missing or fewer than 2 CPUs): numbers are noisier"
	log "warning: not pinning processes: $PINNING"
fi
CLK_TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------- results directory
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT:-$ROOT/results/$STAMP}
[[ -e $OUT/raw || -e $OUT/raw.jsonl ]] && die "$OUT already holds results; choose another --out"
mkdir -p "$OUT/raw"
RAW=$OUT/raw
printf 'server\tmode\tconnections\tsize\treason\n' >"$RAW/skipped.tsv"

# A run that stops before the end leaves a folder that says why: note_outcome records the
# reason (the first one wins), and the EXIT trap packs raw/ and writes summary.md and
# report.html around it, with whatever runs were complete.
COMPLETE=0
note_outcome() {
	[[ -s $RAW/outcome.txt ]] || echo "$*" >"$RAW/outcome.txt"
}
finish_early() {
	((COMPLETE)) && return
	[[ -d $RAW ]] || return
	note_outcome "stopped before the end (exit status $1)"
	python3 "$ROOT/scripts/report.py" "$OUT" --tolerance "$TOLERANCE" >&2 || true
	log "incomplete results, with the reason at the top of $OUT/summary.md"
}

{
	echo "# echoloop load test: machine, commit and commands"
	echo "date_utc: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "uname: $(uname -a)"
	echo "cpu_model: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
	echo "cpu_count: $(grep -c ^processor /proc/cpuinfo) (nproc: $(nproc))"
	echo "memory: $(grep -E '^MemTotal' /proc/meminfo | tr -s ' ')"
	echo "rustc: $(rustc -V 2>/dev/null || echo unknown)"
	echo "cargo: $(cargo -V 2>/dev/null || echo unknown)"
	if git -C "$ROOT" rev-parse HEAD >/dev/null 2>&1; then
		dirty=clean
		[[ -n $(git -C "$ROOT" status --porcelain --untracked-files=no) ]] && dirty=dirty
		echo "git: $(git -C "$ROOT" rev-parse HEAD) ($dirty) branch $(git -C "$ROOT" rev-parse --abbrev-ref HEAD)"
	else
		echo "git: not a git checkout"
	fi
	echo "python: $(python3 -V 2>&1)"
	echo "open_files_limit: $NOFILE (hard $(ulimit -Hn))"
	echo "fs.file-max: $(cat /proc/sys/fs/file-max 2>/dev/null || echo ?)"
	echo "net.ipv4.ip_local_port_range: $(tr '\t' ' ' </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo ?)"
	echo "net.ipv4.tcp_tw_reuse: $(cat /proc/sys/net/ipv4/tcp_tw_reuse 2>/dev/null || echo ?)"
	echo "cpufreq governor (cpu0): $(cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor 2>/dev/null || echo n/a)"
	echo "pinning: $PINNING"
	echo "clk_tck: $CLK_TCK"
	echo "matrix: connections=[$CONNECTIONS] sizes=[$SIZES] modes=[$MODES] repeats=$REPEATS duration=$DURATION warmup=$WARMUP threads=${THREADS:-default}"
	echo "generator: $BENCH_BIN"
	echo
	echo "## command lines"
	printf 'script: %q' "$0"
	printf ' %q' "${ORIG_ARGS[@]}"
	echo
} >"$OUT/machine.txt"

# ---------------------------------------------------------------- server lifecycle
# Servers by name: several run at once under --compare, so their runs can alternate.
declare -A SERVER_PID=() SERVER_ADDR=() SERVER_HAS_SUMMARY=()

CHECK_PID=""

cleanup() {
	local rc=$? name pid
	if [[ -n $CHECK_PID ]]; then
		kill -TERM "$CHECK_PID" 2>/dev/null || true
	fi
	for name in "${!SERVER_PID[@]}"; do
		pid=${SERVER_PID[$name]}
		if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
			kill -TERM "$pid" 2>/dev/null || true
			sleep 0.5
			kill -KILL "$pid" 2>/dev/null || true
		fi
	done
	finish_early "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; note_outcome "interrupted by a signal: the runs listed are those that had finished"; exit 130' INT TERM

# start_server NAME BINARY HAS_SUMMARY: start it pinned on port 0, wait (<= 10 s) for its first
# stdout line, and set SERVER_PID[NAME] / SERVER_ADDR[NAME] from `listening tcp=ADDR udp=...`.
# HAS_SUMMARY (true/false) says whether it prints a `summary` line on SIGTERM (tokio_echo does
# not), which decides whether report.py can cross-check its counters.
start_server() {
	local name=$1 bin=$2 line="" i pid
	SERVER_HAS_SUMMARY[$name]=$3
	local cmd=("${PIN_SERVER[@]}" "$bin" --port 0 --bind 127.0.0.1)
	{
		printf 'server %s: ' "$name"
		printf '%q ' "${cmd[@]}"
		echo
	} >>"$OUT/machine.txt"
	# Create the file first so the polling read below never races the redirection.
	: >"$RAW/server-$name.stdout"
	# taskset execs the server, so $! is the server's own PID (needed for /proc/PID/stat).
	"${cmd[@]}" >"$RAW/server-$name.stdout" 2>"$RAW/server-$name.stderr" </dev/null &
	pid=$!
	SERVER_PID[$name]=$pid
	for ((i = 0; i < 100; i++)); do
		if IFS= read -r line <"$RAW/server-$name.stdout" && [[ -n $line ]]; then
			break
		fi
		kill -0 "$pid" 2>/dev/null || die "$name exited before printing its address: $(server_said "$name")"
		sleep 0.1
	done
	[[ -n $line ]] || die "$name printed no 'listening' line within 10 s: $(server_said "$name")"
	[[ $line =~ ^listening\ .*tcp=([^[:space:]]+) ]] || die "$name's first line is not 'listening tcp=...': $line"
	SERVER_ADDR[$name]=${BASH_REMATCH[1]}
	[[ ${SERVER_ADDR[$name]} != off ]] || die "$name has TCP turned off: $line"
	log "$name (pid $pid) listening on ${SERVER_ADDR[$name]}"
}

# server_said NAME: the last line of its stderr (the whole of it is kept in raw.jsonl).
server_said() {
	local last
	last=$(grep -v '^[[:space:]]*$' "$RAW/server-$1.stderr" 2>/dev/null | tail -n 1)
	echo "${last:-no message on stderr} (its output is kept in raw.jsonl, record \"server\" $1)"
}

# stop_server NAME: SIGTERM, wait for the drain (<= 15 s), then SIGKILL and say so.
stop_server() {
	local name=$1 i pid=${SERVER_PID[$1]}
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 150; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "$name did not exit 15 s after SIGTERM; killing it (its summary will be missing)"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	local rc=0
	wait "$pid" 2>/dev/null || rc=$?
	echo "$name exit status after SIGTERM: $rc" >>"$OUT/machine.txt"
	# A server without a summary dies by SIGTERM's default action: 143 is its normal exit.
	if [[ ${SERVER_HAS_SUMMARY[$name]} == true && $rc -ne 0 ]]; then
		log "$name exited with status $rc after SIGTERM (expected 0)"
	fi
	printf '{"server": "%s", "has_summary": %s, "exit_status": %d}\n' \
		"$name" "${SERVER_HAS_SUMMARY[$name]}" "$rc" >"$RAW/server-$name.info.json"
	unset "SERVER_PID[$name]"
}

# server_ticks NAME: its utime+stime in clock ticks (fields 14 and 15 of /proc/PID/stat). The
# comm field may contain spaces, so split after its closing parenthesis: field 3 is index 0.
server_ticks() {
	local stat rest pid=${SERVER_PID[$1]:-}
	local -a f
	if [[ -z $pid ]] || ! stat=$(<"/proc/$pid/stat") 2>/dev/null; then
		echo null
		return
	fi
	rest=${stat##*) }
	read -r -a f <<<"$rest"
	echo $((f[11] + f[12]))
}

# ---------------------------------------------------------------- conformance
# conformance NAME ADDR [peer]: run `echoloop-bench check --quick --json` against ADDR (with
# --udp when the sweep measures UDP), keep its report as raw/check-NAME.json (packed into
# raw.jsonl as a "check" record), and return non-zero if the server fails and is not to be
# measured: its figures would be those of a wrong echo. --measure-anyway measures it
# regardless. The --compare peer (`peer`) is measured with a warning: it is the script's own
# reference, known to fail deadlock-10m (read, then write_all), which the generator's modes
# (always reading) do not exercise.
conformance() {
	local name=$1 addr=$2 policy=${3:-} rc=0
	local cmd=("$BENCH_BIN" check --quick --json --target "$addr")
	[[ " $MODES " == *" udp "* ]] && cmd+=(--udp)
	{
		printf 'check %s: ' "$name"
		printf '%q ' timeout -k 5 120 "${cmd[@]}"
		echo
	} >>"$OUT/machine.txt"
	timeout -k 5 120 "${cmd[@]}" >"$RAW/check-$name.json" 2>"$RAW/check-$name.stderr" </dev/null || rc=$?
	echo "check $name exit status: $rc" >>"$OUT/machine.txt"
	if [[ $rc -eq 0 ]]; then
		log "$name passes echoloop-bench check --quick"
		return 0
	fi
	# The failing checks with their diagnoses.
	python3 -c 'import json, sys
for c in json.load(open(sys.argv[1]))["checks"]:
    if c["verdict"] == "FAIL":
        print("FAIL  %s  %s\n      -> %s" % (c["name"], c["figure"], c["detail"]))' \
		"$RAW/check-$name.json" >&2 2>/dev/null || cat "$RAW/check-$name.stderr" >&2
	if [[ $policy == peer ]]; then
		log "comparison peer $name FAILS echoloop-bench check (exit $rc); measuring it as the reference anyway"
		return 0
	fi
	if [[ $MEASURE_ANYWAY -eq 1 ]]; then
		log "$name FAILS echoloop-bench check (exit $rc); measuring anyway (--measure-anyway)"
		return 0
	fi
	log "$name FAILS echoloop-bench check (exit $rc): refusing to benchmark a server that is not a correct echo (--measure-anyway to measure it regardless)"
	note_outcome "Refused: $name failed \`echoloop-bench check --quick\` (the failed checks follow), so it was not measured: fast wrong figures are worse than none. \`--measure-anyway\` measures it regardless, with every figure marked."
	return 1
}

# conformance_fresh NAME BINARY [peer]: conformance against a separate instance of BINARY on
# port 0 (so the check's traffic stays out of the measured server's counters), stopped
# afterwards.
conformance_fresh() {
	local name=$1 bin=$2 policy=${3:-} pid line="" i rc=0
	local out="$RAW/check-$name.server.stdout"
	: >"$out"
	"$bin" --port 0 --bind 127.0.0.1 >"$out" 2>/dev/null </dev/null &
	pid=$!
	CHECK_PID=$pid
	for ((i = 0; i < 100; i++)); do
		IFS= read -r line <"$out" && [[ -n $line ]] && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if [[ $line =~ ^listening\ .*tcp=([^[:space:]]+) ]]; then
		conformance "$name" "${BASH_REMATCH[1]}" "$policy" || rc=$?
	else
		log "$name (for the check) printed no 'listening tcp=...' line: $line"
		rc=2
	fi
	kill -TERM "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	CHECK_PID=""
	return $rc
}

# run_generators NAME LIMIT CONNS GEN...: GENERATORS processes at once, each with its share
# of the connections (and seed), then `echoloop-bench merge` of their reports into NAME.json.
# This is how one goes past one generator core; on several machines, run the same command
# over ssh and merge the files (see docs/load-testing.md).
run_generators() {
	local name=$1 limit=$2 conns=$3 i j share rc=0
	shift 3
	local -a pids=() files=() args
	for ((i = 0; i < GENERATORS; i++)); do
		share=$(((conns + GENERATORS - 1 - i) / GENERATORS))
		((share > 0)) || share=1
		# The same command with this process's share of the connections.
		args=("$@")
		for ((j = 0; j < ${#args[@]}; j++)); do
			[[ ${args[j]} == --connections ]] && args[j + 1]=$share
		done
		"${PIN_GEN[@]}" timeout -k 5 "$limit" "${args[@]}" --seed $((0x5eed + i)) \
			>"$RAW/$name.g$i.part" 2>"$RAW/$name.g$i.stderr" </dev/null &
		pids+=($!)
		files+=("$RAW/$name.g$i.part")
	done
	for pid in "${pids[@]}"; do wait "$pid" || rc=$?; done
	"$BENCH_BIN" merge --json "${files[@]}" >"$RAW/$name.json" 2>"$RAW/$name.merge.stderr" || rc=$?
	# One stderr per run, as with one generator: the processes' own words, then the merge's.
	cat "$RAW/$name".g*.stderr "$RAW/$name.merge.stderr" >"$RAW/$name.stderr" 2>/dev/null || true
	return "$rc"
}

# knee SERVER ADDR: the highest rate with p99 <= $KNEE, 64 B, 50 connections, TCP.
knee() {
	local server=$1 addr=$2 rc=0
	local -a cmd=("${PIN_GEN[@]}" timeout -k 5 600 "$BENCH_BIN" knee --p99 "$KNEE" --target "$addr"
		--connections 50 --size 64 --json)
	{
		printf 'knee %s: ' "$server"
		printf '%q ' "${cmd[@]}"
		echo
	} >>"$OUT/machine.txt"
	"${cmd[@]}" >"$RAW/knee-$server.json" 2>"$RAW/knee-$server.stderr" </dev/null || rc=$?
	log "$server knee at p99 <= $KNEE: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("knee_rate"))' "$RAW/knee-$server.json" 2>/dev/null || echo '?') /s (exit $rc)"
}

# ---------------------------------------------------------------- the sweep
RUNS=0
GEN_FAILED=0

# sweep SERVER...: every matrix point x repeats against each server (its address in
# SERVER_ADDR). The servers take turns run by run (A B A B...), so whatever else loads the
# machine for a while lands on both alike, and each repeat of a point is a pair measured
# side by side: report.py computes each ratio per pair and shows the pairs' spread.
sweep() {
	local server addr mode conns size rep bytes name before after rc limit window warmup cause
	local -a gen
	for mode in $MODES; do
		for size in $SIZES; do
			bytes=$(size_to_bytes "$size")
			for conns in $CONNECTIONS; do
				if ((conns + FD_MARGIN > NOFILE)); then
					for server in "$@"; do
						printf '%s\t%s\t%s\t%s\t%s\n' "$server" "$mode" "$conns" "$size" \
							"needs ~$((conns + FD_MARGIN)) descriptors per process, open-file limit is $NOFILE" >>"$RAW/skipped.tsv"
					done
					log "skip $mode c=$conns s=$size: open-file limit $NOFILE too low"
					continue
				fi
				if ((conns * bytes > MAX_BUFFER_BYTES)); then
					for server in "$@"; do
						printf '%s\t%s\t%s\t%s\t%s\n' "$server" "$mode" "$conns" "$size" \
							"connections*size = $((conns * bytes)) bytes exceeds the bound of $MAX_BUFFER_BYTES bytes (--max-buffer-bytes)" >>"$RAW/skipped.tsv"
					done
					log "skip $mode c=$conns s=$size: connections*size above bound"
					continue
				fi
				for ((rep = 1; rep <= REPEATS; rep++)); do
					for server in "$@"; do
						addr=${SERVER_ADDR[$server]}
						name="$server-$mode-c$conns-s$size-r$rep"
						# Opening thousands of connections takes a while, the more so while the
						# first ones already stream: give it at least 1 s per 2,000 connections
						# of warmup, so the measured window starts with (nearly) all of them up.
						warmup=$WARMUP
						((conns / 2000 > WARMUP_S)) && warmup="$((conns / 2000))s"
						gen=("$BENCH_BIN" "$mode" --target "$addr" --connections "$conns" --size "$size"
							--duration "$DURATION" --warmup "$warmup" --json)
						[[ -n $THREADS ]] && gen+=(--threads "$THREADS")
						[[ $mode == rate ]] && gen+=(--rate "$RATE")
						if [[ $mode == stream ]]; then
							# Keep the bytes in flight within the same bound: the generator's
							# default window (256K) x 10,000 connections would put 2.5 GB in
							# kernel socket buffers, and TCP memory pressure then drops packets.
							window=$((MAX_BUFFER_BYTES / conns))
							((window > 262144)) && window=262144
							((window < bytes)) && window=$bytes
							gen+=(--window "$window")
						fi
						# Generous bound so a hung generator cannot hang CI: run time plus time
						# to open (and close) the connections.
						limit=$((DURATION_S + WARMUP_S + conns / 2000 + 30 + conns / 200))
						{
							printf '%s: ' "$name"
							printf '%q ' "${PIN_GEN[@]}" timeout -k 5 "$limit" "${gen[@]}"
							echo
						} >>"$OUT/machine.txt"
						if [[ $server != external ]] && ! kill -0 "${SERVER_PID[$server]}" 2>/dev/null; then
							die "$server died before run $name: $(server_said "$server")"
						fi
						before=$(server_ticks "$server")
						rc=0
						if ((GENERATORS == 1)); then
							"${PIN_GEN[@]}" timeout -k 5 "$limit" "${gen[@]}" >"$RAW/$name.json" 2>"$RAW/$name.stderr" </dev/null || rc=$?
						else
							run_generators "$name" "$limit" "$conns" "${gen[@]}" || rc=$?
						fi
						after=$(server_ticks "$server")
						[[ $rc -eq 124 || $rc -eq 137 ]] && log "$name: generator timed out after ${limit}s"
						printf '{"server": "%s", "mode": "%s", "connections": %d, "size": "%s", "repeat": %d, "gen_exit": %d, "clk_tck": %d, "server_ticks_before": %s, "server_ticks_after": %s, "server_pid": %s, "target": "%s"}\n' \
							"$server" "$mode" "$conns" "$size" "$rep" "$rc" "$CLK_TCK" "$before" "$after" "${SERVER_PID[$server]:-null}" "$addr" >"$RAW/$name.meta.json"
						RUNS=$((RUNS + 1))
						if [[ $rc -ne 0 ]]; then
							GEN_FAILED=$((GEN_FAILED + 1))
							# The generator's own words (its last "echoloop-bench: ..." line); its
							# whole stderr is packed into raw.jsonl with the run.
							cause=$(grep '^echoloop-bench: ' "$RAW/$name.stderr" 2>/dev/null | grep -v ': warning: ' | tail -n 1)
							log "$name: generator exit status $rc: ${cause#echoloop-bench: } (stderr kept in $OUT/raw.jsonl, run $name)"
						else
							log "$name: ok"
						fi
					done
				done
			done
		done
	done
}

if [[ -n $TARGET ]]; then
	log "external target $TARGET: no server started, so no server CPU and no cross-check"
	echo "server external: $TARGET (not started by this script; no server CPU, no cross-check)" >>"$OUT/machine.txt"
	conformance external "$TARGET" || exit 1
	SERVER_ADDR[external]=$TARGET
	sweep external
	[[ -z $KNEE ]] || knee external "$TARGET"
else
	conformance_fresh echoloop "$ECHOLOOP_BIN" || exit 1
	servers=(echoloop)
	if [[ $COMPARE -eq 1 ]]; then
		conformance_fresh tokio "$TOKIO_BIN" peer || exit 1
		servers+=(tokio)
	fi
	# Both servers run during the whole sweep, pinned to the same core; only the one being
	# measured has work, an idle epoll loop costs nothing.
	start_server echoloop "$ECHOLOOP_BIN" true
	[[ $COMPARE -eq 1 ]] && start_server tokio "$TOKIO_BIN" false
	sweep "${servers[@]}"
	for server in "${servers[@]}"; do stop_server "$server"; done
	# The knee runs against fresh servers, so its traffic stays out of the sweep's byte
	# cross-check (these servers are marked as having no summary to check).
	if [[ -n $KNEE ]]; then
		start_server echoloop-knee "$ECHOLOOP_BIN" false
		knee echoloop "${SERVER_ADDR[echoloop-knee]}"
		stop_server echoloop-knee
		if [[ $COMPARE -eq 1 ]]; then
			start_server tokio-knee "$TOKIO_BIN" false
			knee tokio "${SERVER_ADDR[tokio-knee]}"
			stop_server tokio-knee
		fi
	fi
fi

# ---------------------------------------------------------------- report
# report.py first packs raw/ (one file per run, written as the sweep went) into raw.jsonl.
report_rc=0
COMPLETE=1
python3 "$ROOT/scripts/report.py" "$OUT" --tolerance "$TOLERANCE" || report_rc=$?
echo
if [[ -f $OUT/summary.md ]]; then
	cat "$OUT/summary.md"
fi
echo
echo "results: $OUT"
echo "  summary.md  runs.csv  report.html  machine.txt  raw.jsonl ($RUNS runs, $GEN_FAILED with generator failures)"
if [[ $report_rc -ne 0 ]]; then
	echo "loadtest: FAILED (run failures or cross-check disagreement; see summary.md)" >&2
	exit 1
fi
echo "loadtest: OK"
