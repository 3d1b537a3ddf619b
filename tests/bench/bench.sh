#!/bin/sh
# bench.sh — popsd side by side with stunnel4 and nginx mail (issue 8).
#
#   sh tests/bench/bench.sh            the full run (about 5.5 minutes)
#   sh tests/bench/bench.sh --quick    a short smoke run (under a minute)
#   sh tests/bench/bench.sh --report FILE   print the table of a results file
#   sh tests/bench/bench.sh --deps     only install what is missing
#
# As root on Debian 12. Installs what is missing (stunnel4, nginx-light,
# libnginx-mod-mail, Dovecot, OpenSSL headers). Starts ONE Dovecot
# (tests/lib/dovecot-up.sh) on loopback with a 50 MiB message, and in front
# of it, with the same certificate: popsd (pop3s + pop3/STLS), stunnel4
# (implicit TLS) and nginx mail (pop3s + "starttls only"). Then, one
# workload at a time, tests/bench/loadgen drives each front-end and the
# backend alone, and reads the front-end's CPU (utime+stime of its process
# tree) and RSS from /proc. Writes OUT/results.txt (format: README.md in
# this directory) and prints the table with popsd/stunnel and popsd/nginx.
#
# Everything it starts is stopped by PID on exit; the whole run is bounded
# by BENCH_MAX_SECS (default 900), each loadgen by its own timeout.
#
# Environment (defaults in brackets):
#   POPSD [./popsd]  LOADGEN [build/bench/loadgen]  POPSD_FIX [build/bench/popsd-fix.so]
#   FLOOR [build/bench/floor]        the kernel's and OpenSSL's own floor
#   BENCH_OUT [build/bench]          where results.txt and table.txt go
#   BENCH_SECS [4]                   seconds per sessions/resumption run
#   BENCH_POPSD_WORKERS [auto]       popsd's "workers" (nginx runs one
#                                    worker per core too)
#   BENCH_CONC [16]                  concurrent sessions
#   BENCH_BULK_CLIENTS [4]  BENCH_MSG_MIB [50]  BENCH_BULK_RETRS [3] (RETRs each)
#   BENCH_IDLE_N [5000]              idle sessions (>= 5000 for the issue)
#   BENCH_LAT_N [100]                sequential sessions for latency
#   BENCH_CERTS ["rsa ec"]           bulk and idle use the first only
#   BENCH_FIX [0]                    also run popsd under popsd-fix.so, the
#                                    OpenSSL settings now built into popsd
#                                    (src/libtls_shim.c): a no-op check
#   BENCH_PROFILE [0]                1: after the measured runs, perf-record
#                                    popsd during bulk-mini and sess-pop3s
#                                    (OUT/perf-popsd-*.txt; needs linux-perf)
#   BENCH_FLOOR_RELAY, BENCH_FLOOR_HS [floor's defaults; --quick: "-R 1",
#                                    "-n 800 -R 4"] more options of floor
#                                    relay, floor handshake
#   BENCH_KEEP [0]                   keep the scratch directory
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)

if [ "${1:-}" = --report ]; then
	[ $# -eq 2 ] || { echo "usage: $0 --report RESULTS" >&2; exit 2; }
	exec awk -f "$here/report.awk" "$2"
fi
quick=no deps_only=no
case ${1:-} in
--quick) quick=yes ;;
--deps) deps_only=yes ;;
'') ;;
*) echo "usage: $0 [--quick | --deps | --report RESULTS]" >&2; exit 2 ;;
esac

POPSD=${POPSD:-$top/popsd}
LOADGEN=${LOADGEN:-$top/build/bench/loadgen}
FIX=${POPSD_FIX:-$top/build/bench/popsd-fix.so}
FLOOR=${FLOOR:-$top/build/bench/floor}
OUT=${BENCH_OUT:-$top/build/bench}
if [ $quick = yes ]; then
	: "${BENCH_SECS:=2}" "${BENCH_IDLE_N:=500}" "${BENCH_LAT_N:=30}"
	: "${BENCH_MSG_MIB:=10}" "${BENCH_BULK_CLIENTS:=2}" "${BENCH_CERTS:=rsa}"
	: "${BENCH_BULK_RETRS:=1}"
	: "${BENCH_FLOOR_RELAY:=-R 1}" "${BENCH_FLOOR_HS:=-n 800 -R 4}"
