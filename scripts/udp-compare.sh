#!/usr/bin/env bash
# UDP echo (ping-pong by default), echoloop against the tokio current_thread peer (examples/tokio_echo.rs), in
# one run: each server in turn is pinned to core 0, `echoloop-bench udp` to core 1.
#
#   scripts/udp-compare.sh [--duration 5s] [--repeats 3] [-c 50] [--size 64] [--window 1]
#                          [--syscalls] [--echoloop BIN] [--tokio BIN] [--bench BIN]
#
# Per run it prints datagrams/s (from the generator's --json), the server's CPU per datagram
# (CPU time from /proc/PID/task/*/schedstat, in ns, over the generator's run, divided by the
# datagrams it got back), how busy each core was (from /proc/stat: user + system + softirq;
# when both are near 100%, the pair is saturated and CPU per datagram is the core's share
# divided by the rate, so it moves with throughput), and with --syscalls the server's
# syscalls per datagram (perf stat on
# the tracepoints of the calls an echo server makes: epoll_wait/epoll_pwait, recvfrom, sendto,
# recvmsg, sendmsg, recvmmsg, sendmmsg; all ~400 sys_enter_* tracepoints would slow the server
# enough to change its batching). The syscall figures come from separate runs: perf costs CPU
# too. Runs alternate
# echoloop, tokio, echoloop, ... and the medians and their ratios close the output.
# --echoloop BIN compares another build (e.g. an older commit's binary) against the same peer.
# --window N keeps N datagrams in flight per socket (1 is ping-pong): a load that offers the
# server batches.
# Exit status: 0 when every run echoed without loss, 1 otherwise, 2 for bad arguments.
set -euo pipefail

usage() {
	awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
}

duration=5s
repeats=3
conns=50
size=64
window=1
syscalls=no
cd "$(dirname "$0")/.."
target_dir=${CARGO_TARGET_DIR:-target}
echoloop_bin=""
tokio_bin=""
bench_bin=""
while [[ $# -gt 0 ]]; do
	case "$1" in
	--duration) duration="${2:?--duration needs a value}"; shift ;;
	--repeats) repeats="${2:?--repeats needs a number}"; shift ;;
	-c | --connections) conns="${2:?-c needs a number}"; shift ;;
	--size) size="${2:?--size needs a value}"; shift ;;
	--window) window="${2:?--window needs a number}"; shift ;;
	--syscalls) syscalls=yes ;;
	--echoloop) echoloop_bin="${2:?--echoloop needs a path}"; shift ;;
	--tokio) tokio_bin="${2:?--tokio needs a path}"; shift ;;
	--bench) bench_bin="${2:?--bench needs a path}"; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "udp-compare.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
	esac
	shift
done
[[ $repeats =~ ^[1-9][0-9]*$ ]] || { echo "udp-compare.sh: --repeats must be a positive number" >&2; exit 2; }
[[ $window =~ ^[1-9][0-9]*$ ]] || { echo "udp-compare.sh: --window must be a positive number" >&2; exit 2; }

if [[ -z $echoloop_bin || -z $tokio_bin || -z $bench_bin ]]; then
	cargo build --release --bin echoloop --bin echoloop-bench --example tokio_echo >&2
fi
echoloop_bin=${echoloop_bin:-$target_dir/release/echoloop}
tokio_bin=${tokio_bin:-$target_dir/release/examples/tokio_echo}
bench_bin=${bench_bin:-$target_dir/release/echoloop-bench}
if [[ $syscalls == yes ]] && ! perf stat -e 'syscalls:sys_enter_sendmmsg' true >/dev/null 2>&1; then
	echo "udp-compare.sh: perf cannot read syscall tracepoints here; run without --syscalls" >&2
	exit 2
fi

work=$(mktemp -d)
server_pid=""
cleanup() {
	if [[ -n $server_pid ]]; then
		kill -KILL "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

# Busy and total jiffies of cores 0 and 1 so far: "busy0 total0 busy1 total1" (busy: user,
# nice, system, irq, softirq).
core_ticks() {
	awk '$1 == "cpu0" || $1 == "cpu1" { printf "%d %d ", $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat
}

# CPU time of every thread of PID so far, in ns (first field of each task's schedstat).
cpu_ns() {
	cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ sum += $1 } END { printf "%d", sum }'
}

