#!/usr/bin/env bash
# End-to-end check of `echoloop --metrics`: a real Prometheus server scrapes echoloop on
# loopback, and a counter is read back through Prometheus's HTTP query API.
#
#   1. start `echoloop --port 0 --metrics 127.0.0.1:0`, echo a known number of bytes over TCP;
#   2. `promtool check metrics` on the /metrics page (the format and naming lint);
#   3. start `prometheus` scraping it every second (loopback only, a temporary TSDB);
#   4. query `echoloop_tcp_received_bytes_total` until Prometheus has the value we sent.
#
# Needs `prometheus` and `promtool` (Debian: `apt-get install -y prometheus`, about a minute).
# Usage: scripts/prometheus-check.sh [--install]   (--install runs the apt-get if missing)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
    if [ "${1:-}" = "--install" ]; then
        apt-get install -y -qq prometheus >/dev/null
    else
        echo "prometheus-check: prometheus/promtool not installed (apt-get install -y prometheus," \
            "or run with --install)" >&2
        exit 1
    fi
fi

cargo build --quiet --bin echoloop
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# 1. echoloop, its addresses from the `listening` line.
mkfifo "$work/stdout"
target/debug/echoloop --port 0 --no-udp --metrics 127.0.0.1:0 --summary kv \
    >"$work/stdout" 2>"$work/echoloop.log" &
pids+=($!)
exec 3<"$work/stdout"
read -r -t 20 listening <&3
tcp=$(sed -n 's/.* tcp=\([^ ]*\).*/\1/p' <<<"$listening")
metrics=$(sed -n 's/.* metrics=\([^ ]*\).*/\1/p' <<<"$listening")
echo "prometheus-check: $listening"

payload_bytes=123457
python3 - "$tcp" "$payload_bytes" <<'PY'
import socket, sys
host, port = sys.argv[1].rsplit(":", 1)
size = int(sys.argv[2])
with socket.create_connection((host, int(port)), timeout=10) as s:
    data = bytes(i % 251 for i in range(size))
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    back = bytearray()
    while chunk := s.recv(65536):
        back += chunk
assert bytes(back) == data, "echo differs"
PY

# 2. The page passes promtool's parser and lint.
curl -fsS "http://$metrics/metrics" >"$work/page.txt"
promtool check metrics <"$work/page.txt"
echo "prometheus-check: promtool check metrics: ok ($(grep -vc '^#' "$work/page.txt") series)"

# 3. A Prometheus server on a free loopback port, scraping every second.
prom_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/prometheus.yml" <<YML
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: echoloop
    static_configs:
      - targets: ["$metrics"]
YML
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
    --web.listen-address="127.0.0.1:$prom_port" >"$work/prometheus.log" 2>&1 &
pids+=($!)

# 4. Ask Prometheus until it has scraped the counter (bounded: 60 s).
query="echoloop_tcp_received_bytes_total"
for _ in $(seq 1 120); do
    answer=$(curl -fsS "http://127.0.0.1:$prom_port/api/v1/query" --data-urlencode "query=$query" \
        2>/dev/null || true)
    value=$(python3 -c 'import json,sys
try:
    r = json.loads(sys.argv[1])["data"]["result"]
    print(r[0]["value"][1] if r else "")
except Exception:
    print("")' "$answer")
    if [ -n "$value" ]; then
        echo "prometheus-check: query $query -> $answer"
        if [ "$value" = "$payload_bytes" ]; then
            echo "prometheus-check: Prometheus read back $value bytes, as sent: ok"
            exit 0
        fi
        echo "prometheus-check: Prometheus has $value, expected $payload_bytes" >&2
        exit 1
    fi
    sleep 0.5
done
echo "prometheus-check: Prometheus never returned $query; its log:" >&2
tail -20 "$work/prometheus.log" >&2
exit 1