fi
SECS=${BENCH_SECS:-4}
CONC=${BENCH_CONC:-16}
BULK_K=${BENCH_BULK_CLIENTS:-4}
BULK_R=${BENCH_BULK_RETRS:-3}
MSG_MIB=${BENCH_MSG_MIB:-50}
IDLE_N=${BENCH_IDLE_N:-5000}
LAT_N=${BENCH_LAT_N:-100}
CERTS=${BENCH_CERTS:-rsa ec}
FIX_ON=${BENCH_FIX:-0}
MAX_SECS=${BENCH_MAX_SECS:-900}
FLOOR_RELAY=${BENCH_FLOOR_RELAY:-} FLOOR_HS=${BENCH_FLOOR_HS:-}

say() { printf 'bench: [%4ds] %s\n' "$(( $(date +%s) - t_start ))" "$*" >&2; }
fail() { echo "bench: $*" >&2; exit 1; }
t_start=$(date +%s)

[ "$(id -u)" -eq 0 ] || fail "run as root (it installs packages, runs Dovecot and binds ports)"

# --- packages --------------------------------------------------------------

installed() {
	dpkg-query -W -f='${Status}\n' "$1" 2>/dev/null | grep -q '^install ok installed$'
}

install_missing() {
	missing=""
	for p in stunnel4 nginx-light libnginx-mod-mail dovecot-core \
	    dovecot-pop3d openssl libssl-dev gcc make python3 procps iproute2; do
		installed "$p" || missing="$missing $p"
	done
	[ -z "$missing" ] && return 0
	say "installing:$missing"
	# No service may start from a maintainer script (nginx would take
	# port 80, Dovecot 110/995), unless the machine has its own policy.
	policy=/usr/sbin/policy-rc.d our_policy=no
	if [ ! -e $policy ]; then
		printf '#!/bin/sh\nexit 101\n' >$policy
		chmod 755 $policy
		our_policy=yes
	fi
	export DEBIAN_FRONTEND=noninteractive
	# shellcheck disable=SC2086 # a list of names
	if ! apt-get install -y -qq --no-install-recommends $missing >/dev/null 2>&1; then
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends $missing >/dev/null
	fi
	[ $our_policy = yes ] && rm -f $policy
	for p in $missing; do
		installed "$p" || fail "$p is still not installed"
	done
}

install_missing
[ $deps_only = yes ] && exit 0

build_tools() {
	mkdir -p "$(dirname "$LOADGEN")" "$(dirname "$FIX")" "$(dirname "$FLOOR")"
	if [ ! -x "$LOADGEN" ] || [ "$here/loadgen.c" -nt "$LOADGEN" ]; then
		cc -O2 -g -std=c11 -Wall -Wextra -o "$LOADGEN" "$here/loadgen.c" \
		    -lssl -lcrypto
	fi
	if [ ! -x "$FLOOR" ] || [ "$here/floor.c" -nt "$FLOOR" ]; then
		cc -O2 -g -std=c11 -Wall -Wextra -o "$FLOOR" "$here/floor.c" \
		    -lssl -lcrypto
	fi
	if [ "$FIX_ON" = 1 ] && { [ ! -f "$FIX" ] || [ "$here/popsd-fix.c" -nt "$FIX" ]; }; then
		cc -O2 -shared -fPIC -Wall -Wextra -o "$FIX" "$here/popsd-fix.c" -ldl
	fi
}
build_tools
[ -x "$POPSD" ] || fail "$POPSD: not built (make popsd)"

# --- scratch, processes, cleanup ------------------------------------------------

W=$(mktemp -d /tmp/popsd-bench.XXXXXX)
chmod 755 "$W"
PIDS=""
watchdog=""

