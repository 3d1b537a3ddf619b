#!/bin/sh
# ns-init.sh DIR [CMD...] - runs as pid 1 of a private pid + mount namespace (started
# by legacy-backend.sh).  Bind-mounts DIR/root's scratch files over the real
# ones -- visible only inside this mount namespace -- then becomes an
# inetd: socat forks one daemon per connection with the socket on its stdin
# and stdout.  Nothing here touches the machine's files.
set -eu
DIR=$1
# shellcheck source=/dev/null
. "$DIR/backend.env"
R=$DIR/root

# Belt and braces: unshare already made every mount private.
mount --make-rprivate /

for f in passwd shadow group; do
    [ -e "/etc/$f" ] || { echo "ns-init: /etc/$f missing on this machine" >&2; exit 1; }
    mount --bind "$R/etc/$f" "/etc/$f"
done
if [ -e /etc/gshadow ]; then mount --bind "$R/etc/gshadow" /etc/gshadow; fi
mount --bind "$R/etc/pam.d" /etc/pam.d
mount --bind "$R/var/mail" /var/mail
mount --bind "$R/var/lib" /var/lib
mount --bind "$R/home" /home
# A running nscd would answer getpwnam() from the real files: hide it.
if [ -d /run/nscd ]; then mount -t tmpfs tmpfs /run/nscd; fi

# Sanity: the scratch account is what the daemons will see.
grep -q "^$LEGACY_USER:x:$LEGACY_UID:" /etc/passwd
[ "$(stat -c %u "/var/mail/$LEGACY_USER")" = "$LEGACY_UID" ]

if [ -n "$LEGACY_APOP_SECRET" ]; then
    # solid-pop3d: store the APOP secret in ~/.spop3d with its own tool, run
    # as the user.  pop_auth uses getpass(), which reads /dev/tty when there
    # is one: setsid drops the controlling terminal so it reads stdin.
    printf '%s\n%s\n' "$LEGACY_APOP_SECRET" "$LEGACY_APOP_SECRET" |
        HOME="/home/$LEGACY_USER" setsid -w setpriv --reuid="$LEGACY_UID" \
            --regid="$LEGACY_UID" --clear-groups \
            "$(dirname "$LEGACY_DAEMON")/../bin/pop_auth" >/dev/null 2>&1 || {
        echo "ns-init: pop_auth failed" >&2
        exit 1
    }
    grep -q '^APOPSecret' "/home/$LEGACY_USER/.spop3d" || {
        echo "ns-init: pop_auth wrote no APOPSecret" >&2
        exit 1
    }
fi

# `legacy-backend.sh run KIND DIR -- CMD...`: CMD (e.g. a popsd that starts
# the daemon with `backend exec`) becomes pid 1 instead of socat.
if [ $# -gt 1 ]; then
    shift
    exec "$@"
fi

# socat is pid 1 from here on: when it exits, the kernel kills whatever is
# left in the pid namespace (e.g. a daemon that went standalone).
# nofork: the forked socat child execs the daemon directly on the accepted
# TCP socket (no socketpair relay), as inetd would.
# shellcheck disable=SC2086
exec socat -d -d -lu \
    "TCP-LISTEN:$LEGACY_PORT,bind=$LEGACY_HOST,reuseaddr,fork" \
    "EXEC:$LEGACY_DAEMON${LEGACY_DAEMON_ARGS:+ $LEGACY_DAEMON_ARGS},nofork"
