#!/usr/bin/env bash
# Stress run for echoloop: the long tests that `cargo test` skips, in release mode.
#
#   scripts/stress.sh [--no-fuzz] [--fuzz-seconds N] [--cases N]
#   scripts/stress.sh --stall-hunt MINUTES [--hog-keep-mib N] [--out DIR]
#
# --stall-hunt runs only the long stall hunt instead of the steps below: a release server with
# `--threads 2` and zero copy on, `stall-hunt` (testkit/src/bin/stall_hunt.rs: bulk streams
# with random pauses, slow readers and reconnects, ping-pong clients beside them, every client
# recording its longest gap without progress), and beside them a bounded memory hog that takes
# all but --hog-keep-mib (default 4096) of MemAvailable for 40 s out of every 60 s, so the
# kernel reclaims memory while the sockets and pipes allocate; the hog is killed first by the
# OOM killer (oom_score_adj 1000) and stopped when the hunt ends. Kept in DIR (default
# /tmp/echoloop-stall-hunt-PID): the client's log and JSON summary, the server's log (its
# warnings: a stall the server recovered from) and summary line, TCP counters before and
# after (/proc/net/netstat, machine-wide). Exit status: the client's (1 = a stuck or corrupt
# connection), or 1 if the server failed.
#
# Steps (each timed; a table is printed at the end, also after a failure):
#   1. cargo build --release --all-targets
#   2. cargo test --release -- --ignored --nocapture --test-threads=1
#      (tests/many_clients.rs: 1,000 clients x 1 MiB; tests/fd_exhaustion.rs: EMFILE with 800
#      clients; tests/naive_writers.rs: 32 naive writers; tests/fairness.rs: the long fairness
#      run with its budgets-off negative control; tests/mass_ingest.rs: 100 writers x 64 MiB
#      with default flags beside a ping-pong probe, whose p99 must stay under 5 ms and max
#      under 20 ms (a loaded machine shows in the max); tests/memory_return.rs: 100 writers'
#      burst with default flags (about 1 GiB), on one reactor and on two, given back within
#      15 s; tests/pending_bound.rs: the flood beside the tokio echo server (figures only;
#      scripts/flood-compare.sh keeps them as evidence); one at a time, since they measure
#      CPU and latency)
#   3. the measuring tests' default set in release mode, for their figures (fd_exhaustion,
#      naive_writers, fairness, slow_readers, mass_ingest)
#   4. the UDP loop and batch tests in release mode, for their figures: forged sources inside a
#      private network namespace (tests/udp_loops.rs: a mapped self-source, another local
#      address, loops between two servers and how long one lives on the wire); skipped, with
#      the reason, where `unshare -n` is not allowed (not root)
#   5. the connection property tests with PROPTEST_CASES=N (default 20000)
#   6. the cargo-fuzz target for N seconds (default 60), if nightly and cargo-fuzz are
#      installed; the first build of the fuzz crate adds 2-3 minutes
#
# Runtime on the development machine (2 shared cores, load average 60-130 from other builds):
# 193 s measured (release build 19 s, ignored tests 30 s, default resource tests 10 s,
# proptests 2 s, fuzzing 132 s of which ~70 s is the cold nightly build of the fuzz crate).
# A cold release build adds 1-2 min. Must stay under 10 min.
# Exit status: 0 when every step passed, 1 otherwise (the failing step is named), 2 for bad
# arguments.
set -euo pipefail

usage() {
	awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
}

fuzz=auto
fuzz_seconds=60
cases=20000
hunt_minutes=""
hog_keep_mib=4096
hunt_out=""
while [[ $# -gt 0 ]]; do
	case "$1" in
	--no-fuzz) fuzz=no ;;
	--fuzz-seconds)
		fuzz_seconds="${2:?--fuzz-seconds needs a number}"
		shift
		;;
	--cases)
		cases="${2:?--cases needs a number}"
		shift
		;;
	--stall-hunt)
		hunt_minutes="${2:?--stall-hunt needs a number of minutes}"
		shift
		;;
	--hog-keep-mib)
		hog_keep_mib="${2:?--hog-keep-mib needs a number}"
		shift
		;;
	--out)
		hunt_out="${2:?--out needs a directory}"
		shift
		;;
	-h | --help)
		usage
		exit 0
		;;
	*)
		echo "stress.sh: unknown argument '$1' (try --help)" >&2
		exit 2
		;;
	esac
	shift
done

cd "$(dirname "$0")/.."

