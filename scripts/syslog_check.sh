#!/usr/bin/env bash
# A real syslog daemon receives echoloop's records: start, stop and an error.
#
# Starts Debian's rsyslogd as an ordinary foreground process with its own config, listening
# on a socket in a temporary directory (not /dev/log, and no root needed), runs
# `echoloop --syslog-socket` against it, then checks the daemon's log file for the start,
# stop and error records under facility daemon with ident echoloop[PID].
# Skips (exit 0, says so) when rsyslogd is not installed: `apt-get install rsyslog`.
#
#   scripts/syslog_check.sh            # builds the debug binary first
#   ECHOLOOP=path/to/echoloop scripts/syslog_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."

RSYSLOGD=$(command -v rsyslogd || true)
[[ -x $RSYSLOGD ]] || RSYSLOGD=/usr/sbin/rsyslogd
if [[ ! -x $RSYSLOGD ]]; then
	echo "syslog_check: SKIP (rsyslogd not installed; apt-get install rsyslog)"
	exit 0
fi
if [[ -z ${ECHOLOOP:-} ]]; then
	cargo build --quiet --bin echoloop
	ECHOLOOP=target/debug/echoloop
fi

DIR=$(mktemp -d "${TMPDIR:-/tmp}/echoloop-syslog.XXXXXX")
DAEMON_PID=
SERVER_PID=
cleanup() {
	[[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null || true
	[[ -n $DAEMON_PID ]] && kill "$DAEMON_PID" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$DIR"
}
trap cleanup EXIT
# A reader that goes away (`| head`) or Ctrl-C must not leave the daemon behind.
trap "exit 1" INT TERM PIPE
fail() {
	echo "syslog_check: FAIL: $*" >&2
	echo "--- daemon log:" >&2
	cat "$DIR/messages" >&2 2>/dev/null || true
	exit 1
}

cat >"$DIR/rsyslog.conf" <<CONF
global(workDirectory="$DIR")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="$DIR/log")
daemon.* action(type="omfile" file="$DIR/messages" template="RSYSLOG_TraditionalFileFormat")
CONF
"$RSYSLOGD" -n -f "$DIR/rsyslog.conf" -i "$DIR/rsyslogd.pid" 2>"$DIR/daemon.stderr" &
DAEMON_PID=$!
for _ in $(seq 100); do [[ -S $DIR/log ]] && break; sleep 0.1; done
[[ -S $DIR/log ]] || fail "rsyslogd made no socket: $(cat "$DIR/daemon.stderr")"

# Start; a second server on the same port fails (the error); then stop with SIGTERM.
"$ECHOLOOP" --port 0 --syslog-socket "$DIR/log" >"$DIR/server.stdout" &
SERVER_PID=$!
for _ in $(seq 200); do [[ -s $DIR/server.stdout ]] && break; sleep 0.1; done
line=$(head -n1 "$DIR/server.stdout")
[[ $line =~ ^listening\ tcp=127\.0\.0\.1:([0-9]+) ]] || fail "unexpected first line: $line"
PORT=${BASH_REMATCH[1]}
if "$ECHOLOOP" --port "$PORT" --syslog-socket "$DIR/log" 2>"$DIR/error.stderr"; then
	fail "a second server on port $PORT should have failed to bind"
fi
kill -TERM "$SERVER_PID"
wait "$SERVER_PID" || fail "echoloop exited non-zero after SIGTERM"
PID=$SERVER_PID
SERVER_PID=

for _ in $(seq 50); do
	grep -q "cannot bind" "$DIR/messages" 2>/dev/null && break
	sleep 0.1
done
grep -q "echoloop\[$PID\]: started" "$DIR/messages" || fail "no start record from pid $PID"
grep -q "echoloop\[$PID\]: stopped: summary" "$DIR/messages" || fail "no stop record"
grep -q "echoloop\[[0-9]*\]: cannot bind" "$DIR/messages" || fail "no error record"
echo "syslog_check: OK (rsyslogd received start, stop and error records)"
sed 's/^/  /' "$DIR/messages"
