#!/usr/bin/env bash
# Checks contrib/echoloop.service: `systemd-analyze verify` on a copy whose ExecStart points at
# the freshly built binary (verify insists the executable exists), and the flags in ExecStart
# parse (the binary is run with them plus `--generate bash`, which parses and exits without
# binding). Warnings count as failures. Skips with a message where systemd-analyze is missing (`apt-get install systemd`).
# Usage: scripts/check-service.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v systemd-analyze >/dev/null; then
    echo "check-service: skipped, systemd-analyze not installed (apt-get install systemd)"
    exit 0
fi
cargo build --quiet --bin echoloop
bin="$PWD/target/debug/echoloop"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

sed "s#/usr/local/bin/echoloop#$bin#" contrib/echoloop.service >"$tmp/echoloop.service"
# verify exits 0 on an unknown (misspelt) key and only warns: any output counts as a failure.
if ! report=$(systemd-analyze verify "$tmp/echoloop.service" 2>&1) || [ -n "$report" ]; then
    echo "check-service: systemd-analyze verify complains:" >&2
    echo "$report" >&2
    exit 1
fi
echo "check-service: systemd-analyze verify accepts contrib/echoloop.service"

flags=$(sed -n 's#^ExecStart=/usr/local/bin/echoloop ##p' contrib/echoloop.service)
# shellcheck disable=SC2086 # the unit's flags, split as systemd splits them (no quoting used)
"$bin" $flags --generate bash >/dev/null
echo "check-service: ExecStart flags parse: $flags"
