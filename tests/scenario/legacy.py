"""Legacy inetd-style POP3 daemons (popa3d, solid-pop3d) as plaintext
backends for popsd's scenario tests.

Usage::

    from legacy import LegacyBackend
    with LegacyBackend("solid-pop3d", tmp_path) as b:
        p = poplib.POP3(b.host, b.port)
        p.apop(b.user, b.apop_secret)      # or p.user(b.user); p.pass_(b.password)
        assert p.retr(2)[1] == b.retr_lines(2)

This wraps ``tests/lib/legacy-backend.sh`` (the one implementation; shell
tests can call it directly: ``start KIND DIR PORT`` / ``stop DIR``).  The
script unpacks the daemon's .deb (``apt-get download``, cached in
``$POPSD_TEST_CACHE``, default ``/var/cache/popsd-tests``; the packages
conflict with dovecot-pop3d so they are never installed), builds a scratch
passwd/shadow/group/gshadow, PAM dir, /var/mail, /var/lib and /home, and
runs ``socat TCP-LISTEN:PORT,bind=127.0.0.1,reuseaddr,fork EXEC:DAEMON,nofork``
as pid 1 of a private pid + mount namespace where those are bind-mounted
over the real paths.  One daemon per connection, the TCP socket itself on
its stdin/stdout (inetd style).  The machine's /etc/passwd, /etc/shadow,
/var/mail etc. are never written.  Needs root.

Why socat and not a Python inetd: it is one well-known process that does
exactly inetd's job (accept, fork, exec with the socket as fd 0/1 thanks to
``nofork``), it can run as pid 1 of the namespace without a Python
interpreter in there, and shell tests get the same backend.  Killing that
pid 1 makes the kernel kill everything left in the namespace, so not even a
daemon that detached (solid-pop3d goes standalone on port 110 when stdin is
not a socket) can outlive ``stop``; ``stop`` also reports such a detached
daemon as an error, and checks that nothing is left listening.

The account: user ``legacy`` (uid/gid 4242), password ``Legacy-Pa55``
(SHA-512 crypt from ``openssl passwd -6``), mbox ``/var/mail/legacy`` (as
seen by the daemon) holding ``messages``: 1 small, 2 with lines starting
with "." (``.leading dot line``, ``.``, ``..two dots``, ``. dot space``,
``...``), 3 about 120 KB with a ``.dotted`` line every 97 lines.
solid-pop3d also has the APOP secret ``apop-Secret-77`` (set with the
package's ``pop_auth`` run as the user, stored in ``~/.spop3d``).

What the daemons do on the wire (measured: popa3d 1.0.3-1.1 and
solid-pop3d 0.15-31, Debian 12)
----------------------------------------------------------------------
popa3d:
  * greeting ``+OK`` (bare, no APOP timestamp).
  * CAPA, AUTH, APOP: ``-ERR`` (bare).  Only USER/PASS/QUIT before login.
  * USER/PASS: ``+OK`` / ``+OK`` (bare).  A failed PASS answers
    ``-ERR Authentication failed (bad password?)`` after ~2 s and then
    closes the connection (one attempt per connection; same for an
    unknown user or root).
  * STAT, LIST, UIDL (16 hex digits), TOP, RETR, DELE, RSET, NOOP, LAST,
    QUIT.  Multi-line answers start with a bare ``+OK``.  Errors are bare
    ``-ERR``.
  * LIST/STAT sizes = octets with CRLF line ends, before dot-stuffing.
    RETR sends the message exactly as stored (without the mbox separator
    blank line), CRLF, dot-stuffed.
  * Accepts LF-only command lines; pipelining works everywhere.  User
    names longer than 40 characters get ``-ERR``.
solid-pop3d:
  * greeting ``+OK Solid POP3 server ready <PID.TIME@HOSTNAME>`` (APOP
    timestamp; PID is a small number: pid namespace; HOSTNAME is the
    machine's hostname).
  * CAPA: ``-ERR unknown command``; AUTH: ``-ERR command not implemented
    yet``.  Both count towards ``WrongCommandsLimit`` (default 5): the 5th
    ``-ERR`` in a session closes the connection (with RST).
  * USER/PASS (``+OK username accepted`` / ``+OK authentication
    successful``) with the account password; APOP with the APOP secret
    (once a secret is set, APOP with the account password and PASS with
    the secret both fail).  A failed login answers
    ``-ERR authentication failed`` after ~1-3 s and closes.
  * STAT, LIST, UIDL (32 hex digits), TOP, RETR (``+OK N octets``), DELE,
    RSET, NOOP (``+OK command ignored``), LAST, QUIT.  UIDL and TOP answer
    ``+OK `` with a trailing space.
  * RETR includes the mbox separator: each message ends with one extra
    empty line, and LIST/STAT sizes are 2 larger than popa3d's.
    ``retr_lines()`` / ``wire_body()`` / ``list_size()`` model this.
  * Needs CRLF (an LF-only line gets no answer).  Commands pipelined in
    the same write as PASS/APOP are silently dropped (the login runs in a
    separate process); pipelining after the +OK works.  Lines of ~250
    bytes or more get ``-ERR command too long``; user names > 40 chars
    ``-ERR username too long``.
Both: no STLS, no CAPA, no SASL, no RESP-CODES; the session after login
runs as uid 4242.

Timing and other surprises
--------------------------
* Start-up (socat listening + first +OK greeting) ~0.04 s once the .debs
  are cached; the first ``apt-get download`` ~1 s.  ``stop()`` ~0.1 s.
* popa3d stalls a login for up to 1 s when the mbox was modified within
  the current second (so that it can notice later changes).  The fixture
  dates the mbox back, but after a DELE + QUIT the next login within the
  same second still waits.
* A failed login costs 1-3 s in both daemons, then the connection closes.
* popa3d needs a ``popa3d`` user (it runs the AUTHORIZATION phase as that
  user, chrooted in a root-owned /var/lib/popa3d); solid-pop3d wants an
  ``spop3d`` user, a bulletins dir under /var/lib/solid-pop3d, and its
  config readable after it drops privileges.  Both refuse uid 0 logins.
* PAM service names are the package names: ``popa3d`` and ``solid-pop3d``
  (both just ``@include common-auth`` + ``common-account``: pam_unix, as
  root, reading the scratch /etc/shadow).  The shadow entry needs a past
  "last change" day, or pam_unix's account check fails.
* solid-pop3d is linked against liblockfile (``liblockfile1``); with
  /var/mail root:mail 2775 as on Debian it creates ``/var/mail/USER.lock``
  through liblockfile's setgid ``dotlockfile`` helper.  popa3d locks the
  mbox with fcntl/flock only.  Each solid-pop3d session is two processes.
* ``pop_auth`` reads the secret with getpass(), which prefers /dev/tty: it
  must run without a controlling terminal (setsid) to read stdin.
* Zombies: the start script exits, so the unshare and watchdog processes
  are re-parented (to init, or to a subreaper such as this pytest session,
  in which case ``stop()`` reaps them).  Liveness checks must treat
  zombies as dead (``kill -0`` does not).
* If the process that called ``start()`` dies without ``stop()``, a
  watchdog (``tail --pid``) stops the backend within ~1 s.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

KINDS = ("popa3d", "solid-pop3d")

SCRIPT = Path(__file__).resolve().parent.parent / "lib" / "legacy-backend.sh"

# What each daemon offers (see the module docstring for the details).
SUPPORTS = {
    "popa3d": dict(capa=False, apop=False, user_pass=True, uidl=True,
                   top=True, auth=False, stls=False, last=True,
                   lf_commands=True, pipelining_after_pass=True,
                   retr_adds_blank_line=False),
    "solid-pop3d": dict(capa=False, apop=True, user_pass=True, uidl=True,
                        top=True, auth=False, stls=False, last=True,
                        lf_commands=False, pipelining_after_pass=False,
                        retr_adds_blank_line=True),
}


class LegacyBackendError(RuntimeError):
    pass


def _guard_secrets(user, *secrets):
    """Under the scenario tests, no popsd log may contain these (the popsd
    fixture's password guard, popsd_harness.guard_secret)."""
    try:
        import popsd_harness
    except ImportError:     # used on its own (interop, shell tests)
        return
    for s in secrets:
        popsd_harness.guard_secret(s, user)


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _parse_env(text: str) -> dict:
    env = {}
    for line in text.splitlines():
        m = re.fullmatch(r"([A-Z0-9_]+)='([^']*)'", line.strip())
        if m:
            env[m.group(1)] = m.group(2)
    return env


def fetch(*kinds: str) -> None:
    """Download the .debs into the cache (needs the network once)."""
    subprocess.run([str(SCRIPT), "fetch", *(kinds or KINDS)], check=True)


class LegacyBackend:
    """A running popa3d/solid-pop3d on 127.0.0.1:port (see module doc).

    ``workdir`` is a scratch directory (e.g. pytest's ``tmp_path``); the
    backend lives in a new ``workdir/legacy-KIND-XXXX`` (``.dir``), which
    ``stop()`` removes (``keep=True`` keeps it, logs included, for
    debugging).  Several backends may share a workdir.
    ``port=None`` picks a free port (retrying if it gets taken meanwhile).
    """

    def __init__(self, kind: str, workdir, port: int | None = None,
                 start_timeout: float = 20, keep: bool = False):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        self.kind = kind
        self.workdir = Path(workdir)
        self.dir: Path | None = None
        self._want_port = port
        self.start_timeout = start_timeout
        self.keep = keep
        self.running = False
        self.supports = SUPPORTS[kind]
        self.host = "127.0.0.1"
        self.port: int | None = None
        self.user = self.password = None
        self.apop_secret: str | None = None
        self.uid: int | None = None
        self.pid: int | None = None
        self._watchdog: int | None = None
        self.greeting: str | None = None
        self.apop_timestamp: str | None = None
        self.messages: list[bytes] = []
        self.startup_seconds: float | None = None

    # ------------------------------------------------------------ lifecycle
    def start(self) -> "LegacyBackend":
        if self.running:
            raise LegacyBackendError("already started")
        # LEGACY_OWNER_PID: the script's watchdog stops the backend if this
        # process dies without calling stop() (killed test run).
        env = dict(os.environ, LEGACY_START_TIMEOUT=str(self.start_timeout),
                   LEGACY_OWNER_PID=str(os.getpid()))
        attempts = 1 if self._want_port else 5
        for attempt in range(attempts):
            port = self._want_port or _free_port()
            # unique, so several backends can share a workdir
            self.dir = Path(tempfile.mkdtemp(prefix=f"legacy-{self.kind}-", dir=self.workdir))
            r = subprocess.run([str(SCRIPT), "start", self.kind, str(self.dir), str(port)],
                               stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               env=env, timeout=self.start_timeout + 120)
            if r.returncode == 0:
                break
            if not self.keep:
                shutil.rmtree(self.dir, ignore_errors=True)
            busy = "in use" in r.stderr
            if not (busy and attempt + 1 < attempts):
                raise LegacyBackendError(
                    f"legacy-backend.sh start {self.kind} failed (rc={r.returncode}):\n"
                    f"{r.stderr}{r.stdout}")
        self.running = True
        try:
            self._load(_parse_env(r.stdout))
        except Exception:
            self.stop()
            raise
        return self

    def _load(self, info: dict) -> None:
        self.port = int(info["LEGACY_PORT"])
        self.host = info["LEGACY_HOST"]
        self.user = info["LEGACY_USER"]
        self.uid = int(info["LEGACY_UID"])
        self.password = info["LEGACY_PASSWORD"]
        self.apop_secret = info["LEGACY_APOP_SECRET"] or None
        _guard_secrets(self.user, self.password, self.apop_secret)
        self.pid = int(info["LEGACY_PID"])
        wd = self.dir / "watchdog-sh.pid"
        self._watchdog = int(wd.read_text()) if wd.exists() else None
        self.startup_seconds = float(info["LEGACY_STARTUP_SECONDS"])
        self.greeting = (self.dir / "greeting").read_text().strip()
        m = re.search(r"<[^<>]+@[^<>]+>", self.greeting)
        self.apop_timestamp = m.group(0) if m else None
        msgdir = self.dir / "messages"
        n = len(list(msgdir.glob("*.eml")))
        self.messages = [(msgdir / f"{i}.eml").read_bytes() for i in range(1, n + 1)]
        if not self.greeting.startswith("+OK") or n < 3:
            raise LegacyBackendError(f"unexpected backend state: {self.greeting!r}, {n} messages")

    def stop(self) -> None:
        """Stop; raises LegacyBackendError if anything was left behind."""
        if not self.running:
            return
        self.running = False
        env = dict(os.environ, LEGACY_KEEP="1" if self.keep else "0")
        r = subprocess.run([str(SCRIPT), "stop", str(self.dir)], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, env=env, timeout=60)
        # If this process is a child subreaper (conftest makes pytest one),
        # the unshare and watchdog processes were re-parented to us: reap.
        for pid in (self.pid, self._watchdog):
            deadline = time.monotonic() + 2
            while pid:
                try:
                    if os.waitpid(pid, os.WNOHANG)[0] or time.monotonic() > deadline:
                        break
                except ChildProcessError:   # not our child, or reaped
                    break
                time.sleep(0.01)
        if r.returncode != 0:
            raise LegacyBackendError(f"legacy-backend.sh stop failed:\n{r.stderr}{r.stdout}")

    def __enter__(self) -> "LegacyBackend":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log(self) -> str:
        """socat's log (connections, daemon exits) while running."""
        try:
            return (self.dir / "log" / "ns.log").read_text(errors="replace")
        except OSError:
            return ""

    # ------------------------------------------------------- expected data
    def message(self, n: int) -> bytes:
        """Message n (1-based) exactly as stored in the mbox (LF ends)."""
        return self.messages[n - 1]

    def retr_lines(self, n: int) -> list[bytes]:
        """What ``poplib.POP3.retr(n)[1]`` returns from this daemon."""
        lines = self.message(n).split(b"\n")
        assert lines[-1] == b""
        lines = lines[:-1]
        if self.supports["retr_adds_blank_line"]:
            lines.append(b"")
        return lines

    def top_lines(self, n: int, body_lines: int) -> list[bytes]:
        """What ``poplib.POP3.top(n, body_lines)[1]`` returns (body_lines
        smaller than the body)."""
        lines = self.message(n).split(b"\n")[:-1]
        head = lines.index(b"")
        return lines[:head + 1 + body_lines]

    def wire_body(self, n: int) -> bytes:
        """Exact bytes the daemon sends after RETR's status line: CRLF
        lines, dot-stuffed, ending with ".\\r\\n"."""
        out = [(b"." + l if l.startswith(b".") else l) for l in self.retr_lines(n)]
        return b"".join(l + b"\r\n" for l in out) + b".\r\n"

    def list_size(self, n: int) -> int:
        """The size LIST/STAT report for message n."""
        return sum(len(l) + 2 for l in self.retr_lines(n))

    def stat(self) -> tuple[int, int]:
        return len(self.messages), sum(self.list_size(i) for i in range(1, len(self.messages) + 1))

    def __repr__(self) -> str:
        state = f"127.0.0.1:{self.port}" if self.running else "stopped"
        return f"<LegacyBackend {self.kind} {state}>"


try:  # optional pytest fixture: `from legacy import legacy_backend` in conftest
    import pytest

    @pytest.fixture(params=KINDS)
    def legacy_backend(request, tmp_path):
        """A running backend, once per KIND."""
        if os.geteuid() != 0:
            pytest.skip("legacy backends need root (mount/pid namespaces)")
        with LegacyBackend(request.param, tmp_path) as b:
            yield b
except ImportError:  # pragma: no cover
    pass
