#!/usr/bin/env bash
# scripts/k8s-check.sh: the image and the Kubernetes manifests (contrib/), tested on this
# machine without a cluster.
#
#  1. builds the image with podman (contrib/build-image.sh: FROM scratch, binaries built
#     here), checks its size, labels and user, and that `--threads auto` follows a CPU limit;
#  2. validates every manifest against the Kubernetes schemas, offline (kubernetes-validate,
#     strict: unknown fields fail), and shows that a broken one does fail;
#  3. plays the server's manifests with `podman kube play` (as a kubelet would: the
#     Deployment's pod, its probes' endpoint, securityContext, read-only root), checks echo
#     over TCP and UDP and a /metrics scrape;
#  4. plays the generator Job's pod template three times with JOB_COMPLETION_INDEX 0..2 and
#     one --start-at, as the Indexed Job would, against that server; merges the three JSON
#     reports (read back with `podman logs`, as `kubectl logs` would) and checks that the
#     merged totals equal the sum of the parts and the server's counters;
#  5. stops the server with SIGTERM and checks that it drained and exited 0.
#
# Exits non-zero at the first failure and removes everything it started. podman runs with a
# configuration and storage of its own under a temporary directory (CONTAINERS_CONF,
# CONTAINERS_STORAGE_CONF): runtime runc, cgroup_manager cgroupfs, no default ulimits, as
# Debian's podman needs on these machines; the machine's own files are never changed. All
# traffic stays on this machine: the podman bridge network between the pods and the host.
#
# Needs root (podman's bridge network), podman and runc (installed with apt-get when
# missing), kubernetes-validate (installed with pip when missing), cargo.
#   scripts/k8s-check.sh [--no-build]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BUILD_FLAG=()
[[ ${1:-} == --no-build ]] && BUILD_FLAG=(--no-build)

say() { printf '== k8s-check: %s\n' "$*" >&2; }
fail() {
	printf 'k8s-check: FAIL: %s\n' "$*" >&2
	exit 1
}
BEGUN=$SECONDS

# --- dependencies -------------------------------------------------------------------------
[[ $(id -u) == 0 ]] || fail "needs root (podman's bridge network between the pods)"
if ! command -v podman >/dev/null || ! command -v runc >/dev/null; then
	say "installing podman and runc (apt-get)"
	command -v apt-get >/dev/null || fail "podman missing and no apt-get"
	(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc) \
		>/dev/null || fail "apt-get install podman runc"
fi
if ! command -v kubernetes-validate >/dev/null; then
	say "installing kubernetes-validate (pip)"
	python3 -m pip install -q kubernetes-validate >/dev/null 2>&1 || fail "pip install kubernetes-validate"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/echoloop-k8s.XXXXXX")
PLAYED=()
cleanup() {
	local status=$?
	set +e
	for yaml in "${PLAYED[@]}"; do
		podman kube down "$yaml" >/dev/null 2>&1
	done
	# Whatever a failed step left: everything in this private storage is ours.
	podman pod rm -a -f -t 0 >/dev/null 2>&1
	podman rm -a -f -t 0 >/dev/null 2>&1
	podman network rm -f podman-default-kube-network >/dev/null 2>&1
	rm -rf "$WORK"
	exit "$status"
}
trap cleanup EXIT

mkdir -p "$WORK/storage" "$WORK/run" "$WORK/tmp" "$WORK/networks"
# network_config_dir: `kube play` defines a network of its own, whose file would otherwise go
# to /etc/containers/networks.
cat >"$WORK/containers.conf" <<EOF
[containers]
default_ulimits = []
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$WORK/tmp"
[network]
network_config_dir = "$WORK/networks"
EOF
# vfs: works on any file system (overlay may not, inside a VM's overlay root), and the image
# is a few megabytes, so copying layers costs nothing.
cat >"$WORK/storage.conf" <<EOF
[storage]
driver = "vfs"
graphroot = "$WORK/storage"
runroot = "$WORK/run"
EOF
export CONTAINERS_CONF=$WORK/containers.conf CONTAINERS_STORAGE_CONF=$WORK/storage.conf
podman info >/dev/null || fail "podman does not start with $CONTAINERS_CONF"

