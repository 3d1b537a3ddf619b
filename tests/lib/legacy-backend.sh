#!/bin/bash
# legacy-backend.sh - run a legacy inetd-style POP3 daemon (popa3d or
# solid-pop3d) as a plaintext TCP backend on 127.0.0.1:PORT for popsd tests.
#
#   legacy-backend.sh fetch [KIND...]      download the .debs into the cache
#   legacy-backend.sh start KIND DIR PORT  start; DIR must be empty or absent
#   legacy-backend.sh stop DIR             stop, verify nothing is left, rm DIR
#   legacy-backend.sh run KIND DIR -- CMD  like start, but CMD (not socat) is
#                                          pid 1 of the namespace
#
# KIND is popa3d or solid-pop3d.  Needs root (mount + pid namespaces).
#
# How it works
#   * The daemon's .deb is fetched with `apt-get download` into
#     $POPSD_TEST_CACHE (default /var/cache/popsd-tests) and unpacked with
#     `dpkg-deb -x` into DIR/pkg: the packages conflict with dovecot-pop3d and
#     are never installed.
#   * DIR/root holds scratch /etc/{passwd,shadow,group,gshadow}, a copy of
#     /etc/pam.d plus the package's PAM file, /var/mail/legacy (mbox), /var/lib
#     (the daemons' chroot/bulletin dirs) and /home/legacy.
#   * `unshare --pid --fork --mount-proc --propagation private` runs
#     legacy/ns-init.sh, which bind-mounts those over the real paths (only
#     inside the new mount namespace) and execs
#       socat TCP-LISTEN:PORT,bind=127.0.0.1,reuseaddr,fork EXEC:DAEMON,nofork
#     so every connection gets its own daemon with the TCP socket itself on
#     stdin/stdout (nofork: no socketpair relay in between).
#   * socat is pid 1 of a private pid namespace: when it dies the kernel kills
#     every process left in the namespace, including a daemon that detached.
#   * start returns once a connection gets a "+OK" greeting (polled, with a
#     timeout); it writes DIR/backend.env (KEY='value' lines), DIR/greeting
#     and DIR/messages/N.eml (the messages exactly as stored in the mbox).
#   * With LEGACY_OWNER_PID set, a watchdog (tail --pid) stops the backend
#     if that process dies without calling stop.
#   * stop fails (rc 1) if a daemon left the process group (setsid: e.g.
#     solid-pop3d gone standalone on port 110), kills the process group
#     (TERM, then KILL), checks that no process runs a binary from DIR/pkg
#     any more (warns if PORT or 110 still listen: not ours then), and
#     removes DIR (only if it carries the .legacy-backend marker).
#
# Environment: POPSD_TEST_CACHE (deb cache), LEGACY_START_TIMEOUT (seconds,
# default 20), LEGACY_KEEP=1 (stop leaves DIR in place for debugging),
# LEGACY_OWNER_PID=PID (start: a watchdog stops the backend if PID dies
# without calling stop, e.g. a killed test run).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${POPSD_TEST_CACHE:-/var/cache/popsd-tests}
DEB_DIR=$CACHE/debs
START_TIMEOUT=${LEGACY_START_TIMEOUT:-20}
MARKER=.legacy-backend

# The scratch account.  Only ever exists inside the private mount namespace.
LEGACY_USER=legacy
LEGACY_UID=4242
LEGACY_GID=4242
LEGACY_PASSWORD='Legacy-Pa55'
LEGACY_APOP_SECRET='apop-Secret-77'   # solid-pop3d only (set with pop_auth)
POPA3D_UID=4243                       # popa3d drops to this user pre-auth
SPOP3D_UID=4244                       # solid-pop3d wants an "spop3d" user

die() { echo "legacy-backend: $*" >&2; exit 1; }
log() { echo "legacy-backend: $*" >&2; }

usage() {
    sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

pkg_of() {
    case $1 in
        popa3d) echo popa3d ;;
        solid-pop3d) echo solid-pop3d ;;
        *) die "unknown KIND '$1' (popa3d | solid-pop3d)" ;;
    esac
}