stop_pid() {	# stop_pid PID: TERM, wait up to 5 s, then KILL
	kill -TERM "$1" 2>/dev/null || return 0
	i=0
	while kill -0 "$1" 2>/dev/null && [ $i -lt 50 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	kill -KILL "$1" 2>/dev/null || true
}

stop_all() {
	for p in $PIDS; do
		stop_pid "$p"
	done
	PIDS=""
}

cleanup() {
	rc=$?
	trap - EXIT INT TERM
	[ -n "$watchdog" ] && kill "$watchdog" 2>/dev/null
	stop_all
	[ -z "${MINI_PID:-}" ] || stop_pid "$MINI_PID"
	[ -z "${DOVECOT_PID:-}" ] || stop_pid "$DOVECOT_PID"
	if [ "${BENCH_KEEP:-0}" = 1 ] || [ $rc -ne 0 ]; then
		echo "bench: scratch directory kept: $W" >&2
	else
		rm -rf "$W"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'say "stopped (signal or BENCH_MAX_SECS)"; exit 124' TERM

# The run is bounded: past MAX_SECS this shell gets TERM and cleans up.
( sleep "$MAX_SECS"; kill -TERM $$ ) >/dev/null 2>&1 &
watchdog=$!

# Thousands of sessions: every process started from here inherits this.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" -ge $((IDLE_N * 2 + 100)) ] ||
	fail "RLIMIT_NOFILE $(ulimit -n) is too low for $IDLE_N idle sessions"

# --- ports -------------------------------------------------------------------------

# Twenty consecutive free ports below the ephemeral range, so that the
# thousands of client sockets never collide with a listener.
base=$((20000 + ($$ % 500) * 20))
while [ $base -lt 32000 ]; do
	if [ -z "$(ss -ltnH "( sport >= :$base and sport <= :$((base + 19)) )" 2>/dev/null)" ]; then
		break
	fi
	base=$((base + 20))
done
P_DOVE=$base P_MINI=$((base + 1))
P_POPSD_S=$((base + 2)) P_POPSD_P=$((base + 3)) P_POPSD_MINI=$((base + 4))
P_FIX_S=$((base + 5)) P_FIX_MINI=$((base + 6))
P_ST_S=$((base + 7)) P_ST_MINI=$((base + 8))
P_NG_S=$((base + 9)) P_NG_P=$((base + 10)) P_NG_MINI=$((base + 11))
P_NG_AUTH=$((base + 12))

wait_port() {	# wait_port PORT PID: listening within 15 s?
	i=0
	while [ $i -lt 150 ]; do
		kill -0 "$2" 2>/dev/null || return 1
		[ -n "$(ss -ltnH "( sport = :$1 )" 2>/dev/null)" ] && return 0
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}

# --- results -----------------------------------------------------------------------

mkdir -p "$OUT"
R=$W/results.txt
git_rev=$(git -C "$top" describe --always --dirty 2>/dev/null || echo unknown)
model=$(sed -n 's/^model name[^:]*: *//p' /proc/cpuinfo | head -n 1 | tr ' ' '_')
{
	echo "# popsd benchmark results, format 1 (tests/bench/README.md)"
	echo "wl=machine date=$(date -u +%Y-%m-%dT%H:%M:%SZ) cpus=$(nproc) model=$model" \
	    "mem_mib=$(awk '/MemTotal/ { print int($2 / 1024) }' /proc/meminfo)" \
	    "kernel=$(uname -r) openssl=$(openssl version | awk '{ print $2 }')" \
	    "stunnel=$(stunnel4 -version 2>&1 | awk '/^stunnel/ { print $2; exit }')" \
	    "nginx=$(nginx -v 2>&1 | sed 's|.*/||')" \
	    "dovecot=$(dovecot --version | awk '{ print $1 }') popsd=$git_rev" \
	    "secs=$SECS conc=$CONC bulk_clients=$BULK_K bulk_retrs=$BULK_R msg_mib=$MSG_MIB" \
	    "idle_n=$IDLE_N lat_n=$LAT_N quick=$quick" \
	    "load_before=$(cut -d' ' -f1 /proc/loadavg)"
} >"$R"

# run WL CERT FE LOADGEN-ARGS...: one measurement, one results line. A
# failed run still leaves a line (ok=0), so the table shows the gap.
run() {
	wl=$1 cert=$2 fe=$3
	shift 3
	say "$wl $fe $cert"
	if out=$(timeout -k 5 $((SECS + 150)) "$LOADGEN" "$@" 2>>"$W/loadgen.err"); then
		:
	else
		say "  loadgen failed (exit $?), see loadgen.err:"
		tail -n 3 "$W/loadgen.err" >&2
	fi
	[ -n "$out" ] || out="mode=failed ok=0"
	echo "wl=$wl cert=$cert fe=$fe $out" >>"$R"
	echo "  $out" | cut -c1-160 >&2
}

# --- certificates -------------------------------------------------------------------

for c in $CERTS; do
	case $c in
	rsa) sh "$top/certs/mkcert.sh" -r "$W/$c" >/dev/null ;;
	ec) sh "$top/certs/mkcert.sh" "$W/$c" >/dev/null ;;
	*) fail "BENCH_CERTS: $c is not rsa or ec" ;;
	esac
