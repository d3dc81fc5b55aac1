#!/usr/bin/env bash
# Stress run for echoloop: the long tests that `cargo test` skips, in release mode.
#
#   scripts/stress.sh [--no-fuzz] [--fuzz-seconds N] [--cases N]
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