# --- 1. the image -------------------------------------------------------------------------
say "building the image (contrib/build-image.sh)"
line=$(CONTAINER_TOOL=podman contrib/build-image.sh "${BUILD_FLAG[@]}" | tail -1)
read -r _ IMAGE SIZE <<<"$line"
[[ -n ${SIZE:-} ]] || fail "build-image.sh printed no size: '$line'"
say "image $IMAGE: $SIZE bytes ($((SIZE / 1024 / 1024)) MiB)"
((SIZE <= 20 * 1024 * 1024)) || fail "image is $SIZE bytes, above 20 MiB"
[[ $(podman image inspect --format '{{.Config.User}}' "$IMAGE") == 65532:65532 ]] ||
	fail "image user is not 65532:65532"
for label in title version revision created licenses; do
	value=$(podman image inspect --format "{{index .Labels \"org.opencontainers.image.$label\"}}" "$IMAGE")
	[[ -n $value && $value != '<no value>' ]] || fail "label org.opencontainers.image.$label missing"
done
podman run --rm --read-only "$IMAGE" --version | grep -q '^echoloop ' || fail "echoloop --version"
podman run --rm --read-only --entrypoint /usr/local/bin/echoloop-bench "$IMAGE" --version |
	grep -q '^echoloop-bench ' || fail "echoloop-bench --version"

# --threads auto under a CPU limit: std's available_parallelism reads the cgroup quota
# (v1 cpu.cfs_quota_us / cpu.cfs_period_us, v2 cpu.max), rounded down.
reactors_with() { # $@: podman run options; prints the echoloop_reactors gauge
	local name=echoloop-k8s-cpus-$$ ip value=""
	podman run -d --rm --read-only --name "$name" "$@" "$IMAGE" --bind 0.0.0.0 \
		--metrics 0.0.0.0:9107 --threads auto >/dev/null
	ip=$(podman inspect --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$name")
	for _ in $(seq 50); do
		value=$(curl -sf --max-time 2 "http://$ip:9107/metrics" |
			awk '$1 == "echoloop_reactors" { print $2 }') && [[ -n $value ]] && break
		sleep 0.2
	done
	podman stop -t 10 "$name" >/dev/null
	echo "$value"
}
CORES=$(nproc)
if ((CORES >= 2)); then
	limited=$(reactors_with --cpus 1)
	unlimited=$(reactors_with)
	say "--threads auto: $limited reactor(s) with --cpus 1, $unlimited without (nproc $CORES)"
	[[ $limited == 1 ]] || fail "--threads auto under --cpus 1 started '$limited' reactors"
	[[ $unlimited == "$CORES" ]] || fail "--threads auto without a limit started '$unlimited', not $CORES"
else
	say "--threads auto under a CPU limit: skipped (one core: nothing to tell apart)"
fi

# --- 2. manifests, validated offline ------------------------------------------------------
say "validating the manifests (kubernetes-validate --strict)"
python3 - "$ROOT/contrib/k8s" <<'EOF' || fail "a kustomization names a missing file, or a manifest is not listed"
import pathlib, sys, yaml
root = pathlib.Path(sys.argv[1])
for k in sorted(root.glob("*/kustomization.yaml")):
    listed = set(yaml.safe_load(k.read_text())["resources"])
    present = {p.name for p in k.parent.glob("*.yaml") if p.name != "kustomization.yaml"}
    if listed != present:
        sys.exit(f"{k}: resources {sorted(listed)} but files {sorted(present)}")
EOF
MANIFESTS=()
for f in contrib/k8s/*/*.yaml; do
	[[ $f == */kustomization.yaml ]] || MANIFESTS+=("$f")