done

# --- physical limits ---------------------------------------------------------------

say "openssl speed (one core)"
aes=$(openssl speed -seconds 2 -bytes 16384 -evp aes-256-gcm 2>/dev/null |
    awk '/^AES-256-GCM/ { sub(/k$/, "", $2); print $2 }')
# openssl speed counts in 1000s of bytes per second.
aes_ms=$(echo "${aes:-0}" | awk '{ printf "%.3f", ($1 > 0 ? 1048576 / $1 : 0) }')
echo "wl=limit what=aes-256-gcm-16k kbps=$aes ms_per_mib=$aes_ms" >>"$R"
openssl speed -seconds 1 rsa2048 ecdsap256 ecdhx25519 2>/dev/null | awk '
	/^rsa 2048/ { printf "wl=limit what=rsa2048-sign ops=%s ms_per_op=%.3f\n", $6, 1000 / $6 }
	/ecdsa \(nistp256\)/ { printf "wl=limit what=ecdsap256-sign ops=%s ms_per_op=%.3f\n", $7, 1000 / $7
	    printf "wl=limit what=ecdsap256-verify ops=%s ms_per_op=%.3f\n", $8, 1000 / $8 }
	/ecdh \(X25519\)/ { printf "wl=limit what=x25519 ops=%s ms_per_op=%.3f\n", $6, 1000 / $6 }' >>"$R"

# floor_limit WHAT FLOOR-ARGS...: one tests/bench/floor measurement, one
# "wl=limit what=WHAT" line with floor's output (none if it failed).
floor_limit() {
	what=$1
	shift
	if out=$(timeout -k 5 120 "$FLOOR" "$@" 2>"$W/floor.last") && [ -n "$out" ]; then
		echo "wl=limit what=$what $out" >>"$R"
		echo "  $what: $out" | cut -c1-160 >&2
	else
		say "  floor: $what failed, see floor.err:"
		tail -n 3 "$W/floor.last" >&2
	fi
	cat "$W/floor.last" >>"$W/floor.err"
}

# What no front-end can go below on this machine (tests/bench/floor.c): a
# relay that only reads, seals and writes, and OpenSSL's server handshake
# with no socket I/O (and over loopback TCP); best of a few runs, each
# ~1-2.5 s.
# floor_all: every floor; run at the start and again at the end, since
# this shared machine has slow spells (report.awk keeps the lowest).
floor_all() {
	# shellcheck disable=SC2086 # FLOOR_RELAY, FLOOR_HS: option lists
	{
		floor_limit floor-relay-none-16k relay -e none $FLOOR_RELAY
		floor_limit floor-relay-aes-256-gcm-16k relay -e aes-256-gcm $FLOOR_RELAY
		floor_limit floor-relay-aes-256-gcm-64k relay -b 65536 -e aes-256-gcm $FLOOR_RELAY
		for c in $CERTS; do
			for t in 2 1 0; do
				floor_limit "floor-hs-$c-t$t" handshake -c "$W/$c/cert.pem" \
				    -k "$W/$c/key.pem" -t $t $FLOOR_HS
			done
			floor_limit "floor-hs-$c-resume" handshake -c "$W/$c/cert.pem" \
			    -k "$W/$c/key.pem" -t 2 -r $FLOOR_HS
			# The same server handshake over loopback TCP: the
			# kernel's share of a handshake beside OpenSSL's.
			floor_limit "floor-hs-$c-t2-tcp" handshake -c "$W/$c/cert.pem" \
			    -k "$W/$c/key.pem" -t 2 -l $FLOOR_HS
		done
	}
}
say "floor: relay (loopback, 1 GiB per run) and OpenSSL server handshakes"
floor_all

# --- backend -------------------------------------------------------------------------