# cached_deb PACKAGE -> newest cached .deb of PACKAGE, or nothing
cached_deb() {
    local f
    for f in "$DEB_DIR/$1"_*.deb; do [ -f "$f" ] && printf '%s\n' "$f"; done | sort -V | tail -n 1
}

# fetch_deb PACKAGE -> prints the path of the cached .deb
fetch_deb() {
    local pkg=$1 deb
    mkdir -p "$DEB_DIR"
    (
        # Serialise concurrent fetches (parallel test runs).
        flock 9
        if [ -z "$(cached_deb "$pkg")" ]; then
            log "downloading $pkg into $DEB_DIR"
            # _apt cannot write a root-owned cache dir: download unsandboxed
            # quietly instead of warning on every fresh machine.
            (cd "$DEB_DIR" && apt-get -q -o APT::Sandbox::User=root download "$pkg" >&2) ||
                die "apt-get download $pkg failed (network? apt-get update?)"
        fi
    ) 9>"$DEB_DIR/.lock"
    deb=$(cached_deb "$pkg")
    [ -n "$deb" ] || die "no .deb for $pkg in $DEB_DIR"
    echo "$deb"
}

cmd_fetch() {
    local k
    [ $# -gt 0 ] || set -- popa3d solid-pop3d
    for k in "$@"; do fetch_deb "$(pkg_of "$k")"; done
}

# ---------------------------------------------------------------- messages
# Written once here; legacy.py reads them back from DIR/messages.  No line
# may start with "From " (mbox separator).  Messages use LF line endings, as
# stored in the mbox; the daemons send CRLF and dot-stuff on the wire.
write_messages() {
    local m=$1
    mkdir -p "$m"
    cat >"$m/1.eml" <<'EOF'
Return-Path: <alice@example.test>
From: Alice <alice@example.test>
To: legacy@example.test
Subject: first message
Date: Mon, 01 Jan 2024 10:00:00 +0000
Message-ID: <legacy-1@example.test>

Hello legacy user,

this is the first message.
EOF
    cat >"$m/2.eml" <<'EOF'
Return-Path: <bob@example.test>
From: Bob <bob@example.test>
To: legacy@example.test
Subject: dot-stuffing check
Date: Mon, 01 Jan 2024 11:00:00 +0000
Message-ID: <legacy-2@example.test>

The next lines start with dots and must be dot-stuffed on the wire.
.leading dot line
.
..two dots
. dot space
...
end of dot test
EOF
    {
        cat <<'EOF'
Return-Path: <carol@example.test>
From: Carol <carol@example.test>
To: legacy@example.test
Subject: large message
Date: Mon, 01 Jan 2024 12:00:00 +0000
Message-ID: <legacy-3@example.test>

EOF
        # ~120 KiB: crosses any sane buffer size; a dotted line every 97.
        awk 'BEGIN {
            for (i = 1; i <= 1600; i++) {
                if (i % 97 == 0) printf ".dotted line %04d\n", i;
                else printf "line %04d abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789\n", i;
            }
        }'
        echo "last line"
    } >"$m/3.eml"
    if grep -q '^From ' "$m"/*.eml; then die "message line starts with 'From '"; fi
}

write_mbox() {
    local m=$1 out=$2 n=1 f
    : >"$out"
    while [ -f "$m/$n.eml" ]; do
        f=$m/$n.eml
        {
            printf 'From sender@example.test  Mon Jan  1 1%d:00:00 2024\n' "$n"
            cat "$f"
            echo # the blank line that ends each mbox message
        } >>"$out"
        n=$((n + 1))
    done
}

# ------------------------------------------------------------ scratch root
write_root() {
    local kind=$1 R=$2 pkgroot=$3 hash
    mkdir -p "$R/etc" "$R/var/mail" "$R/var/lib" "$R/home"
    hash=$(openssl passwd -6 "$LEGACY_PASSWORD")

    cat >"$R/etc/passwd" <<EOF
root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
mail:x:8:8:mail:/var/mail:/usr/sbin/nologin
popa3d:x:$POPA3D_UID:$POPA3D_UID::/var/lib/popa3d:/usr/sbin/nologin
spop3d:x:$SPOP3D_UID:8:Solid POP3 Server:/var/lib/solid-pop3d:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
$LEGACY_USER:x:$LEGACY_UID:$LEGACY_GID:Legacy POP3 test user:/home/$LEGACY_USER:/bin/sh
EOF
    # lastchg in the past, max 99999: pam_unix account must not see an
    # expired or must-change password.
    cat >"$R/etc/shadow" <<EOF
root:*:19000:0:99999:7:::
daemon:*:19000:0:99999:7:::
mail:*:19000:0:99999:7:::
popa3d:!:19000:0:99999:7:::
spop3d:!:19000:0:99999:7:::
nobody:*:19000:0:99999:7:::
$LEGACY_USER:$hash:19000:0:99999:7:::
EOF
    cat >"$R/etc/group" <<EOF
root:x:0:
daemon:x:1:
mail:x:8:
popa3d:x:$POPA3D_UID:
nogroup:x:65534:
$LEGACY_USER:x:$LEGACY_GID:
EOF
    sed 's/^\([^:]*\):x:\([^:]*\):.*/\1:!::/' "$R/etc/group" >"$R/etc/gshadow"
    chmod 644 "$R/etc/passwd" "$R/etc/group"
    chmod 640 "$R/etc/shadow" "$R/etc/gshadow"

    # PAM: the machine's stack (common-auth/common-account: pam_unix on
    # Debian) plus the package's own service file.
    cp -a /etc/pam.d "$R/etc/pam.d"
    cp "$pkgroot/etc/pam.d/$kind" "$R/etc/pam.d/$kind"

    # /var/mail as on Debian (root:mail 2775); the mbox belongs to the user.
    chown 0:8 "$R/var/mail"
    chmod 2775 "$R/var/mail"
    write_mbox "$DIR/messages" "$R/var/mail/$LEGACY_USER"
    chown "$LEGACY_UID:8" "$R/var/mail/$LEGACY_USER"
    chmod 660 "$R/var/mail/$LEGACY_USER"
    # popa3d stalls a login until the next second when the mbox was modified
    # in the current second (so it can see later changes): date it back.
    touch -d '2024-01-01 00:00:00 UTC' "$R/var/mail/$LEGACY_USER"

    # /var/lib: popa3d chroots into /var/lib/popa3d (must be root-owned);
    # solid-pop3d reads bulletins and (here) its config from its dir.
    mkdir -p "$R/var/lib/popa3d" "$R/var/lib/solid-pop3d/bulletins"
    chmod 755 "$R/var/lib" "$R/var/lib/popa3d" "$R/var/lib/solid-pop3d" \
        "$R/var/lib/solid-pop3d/bulletins"
    # Our own copy of the package's /etc/spop3d.conf, passed with -f so a
    # host file can't change the behaviour; it must be readable after the
    # daemon drops privileges, hence under the bind-mounted /var/lib.
    if [ "$kind" = solid-pop3d ]; then
        cp "$pkgroot/etc/spop3d.conf" "$R/var/lib/solid-pop3d/spop3d.conf"
        chmod 644 "$R/var/lib/solid-pop3d/spop3d.conf"
    fi

    mkdir -p "$R/home/$LEGACY_USER"
    chown "$LEGACY_UID:$LEGACY_GID" "$R/home/$LEGACY_USER"
    chmod 755 "$R/home" "$R/home/$LEGACY_USER"
}