# The stall hunt (--stall-hunt): see the header.
stall_hunt() {
	local minutes=$1 keep_mib=$2 out=$3
	[[ $minutes =~ ^[0-9]+$ && $minutes -gt 0 ]] || {
		echo "stress.sh: --stall-hunt takes a whole number of minutes" >&2
		exit 2
	}
	mkdir -p "$out"
	echo "== stall hunt: $minutes min, results in $out"
	cargo build --release --bin echoloop && cargo build --release -p echoloop-testkit --bin stall_hunt
	local server_pid="" hog_pid=""
	# Whatever happens, stop what this started (the server and the hog), by their ids.
	trap '[[ -n $hog_pid ]] && kill "$hog_pid" 2>/dev/null; [[ -n $server_pid ]] && kill -TERM "$server_pid" 2>/dev/null; true' EXIT
	cp /proc/net/netstat "$out/netstat.before"
	: >"$out/server.stdout"
	RUST_LOG=warn target/release/echoloop --bind 127.0.0.1 --port 0 --threads 2 \
		--stats-interval 60s >"$out/server.stdout" 2>"$out/server.log" </dev/null &
	server_pid=$!
	local line="" i
	for ((i = 0; i < 100; i++)); do
		IFS= read -r line <"$out/server.stdout" && [[ -n $line ]] && break
		sleep 0.1
	done
	[[ $line =~ tcp=([^[:space:]]+) ]] || {
		echo "stress.sh: the server printed no address: $line" >&2
		exit 1
	}
	local addr=${BASH_REMATCH[1]}
	# The hog: all of MemAvailable but keep_mib, touched, for 40 s of every 60 s; it stops by
	# itself after the hunt's time, and the OOM killer takes it before anything else.
	python3 - "$keep_mib" "$((minutes * 60))" >"$out/hog.log" 2>&1 <<-'PY' &
		import os, sys, time
		keep, seconds = int(sys.argv[1]) << 20, int(sys.argv[2])
		with open("/proc/self/oom_score_adj", "w") as f:
		    f.write("1000")
		end = time.time() + seconds
		while time.time() < end:
		    avail = next(int(l.split()[1]) << 10 for l in open("/proc/meminfo") if l.startswith("MemAvailable:"))
		    size = max(0, avail - keep)
		    hog = b"\x01" * size
		    print(f"{time.strftime('%H:%M:%S')} holding {size >> 20} MiB (available was {avail >> 20} MiB)", flush=True)
		    time.sleep(min(40, max(0, end - time.time())))
		    del hog
		    time.sleep(min(20, max(0, end - time.time())))
	PY
	hog_pid=$!
	local rc=0
	target/release/stall_hunt --addr "$addr" --seconds "$((minutes * 60))" --bulk 6 --pingers 16 \
		--seed "$RANDOM" >"$out/hunt.json" 2>"$out/hunt.log" || rc=$?
	kill "$hog_pid" 2>/dev/null || true
	wait "$hog_pid" 2>/dev/null || true
	hog_pid=""
	cp /proc/net/netstat "$out/netstat.after"
	kill -TERM "$server_pid"
	local server_rc=0
	wait "$server_pid" || server_rc=$?
	server_pid=""
	echo "client: $(cat "$out/hunt.json")"
	echo "server exit $server_rc; warnings: $(grep -c WARN "$out/server.log" || true)"
	grep -E 'WARN' "$out/server.log" | head -5 || true
	tail -1 "$out/server.stdout"
	[[ $server_rc -eq 0 ]] || rc=1
	exit "$rc"
}
if [[ -n $hunt_minutes ]]; then
	stall_hunt "$hunt_minutes" "$hog_keep_mib" "${hunt_out:-/tmp/echoloop-stall-hunt-$$}"
fi

names=()
times=()
results=()
started=$SECONDS

summary() {
	local status=$?
	echo
	echo "== stress.sh summary =="
	local i
	for i in "${!names[@]}"; do
		printf '  %-44s %5ss  %s\n' "${names[$i]}" "${times[$i]}" "${results[$i]}"
	done
	printf '  %-44s %5ss\n' "total" "$((SECONDS - started))"
	if [[ $status -eq 0 ]]; then
		echo "stress.sh: all steps passed"
	else
		echo "stress.sh: FAILED (see the step marked FAIL above)" >&2
	fi
}
trap summary EXIT

# step NAME COMMAND...: runs COMMAND, records its time and result; stops at the first failure.
step() {
	local name="$1"
	shift
	echo
	echo "== $name: $*"
	local t0=$SECONDS
	local rc=0
	"$@" || rc=$?
	names+=("$name")
	times+=("$((SECONDS - t0))")
	if [[ $rc -eq 0 ]]; then
		results+=("ok")
	else
		results+=("FAIL (exit $rc)")
		exit 1
	fi
}

skip() {
	names+=("$1")
	times+=("0")
	results+=("skipped: $2")
}

step "build (release, all targets)" cargo build --release --all-targets
step "ignored tests (release)" \
	cargo test --release -- --ignored --nocapture --test-threads=1
step "resource tests, default set (release)" \
	cargo test --release --test fd_exhaustion --test naive_writers --test fairness \
	--test slow_readers --test mass_ingest -- --nocapture
if unshare -n true 2>/dev/null; then
	step "UDP loops in a network namespace (release)" \
		cargo test --release --test udp_loops --test udp_batch -- --nocapture --test-threads=1
else
	skip "UDP loops in a network namespace" "unshare -n not allowed (needs root)"
fi
step "connection proptests ($cases cases)" \
	env PROPTEST_CASES="$cases" cargo test --release --lib connection::tests::properties

if [[ $fuzz == no ]]; then
	skip "fuzz connection" "--no-fuzz"
elif ! cargo +nightly --version >/dev/null 2>&1; then
	skip "fuzz connection" "no nightly toolchain"
elif ! cargo fuzz --version >/dev/null 2>&1; then
	skip "fuzz connection" "cargo-fuzz not installed"
else
	fuzz_run() {
		(cd fuzz && cargo +nightly fuzz run connection -- \
			-max_total_time="$fuzz_seconds" -max_len=512 -print_final_stats=1)
	}
	step "fuzz connection (${fuzz_seconds}s + build)" fuzz_run
fi