say "Dovecot with a $MSG_MIB MiB message"
D=$W/dovecot
mkdir -p "$D/home/bulk/Maildir/cur" "$D/home/bulk/Maildir/new" "$D/home/bulk/Maildir/tmp"
{
	printf 'From: bench <bench@localhost>\nTo: bulk@localhost\nSubject: %s MiB\n' "$MSG_MIB"
	printf 'Date: Thu, 01 Jan 2026 00:00:00 +0000\nMessage-ID: <bulk-1@localhost>\n\n'
	# base64 lines of 76: 57 bytes of input make 77 bytes of message.
	head -c $((MSG_MIB * 1048576 / 77 * 57)) /dev/urandom | base64 -w 76
} >"$D/home/bulk/Maildir/new/1767225600.M1P1.bench"
DOVECOT_PID=$(sh "$top/tests/lib/dovecot-up.sh" "$D" "$P_DOVE" bench:bench bulk:bulk) ||
	fail "Dovecot did not start"

# dovecot_tune CLIENTS: the fixture's Dovecot, tuned (TESTING-NOTES: the
# knobs for many sessions) by an overlay its config merges, then reloaded:
# pop3 processes are reused (service_count 0) instead of one process per
# session, which would make Dovecot the bottleneck of every sessions run;
# CLIENTS sessions per pop3 process (1 for the throughput runs, 100 to
# hold thousands of idle sessions in tens of processes).
dovecot_tune() {
	cat >>"$D/dovecot.conf" <<EOF
# bench overlay ($1 clients per pop3 process)
service pop3 {
  service_count = 0
  client_limit = $1
  process_limit = $((IDLE_N / $1 + 100))
  process_min_avail = 2
}
protocol pop3 {
  mail_max_userip_connections = $((IDLE_N * 2 + 1000))
}
EOF
	kill -HUP "$DOVECOT_PID"
	sleep 1.5	# the master re-reads its configuration
}
dovecot_tune 1

say "minimal backend"
"$LOADGEN" backend -l "127.0.0.1:$P_MINI" -B $((MSG_MIB * 1048576)) 2>>"$W/mini.log" &
MINI_PID=$!
wait_port "$P_MINI" "$MINI_PID" || fail "minimal backend did not start"

# --- front-ends -------------------------------------------------------------------------

# start_popsd NAME CERT PORT_S PORT_P BACKEND_PORT [PRELOAD]: prints the PID.
start_popsd() {
	conf=$W/$1-$2.conf
	{
		echo "listen pop3s 127.0.0.1:$3"
		[ "$4" = - ] || echo "listen pop3 127.0.0.1:$4"
		echo "backend 127.0.0.1:$5"
		echo "certificate $W/$2/cert.pem"
		echo "key $W/$2/key.pem"
		echo "user nobody"
		echo "group nogroup"
		echo "max-sessions $((IDLE_N + 1000))"
		# Every load generator connection comes from 127.0.0.1: the
		# default per-address limit (a tenth of max-sessions) would
		# refuse most of them, as it would an admin's load test.
		echo "max-sessions-per-ip 0"
		# One process per core, as nginx's worker_processes auto.
		echo "workers ${BENCH_POPSD_WORKERS:-auto}"
		echo "timeout idle 10m"
	} >"$conf"
	log=$W/$1-$2.log
	# Its stdout must not be the pipe of the $(...) this runs in.
	if [ -n "${6:-}" ]; then
		LD_PRELOAD=$6 "$POPSD" -d -f "$conf" >/dev/null 2>"$log" &
	else
		"$POPSD" -d -f "$conf" >/dev/null 2>"$log" &
	fi
	pid=$!
	i=0
	until grep -q "popsd ready" "$log" 2>/dev/null; do
		kill -0 $pid 2>/dev/null && [ $i -lt 100 ] ||
			{ cat "$log" >&2; fail "$1 did not start"; }
		sleep 0.1
		i=$((i + 1))
	done
	echo $pid
}

