#!/bin/sh
# demo.sh — try popsd by hand (make run).
#
# Makes the development certificates (certs/dev), starts a private Dovecot
# with user demo / password demo and a few messages in a temp dir, starts
# popsd in front of it on unprivileged loopback ports, prints commands to
# try, and shows popsd's log. Ctrl-C (or SIGTERM) stops what it started,
# by PID, and removes the temp dir.
#
# Environment: POP3S_PORT (default 9950), POP3_PORT (1100),
# BACKEND_PORT (11000); a busy default is replaced by a free port.
# shellcheck disable=SC2317 # stop() and cleanup() run from traps
set -eu
cd "$(dirname "$0")/.."
repo=$(pwd)
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

popsd=""
for p in ./popsd build/popsd; do
	[ -x "$p" ] && { popsd=$repo/${p#./}; break; }
done
[ -n "$popsd" ] || { echo "demo: popsd is not built; run make (or make run)" >&2; exit 1; }

sh certs/mkcert.sh
certs=$repo/certs/dev

tmp=$(mktemp -d "${TMPDIR:-/tmp}/popsd-demo.XXXXXX")
popsd_pid="" dovecot_pid="" tail_pid=""

alive() {
	[ -n "$1" ] && [ -e "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

# stop PID NAME: SIGTERM, wait up to 10 s (polling), then SIGKILL.
stop() {
	alive "$1" || return 0
	kill -TERM "$1" 2>/dev/null || return 0
	i=0
	while alive "$1" && [ "$i" -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	if alive "$1"; then
		echo "demo: $2 (pid $1) ignored SIGTERM; killing it" >&2
		kill -KILL "$1" 2>/dev/null || true
	fi
}

cleanup() {
	trap - EXIT INT TERM HUP
	set +e
	[ -n "$tail_pid" ] && kill "$tail_pid" 2>/dev/null
	stop "$popsd_pid" popsd
	stop "$dovecot_pid" dovecot
	wait 2>/dev/null
	rm -rf "$tmp"
	echo
	echo "demo: stopped popsd and Dovecot, removed $tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# port WANT: WANT if nothing listens there on 127.0.0.1, else a free port.
port() {
	"$PY" - "$1" <<'EOF'
import socket, sys
want = int(sys.argv[1])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind
try:
    s.bind(("127.0.0.1", want))
except OSError:
    s.close()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}
pop3s_port=$(port "${POP3S_PORT:-9950}")
pop3_port=$(port "${POP3_PORT:-1100}")
backend_port=$(port "${BACKEND_PORT:-11000}")

chmod 755 "$tmp"	# Dovecot's unprivileged processes must reach $tmp/dovecot
mkdir "$tmp/dovecot"
dovecot_pid=$(sh tests/lib/dovecot-up.sh "$tmp/dovecot" "$backend_port" demo:demo)

cat >"$tmp/popsd.conf" <<EOF
# popsd demo configuration (written by tests/demo.sh)
listen pop3s 127.0.0.1:$pop3s_port
listen pop3 127.0.0.1:$pop3_port
backend 127.0.0.1:$backend_port
certificate $certs/cert.pem
key $certs/key.pem
timeout connect 10s
max-sessions 1000
EOF
# popsd will not keep root: it drops to this user once its sockets are bound.
if [ "$(id -u)" -eq 0 ]; then
	echo "user nobody" >>"$tmp/popsd.conf"
fi

"$popsd" -n -f "$tmp/popsd.conf" >/dev/null
: >"$tmp/popsd.log"
"$popsd" -d -v -f "$tmp/popsd.conf" </dev/null >>"$tmp/popsd.log" 2>&1 &
popsd_pid=$!

i=0
until grep -q 'popsd ready' "$tmp/popsd.log"; do
	if ! alive "$popsd_pid" || [ $i -ge 100 ]; then
		echo "demo: popsd did not start:" >&2
		cat "$tmp/popsd.log" >&2
		exit 1
	fi
	sleep 0.1
	i=$((i + 1))
done

ca=$certs/ca.pem
cat <<EOF

popsd is running (pid $popsd_pid) in front of Dovecot (pid $dovecot_pid, 127.0.0.1:$backend_port).
  pop3s (implicit TLS)  127.0.0.1:$pop3s_port
  pop3  (STLS)          127.0.0.1:$pop3_port
  user demo, password demo; CA certificate $ca

Try, in another terminal:

  curl --cacert $ca pop3s://demo:demo@localhost:$pop3s_port/
  curl --cacert $ca pop3s://demo:demo@localhost:$pop3s_port/1
  curl -k pop3s://demo:demo@127.0.0.1:$pop3s_port/1
  curl --cacert $ca --ssl-reqd pop3://demo:demo@localhost:$pop3_port/1

  openssl s_client -connect 127.0.0.1:$pop3s_port -CAfile $ca -crlf -nocommands
  openssl s_client -starttls pop3 -connect 127.0.0.1:$pop3_port -CAfile $ca -crlf -nocommands
      then type: USER demo / PASS demo / LIST / RETR 1 / QUIT

  $PY -c 'import poplib, ssl; p = poplib.POP3_SSL("localhost", $pop3s_port, context=ssl.create_default_context(cafile="$ca")); p.user("demo"); p.pass_("demo"); print(p.stat()); print(b"\n".join(p.retr(1)[1]).decode()); p.quit()'

Ctrl-C stops popsd and Dovecot. popsd's log ($tmp/popsd.log):

EOF

tail -n +1 -f "$tmp/popsd.log" &
tail_pid=$!
set +e
wait "$popsd_pid"
status=$?
# Reached only when popsd exits by itself (a signal to us runs the trap).
popsd_pid=""
echo "demo: popsd exited with status $status" >&2
exit "$status"
