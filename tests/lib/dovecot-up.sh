#!/bin/sh
# dovecot-up.sh DIR PORT [USER:PASS ...] — a private plaintext
# POP3 backend.
#
# Writes a self-contained Dovecot configuration under DIR (which must exist
# and be empty or hold an earlier run's files), creates the users (default
# demo:demo), each with a Maildir of a few demo messages, starts
# `dovecot -F -c DIR/dovecot.conf` in the background listening on
# 127.0.0.1:PORT, and waits (with a timeout, by polling) until it answers
# with a "+OK" greeting.
#
# On success prints Dovecot's master PID on stdout and writes DIR/dovecot.env
# (shell syntax: DOVECOT_PID, DOVECOT_PORT, DOVECOT_LOG, MAIL_UID, MAIL_GID,
# MAIL_HOME). Stop it with `kill PID` (SIGTERM): the master stops its
# children and exits. On failure prints the log to stderr and exits 1.
#
# The one implementation used by tests/demo.sh and tests/scenario/conftest.py.
#
# Environment: DOVECOT_READY_TIMEOUT (seconds, default 20); DOVECOT_HAPROXY
# (yes: the listener takes a PROXY v1/v2 header from 127.0.0.0/8 first);
# DOVECOT_TLS=CERT:KEY:PORT2 (Dovecot's own TLS: STLS offered on PORT, and
# pop3s on 127.0.0.1:PORT2; a remote for popsd's outbound tests).
set -eu

usage() { echo "usage: $0 DIR PORT [USER:PASS ...]" >&2; exit 2; }
[ $# -ge 2 ] || usage
dir=$1 port=$2
shift 2
[ $# -gt 0 ] || set -- demo:demo
[ -d "$dir" ] || { echo "dovecot-up: $dir: no such directory" >&2; exit 1; }
case $port in *[!0-9]*|'') usage ;; esac
dir=$(cd "$dir" && pwd)

dovecot=$(command -v dovecot || echo /usr/sbin/dovecot)
[ -x "$dovecot" ] || { echo "dovecot-up: dovecot not installed (make deps)" >&2; exit 1; }
python=/usr/bin/python3
[ -x "$python" ] || python=python3

# Who mail processes run as. Root: an unprivileged uid that exists on every
# Debian system (nobody); the passwd-file does not need a system account.
# Not root: Dovecot cannot change uid, so everything runs as the caller.
if [ "$(id -u)" -eq 0 ]; then
	mail_uid=65534 mail_gid=65534
	run_as_user=""
else
	mail_uid=$(id -u) mail_gid=$(id -g)
	me=$(id -un)
	run_as_user="default_internal_user = $me
default_login_user = $me"
fi

# Dovecot's auth and mail processes run unprivileged and must reach the
# passwd-file and the homes under DIR: every directory above it must be
# searchable by others (mktemp -d makes 0700 directories).
chmod 755 "$dir"
if [ -z "$run_as_user" ]; then
	d=$(dirname "$dir")
	while :; do
		case $(stat -c %A "$d") in
		*[xt]) ;;
		*) echo "dovecot-up: $d is not searchable by others (chmod o+x);" \
			"Dovecot's unprivileged processes must reach $dir" >&2
		   exit 1 ;;
		esac
		[ "$d" = / ] && break
		d=$(dirname "$d")
	done
fi
mkdir -p "$dir/run" "$dir/state" "$dir/home"
chmod 755 "$dir/home"

: >"$dir/passwd"
chmod 644 "$dir/passwd"

# demo_message N USER: one message in RFC 5322 form, LF line ends as Maildir
# files usually have them (Dovecot sends CRLF).
demo_message() {
	case $1 in
	1) subject="Welcome to popsd"
	   body="Hello $2,

this message came from Dovecot through popsd, over TLS." ;;
	2) subject="Dot-stuffing"
	   body="The next line starts with a dot; POP3 sends it doubled.
.a line that starts with a dot
..two dots
.
The line above was a lone dot, which is not the end of this message." ;;
	3) subject="A longer message"
	   body=$(i=1; while [ $i -le 50 ]; do
		printf 'Line %02d: The quick brown fox jumps over the lazy dog.\n' $i
		i=$((i + 1)); done) ;;
	esac
	printf 'From: popsd demo <demo@localhost>\nTo: %s@localhost\nSubject: %s\nDate: Thu, 01 Jan 2026 00:00:0%s +0000\nMessage-ID: <demo-%s-%s@localhost>\n\n%s\n' \
		"$2" "$subject" "$1" "$1" "$2" "$body"
}