# run_one NAME BIN: one pinned server, one pinned generator run; appends a row to rows.tsv.
run_one() {
	local name=$1 bin=$2 line="" i
	: >"$work/server.out"
	taskset -c 0 "$bin" --bind 127.0.0.1 --port 0 >"$work/server.out" 2>"$work/server.err" </dev/null &
	server_pid=$!
	for ((i = 0; i < 100; i++)); do
		IFS= read -r line <"$work/server.out" && [[ -n $line ]] && break
		sleep 0.1
	done
	[[ $line =~ udp=([^[:space:]]+) && ${BASH_REMATCH[1]} != off ]] || {
		echo "udp-compare.sh: $name printed no UDP address: '$line'" >&2
		exit 1
	}
	local addr=${BASH_REMATCH[1]}
	local perf_pid=""
	if [[ $syscalls == yes ]]; then
		local events=() call
		for call in epoll_wait epoll_pwait recvfrom sendto recvmsg sendmsg recvmmsg sendmmsg; do
			events+=(-e "syscalls:sys_enter_$call")
		done
		perf stat -x, "${events[@]}" -p "$server_pid" -o "$work/perf.csv" &
		perf_pid=$!
		sleep 0.3
	fi
	local before after cores_before cores_after rc=0
	before=$(cpu_ns "$server_pid")
	cores_before=$(core_ticks)
	taskset -c 1 "$bench_bin" udp --target "$addr" -c "$conns" --size "$size" -d "$duration" \
		--window "$window" --warmup 0s --json >"$work/bench.json" 2>"$work/bench.err" || rc=$?
	after=$(cpu_ns "$server_pid")
	cores_after=$(core_ticks)
	if [[ -n $perf_pid ]]; then
		kill -INT "$perf_pid" 2>/dev/null || true
		wait "$perf_pid" 2>/dev/null || true
	fi
	kill -KILL "$server_pid" 2>/dev/null || true
	wait "$server_pid" 2>/dev/null || true
	server_pid=""
	python3 - "$name" "$before" "$after" "$rc" "$work/bench.json" "$work/perf.csv" "$syscalls" \
		"$cores_before" "$cores_after" >>"$work/rows.tsv" <<'EOF'
import json, sys
name, before, after, rc, bench, perf, syscalls, cores_before, cores_after = sys.argv[1:]
b0, t0, b1, t1 = (int(x) for x in cores_before.split())
a0, u0, a1, u1 = (int(x) for x in cores_after.split())
busy = [100 * (a0 - b0) / max(u0 - t0, 1), 100 * (a1 - b1) / max(u1 - t1, 1)]
report = json.load(open(bench))
received = report["udp"]["received"]
lost = report["udp"]["lost"]
cpu = int(after) - int(before)
per_dgram = cpu / received if received else float("nan")
calls = "-"
if syscalls == "yes":
    total = 0
    for line in open(perf):
        parts = line.strip().split(",")
        if len(parts) > 2 and parts[2].startswith("syscalls:sys_enter_") and parts[0].isdigit():
            total += int(parts[0])
    calls = f"{total / received:.3f}" if received else "nan"
print(f"{name}\t{report['requests_per_s']:.0f}\t{per_dgram:.0f}\t{calls}\t{lost}\t{rc}\t{busy[0]:.0f}\t{busy[1]:.0f}")
EOF
	tail -n 1 "$work/rows.tsv" | awk -F'\t' '{ printf "  %-9s %9s dgrams/s  %6s ns CPU/dgram  syscalls/dgram %s  lost %s  exit %s  busy: server core %s%%, generator core %s%%\n", $1, $2, $3, $4, $5, $6, $7, $8 }'
	[[ $rc -eq 0 ]]
}

echo "udp, window $window: $conns sockets, $size B, $duration per run, $repeats pair(s); server on core 0, generator on core 1"
echo "  echoloop: $echoloop_bin"
echo "  tokio:    $tokio_bin"
status=0
for ((r = 1; r <= repeats; r++)); do
	run_one echoloop "$echoloop_bin" || status=1
	run_one tokio "$tokio_bin" || status=1
done

python3 - "$work/rows.tsv" <<'EOF'
import statistics, sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1])]
def median(name, col):
    values = [float(r[col]) for r in rows if r[0] == name and r[col] not in ("-", "nan")]
    return statistics.median(values) if values else float("nan")
e_rate, t_rate = median("echoloop", 1), median("tokio", 1)
e_cpu, t_cpu = median("echoloop", 2), median("tokio", 2)
print(f"median: echoloop {e_rate:.0f}/s {e_cpu:.0f} ns/dgram; tokio {t_rate:.0f}/s {t_cpu:.0f} ns/dgram")
print(f"ratio echoloop/tokio: throughput {e_rate / t_rate:.2f}x, server CPU per datagram {e_cpu / t_cpu:.2f}x")
e_sys, t_sys = median("echoloop", 3), median("tokio", 3)
if e_sys == e_sys:
    print(f"syscalls per datagram: echoloop {e_sys:.3f}, tokio {t_sys:.3f}")
EOF
exit $status