done
kubernetes-validate --strict --quiet "${MANIFESTS[@]}" || fail "manifest validation"
if command -v kubectl >/dev/null; then
	for dir in contrib/k8s/*/; do
		kubectl kustomize "$dir" >"$WORK/rendered.yaml" || fail "kubectl kustomize $dir"
		kubernetes-validate --strict --quiet "$WORK/rendered.yaml" || fail "rendered $dir"
	done
fi
# The check itself can fail: an unknown field must be refused.
sed 's/terminationGracePeriodSeconds:/terminationGracePeriodSecond:/' contrib/k8s/server/deployment.yaml \
	>"$WORK/broken.yaml"
if kubernetes-validate --strict --quiet "$WORK/broken.yaml" >/dev/null 2>&1; then
	fail "kubernetes-validate accepted a misspelt field"
fi
say "${#MANIFESTS[@]} manifests valid; a misspelt field is refused"

# --- 3. the server, as the Deployment's pod -----------------------------------------------
say "playing the server's manifests (podman kube play)"
# podman plays Deployments (one replica here) and skips the Service, which a cluster's
# kube-proxy implements; the pods are reached at their address on the podman network.
python3 - contrib/k8s/server/deployment.yaml "$IMAGE" >"$WORK/server.yaml" <<'EOF'
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
doc["spec"]["replicas"] = 1
for c in doc["spec"]["template"]["spec"]["containers"]:
    c["image"] = sys.argv[2]
print(yaml.safe_dump(doc))
EOF
podman kube play "$WORK/server.yaml" >"$WORK/play-server.log" 2>&1 ||
	{ cat "$WORK/play-server.log" >&2; fail "podman kube play (server)"; }
PLAYED+=("$WORK/server.yaml")
SERVER=$(podman ps --filter label=app.kubernetes.io/name=echoloop --format '{{.Names}}' | head -1)
[[ -n $SERVER ]] || SERVER=$(podman ps --format '{{.Names}}' | grep -- '-echoloop$' | head -1)
[[ -n $SERVER ]] || fail "no server container after kube play: $(podman ps -a --format '{{.Names}}')"
POD_ID=$(podman inspect --format '{{.Pod}}' "$SERVER")
INFRA=$(podman pod inspect --format '{{.InfraContainerID}}' "$POD_ID")
SERVER_IP=$(podman inspect --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$INFRA")
[[ $SERVER_IP =~ ^[0-9.]+$ ]] || fail "no pod address for $SERVER ('$SERVER_IP')"
METRICS=http://$SERVER_IP:9107/metrics
for _ in $(seq 100); do
	curl -sf --max-time 2 "$METRICS" >/dev/null && break
	sleep 0.2
done
curl -sf --max-time 2 "$METRICS" >"$WORK/metrics-0.txt" || fail "no /metrics at $METRICS (the probes' endpoint)"
say "server pod $SERVER at $SERVER_IP, ready (its probes' /metrics answers)"
[[ $(podman inspect --format '{{.HostConfig.ReadonlyRootfs}}' "$SERVER") == true ]] ||
	fail "the server's root file system is writable"
SERVER_PID=$(podman inspect --format '{{.State.Pid}}' "$SERVER")
uid=$(awk '/^Uid:/ { print $2 }' "/proc/$SERVER_PID/status")
[[ $uid == 65532 ]] || fail "the server runs as uid $uid, not 65532"
caps=$(awk '/^CapEff:/ { print $2 }' "/proc/$SERVER_PID/status")
[[ $caps =~ ^0+$ ]] || fail "the server holds capabilities $caps"
# Into a file first: `grep -q` would stop reading early, and pipefail would count that.
podman logs "$SERVER" >"$WORK/server.log" 2>&1
grep -q "^listening tcp=0.0.0.0:7007 udp=0.0.0.0:7007 metrics=0.0.0.0:9107$" "$WORK/server.log" ||
	fail "no listening line: $(head -3 "$WORK/server.log")"
grep -q "started on host $(podman inspect --format '{{.Config.Hostname}}' "$SERVER") " "$WORK/server.log" ||
	fail "the start-up record does not name the pod's host: $(grep started "$WORK/server.log")"

python3 - "$SERVER_IP" <<'EOF' || fail "echo over TCP or UDP"
import os, socket, sys
ip = sys.argv[1]
data = os.urandom(256 * 1024)
with socket.create_connection((ip, 7007), timeout=5) as s:
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    got = bytearray()
    while chunk := s.recv(65536):
        got += chunk
assert bytes(got) == data, f"TCP: {len(got)} bytes back of {len(data)}"
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
    u.settimeout(2)
    for i in range(3):
        dgram = os.urandom(1200)
        u.sendto(dgram, (ip, 7007))
        back, peer = u.recvfrom(65536)
        assert back == dgram and peer == (ip, 7007), "UDP echo differs"
print("echo: 256 KiB over TCP and 3 datagrams over UDP came back intact", file=sys.stderr)
EOF

# Sums a counter over its reactor (and reason) labels.
counter() { awk -v m="$1" '$1 == m || index($1, m "{") == 1 { s += $2 } END { printf "%d\n", s }' "$2"; }
# With several reactors the page shows what each posted last (every second), so a scrape is
# taken as final once two, 1.2 s apart, show the same traffic counters.
settled_scrape() { # $1: file
	local previous="" current
	for _ in $(seq 15); do
		sleep 1.2
		curl -sf --max-time 2 "$METRICS" >"$1" || continue
		current=$(grep -E '^echoloop_(tcp|udp)_|^echoloop_connections_accepted' "$1" | md5sum)
		[[ $current == "$previous" ]] && return 0
		previous=$current
	done
	return 1
}
settled_scrape "$WORK/metrics-1.txt" || fail "the counters did not settle (or /metrics stopped answering)"
[[ $(counter echoloop_tcp_received_bytes_total "$WORK/metrics-1.txt") -ge 262144 ]] ||
	fail "/metrics does not count the TCP echo"
[[ $(counter echoloop_udp_received_datagrams_total "$WORK/metrics-1.txt") -ge 3 ]] ||
	fail "/metrics does not count the UDP echo"
say "/metrics counts the echoes (Prometheus text format, $(wc -l <"$WORK/metrics-1.txt") lines)"

# --- 4. three generators, as the Indexed Job's pods ---------------------------------------
# The pods are created stopped, then started together, as a Job's pods start once scheduled.
# --start-at must still be ahead when they start: on a loaded machine creating them can take
# longer than planned, and then they are made again with more time (20, 40, 80 s).
MARGIN=20
while :; do
	START_AT=$(($(date +%s) + MARGIN))
	say "creating the generator Job's pod 3 times, --start-at $START_AT (in $MARGIN s)"
	for index in 0 1 2; do
		# What the Job controller and the kubelet do for pod $index: the template becomes a pod,
		# JOB_COMPLETION_INDEX is set, env comes from the ConfigMap, $(VAR) in args is expanded.
		# The run is shortened for this machine, and the target is the server pod's address
		# (no cluster DNS here).
		python3 - contrib/k8s/generator/job.yaml "$IMAGE" "$index" "$START_AT" "$SERVER_IP" \
			>"$WORK/gen-$index.yaml" <<-'EOF'
	import re, sys, yaml
	job, image, index, start_at, server = yaml.safe_load(open(sys.argv[1])), *sys.argv[2:]
	template = job["spec"]["template"]
	pod = {
	    "apiVersion": "v1",
	    "kind": "Pod",
	    "metadata": {
	        "name": f"{job['metadata']['name']}-{index}",
	        "labels": {**template["metadata"]["labels"], "batch.kubernetes.io/job-completion-index": index},
	    },
	    "spec": template["spec"],
	}
	spec = pod["spec"]
	spec.pop("affinity", None)  # one node here
	(c,) = spec["containers"]
	c["image"] = image
	env = {"JOB_COMPLETION_INDEX": index}
	for e in c.get("env", []):
	    ref = e.get("valueFrom", {}).get("configMapKeyRef", {})
	    assert ref == {"name": "echoloop-bench-run", "key": "start-at"}, e
	    env[e["name"]] = start_at
	c["env"] = [{"name": k, "value": v} for k, v in env.items()]
	shorter = {"--target": f"{server}:7007", "--duration": "3s", "--warmup": "1s",
	           "--threads": "1", "--connections": "8", "--rate": "2000"}
	args = []
	for a in c["args"]:
	    a = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a)
	    flag = a.split("=", 1)[0]
	    args.append(f"{flag}={shorter[flag]}" if flag in shorter else a)
	assert f"--start-at={start_at}" in args and f"--seed={index}" in args, args
	c["args"] = args
	c["resources"] = {"limits": {"cpu": "1", "memory": "256Mi"}}
	print(yaml.safe_dump(pod))
	EOF
		podman kube play --start=false --replace "$WORK/gen-$index.yaml" >"$WORK/play-gen-$index.log" 2>&1 ||
			{ cat "$WORK/play-gen-$index.log" >&2; fail "podman kube play (generator $index)"; }
		PLAYED+=("$WORK/gen-$index.yaml")
	done
	if (($(date +%s) + 5 < START_AT)); then
		break
	fi
	((MARGIN < 80)) || fail "creating three pods took more than 75 s"
	say "creating the pods took $((MARGIN - START_AT + $(date +%s))) s: again, with more time"
	MARGIN=$((MARGIN * 2))
done
podman pod start echoloop-bench-0 echoloop-bench-1 echoloop-bench-2 >/dev/null ||
	fail "podman pod start (generators)"
GENS=()
for index in 0 1 2; do
	name=$(podman ps -a --filter "label=batch.kubernetes.io/job-completion-index=$index" --format '{{.Names}}' |
		grep -v -- '-infra$' | head -1)
	[[ -n $name ]] || name=echoloop-bench-$index-echoloop-bench
	GENS+=("$name")
done
for index in 0 1 2; do
	code=$(timeout 90 podman wait "${GENS[$index]}") || fail "generator $index did not finish in 90 s"
	# `kubectl logs` gives stdout and stderr together, as `podman logs` does: the report is
	# the one line that starts with '{'.
	podman logs "${GENS[$index]}" >"$WORK/gen-$index.log" 2>&1
	grep '^{' "$WORK/gen-$index.log" >"$WORK/report-$index.json" || true
	[[ $code == 0 ]] || fail "generator $index exited $code: $(grep -v '^{' "$WORK/gen-$index.log" | head -5)"
	[[ $(wc -l <"$WORK/report-$index.json") == 1 ]] || fail "generator $index: not one JSON line"
done

BENCH=${CARGO_TARGET_DIR:-$ROOT/target}/release/echoloop-bench
"$BENCH" merge --json "$WORK"/report-{0,1,2}.json >"$WORK/merged.json" 2>"$WORK/merge.err" ||
	fail "merge: $(cat "$WORK/merge.err")"
settled_scrape "$WORK/metrics-2.txt" || fail "scrape after the generators"
python3 - "$WORK" <<'EOF' || fail "merged totals"
import json, pathlib, sys
work = pathlib.Path(sys.argv[1])
parts = [json.loads((work / f"report-{i}.json").read_text()) for i in range(3)]
merged = json.loads((work / "merged.json").read_text())
def counter(page, name):
    total = 0
    for line in (work / page).read_text().splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)
def delta(name):
    return counter("metrics-2.txt", name) - counter("metrics-1.txt", name)
def at(doc, path):
    for key in path.split("/"):
        doc = doc[key]
    return doc
for path in ["requests", "totals/bytes_sent", "totals/bytes_received", "totals/connections",
             "errors/verify", "errors/connect", "errors/io"]:
    whole, summed = at(merged, path), sum(at(p, path) for p in parts)
    assert whole == summed, f"merged {path} {whole} != sum of parts {summed}"
assert merged["requests"] > 0, "nothing measured"
assert merged["errors"]["verify"] == 0, "verification errors"
w = merged["merged"]["window"]
assert w["overlap"] and merged["merged"]["warnings"] == [], merged["merged"]
assert w["start_spread_s"] < 1.0, f"the generators started {w['start_spread_s']} s apart"
for p in parts:
    assert p["window"]["start_unix_s"] >= int(p["run"]["command_line"].split("--start-at=")[1].split()[0])
server = {
    "bytes received": delta("echoloop_tcp_received_bytes_total"),
    "bytes echoed": delta("echoloop_tcp_sent_bytes_total"),
    "connections": delta("echoloop_connections_accepted_total"),
}
clients = {
    "bytes received": merged["totals"]["bytes_sent"],
    "bytes echoed": merged["totals"]["bytes_received"],
    "connections": merged["totals"]["connections"],
}
assert server == clients, f"server counters {server} != merged generator totals {clients}"
print(f"merged: {merged['requests']} requests = sum of the 3 parts, "
      f"{merged['requests_per_s']}/s over a common window of {w['common_s']} s "
      f"(starts {w['start_spread_s']} s apart); server counted the same "
      f"{server['bytes received']} bytes in and out and {server['connections']} connections",
      file=sys.stderr)
EOF

# --- 5. a graceful stop ----------------------------------------------------------------
# A client sends 24 MiB (below --max-pending, 32M) and half-closes without reading, so the
# server holds output it could not write yet (more than the kernel's buffers take); then the
# pod is stopped (SIGTERM, 15 s grace as in the manifest): the client must still read every
# byte back, and the server exit 0 with its summary.
say "stopping the server with output pending (SIGTERM, grace 15 s)"
begun=$SECONDS
# podman turned the probes into healthchecks, run by systemd timers where systemd runs; its
# complaint that there are none to remove is kept out of the way (stop.err).
python3 - "$SERVER_IP" "$SERVER" "$METRICS" "$WORK/stop.err" <<'EOF' || fail "graceful stop"
import os, socket, subprocess, sys, time, urllib.request
ip, server, metrics, err = sys.argv[1:]
data = os.urandom(24 << 20)
s = socket.create_connection((ip, 7007), timeout=20)
s.sendall(data)
s.shutdown(socket.SHUT_WR)
time.sleep(2.5)  # every reactor has posted its counters since (once a second)
page = urllib.request.urlopen(metrics, timeout=5).read().decode()
pending = sum(int(float(line.split()[-1])) for line in page.splitlines()
              if line.startswith("echoloop_pending_bytes"))
assert pending > 0, "no output pending: the kernel's buffers took it all"
stop = subprocess.Popen(["podman", "stop", "-t", "15", server],
                        stdout=subprocess.DEVNULL, stderr=open(err, "w"))
time.sleep(1)  # SIGTERM is in: the drain serves a client that starts reading only now
got = bytearray()
while chunk := s.recv(1 << 20):
    got += chunk
rc = stop.wait(timeout=30)
assert rc == 0, f"podman stop exited {rc}: {open(err).read()}"
assert bytes(got) == data, f"{len(got)} bytes back of {len(data)} after SIGTERM"
print(f"drain: {pending} bytes pending at SIGTERM; all {len(data)} came back", file=sys.stderr)
EOF
took=$((SECONDS - begun))
code=$(podman inspect --format '{{.State.ExitCode}}' "$SERVER")
[[ $code == 0 ]] || fail "the server exited $code after SIGTERM (137: killed, it did not drain in time)"
podman logs "$SERVER" >"$WORK/server.log" 2>&1
grep -q '^summary ' "$WORK/server.log" || fail "no exit summary after SIGTERM"
grep -q 'signal 15: shutting down' "$WORK/server.log" || fail "SIGTERM not logged as a shutdown"
say "server drained and exited 0 (${took} s with the client), summary printed"

say "all checks passed in $((SECONDS - BEGUN)) s"