for up in "$@"; do
	user=${up%%:*} pass=${up#*:}
	case $user in ''|*[!A-Za-z0-9._-]*) echo "dovecot-up: bad user '$user'" >&2; exit 2 ;; esac
	home=$dir/home/$user
	printf '%s:{PLAIN}%s:%s:%s::%s::\n' "$user" "$pass" "$mail_uid" "$mail_gid" "$home" >>"$dir/passwd"
	if [ ! -d "$home/Maildir" ]; then
		mkdir -p "$home/Maildir/cur" "$home/Maildir/new" "$home/Maildir/tmp"
		for n in 1 2 3; do
			demo_message $n "$user" >"$home/Maildir/new/176725440$n.M${n}P1.popsd-demo"
		done
	fi
	chown -R "$mail_uid:$mail_gid" "$home"
done

haproxy=${DOVECOT_HAPROXY:-no}
case $haproxy in yes|no) ;; *) echo "dovecot-up: DOVECOT_HAPROXY must be yes or no" >&2; exit 2 ;; esac

ssl_conf="ssl = no" pop3s_listener=""
if [ -n "${DOVECOT_TLS:-}" ]; then
	tls_cert=${DOVECOT_TLS%%:*} rest=${DOVECOT_TLS#*:}
	tls_key=${rest%%:*} tls_port=${rest#*:}
	case $tls_port in *[!0-9]*|'') echo "dovecot-up: DOVECOT_TLS must be CERT:KEY:PORT" >&2; exit 2 ;; esac
	ssl_conf="ssl = yes
ssl_cert = <$tls_cert
ssl_key = <$tls_key"
	pop3s_listener="inet_listener pop3s {
    address = 127.0.0.1
    port = $tls_port
    ssl = yes
  }"
fi

log=$dir/dovecot.log
cat >"$dir/dovecot.conf" <<EOF
# Written by tests/lib/dovecot-up.sh: a private, plaintext POP3 backend.
base_dir = $dir/run
state_dir = $dir/state
instance_name = popsd-test-$port
log_path = $log
$run_as_user

protocols = pop3
listen = 127.0.0.1
$ssl_conf
disable_plaintext_auth = no
auth_mechanisms = plain login apop
auth_failure_delay = 0
# DOVECOT_HAPROXY=yes: the listener expects a PROXY header (v1 or v2) from
# 127.0.0.0/8, as behind popsd's backend-proxy-protocol.
haproxy_trusted_networks = 127.0.0.0/8

passdb {
  driver = passwd-file
  args = scheme=PLAIN $dir/passwd
}
userdb {
  driver = passwd-file
  args = $dir/passwd
}
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:~/Maildir

# 200+ concurrent sessions through popsd, all from 127.0.0.1.
default_process_limit = 1000
default_client_limit = 5000
default_vsz_limit = 1G
service anvil {
  client_limit = 5000
  # No auth penalty: behind popsd every client is 127.0.0.1, so one wrong
  # password would delay the next logins of every test by seconds. (The
  # auth process then logs one "anvil-auth-penalty ... refused" error.)
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
service auth {
  client_limit = 5000
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = $port
    haproxy = $haproxy
  }
  $pop3s_listener
  service_count = 0
  process_min_avail = 1
  client_limit = 1000
}
service pop3 {
  process_limit = 1000
}
protocol pop3 {
  mail_max_userip_connections = 1000
  pop3_uidl_format = %08Xu%08Xv
}
EOF

if [ -n "$run_as_user" ]; then
	cat >>"$dir/dovecot.conf" <<EOF
service pop3-login {
  chroot =
}
EOF
fi

"$dovecot" -F -c "$dir/dovecot.conf" </dev/null >>"$dir/dovecot.stderr" 2>&1 &
pid=$!

# Ready when 127.0.0.1:PORT greets with "+OK"; give up when Dovecot exits
# or the timeout passes.
if ! "$python" - "$port" "$pid" "${DOVECOT_READY_TIMEOUT:-20}" "$haproxy" <<'EOF'
import os, socket, sys, time
port, pid, limit = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
haproxy = sys.argv[4] == "yes"
deadline = time.monotonic() + limit
def alive():
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
while time.monotonic() < deadline and alive():
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            if haproxy:     # a listener that wants a PROXY header first
                s.sendall(b"PROXY UNKNOWN\r\n")
            if s.makefile("rb").readline().startswith(b"+OK"):
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.05)    # poll interval, not synchronisation
sys.exit(1)
EOF
then
	echo "dovecot-up: Dovecot did not answer on 127.0.0.1:$port" >&2
	kill "$pid" 2>/dev/null || true
	cat "$dir/dovecot.stderr" "$log" >&2 2>/dev/null || true
	exit 1
fi

cat >"$dir/dovecot.env" <<EOF
DOVECOT_PID=$pid
DOVECOT_PORT=$port
DOVECOT_LOG=$log
MAIL_UID=$mail_uid
MAIL_GID=$mail_gid
MAIL_HOME=$dir/home
EOF
echo "$pid"