start_stunnel() {	# start_stunnel CERT: prints the PID
	conf=$W/stunnel-$1.conf
	cat >"$conf" <<EOF
; stunnel 5 with its defaults, as an admin would run it for pop3s
foreground = yes
pid =
output = $W/stunnel-$1.log
setuid = nobody
setgid = nogroup

[pop3s]
accept = 127.0.0.1:$P_ST_S
connect = 127.0.0.1:$P_DOVE
cert = $W/$1/cert.pem
key = $W/$1/key.pem

[mini]
accept = 127.0.0.1:$P_ST_MINI
connect = 127.0.0.1:$P_MINI
cert = $W/$1/cert.pem
key = $W/$1/key.pem
EOF
	# stunnel opens its log after dropping privileges.
	: >"$W/stunnel-$1.log"
	chown nobody "$W/stunnel-$1.log"
	stunnel4 "$conf" >"$W/stunnel-$1.stderr" 2>&1 &
	pid=$!
	wait_port "$P_ST_S" $pid || { cat "$W/stunnel-$1".* >&2; fail "stunnel did not start"; }
	echo $pid
}

start_nginx() {	# start_nginx CERT: prints the master's PID
	n=$W/nginx-$1
	mkdir -p "$n/tmp"
	cat >"$n/nginx.conf" <<EOF
# nginx mail in front of the backend; its auth_http answers from an http
# server in the same nginx: every login goes to the fixed backend, which
# checks the password itself.
load_module /usr/lib/nginx/modules/ngx_mail_module.so;
daemon off;
master_process on;
worker_processes auto;
worker_rlimit_nofile $((IDLE_N * 2 + 1000));
user nobody nogroup;
pid $n/nginx.pid;
error_log $n/error.log;
events { worker_connections $((IDLE_N * 2 + 500)); }
http {
	access_log off;
	client_body_temp_path $n/tmp/body;
	proxy_temp_path $n/tmp/proxy;
	fastcgi_temp_path $n/tmp/fastcgi;
	uwsgi_temp_path $n/tmp/uwsgi;
	scgi_temp_path $n/tmp/scgi;
	server {
		listen 127.0.0.1:$P_NG_AUTH;
		location = /auth {
			add_header Auth-Status OK;
			add_header Auth-Server 127.0.0.1;
			add_header Auth-Port $P_DOVE;
			return 204;
		}
		location = /auth-mini {
			add_header Auth-Status OK;
			add_header Auth-Server 127.0.0.1;
			add_header Auth-Port $P_MINI;
			return 204;
		}
	}
}
mail {
	auth_http 127.0.0.1:$P_NG_AUTH/auth;
	proxy_pass_error_message on;
	ssl_certificate $W/$1/cert.pem;
	ssl_certificate_key $W/$1/key.pem;
	ssl_protocols TLSv1.2 TLSv1.3;
	ssl_session_cache shared:BENCHMAIL:10m;
	server { listen 127.0.0.1:$P_NG_S ssl; protocol pop3; }
	server { listen 127.0.0.1:$P_NG_P; protocol pop3; starttls only; }
	server {
		listen 127.0.0.1:$P_NG_MINI ssl;
		protocol pop3;
		auth_http 127.0.0.1:$P_NG_AUTH/auth-mini;
	}
}
EOF
	nginx -p "$n" -c "$n/nginx.conf" >"$n/stderr" 2>&1 &
	pid=$!
	wait_port "$P_NG_S" $pid || { cat "$n/stderr" "$n/error.log" >&2; fail "nginx did not start"; }
	echo $pid
}

# --- workloads ------------------------------------------------------------------------------

LG_AUTH="-u bench -p bench"
LG_BULK="-u bulk -p bulk -c $BULK_K -M 1 -R $BULK_R -T 120"

