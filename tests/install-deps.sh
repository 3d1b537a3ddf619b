#!/bin/sh
# install-deps.sh — install what popsd needs to build and to run every test
# tier on Debian 12, as root. Idempotent and silent when all is present:
# dpkg-query decides, and apt-get runs only for what is missing.
#
# Installing dovecot-core would normally start the system Dovecot on
# 110/143/995. The tests run their own Dovecot on their own ports, so a
# system one is not needed: while installing we forbid service starts
# (policy-rc.d), and afterwards stop and disable a system Dovecot that we
# installed.
set -eu

PKGS="gcc make pkg-config libtls-dev libssl-dev libev-dev libcmocka-dev
dovecot-core dovecot-pop3d
python3 python3-pytest
curl openssl mpop fetchmail socat mandoc python3-cryptography
clang libclang-rt-dev valgrind procps
systemd liblockfile1 getmail6 mailutils-pop3d
testssl.sh nmap fail2ban haproxy"

installed() {
	dpkg-query -W -f='${Status}\n' "$1" 2>/dev/null | grep -q '^install ok installed$'
}

missing=""
for p in $PKGS; do
	installed "$p" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing packages:$missing" >&2
	echo "install-deps: run as root (or: apt-get install$missing)" >&2
	exit 1
fi

echo "install-deps: installing:$missing"

# Keep maintainer scripts from starting services during this install,
# unless the machine already has its own policy.
policy=/usr/sbin/policy-rc.d
our_policy=no
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\n# temporary, from popsd tests/install-deps.sh\nexit 101\n' >"$policy"
	chmod 755 "$policy"
	our_policy=yes
fi
cleanup() {
	[ "$our_policy" = yes ] && rm -f "$policy"
	return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

had_dovecot=no
installed dovecot-core && had_dovecot=yes

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086 # $missing is a list of names
apt-get install -y -qq --no-install-recommends $missing >/dev/null

# A system Dovecot we just installed must not hold the POP3/IMAP ports.
if [ "$had_dovecot" = no ]; then
	if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
		systemctl disable --now dovecot.service dovecot.socket >/dev/null 2>&1 || true
	elif [ -s /run/dovecot/master.pid ]; then
		kill "$(cat /run/dovecot/master.pid)" 2>/dev/null || true
	fi
fi
# Likewise mailutils-pop3d (used by the interop matrix from inetd mode).
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	systemctl disable --now mailutils-pop3d.service >/dev/null 2>&1 || true
fi

for p in $PKGS; do
	if ! installed "$p"; then
		echo "install-deps: $p is still not installed" >&2
		exit 1
	fi
done
echo "install-deps: done"
