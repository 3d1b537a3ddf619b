#!/bin/sh
# ticketkeys.sh new FILE | rotate FILE [KEEP] — the session ticket key file
# popsd reads with "tls-ticket-key-file FILE" (popsd.conf(5)), for several
# popsd hosts behind one name: with the same file, a session ticket issued
# by one host resumes on any.
#
#   new FILE          write FILE with one new key; refuses to replace one
#   rotate FILE [KEEP]
#                     put a new key first in FILE (it encrypts new tickets
#                     once popsd reloads) and keep the KEEP-1 newest old
#                     ones after it (they still decrypt); KEEP is 1 to 4,
#                     default 3
#
# A key is the base64 of 80 random bytes (openssl rand), one per line,
# HAProxy's tls-ticket-keys format. FILE is written whole and renamed into
# place (never half-written), mode 0600, and keeps its owner and group
# when rotated: popsd re-reads it on SIGHUP with its own privileges, so
# make it popsd's (chown popsd FILE) once. Keys are never printed.
#
# Make and rotate the file on one host, then copy it (mode and owner as
# above) to every other and reload popsd everywhere: hosts must read the
# same file. Rotate no more often than every tls-session-lifetime /
# (KEEP - 1), so that a ticket's key is still in the file while the
# ticket lives.
set -eu

usage() {
	echo "usage: $0 new FILE | rotate FILE [KEEP]" >&2
	exit 2
}

die() {
	echo "ticketkeys: $*" >&2
	exit 1
}

new_key() {
	key=$(openssl rand 80 | openssl base64 -A) || die "openssl rand failed"
	[ ${#key} -eq 108 ] || die "openssl made a key of unexpected length"
	printf '%s\n' "$key"
}

# write FILE KEEP [OLD]: the header, a new key, then the first KEEP-1 key
# lines of OLD (blank lines and comments dropped), into a temporary file
# beside FILE, renamed over FILE at the end.
write() {
	file=$1 keep=$2 old=${3:-}
	dir=$(dirname -- "$file")
	tmp=$(mktemp "$dir/.ticketkeys.XXXXXX") || die "cannot write in $dir"
	trap 'rm -f "$tmp"' EXIT
	trap 'exit 130' INT TERM
	chmod 600 "$tmp"
	if [ -n "$old" ]; then
		# As root: the rotated file stays its owner's (popsd's).
		chown --reference="$old" "$tmp" 2>/dev/null ||
			[ "$(id -u)" -ne 0 ] ||
			die "cannot give $tmp the owner of $old"
	fi
	{
		echo "# popsd tls-ticket-key-file, by certs/ticketkeys.sh $(date -u +%Y-%m-%dT%H:%M:%SZ)"
		echo "# The first key encrypts new tickets, the others only decrypt."
		new_key
		if [ -n "$old" ]; then
			sed -e 's/\r$//' -e 's/^[ 	]*//' -e 's/[ 	]*$//' "$old" |
				grep -v -e '^$' -e '^#' | head -n $((keep - 1)) || true
		fi
	} >"$tmp"
	mv -f "$tmp" "$file"
	trap - EXIT
}

[ $# -ge 2 ] || usage
cmd=$1 file=$2
umask 077
case $cmd in
new)
	[ $# -eq 2 ] || usage
	[ ! -e "$file" ] || die "$file exists; use \"rotate\" to add a key"
	write "$file" 1
	echo "ticketkeys: wrote $file with 1 key" >&2
	;;
rotate)
	[ $# -le 3 ] || usage
	keep=${3:-3}
	case $keep in
	[1-4]) ;;
	*) die "KEEP must be 1 to 4 (popsd uses at most 4 keys), not \"$keep\"" ;;
	esac
	[ -f "$file" ] || die "$file: no such file; use \"new\" first"
	[ -r "$file" ] || die "$file: cannot read it"
	write "$file" "$keep" "$file"
	n=$(grep -c -v -e '^[ 	]*$' -e '^[ 	]*#' "$file" || true)
	echo "ticketkeys: rotated $file: $n keys, the new one first; copy it" \
	    "to every host and reload popsd there" >&2
	;;
*)
	usage
	;;
esac