# --------------------------------------------------------------- readiness
# probe PORT -> prints the greeting line and succeeds if it starts with +OK
probe() {
    local line
    # bash's /dev/tcp; refused connections fail at once on loopback.
    exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
    if IFS= read -r -t 5 line <&3; then
        printf 'QUIT\r\n' >&3 2>/dev/null || true
        exec 3<&- 3>&-
        line=${line%$'\r'}
        printf '%s\n' "$line"
        case $line in '+OK'*) return 0 ;; esac
        return 1
    fi
    exec 3<&- 3>&-
    return 1
}

listening() { # PORT -> succeeds if something listens on TCP PORT (any addr)
    local hex
    hex=$(printf ':%04X ' "$1")
    # local_address column, state 0A = LISTEN
    awk -v p="$hex" 'NR > 1 && substr($2, length($2) - 4) " " == p && $4 == "0A" { f = 1 } END { exit !f }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

proc_alive() { # PID -> succeeds if it exists and is not a zombie
    local line
    { read -r line <"/proc/$1/stat"; } 2>/dev/null || return 1
    line=${line##*) }
    [ "${line%% *}" != Z ]
}

# --------------------------------------------------------------------- start
# prepare KIND PORT: everything start does before launching the namespace
# (checks, .deb, DIR/pkg, messages, scratch root, backend.env); DIR is set
# by the caller.  Sets the EXIT trap that cleans up on failure.  PORT may be
# empty (run: no socat listener).
prepare() {
    local kind=$1 port=$2 pkg deb daemon args
    pkg=$(pkg_of "$kind")
    [ "$(id -u)" = 0 ] || die "must run as root (mount/pid namespaces, setuid daemons)"
    for t in socat unshare setpriv setsid flock openssl dpkg-deb apt-get; do
        command -v "$t" >/dev/null || die "missing tool: $t"
    done
    if [ -e "$DIR" ] && [ -n "$(ls -A "$DIR")" ]; then
        die "$DIR exists and is not empty"
    fi
    if [ -n "$port" ] && listening "$port"; then die "port $port is already in use"; fi

    deb=$(fetch_deb "$pkg")
    mkdir -p "$DIR"
    DIR=$(cd "$DIR" && pwd)
    : >"$DIR/$MARKER"
    # Any failure from here on: kill what was started and remove DIR
    # (kept with LEGACY_KEEP=1).
    trap 'start_failed' EXIT
    mkdir -p "$DIR/pkg" "$DIR/log"
    dpkg-deb -x "$deb" "$DIR/pkg"

    case $kind in
        popa3d)
            daemon=$DIR/pkg/usr/sbin/popa3d
            args=""
            ;;
        solid-pop3d)
            daemon=$DIR/pkg/usr/sbin/solid-pop3d
            args="-f /var/lib/solid-pop3d/spop3d.conf"
            ;;
    esac
    if ldd "$daemon" | grep -q 'not found'; then
        ldd "$daemon" | grep 'not found' >&2
        die "$kind needs shared libraries that are not installed (solid-pop3d: apt-get install liblockfile1)"
    fi

    write_messages "$DIR/messages"
    write_root "$kind" "$DIR/root" "$DIR/pkg"

    local apop=""
    [ "$kind" = solid-pop3d ] && apop=$LEGACY_APOP_SECRET
    local p110=0
    listening 110 && p110=1
    # KEY='value' lines: sourceable by sh, parsed by legacy.py.
    cat >"$DIR/backend.env" <<EOF
LEGACY_KIND='$kind'
LEGACY_HOST='127.0.0.1'
LEGACY_PORT='$port'
LEGACY_USER='$LEGACY_USER'
LEGACY_UID='$LEGACY_UID'
LEGACY_PASSWORD='$LEGACY_PASSWORD'
LEGACY_APOP_SECRET='$apop'
LEGACY_DAEMON='$daemon'
LEGACY_DAEMON_ARGS='$args'
LEGACY_DEB='$deb'
LEGACY_PORT110_BUSY_AT_START='$p110'
EOF
}