# sessions_set CERT FE PID PORT_S PORT_P: sessions, resumption, latency
# over pop3s, and over STLS when PORT_P is not "-".
sessions_set() {
	c=$1 fe=$2 pid=$3 ps=$4 pp=$5
	w="-w fe=$pid -w be=$DOVECOT_PID"
	# Warm-up, and a check that the path works at all.
	timeout 60 "$LOADGEN" latency -a "127.0.0.1:$ps" -m tls $LG_AUTH -n 10 \
	    >/dev/null 2>>"$W/loadgen.err" || say "  warm-up of $fe failed"
	run sess-pop3s "$c" "$fe" sessions -a "127.0.0.1:$ps" -m tls $LG_AUTH -c "$CONC" -t "$SECS" $w
	run resume-pop3s "$c" "$fe" sessions -a "127.0.0.1:$ps" -m tls $LG_AUTH -c "$CONC" -t "$SECS" -r $w
	run lat-pop3s "$c" "$fe" latency -a "127.0.0.1:$ps" -m tls $LG_AUTH -n "$LAT_N" $w
	if [ "$pp" != - ]; then
		run sess-stls "$c" "$fe" sessions -a "127.0.0.1:$pp" -m stls $LG_AUTH -c "$CONC" -t "$SECS" $w
		run resume-stls "$c" "$fe" sessions -a "127.0.0.1:$pp" -m stls $LG_AUTH -c "$CONC" -t "$SECS" -r $w
		run lat-stls "$c" "$fe" latency -a "127.0.0.1:$pp" -m stls $LG_AUTH -n "$LAT_N" $w
	fi
}

# mini_set CERT FE PID PORT: the same front-end before the minimal backend,
# which costs next to nothing: the front-end alone bounds these.
mini_set() {
	run sess-mini "$1" "$2" sessions -a "127.0.0.1:$4" -m tls $LG_AUTH -c "$CONC" -t "$SECS" -w "fe=$3" -w "be=$MINI_PID"
}

# bulk_set CERT FE PID PORT MINI_PID MINI_PORT: RETR of the big message
# through the front-end before Dovecot, and before the minimal backend
# (popsd has one backend per process: there, a second instance).
bulk_set() {
	run bulk "$1" "$2" bulk -a "127.0.0.1:$4" -m tls $LG_BULK -w "fe=$3" -w "be=$DOVECOT_PID"
	run bulk-mini "$1" "$2" bulk -a "127.0.0.1:$6" -m tls $LG_BULK -w "fe=$5" -w "be=$MINI_PID"
}

idle_one() {	# idle_one CERT FE PID PORT
	run idle "$1" "$2" idle -a "127.0.0.1:$4" -m tls $LG_AUTH -n "$IDLE_N" -c 64 -H 150 \
	    -w "fe=$3" -w "be=$DOVECOT_PID"
	sleep 1		# let the front-end and Dovecot close the sessions
}

# profile_popsd CERT: perf (DWARF call graphs) on popsd during a bulk and
# a sessions run; not measured runs: perf itself costs CPU.
profile_popsd() {
	command -v perf >/dev/null 2>&1 || { say "no perf: apt-get install linux-perf"; return 0; }
	for what in bulk-mini sess-pop3s; do
		case $what in
		bulk-mini) pid=$POPSD_MINI_PID
			   args="bulk -a 127.0.0.1:$P_POPSD_MINI -m tls $LG_BULK" ;;
		sess-pop3s) pid=$POPSD_PID
			   args="sessions -a 127.0.0.1:$P_POPSD_S -m tls $LG_AUTH -c $CONC -t $SECS" ;;
		esac
		say "profile: popsd $what ($1)"
		perf record -q -e cpu-clock -F 999 --call-graph dwarf,16384 \
		    -o "$W/perf-$what.data" -p "$pid" >/dev/null 2>&1 &
		perf_pid=$!
		sleep 0.5
		# shellcheck disable=SC2086 # word lists
		timeout -k 5 $((SECS + 150)) "$LOADGEN" $args >/dev/null 2>>"$W/loadgen.err" || true
		kill -INT $perf_pid 2>/dev/null || true
		wait $perf_pid 2>/dev/null || true
		perf report -i "$W/perf-$what.data" --children --sort sym --stdio \
		    -g none 2>/dev/null | grep -v '^#' | grep -v '^$' |
		    head -n 60 >"$OUT/perf-popsd-$what.txt" || true
	done
}

say "baseline: Dovecot alone (plaintext)"
w="-w be=$DOVECOT_PID"
run bulk-warmup - backend bulk -a "127.0.0.1:$P_DOVE" -m plain $LG_BULK $w
run bulk - backend bulk -a "127.0.0.1:$P_DOVE" -m plain $LG_BULK $w
run bulk-mini - backend bulk -a "127.0.0.1:$P_MINI" -m plain $LG_BULK -w "be=$MINI_PID"
run sess-plain - backend sessions -a "127.0.0.1:$P_DOVE" -m plain $LG_AUTH -c "$CONC" -t "$SECS" $w
run sess-mini - backend sessions -a "127.0.0.1:$P_MINI" -m plain $LG_AUTH -c "$CONC" -t "$SECS" -w "be=$MINI_PID"
run lat-plain - backend latency -a "127.0.0.1:$P_DOVE" -m plain $LG_AUTH -n "$LAT_N" $w

