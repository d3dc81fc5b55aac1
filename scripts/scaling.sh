#!/usr/bin/env bash
# Scaling curve of `echoloop --threads N`: throughput and server CPU per message for 1, 2, 4,
# ... reactors against the same load (echoloop-bench with a fixed number of threads).
#
#   scripts/scaling.sh [--reactors "1 2 4 8"] [--gen-threads N] [--mode pingpong|stream]
#                      [--connections N] [--size SIZE] [--duration D] [--warmup D]
#                      [--repeats N] [--pin] [--server PATH]
#
# Defaults: reactors 1, 2, 4, ... up to the number of cores; generator threads = cores;
# pingpong, 200 connections, 64 B, 5 s after 1 s of warm-up, 3 repeats (a fresh server per
# run), interleaved. --pin passes --pin to the server (reactor i on core i); the generator is not pinned.
# --server PATH measures another build (e.g. an older commit's; --threads is passed only
# above 1, so a build without the flag can be measured at 1).
#
# For each run it reads the server's CPU time (utime + stime, /proc/PID/stat) over the
# generator's whole run and divides it by the messages echoed in that time (the generator's
# byte totals / size), so "server CPU per message" is independent of how busy the machine
# is. Prints one row per run and a median per reactor count; the raw generator JSON goes to
# results/scaling-<timestamp>/. On a machine with fewer cores than server + generator
# threads, both share cores: the curve then shows the cost per message, not the scaling.
# Exit status: 0 when every run verified clean, 1 otherwise, 2 for bad arguments.
set -euo pipefail

cores=$(nproc)
reactors=""
gen_threads=$cores
mode=pingpong
connections=200
size=64
duration=5s
warmup=1s
repeats=3
pin=()
server=./target/release/echoloop
while [[ $# -gt 0 ]]; do
	case "$1" in
	--reactors) reactors="${2:?}" && shift ;;
	--gen-threads) gen_threads="${2:?}" && shift ;;
	--mode) mode="${2:?}" && shift ;;
	--connections) connections="${2:?}" && shift ;;
	--size) size="${2:?}" && shift ;;
	--duration) duration="${2:?}" && shift ;;
	--warmup) warmup="${2:?}" && shift ;;
	--repeats) repeats="${2:?}" && shift ;;
	--pin) pin=(--pin) ;;
	--server) server="${2:?}" && shift ;;
	-h | --help)
		awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
		exit 0
		;;
	*)
		echo "scaling.sh: unknown argument '$1' (try --help)" >&2
		exit 2
		;;
	esac
	shift
done
if [[ -z $reactors ]]; then
	n=1
	while ((n <= cores)); do
		reactors+="$n "
		n=$((n * 2))
	done
fi

cd "$(dirname "$0")/.."
cargo build --release -q --bin echoloop --bin echoloop-bench
out="results/scaling-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"
CLK_TCK=$(getconf CLK_TCK)
{
	echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo ?)"
	echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') x $cores"
	echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "server: $server"
	echo "generator: echoloop-bench $mode --threads $gen_threads -c $connections --size $size -d $duration --warmup $warmup"
} | tee "$out/machine.txt"

server_pid=""
cleanup() { [[ -n $server_pid ]] && kill -TERM "$server_pid" 2>/dev/null || true; }
trap cleanup EXIT

# Server utime+stime in clock ticks (fields 14 and 15 of /proc/PID/stat, counted after the
# comm field, which may hold spaces).
ticks() {
	local stat rest
	local -a f
	stat=$(<"/proc/$1/stat")
	rest=${stat##*) }
	read -r -a f <<<"$rest"
	echo $((f[11] + f[12]))
}

status=0
printf '%-8s %-4s %12s %14s %10s\n' reactors run "msgs/s" "srv µs/msg" "srv cores" | tee "$out/table.txt"
# Interleaved (1, 2, 4, 1, 2, 4, ...), so a change in the machine's load hits every count.
for ((i = 1; i <= repeats; i++)); do
	for r in $reactors; do
		: >"$out/server-$r-$i.stdout"
		threads=()
		((r > 1)) && threads=(--threads "$r")
		"$server" --port 0 --no-udp "${threads[@]}" "${pin[@]}" \
			--log-level warn >"$out/server-$r-$i.stdout" 2>"$out/server-$r-$i.stderr" &
		server_pid=$!
		line=""
		for ((w = 0; w < 100; w++)); do
			IFS= read -r line <"$out/server-$r-$i.stdout" || true
			[[ -n $line ]] && break
			sleep 0.1
		done
		[[ $line =~ tcp=([^[:space:]]+) ]] || { echo "no listening line" >&2 && exit 1; }
		addr=${BASH_REMATCH[1]}
		t0=$(ticks "$server_pid")
		s0=$(date +%s.%N)
		./target/release/echoloop-bench "$mode" --target "$addr" --threads "$gen_threads" \
			-c "$connections" --size "$size" -d "$duration" --warmup "$warmup" --json -q \
			>"$out/gen-$r-$i.json" || status=1
		t1=$(ticks "$server_pid")
		s1=$(date +%s.%N)
		kill -TERM "$server_pid"
		wait "$server_pid" || status=1
		server_pid=""
		python3 - "$out/gen-$r-$i.json" "$size" "$((t1 - t0))" "$CLK_TCK" "$s0" "$s1" "$r" "$i" <<-'EOF' | tee -a "$out/table.txt"
			import json, sys
			path, size, ticks, hz, s0, s1, r, i = sys.argv[1:]
			run = json.load(open(path))
			size = int(run["size"]) if str(run.get("size", "")).isdigit() else int(size)
			messages = run["totals"]["bytes_received"] / size
			cpu = int(ticks) / int(hz)
			wall = float(s1) - float(s0)
			print(f"{r:<8} {i:<4} {run['requests_per_s']:12.0f} {cpu / messages * 1e6:14.3f} {cpu / wall:10.2f}")
		EOF
	done
done
echo
echo "median per reactor count:" | tee -a "$out/table.txt"
python3 - "$out/table.txt" <<-'EOF' | tee -a "$out/summary.txt"
	import statistics, sys
	rows = {}
	for line in open(sys.argv[1]):
	    parts = line.split()
	    if len(parts) == 5 and parts[0].isdigit():
	        rows[(int(parts[0]), int(parts[1]))] = (float(parts[2]), float(parts[3]))
	counts = sorted({r for r, _ in rows})
	base = counts[0]
	for r in counts:
	    runs = sorted(i for rr, i in rows if rr == r)
	    rate = statistics.median(rows[(r, i)][0] for i in runs)
	    cpu = statistics.median(rows[(r, i)][1] for i in runs)
	    # Ratios within each repeat (the runs were interleaved), then their median: robust to
	    # the machine's load drifting between repeats.
	    pairs = [i for i in runs if (base, i) in rows]
	    rate_ratio = statistics.median(rows[(r, i)][0] / rows[(base, i)][0] for i in pairs)
	    cpu_ratio = statistics.median(rows[(r, i)][1] / rows[(base, i)][1] for i in pairs)
	    print(f"reactors {r}: {rate:,.0f} msgs/s, server CPU {cpu:.3f} µs/msg; "
	          f"per repeat vs {base}: {rate_ratio:.2f}x msgs/s, {cpu_ratio:.2f}x CPU/msg")
EOF
echo "raw results: $out"
exit $status