# start_watchdog: with LEGACY_OWNER_PID set, stop the backend in DIR if that
# process dies without calling stop.
start_watchdog() {
    if [ -n "${LEGACY_OWNER_PID:-}" ]; then
        # Watchdog: if the owner (e.g. the pytest process) dies without
        # calling stop, stop the backend anyway.  `tail --pid` waits for the
        # owner; stop kills that tail and writes DIR/stopping, so the sh
        # then just exits.  Own session: stop's group kill does not hit it.
        # shellcheck disable=SC2016
        setsid sh -c 'tail --pid="$1" -f /dev/null & echo $! >"$2/watchdog.pid"; wait $!
            [ -e "$2/stopping" ] || [ ! -e "$2/'"$MARKER"'" ] || exec "$3" stop "$2"' \
            legacy-watchdog "$LEGACY_OWNER_PID" "$DIR" "$HERE/legacy-backend.sh" \
            </dev/null >>"$DIR/log/watchdog.log" 2>&1 &
        echo $! >"$DIR/watchdog-sh.pid"
    fi
}

cmd_start() {
    [ $# -eq 3 ] || usage
    local kind=$1 port=$3 pid pgid t0 greeting
    DIR=$2
    case $port in '' | *[!0-9]*) die "PORT must be a number" ;; esac
    if [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then die "PORT out of range"; fi
    prepare "$kind" "$port"

    t0=$(date +%s.%N)
    # setsid: own process group (stop kills it); not a group leader here, so
    # setsid does not fork and $! is the unshare process.
    setsid unshare --pid --fork --mount-proc --propagation private -- \
        /bin/sh "$HERE/legacy/ns-init.sh" "$DIR" \
        </dev/null >"$DIR/log/ns.log" 2>&1 &
    pid=$!
    echo "$pid" >"$DIR/pid"

    # Poll for the greeting; fail early if the namespace died.
    greeting=""
    while :; do
        if ! proc_alive "$pid"; then
            tail -n 30 "$DIR/log/ns.log" >&2 || true
            die "$kind backend exited during start-up (log above)"
        fi
        # Only probe once socat says it bound the port (so a greeting can't
        # come from someone else's server that grabbed the port first).
        if grep -q "listening on .*:$port\$" "$DIR/log/ns.log" 2>/dev/null &&
            greeting=$(probe "$port" 2>/dev/null); then
            break
        fi
        if [ -n "$greeting" ]; then
            log "unexpected greeting: $greeting"
        fi
        if [ "$(awk -v a="$t0" -v b="$(date +%s.%N)" -v t="$START_TIMEOUT" 'BEGIN { print (b - a > t) }')" = 1 ]; then
            tail -n 30 "$DIR/log/ns.log" >&2 || true
            die "$kind backend did not greet on 127.0.0.1:$port within ${START_TIMEOUT}s"
        fi
        # Back off a little between probes (not a synchronisation sleep:
        # the loop only ends on a +OK greeting, death, or the timeout).
        sleep 0.02
    done
    pgid=$(ps -o pgid= -p "$pid" | tr -d ' ')
    [ "$pgid" = "$pid" ] || log "warning: pgid $pgid != pid $pid"
    printf '%s\n' "$greeting" >"$DIR/greeting"
    cat >>"$DIR/backend.env" <<EOF
LEGACY_PID='$pid'
LEGACY_STARTUP_SECONDS='$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }')'
EOF
    start_watchdog
    trap - EXIT
    cat "$DIR/backend.env"
}