first=yes
for c in $CERTS; do
	say "front-ends with the $c certificate"
	POPSD_PID=$(start_popsd popsd "$c" "$P_POPSD_S" "$P_POPSD_P" "$P_DOVE")
	PIDS="$PIDS $POPSD_PID"
	POPSD_MINI_PID=$(start_popsd popsd-mini "$c" "$P_POPSD_MINI" - "$P_MINI")
	PIDS="$PIDS $POPSD_MINI_PID"
	ST_PID=$(start_stunnel "$c")
	PIDS="$PIDS $ST_PID"
	NG_PID=$(start_nginx "$c")
	PIDS="$PIDS $NG_PID"
	FIX_PID="" FIX_MINI_PID=""
	if [ "$FIX_ON" = 1 ] && [ $first = yes ]; then
		FIX_PID=$(start_popsd popsd-fix "$c" "$P_FIX_S" - "$P_DOVE" "$FIX")
		FIX_MINI_PID=$(start_popsd popsd-fix-mini "$c" "$P_FIX_MINI" - "$P_MINI" "$FIX")
		PIDS="$PIDS $FIX_PID $FIX_MINI_PID"
	fi

	sessions_set "$c" popsd "$POPSD_PID" "$P_POPSD_S" "$P_POPSD_P"
	sessions_set "$c" stunnel "$ST_PID" "$P_ST_S" -
	sessions_set "$c" nginx "$NG_PID" "$P_NG_S" "$P_NG_P"
	if [ -n "$FIX_PID" ]; then
		w="-w fe=$FIX_PID -w be=$DOVECOT_PID"
		run sess-pop3s "$c" popsd+fix sessions -a "127.0.0.1:$P_FIX_S" -m tls $LG_AUTH -c "$CONC" -t "$SECS" $w
		run resume-pop3s "$c" popsd+fix sessions -a "127.0.0.1:$P_FIX_S" -m tls $LG_AUTH -c "$CONC" -t "$SECS" -r $w
	fi
	mini_set "$c" popsd "$POPSD_MINI_PID" "$P_POPSD_MINI"
	mini_set "$c" stunnel "$ST_PID" "$P_ST_MINI"
	mini_set "$c" nginx "$NG_PID" "$P_NG_MINI"

	if [ $first = yes ]; then
		bulk_set "$c" popsd "$POPSD_PID" "$P_POPSD_S" "$POPSD_MINI_PID" "$P_POPSD_MINI"
		bulk_set "$c" stunnel "$ST_PID" "$P_ST_S" "$ST_PID" "$P_ST_MINI"
		bulk_set "$c" nginx "$NG_PID" "$P_NG_S" "$NG_PID" "$P_NG_MINI"
		[ -z "$FIX_PID" ] ||
			bulk_set "$c" popsd+fix "$FIX_PID" "$P_FIX_S" "$FIX_MINI_PID" "$P_FIX_MINI"
		dovecot_tune 100
		idle_one "$c" popsd "$POPSD_PID" "$P_POPSD_S"
		idle_one "$c" stunnel "$ST_PID" "$P_ST_S"
		idle_one "$c" nginx "$NG_PID" "$P_NG_S"
		[ -z "$FIX_PID" ] || idle_one "$c" popsd+fix "$FIX_PID" "$P_FIX_S"
		dovecot_tune 1
		[ "${BENCH_PROFILE:-0}" = 1 ] && profile_popsd "$c"
	fi
	stop_all
	first=no
done

say "floor: again, the lowest counts"
floor_all

echo "wl=end secs_total=$(( $(date +%s) - t_start )) load_after=$(cut -d' ' -f1 /proc/loadavg)" >>"$R"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
cp "$R" "$OUT/results-$stamp.txt"
cp "$R" "$OUT/results.txt"
awk -f "$here/report.awk" "$R" | tee "$OUT/table.txt"
say "done: $OUT/results.txt, $OUT/table.txt"