start_failed() {
    local rc=$?
    trap - EXIT
    [ $rc -ne 0 ] || return 0
    log "start failed; cleaning up $DIR"
    if [ -e "$DIR/$MARKER" ]; then
        cmd_stop "$DIR" >&2 || true
    fi
    exit $rc
}

# ----------------------------------------------------------------------- run
# run KIND DIR -- CMD [ARG...]: the same namespace as start (scratch
# passwd/shadow/group, PAM, /var/mail, /var/lib, /home; the .deb unpacked in
# DIR/pkg; DIR/backend.env with LEGACY_DAEMON and LEGACY_DAEMON_ARGS) but
# pid 1 of the namespace is CMD instead of socat: e.g. a popsd whose
# `backend exec` starts the daemon.  Returns as soon as CMD is started (the
# caller waits for its own readiness; CMD's output goes to DIR/log/ns.log);
# prints backend.env (with LEGACY_PID, the namespace's unshare process).
# Stop it with `stop DIR` as usual.
cmd_run() {
    if [ $# -lt 4 ] || [ "$3" != -- ]; then usage; fi
    local kind=$1 pid
    DIR=$2
    shift 3
    prepare "$kind" ""
    setsid unshare --pid --fork --mount-proc --propagation private -- \
        /bin/sh "$HERE/legacy/ns-init.sh" "$DIR" "$@" \
        </dev/null >"$DIR/log/ns.log" 2>&1 &
    pid=$!
    echo "$pid" >"$DIR/pid"
    echo "LEGACY_PID='$pid'" >>"$DIR/backend.env"
    start_watchdog
    trap - EXIT
    cat "$DIR/backend.env"
}

# ---------------------------------------------------------------------- stop
# Processes whose executable lives under DIR/pkg (the daemons we unpacked).
# Prints "PID EXE" lines.  (One find instead of a readlink per process.)
leftovers() {
    find /proc -mindepth 2 -maxdepth 2 -name exe -lname "$1/pkg/*" \
        -printf '%h %l\n' 2>/dev/null | sed 's|^/proc/||' || true
}

envval() { # DIR KEY
    sed -n "s/^$2='\(.*\)'\$/\1/p" "$1/backend.env" 2>/dev/null || true
}

# group_alive PGID: succeeds while a non-zombie process is in the group.
# (kill -0 also "finds" zombies, and the unshare process may stay a zombie
# for a while: its parent, this script, is gone and init reaps lazily.)
group_alive() {
    local f line
    for f in /proc/[0-9]*/stat; do
        { read -r line <"$f"; } 2>/dev/null || continue
        line=${line##*) }   # drop "pid (comm) "; now: state ppid pgrp ...
        # shellcheck disable=SC2086
        set -- $line
        if [ "$3" = "$PGID" ] && [ "$1" != Z ]; then return 0; fi
    done
    return 1
}

cmd_stop() {
    [ $# -eq 1 ] || usage
    local d pid="" port="" p110 rc=0 left PGID
    d=$(cd "$1" 2>/dev/null && pwd) || die "no such dir: $1"
    [ -e "$d/$MARKER" ] || die "$d is not a legacy backend dir (no $MARKER)"
    [ -f "$d/pid" ] && pid=$(cat "$d/pid")
    : >"$d/stopping"
    if [ -f "$d/watchdog.pid" ]; then
        # the watchdog's tail; its sh then sees DIR/stopping and exits
        kill "$(cat "$d/watchdog.pid")" 2>/dev/null || true
    fi
    port=$(envval "$d" LEGACY_PORT)
    p110=$(envval "$d" LEGACY_PORT110_BUSY_AT_START)

    PGID=$pid
    # Daemons that left the process group (setsid: e.g. solid-pop3d going
    # standalone because stdin was not a socket) are a fixture failure; the
    # pid namespace teardown below still kills them.
    if [ -n "$pid" ]; then
        local escaped
        escaped=$(leftovers "$d" | while read -r p exe; do
            g=$(ps -o pgid= -p "$p" 2>/dev/null | tr -d ' ')
            [ -n "$g" ] && [ "$g" != "$pid" ] && echo "$p $exe (pgid $g)"
        done || true)
        if [ -n "$escaped" ]; then
            log "daemon processes detached from the backend (standalone mode?):"
            echo "$escaped" >&2
            rc=1
        fi
    fi
    if [ -n "$pid" ] && group_alive; then
        kill -TERM -- "-$pid" 2>/dev/null || true
        for _ in $(seq 1 150); do
            group_alive || break
            sleep 0.02
        done
        if group_alive; then
            log "process group $pid ignored SIGTERM, sending SIGKILL"
            kill -KILL -- "-$pid" 2>/dev/null || true
        fi
    fi
    # The namespace's processes die with its pid 1; wait for the kernel.
    for _ in $(seq 1 250); do
        left=$(leftovers "$d")
        if [ -z "$left" ] && ! { [ -n "$pid" ] && group_alive; }; then break; fi
        sleep 0.02
    done
    if [ -n "$left" ]; then
        log "daemon processes survived stop:"
        echo "$left" >&2
        echo "$left" | while read -r p _; do kill -KILL "$p" 2>/dev/null || true; done
        rc=1
    fi
    # None of our processes is left, so a listener now is someone else's
    # (the machine may be shared with other test runs): only warn.  A
    # daemon of ours that went standalone was caught above, by process.
    if [ -n "$port" ] && listening "$port"; then
        log "warning: port $port is listening after stop (not by this backend)"
    fi
    if [ "$p110" != 1 ] && listening 110; then
        log "warning: port 110 is listening after stop (not by this backend)"
    fi
    if [ "${LEGACY_KEEP:-0}" = 1 ]; then
        log "keeping $d"
    else
        rm -rf -- "$d"
    fi
    return $rc
}

[ $# -ge 1 ] || usage
cmd=$1
shift
case $cmd in
    fetch) cmd_fetch "$@" ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    run) cmd_run "$@" ;;
    *) usage ;;
esac
