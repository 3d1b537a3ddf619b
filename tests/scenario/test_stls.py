"""STLS on a `listen pop3` port, CAPA rewriting, require-tls, plaintext-allow
and the authorization-phase shield (issue 3), with real peers.

Backends: the session's Dovecot (CAPA, SASL PLAIN/LOGIN, APOP) and the
legacy inetd daemons popa3d and solid-pop3d (no CAPA, no TLS; see
legacy.py). Clients: openssl s_client -starttls pop3, curl --ssl-reqd,
Python poplib .stls(), mpop (tls_starttls on), fetchmail (sslproto), and a
raw socket client for the exact-bytes cases.

What the backend received is proven from the backend's side: `Tap` is a
recording TCP relay put between popsd and the real backend, so a test can
assert the exact bytes the backend was sent. To know that popsd had every
chance to forward a refused line, each such test ends with a command that
IS forwarded (usually QUIT) and waits for its answer: popsd keeps command
order, so anything forwarded earlier is in the tap's record by then.

Every test starts its own popsd (and tap / legacy backend) and stops them;
nothing sleeps to synchronise: waits poll with deadlines.
"""

import base64
import contextlib
import hashlib
import os
import poplib
import re
import select
import socket
import ssl
import subprocess
import threading

import pytest

import fakepop
import popsd_harness as H
from legacy import LegacyBackend

ROOT = os.geteuid() == 0
LEGACY = ("popa3d", "solid-pop3d")
ALL_BACKENDS = ("dovecot",) + LEGACY

# popsd's own replies (src/pop3.c), asserted byte for byte.
R_TLS_REQUIRED = b"-ERR [AUTH] TLS required: use STLS first (or connect to port 995)\r\n"
R_STLS_OK = b"+OK Begin TLS negotiation\r\n"
R_STLS_ACTIVE = b"-ERR command not permitted when TLS active\r\n"
R_STLS_LATE = b"-ERR STLS not permitted after USER, PASS, APOP or AUTH\r\n"
R_TOO_LONG = b"-ERR line too long\r\n"
R_BAD_CHAR = b"-ERR invalid character in command\r\n"
R_EMPTY = b"-ERR empty command\r\n"
R_UNKNOWN = b"-ERR unknown command or not allowed before login\r\n"
R_TOO_MANY = b"-ERR too many errors, closing\r\n"
CAPA_SYNTH_OK = b"+OK Capability list follows\r\n"

CURL = ["curl", "-sS", "--max-time", "60"]

# The session Dovecot's demo account (its password is guarded: no popsd log
# may contain it).
DEMO_PW = H.PASSWORDS["demo"]
PASS_DEMO = f"PASS {DEMO_PW}".encode()


# ====================================================================== tap

class TapConn:
    """One relayed connection: popsd (down) <-> backend (up)."""

    def __init__(self, down, up, stopping):
        self.down, self.up = down, up
        self.stopping = stopping
        self.lock = threading.Lock()
        self.to_backend = bytearray()    # what popsd sent the backend
        self.to_popsd = bytearray()      # what the backend sent popsd
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        open_from = {self.down: True, self.up: True}
        peer = {self.down: self.up, self.up: self.down}
        rec = {self.down: self.to_backend, self.up: self.to_popsd}
        try:
            while any(open_from.values()) and not self.stopping.is_set():
                socks = [s for s, o in open_from.items() if o]
                r, _, _ = select.select(socks, [], [], 0.2)
                for s in r:
                    try:
                        data = s.recv(65536)
                    except OSError:
                        data = b""
                    if data:
                        with self.lock:
                            rec[s] += data
                        with contextlib.suppress(OSError):
                            peer[s].sendall(data)
                    else:
                        open_from[s] = False
                        with contextlib.suppress(OSError):
                            peer[s].shutdown(socket.SHUT_WR)
        finally:
            for s in (self.down, self.up):
                with contextlib.suppress(OSError):
                    s.close()
            self.done.set()

    def sent(self):
        with self.lock:
            return bytes(self.to_backend)

    def received(self):
        with self.lock:
            return bytes(self.to_popsd)

    def wait_sent(self, data, timeout=10):
        """Wait until the backend was sent `data` (a substring)."""
        H.wait_until(lambda: data in self.sent(), timeout,
                     f"the backend to be sent {data!r} (got {self.sent()!r})")

    def wait_closed(self, timeout=10):
        assert self.done.wait(timeout), "tapped connection still open"


class Tap:
    """A recording TCP relay on 127.0.0.1 in front of 127.0.0.1:port."""

    def __init__(self, port):
        self.target = ("127.0.0.1", port)
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.conns = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        self.lsock.settimeout(0.2)
        while not self.stopping.is_set():
            try:
                down, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                up = socket.create_connection(self.target, timeout=10)
            except OSError:
                down.close()
                continue
            down.settimeout(None)
            up.settimeout(None)
            self.conns.append(TapConn(down, up, self.stopping))

    def conn(self, i=0, timeout=10):
        """The i-th connection popsd made through the tap."""
        H.wait_until(lambda: len(self.conns) > i, timeout, f"tap connection #{i}")
        return self.conns[i]

    def all_sent(self):
        return b"".join(c.sent() for c in self.conns)

    def close(self):
        self.stopping.set()
        self.thread.join(5)
        with contextlib.suppress(OSError):
            self.lsock.close()
        for c in self.conns:
            c.thread.join(5)


@pytest.fixture
def tap():
    """Factory: tap(port) → a started Tap; all are closed at teardown."""
    made = []

    def make(port):
        t = Tap(port)
        made.append(t)
        return t
    yield make
    for t in made:
        t.close()


# ================================================================= backends

class Peer:
    """A backend as the tests see it: where it is, the account, and the
    oracle for message contents (what poplib's retr() returns)."""

    def __init__(self, kind, port, user, password, retr, sizes, legacy=None):
        self.kind = kind
        self.port = port
        self.address = f"127.0.0.1:{port}"
        self.user = user
        self.password = password
        self._retr = retr
        self.sizes = sizes
        self.legacy = legacy

    def retr_lines(self, n):
        return self._retr[n]

    def message_crlf(self, n):
        """Message n as a POP3 client returns it: un-stuffed, CRLF."""
        return b"".join(l + b"\r\n" for l in self.retr_lines(n))

    def subject(self, n):
        for l in self.retr_lines(n):
            if l.startswith(b"Subject: "):
                return l
        raise AssertionError(f"message {n} has no Subject")


_dovecot_oracle = {}


def dovecot_peer(backend):
    """Dovecot's demo account, with the oracle read straight from Dovecot."""
    if backend.port not in _dovecot_oracle:
        c = poplib.POP3("127.0.0.1", backend.port, timeout=20)
        c.user("demo")
        c.pass_(H.PASSWORDS["demo"])
        sizes = {int(a): int(b) for a, b in (e.split() for e in c.list()[1])}
        retr = {n: c.retr(n)[1] for n in sizes}
        c.quit()
        _dovecot_oracle[backend.port] = (retr, sizes)
    retr, sizes = _dovecot_oracle[backend.port]
    return Peer("dovecot", backend.port, "demo", DEMO_PW, retr, sizes)


def legacy_peer(b):
    sizes = {n: b.list_size(n) for n in range(1, len(b.messages) + 1)}
    retr = {n: b.retr_lines(n) for n in sizes}
    return Peer(b.kind, b.port, b.user, b.password, retr, sizes, legacy=b)


@pytest.fixture
def legacy_factory(tmp_path):
    """Factory: legacy_factory(kind) → a started LegacyBackend, stopped at
    teardown (stop() fails the test if a daemon was left behind)."""
    started = []

    def make(kind):
        if not ROOT:
            pytest.skip("legacy backends need root (mount/pid namespaces)")
        b = LegacyBackend(kind, tmp_path).start()
        started.append(b)
        return b
    yield make
    for b in started:
        b.stop()


@pytest.fixture
def peer_of(backend, legacy_factory):
    """Factory: peer_of(kind) → Peer for "dovecot", "popa3d", "solid-pop3d"."""
    def make(kind):
        if kind == "dovecot":
            return dovecot_peer(backend)
        return legacy_peer(legacy_factory(kind))
    return make


# ================================================================== clients

class Client:
    """A POP3 client on a raw socket that can switch to TLS after STLS.
    Lines are read from its own buffer, so it can check that popsd sent
    nothing after "+OK Begin TLS negotiation" in the clear."""

    def __init__(self, port, host="127.0.0.1", source=None, timeout=20):
        self.sock = socket.socket()
        if source:
            self.sock.bind((source, 0))
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.local_port = self.sock.getsockname()[1]
        self.buf = b""
        self.tls = False

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError(f"connection closed (buffered {self.buf!r})")
        self.buf += data

    def readline(self):
        while b"\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    def send(self, data):
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def cmd(self, line):
        self.send((line.encode() if isinstance(line, str) else line) + b"\r\n")
        return self.readline()

    def ok(self, line):
        r = self.cmd(line)
        assert r.startswith(b"+OK"), f"{line!r} → {r!r}"
        return r

    def multiline(self):
        """The body of a multi-line answer, lines un-stuffed, without CRLF."""
        out = []
        while (line := self.readline()) != b".\r\n":
            assert line.endswith(b"\r\n"), line
            line = line[:-2]
            out.append(line[1:] if line.startswith(b".") else line)
        return out

    def raw_multiline(self):
        """A multi-line body exactly as sent, through the terminating line."""
        out = b""
        while not (out == b".\r\n" or out.endswith(b"\r\n.\r\n")):
            out += self.readline()
        return out

    def capa(self):
        r = self.cmd("CAPA")
        assert r.startswith(b"+OK"), r
        return r, self.raw_multiline()

    def starttls(self, ctx=None, hostname="localhost"):
        r = self.cmd("STLS")
        assert r == R_STLS_OK, r
        self.handshake(ctx, hostname)

    def handshake(self, ctx=None, hostname="localhost"):
        assert self.buf == b"", f"popsd sent {self.buf!r} in the clear after STLS's +OK"
        self.sock = ctx.wrap_socket(self.sock, server_hostname=hostname)
        self.tls = True

    def login(self, user, password):
        self.ok(f"USER {user}")
        return self.ok(f"PASS {password}")

    def read_to_eof(self, timeout=10):
        """Everything until the peer closes (cleanly or not)."""
        self.sock.settimeout(timeout)
        out, self.buf = self.buf, b""
        while True:
            try:
                data = self.sock.recv(65536)
            except (ssl.SSLEOFError, ConnectionResetError):
                return out
            if not data:
                return out
            out += data

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def capa_set(body):
    """CAPA body (raw, through '.') → list of capability lines."""
    lines = body.split(b"\r\n")
    assert lines[-2:] == [b".", b""], body
    return lines[:-2]


def session(p, port, **match):
    """The summary line of the session from local port `port`."""
    return p.wait_session(port=port, **match)


def assert_not_logged(p, *secrets):
    log = p.log()
    for s in secrets:
        assert s not in log, f"{s!r} appears in the popsd log"


def start(popsd, peer_or_addr, **kw):
    """A popsd with only a `listen pop3` port, in front of a Peer or an
    address (a tap's)."""
    addr = peer_or_addr if isinstance(peer_or_addr, str) else peer_or_addr.address
    return popsd(backend_addr=addr, pop3=True, pop3s=False, **kw)


def body_lf(lines):
    """The body of a message (retr lines) as a client stores it: LF ends."""
    i = lines.index(b"")
    return b"\n".join(lines[i + 1:]) + b"\n"


# ============================================ real clients over STLS (x3)

@pytest.mark.parametrize("kind", ALL_BACKENDS)
def test_openssl_s_client_starttls(kind, popsd, peer_of, certs):
    peer = peer_of(kind)
    p = start(popsd, peer)
    proc = subprocess.Popen(
        ["openssl", "s_client", "-starttls", "pop3", "-quiet", "-crlf",
         "-connect", f"127.0.0.1:{p.pop3_port}", "-CAfile", certs.ca,
         "-verify_return_error", "-verify_hostname", "localhost"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    s = H.LineReader(proc)

    def cmd(line):
        proc.stdin.write(line.encode() + b"\n")
        proc.stdin.flush()
        return s.readline()

    def multiline():
        out = []
        while (line := s.readline()) != b".\r\n":
            out.append(line[1:-2] if line.startswith(b".") else line[:-2])
        return out
    try:
        # s_client consumed the greeting and "+OK" to STLS itself: the
        # first thing it shows is the answer to our first command.
        assert cmd(f"USER {peer.user}").startswith(b"+OK")
        assert cmd(f"PASS {peer.password}").startswith(b"+OK")
        assert cmd("LIST").startswith(b"+OK")
        assert multiline() == [b"%d %d" % kv for kv in sorted(peer.sizes.items())]
        assert cmd("RETR 2").startswith(b"+OK")
        assert multiline() == peer.retr_lines(2)
        assert cmd("QUIT").startswith(b"+OK")
        assert proc.wait(timeout=10) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    s = p.wait_session(listener="pop3", login="yes")
    assert (s["stls"], s["auth_refused"], s["user"]) == ("yes", "no", peer.user), s["_line"]
    assert s["tls"].startswith("TLSv1."), s["_line"]
    assert_not_logged(p, peer.password)


@pytest.mark.parametrize("kind", ALL_BACKENDS)
def test_curl_ssl_reqd(kind, popsd, peer_of, certs):
    """curl --ssl-reqd pop3://: STLS or fail. curl picks the login itself:
    SASL PLAIN with Dovecot (after TLS its CAPA shows SASL), APOP with
    solid-pop3d (greeting timestamp), USER/PASS with popa3d."""
    peer = peer_of(kind)
    password = peer.legacy.apop_secret if kind == "solid-pop3d" else peer.password
    p = start(popsd, peer)
    url = f"pop3://{peer.user}:{password}@127.0.0.1:{p.pop3_port}"
    r = subprocess.run(CURL + ["--ssl-reqd", "--cacert", certs.ca, f"{url}/2"],
                       capture_output=True, timeout=90)
    assert r.returncode == 0, r.stderr
    assert r.stdout == peer.message_crlf(2)
    r = subprocess.run(CURL + ["--ssl-reqd", "--cacert", certs.ca, f"{url}/"],
                       capture_output=True, timeout=90)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"".join(b"%d %d\r\n" % kv for kv in sorted(peer.sizes.items()))
    H.wait_until(lambda: len([s for s in p.session_lines() if s.get("login") == "yes"]) == 2,
                 10, "two logged-in sessions")
    for s in p.session_lines():
        assert (s["listener"], s["stls"], s["login"], s["user"]) == \
            ("pop3", "yes", "yes", peer.user), s["_line"]
    assert_not_logged(p, password if kind != "dovecot" else "AGRlbW8AZGVtbw==")


@pytest.mark.parametrize("kind", ALL_BACKENDS)
def test_poplib_stls(kind, popsd, peer_of, certs):
    peer = peer_of(kind)
    p = start(popsd, peer)
    c = poplib.POP3("localhost", p.pop3_port, timeout=20)
    try:
        assert c.getwelcome().startswith(b"+OK")
        before = c.capa()                   # stls() itself checks for STLS
        assert "STLS" in before and "USER" not in before, before
        assert c.stls(certs.client_context()).startswith(b"+OK")
        assert c.sock.version().startswith("TLSv1.")
        after = c.capa()
        assert "STLS" not in after and "USER" in after, after
        c.user(peer.user)
        c.pass_(peer.password)
        assert c.stat() == (len(peer.sizes), sum(peer.sizes.values()))
        assert c.list()[1] == [b"%d %d" % kv for kv in sorted(peer.sizes.items())]
        for n in sorted(peer.sizes):
            assert c.retr(n)[1] == peer.retr_lines(n), f"message {n} differs"
        assert c.quit().startswith(b"+OK")
    finally:
        c.close()
    s = p.wait_session(listener="pop3")
    assert (s["stls"], s["login"], s["auth_refused"], s["user"]) == \
        ("yes", "yes", "no", peer.user), s["_line"]


def mpop_rc(tmp_path, port, certs, peer, auth, mbox):
    rc = tmp_path / "mpoprc"
    rc.write_text(f"""account default
host 127.0.0.1
port {port}
tls on
tls_starttls on
tls_trust_file {certs.ca}
tls_host_override localhost
auth {auth}
user {peer.user}
password {peer.password}
keep on
only_new off
delivery mbox {mbox}
""")
    rc.chmod(0o600)
    return rc


@pytest.mark.parametrize("kind", ALL_BACKENDS)
def test_mpop_starttls(kind, popsd, peer_of, certs, tmp_path):
    peer = peer_of(kind)
    p = start(popsd, peer)
    mbox = tmp_path / "mbox"
    mbox.touch()
    # Dovecot: SASL PLAIN (offered after TLS only); legacy: USER/PASS.
    rc = mpop_rc(tmp_path, p.pop3_port, certs, peer,
                 "plain" if kind == "dovecot" else "user", mbox)
    r = subprocess.run(["mpop", "-C", str(rc), "-q"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60, cwd=tmp_path)
    assert r.returncode == 0, r.stdout
    text = mbox.read_bytes()
    for n in sorted(peer.sizes):
        assert peer.subject(n) in text, n
        assert body_lf(peer.retr_lines(n)) in text, f"body of message {n} not in the mbox"
    assert text.count(b"\nFrom ") + text.startswith(b"From ") == len(peer.sizes)
    s = p.wait_session(listener="pop3")
    assert (s["stls"], s["login"], s["user"]) == ("yes", "yes", peer.user), s["_line"]


@pytest.mark.parametrize("kind", ALL_BACKENDS)
def test_fetchmail_starttls(kind, popsd, peer_of, certs, tmp_path):
    peer = peer_of(kind)
    p = start(popsd, peer)
    out = tmp_path / "delivered"
    rc = tmp_path / "fetchmailrc"
    # No "ssl": sslproto then means "STLS, required" (fetchmail >= 6.4).
    rc.write_text(f"""poll 127.0.0.1 service {p.pop3_port} protocol pop3 auth password
  user "{peer.user}" password "{peer.password}" keep fetchall
  sslproto 'tls1.2+' sslcertck sslcertfile {certs.ca} sslcommonname localhost
  mda "cat >> {out}"
""")
    rc.chmod(0o600)
    env = dict(os.environ, HOME=str(tmp_path), FETCHMAILHOME=str(tmp_path))
    # Our own PID file: as root fetchmail's default lock is the global
    # /var/run/fetchmail.pid, which a concurrent test run would hold.
    r = subprocess.run(["fetchmail", "-f", str(rc), "--nosyslog", "--nodetach", "-v",
                        "--pidfile", str(tmp_path / "fetchmail.pid")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60,
                       cwd=tmp_path, env=env)
    log = r.stdout.decode(errors="replace")
    assert r.returncode == 0, log
    assert "> STLS" in log, log
    text = out.read_bytes()
    for n in sorted(peer.sizes):
        assert peer.subject(n) in text, n
        assert body_lf(peer.retr_lines(n)) in text, f"body of message {n} not delivered"
    s = p.wait_session(listener="pop3")
    assert (s["stls"], s["login"], s["user"]) == ("yes", "yes", peer.user), s["_line"]


@pytest.mark.parametrize("kind", ["solid-pop3d", "dovecot"])
def test_apop_after_stls_greeting_unchanged(kind, popsd, peer_of, tap, certs):
    """The greeting (with its APOP timestamp) reaches the client exactly as
    the backend sent it, and APOP computed from it works after STLS."""
    peer = peer_of(kind)
    secret = peer.legacy.apop_secret if peer.legacy else peer.password
    t = tap(peer.port)
    p = start(popsd, t.address)
    with Client(p.pop3_port) as c:
        greeting = c.readline()
        conn = t.conn()
        assert greeting == conn.received()[:len(greeting)]
        assert conn.received().split(b"\n", 1)[0] + b"\n" == greeting
        ts = re.search(rb"<[^<>@]+@[^<>]+>", greeting)
        assert ts, greeting
        c.starttls(certs.client_context())
        digest = hashlib.md5(ts.group(0) + secret.encode()).hexdigest()
        apop = f"APOP {peer.user} {digest}"
        assert c.cmd(apop).startswith(b"+OK")
        assert c.cmd("LIST").startswith(b"+OK")
        assert c.multiline() == [b"%d %d" % kv for kv in sorted(peer.sizes.items())]
        assert c.cmd("RETR 3").startswith(b"+OK")
        assert c.multiline() == peer.retr_lines(3)
        assert c.cmd("QUIT").startswith(b"+OK")
        assert c.read_to_eof() == b""
    # The backend got the APOP line as the client wrote it, nothing before.
    assert conn.sent() == f"{apop}\r\nLIST\r\nRETR 3\r\nQUIT\r\n".encode()
    s = session(p, c.local_port)
    assert (s["stls"], s["login"], s["user"]) == ("yes", "yes", peer.user), s["_line"]


# ==================================================================== CAPA

def direct_capa(port):
    """The backend's own CAPA answer: (status line, capability lines)."""
    with Client(port) as c:
        c.readline()
        r, body = c.capa()
        c.cmd("QUIT")
    return r, capa_set(body)


def is_tag(line, *tags):
    return line.split(b" ")[0].upper() in tags


@pytest.mark.parametrize("require_tls", ["yes", "no"])
def test_capa_dovecot_before_and_after_tls(require_tls, popsd, backend, tap, certs):
    """Dovecot's list, rewritten: before TLS STLS is added (and, with
    require-tls yes, USER and SASL are hidden); after TLS it is Dovecot's
    own list again, without STLS. RESP-CODES and AUTH-RESP-CODE, which
    Dovecot already has, are not repeated."""
    status, dv = direct_capa(backend.port)
    assert b"USER" in dv and any(is_tag(l, b"SASL") for l in dv), dv
    assert b"RESP-CODES" in dv and b"AUTH-RESP-CODE" in dv and b"STLS" not in dv, dv
    t = tap(backend.port)
    p = start(popsd, t.address, extra=[f"require-tls {require_tls}"])
    with Client(p.pop3_port) as c:
        c.readline()
        r, body = c.capa()
        assert r == status
        want = [l for l in dv if require_tls == "no" or not is_tag(l, b"USER", b"SASL")]
        assert capa_set(body) == want + [b"STLS"]
        c.starttls(certs.client_context())
        r, body = c.capa()
        assert r == status
        assert capa_set(body) == dv
        c.ok("QUIT")
    assert t.conn().sent() == b"CAPA\r\nCAPA\r\nQUIT\r\n"


@pytest.mark.parametrize("kind", LEGACY)
@pytest.mark.parametrize("require_tls", ["yes", "no"])
def test_capa_synthesized_for_legacy(kind, require_tls, popsd, peer_of, tap, certs):
    """popa3d and solid-pop3d answer CAPA with -ERR; popsd makes up a list:
    STLS while plaintext, USER only where a login may be sent, the response
    codes popsd itself emits. The backend's -ERR never reaches the client,
    and the login works after TLS."""
    peer = peer_of(kind)
    t = tap(peer.port)
    p = start(popsd, t.address, extra=[f"require-tls {require_tls}"])
    user = b"USER\r\n" if require_tls == "no" else b""
    with Client(p.pop3_port) as c:
        c.readline()
        c.send("CAPA\r\n")
        assert c.readline() == CAPA_SYNTH_OK
        assert c.raw_multiline() == user + b"STLS\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n.\r\n"
        c.starttls(certs.client_context())
        c.send("CAPA\r\n")
        assert c.readline() == CAPA_SYNTH_OK
        assert c.raw_multiline() == b"USER\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n.\r\n"
        c.login(peer.user, peer.password)
        c.ok("QUIT")
    conn = t.conn()
    assert conn.sent() == f"CAPA\r\nCAPA\r\nUSER {peer.user}\r\nPASS {peer.password}\r\nQUIT\r\n".encode()
    # ...and the backend did answer -ERR both times.
    assert conn.received().count(b"\n-ERR") == 2, conn.received()


def test_capa_on_pop3s_port(popsd, backend, certs):
    """On a pop3s listener TLS is active: no STLS, USER and SASL shown."""
    _, dv = direct_capa(backend.port)
    p = popsd(pop3=True)
    with H.Pop3Client(p.port, certs.client_context()) as c:
        c.readline()
        assert c.cmd("CAPA").startswith(b"+OK")
        assert c.multiline().split(b"\r\n")[:-1] == dv
        c.ok("QUIT")


# ============================================================= require-tls

def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


@pytest.mark.parametrize("kind", ALL_BACKENDS)
def test_require_tls_refuses_login_forwards_nothing(kind, popsd, peer_of, tap, certs):
    """USER, PASS, APOP, AUTH (with or without an initial response) in the
    clear get popsd's "-ERR [AUTH] ... STLS ..." and never reach the
    backend (the tap's record); STLS and a real login still work after."""
    peer = peer_of(kind)
    secret = "Sekr1t-in-the-clear-77"
    t = tap(peer.port)
    p = start(popsd, t.address, extra=["max-auth-errors 20"])
    refused = [f"USER {peer.user}", f"PASS {secret}",
               f"APOP {peer.user} {hashlib.md5(secret.encode()).hexdigest()}",
               f"AUTH PLAIN {b64(chr(0) + peer.user + chr(0) + secret)}",
               "AUTH PLAIN =", "AUTH PLAIN", "AUTH LOGIN", "AUTH", f"user {peer.user}",
               f"pAsS {secret}"]
    with Client(p.pop3_port) as c:
        c.readline()
        for line in refused:
            r = c.cmd(line)
            assert r == R_TLS_REQUIRED, (line, r)
            assert b"TLS" in r and b"STLS" in r
        # In one write, too: still each refused, in order.
        c.send("".join(l + "\r\n" for l in refused))
        for line in refused:
            assert c.readline() == R_TLS_REQUIRED, line
        # A command that is forwarded: once its answer is here, anything
        # forwarded before it would be in the tap's record.
        assert c.cmd("NOOP")
        conn = t.conn()
        assert conn.sent() == b"NOOP\r\n"
        c.starttls(certs.client_context())
        c.login(peer.user, peer.password)
        c.ok("STAT")
        c.ok("QUIT")
    assert conn.sent() == (b"NOOP\r\n" + f"USER {peer.user}\r\nPASS {peer.password}\r\n"
                           "STAT\r\nQUIT\r\n".encode())
    assert secret.encode() not in t.all_sent()
    s = session(p, c.local_port)
    assert (s["stls"], s["login"], s["auth_refused"], s["user"]) == \
        ("yes", "yes", "yes", peer.user), s["_line"]
    assert_not_logged(p, secret, b64(chr(0) + peer.user + chr(0) + secret))


def test_require_tls_refusal_logged(popsd, backend, tap):
    """A session that only tried to log in in the clear: auth_refused=yes,
    login=no, stls=no, and the USER name."""
    t = tap(backend.port)
    p = start(popsd, t.address)
    with Client(p.pop3_port) as c:
        c.readline()
        assert c.cmd("USER some.body") == R_TLS_REQUIRED
        assert c.cmd("PASS Sekr1t-refused-88") == R_TLS_REQUIRED
        c.ok("QUIT")
        assert c.read_to_eof() == b""
    assert t.conn().sent() == b"QUIT\r\n"
    s = session(p, c.local_port)
    assert (s["stls"], s["login"], s["auth_refused"], s["user"], s["tls"]) == \
        ("no", "no", "yes", "some.body", "none"), s["_line"]
    assert_not_logged(p, "Sekr1t-refused-88")


# ========================================================= plaintext-allow

@pytest.mark.parametrize("allow, source, allowed", [
    ("127.0.0.1", "127.0.0.1", True),
    ("127.0.0.1", "127.0.0.2", False),          # a bare address is one host
    ("127.0.0.0/8", "127.0.0.2", True),
    ("10.0.0.0/8 ::1 127.0.0.2/32", "127.0.0.1", False),
    ("10.0.0.0/8 ::1 127.0.0.2/32", "127.0.0.2", True),
], ids=["host-in", "host-other", "cidr-in", "list-out", "list-in"])
def test_plaintext_allow(allow, source, allowed, popsd, backend, tap):
    t = tap(backend.port)
    p = start(popsd, t.address, extra=[f"plaintext-allow {allow}"])
    with Client(p.pop3_port, source=source) as c:
        c.readline()
        _, body = c.capa()
        caps = capa_set(body)
        assert b"STLS" in caps
        assert (b"USER" in caps) == allowed, caps
        if allowed:
            c.login("demo", H.PASSWORDS["demo"])
            assert c.cmd("STAT").startswith(b"+OK 3 ")
            c.ok("QUIT")
            want = b"CAPA\r\nUSER demo\r\n" + PASS_DEMO + b"\r\nSTAT\r\nQUIT\r\n"
        else:
            assert c.cmd("USER demo") == R_TLS_REQUIRED
            assert c.cmd(f"PASS {DEMO_PW}") == R_TLS_REQUIRED
            c.ok("QUIT")
            want = b"CAPA\r\nQUIT\r\n"
    assert t.conn().sent() == want
    s = session(p, c.local_port)
    assert s["client"] == source
    assert (s["login"], s["auth_refused"], s["tls"]) == \
        (("yes", "no") if allowed else ("no", "yes")) + ("none",), s["_line"]


# ======================================================== STLS injection

@pytest.mark.parametrize("kind", ALL_BACKENDS)
def test_stls_injection_discarded(kind, popsd, peer_of, tap, certs):
    """CVE-2011-0411: commands sent in the same write as STLS, before the
    client could have seen "+OK", are thrown away, not run after TLS."""
    peer = peer_of(kind)
    t = tap(peer.port)
    p = start(popsd, t.address, extra=["require-tls no"])
    with Client(p.pop3_port) as c:
        c.readline()
        c.send(b"STLS\r\nUSER evil\r\nPASS evil\r\nCAPA\r\nSTLS\r\n")
        assert c.readline() == R_STLS_OK
        c.handshake(certs.client_context())   # checks nothing else came in the clear
        # Fresh after TLS: no STLS in CAPA, and (Dovecot) no user given.
        _, body = c.capa()
        assert b"STLS" not in capa_set(body)
        if kind == "dovecot":
            r = c.cmd("PASS wrong-pass")
            assert r.startswith(b"-ERR") and b"user" in r.lower(), r
        c.login(peer.user, peer.password)
        c.ok("STAT")
        c.ok("QUIT")
    sent = t.conn().sent()
    assert b"evil" not in sent and b"STLS" not in sent, sent
    assert sent.startswith(b"CAPA\r\n"), sent
    s = session(p, c.local_port)
    assert (s["stls"], s["login"], s["user"]) == ("yes", "yes", peer.user), s["_line"]


def test_plaintext_after_stls_ok_breaks_handshake(popsd, backend, tap):
    """Plaintext after "+OK Begin TLS negotiation" is not a command: it is
    a broken handshake, and the session ends with nothing forwarded."""
    t = tap(backend.port)
    p = start(popsd, t.address, extra=["require-tls no"])
    with Client(p.pop3_port) as c:
        c.readline()
        assert c.cmd("STLS") == R_STLS_OK
        c.send(b"USER demo\r\n" + PASS_DEMO + b"\r\nQUIT\r\n")
        rest = c.read_to_eof()
        assert not rest.startswith(b"+OK") and b"-ERR" not in rest, rest
    t.conn().wait_closed()
    assert t.conn().sent() == b""
    s = session(p, c.local_port)
    assert (s["login"], s["stls"]) == ("no", "yes"), s["_line"]
    assert p.alive()


# ============================================================ STLS misuse

@pytest.mark.parametrize("kind", ["dovecot", "popa3d"])
def test_stls_twice(kind, popsd, peer_of, tap, certs):
    peer = peer_of(kind)
    t = tap(peer.port)
    p = start(popsd, t.address)
    with Client(p.pop3_port) as c:
        c.readline()
        c.starttls(certs.client_context())
        assert c.cmd("STLS") == R_STLS_ACTIVE
        assert c.cmd("stls") == R_STLS_ACTIVE
        c.login(peer.user, peer.password)
        assert c.cmd("STAT").startswith(b"+OK")
        c.ok("QUIT")
    assert t.conn().sent() == f"USER {peer.user}\r\nPASS {peer.password}\r\nSTAT\r\nQUIT\r\n".encode()


def test_stls_on_pop3s_port(popsd, backend, tap, certs):
    t = tap(backend.port)
    p = popsd(backend_addr=t.address)
    with H.Pop3Client(p.port, certs.client_context()) as c:
        c.readline()
        assert c.cmd("STLS") == R_STLS_ACTIVE
        c.ok("USER demo")
        c.ok(f"PASS {DEMO_PW}")
        assert c.cmd("STAT").startswith(b"+OK 3 ")
        c.ok("QUIT")
    assert t.conn().sent() == b"USER demo\r\n" + PASS_DEMO + b"\r\nSTAT\r\nQUIT\r\n"
    s = session(p, c.local_port)
    assert (s["listener"], s["stls"], s["login"]) == ("pop3s", "no", "yes"), s["_line"]


@pytest.mark.parametrize("kind", ["dovecot", "popa3d"])
def test_stls_after_user_forwarded(kind, popsd, peer_of, tap):
    """require-tls no: once USER reached the backend, TLS can no longer
    protect this login: STLS gets -ERR and the session goes on."""
    peer = peer_of(kind)
    t = tap(peer.port)
    p = start(popsd, t.address, extra=["require-tls no"])
    with Client(p.pop3_port) as c:
        c.readline()
        c.ok(f"USER {peer.user}")
        assert c.cmd("STLS") == R_STLS_LATE
        c.ok(f"PASS {peer.password}")
        assert c.cmd("STAT").startswith(b"+OK")
        c.ok("QUIT")
    assert t.conn().sent() == f"USER {peer.user}\r\nPASS {peer.password}\r\nSTAT\r\nQUIT\r\n".encode()
    s = session(p, c.local_port)
    assert (s["stls"], s["login"], s["tls"]) == ("no", "yes", "none"), s["_line"]


@pytest.mark.parametrize("kind", ALL_BACKENDS)
def test_pipelined_capa_stls(kind, popsd, peer_of, tap, certs):
    """"CAPA\\r\\nSTLS\\r\\n" in one write: the whole CAPA answer first, then
    "+OK", then TLS."""
    peer = peer_of(kind)
    t = tap(peer.port)
    p = start(popsd, t.address)
    with Client(p.pop3_port) as c:
        c.readline()
        c.send("CAPA\r\nSTLS\r\n")
        assert c.readline().startswith(b"+OK")
        caps = capa_set(c.raw_multiline())
        assert b"STLS" in caps and b"USER" not in caps, caps
        assert c.readline() == R_STLS_OK
        c.handshake(certs.client_context())
        _, body = c.capa()
        assert b"STLS" not in capa_set(body) and b"USER" in capa_set(body)
        c.login(peer.user, peer.password)
        assert c.cmd("LIST").startswith(b"+OK")
        assert c.multiline() == [b"%d %d" % kv for kv in sorted(peer.sizes.items())]
        c.ok("QUIT")
    assert t.conn().sent() == \
        f"CAPA\r\nCAPA\r\nUSER {peer.user}\r\nPASS {peer.password}\r\nLIST\r\nQUIT\r\n".encode()


def test_pipelined_noop_capa_stls_dovecot(popsd, backend, tap, certs):
    """Several forwarded commands before STLS in one write: their answers
    come first, in order."""
    t = tap(backend.port)
    p = start(popsd, t.address)
    with Client(p.pop3_port) as c:
        c.readline()
        c.send("NOOP\r\nCAPA\r\nNOOP\r\nSTLS\r\n")
        first = c.readline()
        assert c.readline().startswith(b"+OK")
        c.raw_multiline()
        assert c.readline() == first
        assert c.readline() == R_STLS_OK
        c.handshake(certs.client_context())
        c.login("demo", H.PASSWORDS["demo"])
        c.ok("QUIT")
    assert t.conn().sent() == b"NOOP\r\nCAPA\r\nNOOP\r\nUSER demo\r\n" + PASS_DEMO + b"\r\nQUIT\r\n"


# ================================================== SASL after TLS (Dovecot)

PLAIN_DEMO = b64(f"\0demo\0{DEMO_PW}")


def tls_session(popsd, backend, tap, certs, extra=()):
    """popsd on a pop3 port in front of a tapped Dovecot; a client past
    STLS. Returns (popsd, tap connection, client)."""
    t = tap(backend.port)
    p = start(popsd, t.address, extra=list(extra))
    c = Client(p.pop3_port)
    c.readline()
    c.starttls(certs.client_context())
    return p, t.conn(), c


def test_sasl_plain_with_continuation(popsd, backend, tap, certs):
    p, conn, c = tls_session(popsd, backend, tap, certs)
    with c:
        assert c.cmd("AUTH PLAIN") == b"+ \r\n"
        assert c.cmd(PLAIN_DEMO).startswith(b"+OK")
        assert c.cmd("STAT").startswith(b"+OK 3 ")
        c.ok("QUIT")
    assert conn.sent() == f"AUTH PLAIN\r\n{PLAIN_DEMO}\r\nSTAT\r\nQUIT\r\n".encode()
    s = session(p, c.local_port)
    assert (s["stls"], s["login"], s["user"]) == ("yes", "yes", "demo"), s["_line"]
    assert_not_logged(p, PLAIN_DEMO)


def test_sasl_plain_initial_response(popsd, backend, tap, certs):
    p, conn, c = tls_session(popsd, backend, tap, certs)
    with c:
        assert c.cmd(f"AUTH PLAIN {PLAIN_DEMO}").startswith(b"+OK")
        assert c.cmd("LIST").startswith(b"+OK")
        assert len(c.multiline()) == 3
        c.ok("QUIT")
    assert conn.sent() == f"AUTH PLAIN {PLAIN_DEMO}\r\nLIST\r\nQUIT\r\n".encode()
    s = session(p, c.local_port)
    assert (s["login"], s["user"]) == ("yes", "demo"), s["_line"]


def test_sasl_login_mechanism(popsd, backend, tap, certs):
    p, conn, c = tls_session(popsd, backend, tap, certs)
    with c:
        assert c.cmd("AUTH LOGIN") == b"+ " + b64("Username:").encode() + b"\r\n"
        assert c.cmd(b64("demo")) == b"+ " + b64("Password:").encode() + b"\r\n"
        assert c.cmd(b64(DEMO_PW)).startswith(b"+OK")
        assert c.cmd("STAT").startswith(b"+OK 3 ")
        c.ok("QUIT")
    assert conn.sent() == f"AUTH LOGIN\r\n{b64('demo')}\r\n{b64(DEMO_PW)}\r\nSTAT\r\nQUIT\r\n".encode()
    s = session(p, c.local_port)
    assert (s["login"], s["user"]) == ("yes", "demo"), s["_line"]


def test_sasl_cancel_then_user_pass(popsd, backend, tap, certs):
    p, conn, c = tls_session(popsd, backend, tap, certs)
    with c:
        assert c.cmd("AUTH PLAIN") == b"+ \r\n"
        r = c.cmd("*")
        assert r.startswith(b"-ERR"), r
        # The exchange is over: the next line is a command again.
        assert c.cmd("AUTH") == b"+OK\r\n"
        mechs = c.multiline()
        assert b"PLAIN" in mechs and b"LOGIN" in mechs, mechs
        c.login("demo", H.PASSWORDS["demo"])
        c.ok("QUIT")
    assert conn.sent() == b"AUTH PLAIN\r\n*\r\nAUTH\r\nUSER demo\r\n" + PASS_DEMO + b"\r\nQUIT\r\n"
    s = session(p, c.local_port)
    assert (s["login"], s["user"]) == ("yes", "demo"), s["_line"]


@pytest.mark.parametrize("bound", [None, 256])
def test_sasl_response_bound(bound, popsd, backend, tap, certs):
    """A SASL response line has its own bound (sasl-line-max, default 8192):
    a 301-octet response goes through by default; over the bound it is
    replaced by "*" (the client then gets the backend's one -ERR). A
    response that is not base64 is replaced by "*" too."""
    extra = [f"sasl-line-max {bound}"] if bound else []
    p, conn, c = tls_session(popsd, backend, tap, certs, extra + ["max-auth-errors 10"])
    long = b64(b"\0demo\0" + b"x" * 215)
    assert len(long) + 2 == 298
    with c:
        assert c.cmd("AUTH PLAIN") == b"+ \r\n"
        r = c.cmd(long)
        assert r.startswith(b"-ERR"), r
        assert c.cmd("AUTH PLAIN") == b"+ \r\n"
        r = c.cmd("not base64!")
        assert r.startswith(b"-ERR"), r
        c.login("demo", H.PASSWORDS["demo"])
        c.ok("QUIT")
    forwarded = long.encode() if bound is None else b"*"
    assert conn.sent() == (b"AUTH PLAIN\r\n" + forwarded + b"\r\nAUTH PLAIN\r\n*\r\n"
                           b"USER demo\r\n" + PASS_DEMO + b"\r\nQUIT\r\n")


def test_auth_initial_response_over_255_refused(popsd, backend, tap, certs):
    """RFC 5034 §4: an AUTH command with its initial response is still a
    command line, bound to 255 octets; longer is refused, not forwarded."""
    p, conn, c = tls_session(popsd, backend, tap, certs)
    ir = b64(b"\0demo\0" + b"x" * 200)
    with c:
        line = f"AUTH PLAIN {ir}"
        assert len(line) + 2 > 255
        assert c.cmd(line) == R_TOO_LONG
        c.login("demo", H.PASSWORDS["demo"])
        c.ok("QUIT")
    assert conn.sent() == b"USER demo\r\n" + PASS_DEMO + b"\r\nQUIT\r\n"


# ================================================================== shield

@pytest.mark.parametrize("tls", [False, True], ids=["plain", "stls"])
def test_line_bound_255(tls, popsd, backend, tap, certs):
    """RFC 2449 §4: 255 octets with CRLF are a command; 256 are refused
    and never reach the backend. With a bare LF the bound still counts
    the CRLF the line would be forwarded with. (LANG: a command with an
    argument that is no login, so that require-tls does not stop it.)"""
    t = tap(backend.port)
    p = start(popsd, t.address, extra=["max-auth-errors 10"])
    ok255 = b"LANG " + b"a" * 248 + b"\r\n"
    long256 = b"LANG " + b"b" * 249 + b"\r\n"
    lf255 = b"LANG " + b"c" * 249 + b"\n"
    assert (len(ok255), len(long256), len(lf255)) == (255, 256, 255)
    with Client(p.pop3_port) as c:
        c.readline()
        if tls:
            c.starttls(certs.client_context())
        c.send(ok255)
        r = c.readline()
        assert r != R_TOO_LONG and r.startswith((b"+OK", b"-ERR")), r
        c.send(long256)
        assert c.readline() == R_TOO_LONG
        c.send(lf255)
        assert c.readline() == R_TOO_LONG
        c.ok("QUIT")
    assert t.conn().sent() == ok255 + b"QUIT\r\n"


def test_long_line_dropped_as_it_arrives(popsd, backend, tap):
    """An over-long line is refused as soon as 255 octets came without LF;
    its rest, however long, is dropped through its LF, with no second
    error; the next line is a command again."""
    t = tap(backend.port)
    p = start(popsd, t.address)
    with Client(p.pop3_port) as c:
        c.readline()
        c.send(b"USER " + b"u" * 295)
        assert c.readline() == R_TOO_LONG            # before any LF was sent
        c.send(b"v" * 5000)
        c.send(b"w" * 300 + b"\r\n")
        _, body = c.capa()
        assert b"STLS" in capa_set(body)
        c.ok("QUIT")
    assert t.conn().sent() == b"CAPA\r\nQUIT\r\n"
    s = session(p, c.local_port)
    assert (s["auth_refused"], s["user"]) == ("no", "-"), s["_line"]


BAD_LINES = [b"NOOP a\x00b", b"\x00", b"NOOP \x01", b"NO\rOP", b"NOOP\r", b"NOOP \x1b[2J",
             b"NOOP \x7f", b"NOOP\tx", b"USER demo\x00", b"CAPA\x0b", b"QUIT\x00"]


def test_control_characters_refused(popsd, backend, tap):
    """NUL, other C0 controls, a lone CR and DEL are refused with -ERR
    (not counted as unknown commands) and never reach the backend; an
    empty line too. 8-bit text is not a control character."""
    t = tap(backend.port)
    p = start(popsd, t.address, extra=["max-auth-errors 20"])
    with Client(p.pop3_port) as c:
        c.readline()
        for line in BAD_LINES:
            assert c.cmd(line) == R_BAD_CHAR, line
        assert c.cmd(b"") == R_EMPTY
        c.send(b"\n")
        assert c.readline() == R_EMPTY
        r = c.cmd("LANG caf\xc3\xa9".encode("latin-1"))
        assert r.startswith((b"+OK", b"-ERR")) and r != R_BAD_CHAR, r
        c.ok("QUIT")
    assert t.conn().sent() == b"LANG caf\xc3\xa9\r\nQUIT\r\n"


def test_commands_not_for_authorization_not_forwarded(popsd, backend, tap):
    """Well-formed commands that do not belong before login (including
    Dovecot's XCLIENT, which would let a client claim another address)
    get popsd's -ERR and never reach the backend."""
    t = tap(backend.port)
    p = start(popsd, t.address, extra=["max-auth-errors 20"])
    with Client(p.pop3_port) as c:
        c.readline()
        for line in ["LIST", "RETR 1", "DELE 1", "TOP 1 0", "UIDL", "STAT", "RSET",
                     "XCLIENT ADDR=10.9.8.7 LOGIN=demo", "ID", "STARTTLS"]:
            assert c.cmd(line) == R_UNKNOWN, line
        c.ok("QUIT")
    assert t.conn().sent() == b"QUIT\r\n"


@pytest.mark.parametrize("kind", ["dovecot", "solid-pop3d"])
def test_bare_lf_forwarded_as_crlf(kind, popsd, peer_of, tap, certs):
    """Bare-LF command lines are taken and forwarded with CRLF. solid-pop3d
    does not answer LF-only lines at all: through popsd it logs in."""
    peer = peer_of(kind)
    t = tap(peer.port)
    p = start(popsd, t.address)
    with Client(p.pop3_port) as c:
        c.readline()
        c.send("CAPA\n")
        assert c.readline().startswith(b"+OK")
        c.raw_multiline()
        c.send("STLS\n")
        assert c.readline() == R_STLS_OK
        c.handshake(certs.client_context())
        c.send(f"USER {peer.user}\n")
        assert c.readline().startswith(b"+OK")
        c.send(f"PASS {peer.password}\n")
        assert c.readline().startswith(b"+OK")
        # After login popsd only splices: bytes go as they are, so CRLF.
        assert c.cmd("STAT").startswith(b"+OK")
        c.ok("QUIT")
    assert t.conn().sent() == \
        f"CAPA\r\nUSER {peer.user}\r\nPASS {peer.password}\r\nSTAT\r\nQUIT\r\n".encode()


@pytest.mark.parametrize("limit", [None, 1, 5])
def test_max_auth_errors_closes(limit, popsd, backend, tap):
    """After max-auth-errors malformed lines (default 3) popsd says
    "-ERR too many errors, closing", closes, and logs why. Lines pipelined
    after the last one are not acted on."""
    n = limit or 3
    t = tap(backend.port)
    p = start(popsd, t.address, extra=[f"max-auth-errors {limit}"] if limit else [])
    with Client(p.pop3_port) as c:
        c.readline()
        c.send(b"NOOP \x01\r\n" * n + b"QUIT\r\nCAPA\r\n")
        for _ in range(n - 1):
            assert c.readline() == R_BAD_CHAR
        assert c.readline() == R_TOO_MANY
        assert c.read_to_eof() == b""
    t.conn().wait_closed()
    assert t.conn().sent() == b""
    s = session(p, c.local_port)
    assert s["reason"] == "too-many-errors", s["_line"]
    assert s["login"] == "no"


def test_max_auth_errors_after_stls(popsd, backend, tap, certs):
    p, conn, c = tls_session(popsd, backend, tap, certs, ["max-auth-errors 2"])
    with c:
        c.send(b"USER " + b"x" * 300 + b"\r\n")
        assert c.readline() == R_TOO_LONG
        c.send(b"USER demo\x00\r\n")
        assert c.readline() == R_TOO_MANY
        assert c.read_to_eof() == b""
    conn.wait_closed()
    assert conn.sent() == b""
    s = session(p, c.local_port)
    assert (s["reason"], s["stls"]) == ("too-many-errors", "yes"), s["_line"]


# =============================================== switch to splice at login

@pytest.mark.parametrize("kind", ALL_BACKENDS)
def test_pipelined_login_switches_to_splice(kind, popsd, peer_of, tap, certs):
    """USER, PASS and transaction commands in ONE write after TLS: popsd
    holds what follows PASS until the backend's "+OK", then splices, so the
    backend gets every command once, in order. (solid-pop3d, which drops
    commands that arrive with PASS, works through popsd.)"""
    peer = peer_of(kind)
    t = tap(peer.port)
    p = start(popsd, t.address)
    with Client(p.pop3_port) as c:
        c.readline()
        c.starttls(certs.client_context())
        pipeline = (f"USER {peer.user}\r\nPASS {peer.password}\r\nSTAT\r\nRETR 2\r\n"
                    "LIST 1\r\nQUIT\r\n")
        c.send(pipeline)
        assert c.readline().startswith(b"+OK")
        assert c.readline().startswith(b"+OK")
        assert c.readline().startswith(b"+OK %d %d" % (len(peer.sizes), sum(peer.sizes.values())))
        assert c.readline().startswith(b"+OK")
        assert c.multiline() == peer.retr_lines(2)
        assert c.readline().startswith(b"+OK 1 %d" % peer.sizes[1])
        assert c.readline().startswith(b"+OK")
        assert c.read_to_eof() == b""
    assert t.conn().sent() == pipeline.encode()
    s = session(p, c.local_port)
    assert (s["stls"], s["login"], s["user"]) == ("yes", "yes", peer.user), s["_line"]


def test_big_retr_over_stls_sha256(popsd, backend, certs):
    """~100 MiB (the session's big message) through STLS and the splice,
    by curl --ssl-reqd: octet count and SHA-256 of what curl returns."""
    p = start(popsd, backend.address)
    c = poplib.POP3("localhost", p.pop3_port, timeout=20)
    c.stls(certs.client_context())
    c.user("big")
    c.pass_(H.PASSWORDS["big"])
    sizes = {int(n): int(sz) for n, sz in (e.split() for e in c.list()[1])}
    c.quit()
    n = [k for k, v in sizes.items() if v == backend.big_wire]
    assert n, f"no message of {backend.big_wire} octets in {sizes}"
    proc = subprocess.Popen(CURL + ["--ssl-reqd", "--cacert", certs.ca,
                                    f"pop3://big:{H.PASSWORDS['big']}@127.0.0.1:{p.pop3_port}/{n[0]}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    h = hashlib.sha256()
    total = 0
    while chunk := proc.stdout.read(1 << 20):
        h.update(chunk)
        total += len(chunk)
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 0, err
    assert total == backend.big_wire
    assert h.hexdigest() == backend.big_sha256
    H.wait_until(lambda: len(p.session_lines()) == 2, 10, "two session lines")
    s = max(p.session_lines(), key=lambda d: int(d["to_client"]))
    assert (s["listener"], s["stls"], s["login"], s["auth_refused"], s["user"]) == \
        ("pop3", "yes", "yes", "no", "big"), s["_line"]
    assert int(s["to_client"]) > backend.big_wire


# ============================================================ log secrets

def test_summary_and_no_secret_logged(popsd, backend, tap, certs):
    """One session that is refused in the clear, then fails three ways
    after STLS, then logs in: its summary line says stls=yes login=yes
    auth_refused=yes user="demo", and no password (nor its base64) is
    anywhere in popsd's log, debug lines included."""
    secrets = [f"Sekr1t-{i}-{os.getpid()}" for i in range(5)]
    plain = [b64(f"\0demo\0{s}") for s in secrets]
    t = tap(backend.port)
    p = start(popsd, t.address, verbose=True, extra=["max-auth-errors 10"])
    with Client(p.pop3_port) as c:
        c.readline()
        assert c.cmd(f"PASS {secrets[0]}") == R_TLS_REQUIRED
        assert c.cmd(f"AUTH PLAIN {plain[1]}") == R_TLS_REQUIRED
        c.starttls(certs.client_context())
        c.ok("USER demo")
        assert c.cmd(f"PASS {secrets[2]}").startswith(b"-ERR")
        assert c.cmd("AUTH PLAIN") == b"+ \r\n"
        assert c.cmd(plain[3]).startswith(b"-ERR")
        assert c.cmd("AUTH LOGIN").startswith(b"+ ")
        assert c.cmd(b64("demo")).startswith(b"+ ")
        assert c.cmd(b64(secrets[4])).startswith(b"-ERR")
        c.login("demo", H.PASSWORDS["demo"])
        c.ok("QUIT")
    s = session(p, c.local_port)
    assert (s["listener"], s["stls"], s["login"], s["auth_refused"], s["user"]) == \
        ("pop3", "yes", "yes", "yes", "demo"), s["_line"]
    assert s["tls"].startswith("TLSv1.") and s["cipher"] != "none", s["_line"]
    assert_not_logged(p, *secrets, *plain, b64(secrets[4]))
    sent = t.conn().sent()
    assert secrets[0].encode() not in sent and plain[1].encode() not in sent
    assert secrets[2].encode() in sent        # the tap does see what was allowed


# ===================================== a backend that advertises STLS itself

class CapaBackend:
    """A scripted POP3 backend whose CAPA lists STLS (and mixes case and
    line endings), to see popsd remove the backend's STLS line."""

    CAPA = (b"+OK here they are\r\nTOP\nstls\r\nUSER\r\nSASL PLAIN\r\nSTLS x\r\n"
            b"UIDL\n.\r\n")

    def __init__(self):
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(4)
        self.port = self.lsock.getsockname()[1]
        self.received = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.lsock.accept()
                with conn, conn.makefile("rb") as f:
                    conn.sendall(b"+OK fake ready\r\n")
                    for line in f:
                        self.received.append(line)
                        if line.upper().startswith(b"CAPA"):
                            conn.sendall(self.CAPA)
                        elif line.upper().startswith(b"QUIT"):
                            conn.sendall(b"+OK bye\r\n")
                            break
                        else:
                            conn.sendall(b"-ERR no\r\n")

    def close(self):
        with contextlib.suppress(OSError):
            self.lsock.shutdown(socket.SHUT_RDWR)
        self.lsock.close()
        self.thread.join(5)


def test_backend_stls_line_removed(popsd, certs):
    """The backend's own STLS lines (any case, with arguments) are dropped:
    popsd's one STLS is added while plaintext; CAPA lines all end in CRLF."""
    b = CapaBackend()
    try:
        p = start(popsd, f"127.0.0.1:{b.port}")
        with Client(p.pop3_port) as c:
            assert c.readline() == b"+OK fake ready\r\n"
            r, body = c.capa()
            assert r == b"+OK here they are\r\n"
            assert body == b"TOP\r\nUIDL\r\nSTLS\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n.\r\n"
            c.starttls(certs.client_context())
            r, body = c.capa()
            assert body == (b"TOP\r\nUSER\r\nSASL PLAIN\r\nUIDL\r\nRESP-CODES\r\n"
                            b"AUTH-RESP-CODE\r\n.\r\n")
            c.ok("QUIT")
        assert b.received == [b"CAPA\r\n", b"CAPA\r\n", b"QUIT\r\n"]
    finally:
        b.close()


def test_failed_logins_count_toward_max_auth_errors(popsd, backend, tap, certs):
    """A connection is no free password-guessing channel: the backend's
    -ERR to PASS counts toward max-auth-errors."""
    p, conn, c = tls_session(popsd, backend, tap, certs, ["max-auth-errors 2"])
    with c:
        for _ in range(2):
            c.ok("USER demo")
            r = c.cmd("PASS wrong-password")
            assert r.startswith(b"-ERR"), r
        c.send("QUIT\r\n")
        rest = c.read_to_eof()
    # The second failure was the last one allowed: popsd says so and closes.
    assert rest == b"-ERR too many errors, closing\r\n", rest
    s = session(p, c.local_port)
    assert s["reason"] == "too-many-errors", s["_line"]


def test_user_from_the_clear_forgotten_after_tls(popsd, backend, tap, certs):
    """Nothing learned in the clear carries over TLS (RFC 2595 §4): a
    refused USER name is not the session's user once STLS happened; the
    refusal itself is still logged."""
    t = tap(backend.port)
    p = start(popsd, t.address)
    with Client(p.pop3_port) as c:
        c.readline()
        assert c.cmd("USER mallory") == R_TLS_REQUIRED
        c.starttls(certs.client_context())
        c.ok("QUIT")
    assert t.conn().sent() == b"QUIT\r\n"
    s = session(p, c.local_port)
    assert (s["stls"], s["auth_refused"], s["user"], s["login"]) == \
        ("yes", "yes", "-", "no"), s["_line"]


# ============= issue 13: arguments, names from passwords, error counting

R_NO_ARG = b"-ERR syntax error: this command takes no argument\r\n"
R_BAD_ARGS = b"-ERR syntax error in arguments\r\n"


@pytest.mark.parametrize("kind", ALL_BACKENDS)
def test_arguments_not_smuggled(kind, popsd, peer_of, tap, certs):
    """Only what a command's syntax allows reaches the backend (issue 13
    items 6, 7): a CAPA padded so that a daemon splitting long lines would
    find "PASS guess" in its tail, words after NOOP, QUIT and STLS, a
    second word after USER get popsd's -ERR and never reach the backend
    (the tap's record); the same commands without them still work."""
    peer = peer_of(kind)
    t = tap(peer.port)
    p = start(popsd, t.address, extra=["max-auth-errors 10"])
    with Client(p.pop3_port) as c:
        c.readline()
        assert c.cmd("CAPA" + " " * 200 + "PASS guess") == R_NO_ARG
        assert c.cmd("NOOP " + "x" * 100 + " USER root") == R_NO_ARG
        assert c.cmd("QUIT now") == R_NO_ARG
        assert c.cmd("STLS now") == R_NO_ARG         # RFC 2595 §4
        assert c.cmd(f"USER {peer.user} PASS guess") == R_BAD_ARGS
        c.starttls(certs.client_context())
        assert c.cmd("CAPA x") == R_NO_ARG
        assert c.cmd(f"USER {peer.user} x") == R_BAD_ARGS
        c.ok(f"USER {peer.user}")
        c.ok(f"PASS {peer.password}")
        assert c.cmd("STAT").startswith(b"+OK ")
        c.ok("QUIT")
    assert t.conn().sent() == \
        f"USER {peer.user}\r\nPASS {peer.password}\r\nSTAT\r\nQUIT\r\n".encode()
    s = session(p, c.local_port)
    assert (s["stls"], s["login"], s["user"]) == ("yes", "yes", peer.user), s["_line"]


def test_password_never_logged_as_user(popsd, backend, certs):
    """The log's user= never holds a password (issue 13 item 4): an AUTH
    PLAIN message with one NUL ("demo NUL password": what follows the NUL
    is the password) and an APOP or USER line that is not well formed give
    user="-". The password guard (conftest.py) also fails the test if the
    password is anywhere in the log."""
    p = popsd()
    one_nul = b64(f"demo\0{DEMO_PW}")
    for lines in ([f"AUTH PLAIN {one_nul}"], ["AUTH PLAIN", one_nul],
                  [f"APOP {DEMO_PW}"], [f"USER {DEMO_PW} {DEMO_PW}"]):
        with H.Pop3Client(p.port, certs.client_context()) as c:
            c.readline()
            for line in lines:
                r = c.cmd(line)
            assert r.startswith(b"-ERR"), (lines, r)
            c.ok("QUIT")
        s = p.wait_session(port=c.local_port)
        assert (s["login"], s["user"]) == ("no", "-"), (lines, s["_line"])
    assert H.logged_secrets(p.log()) == []


def test_sasl_login_empty_name_password_not_logged(popsd, certs):
    """SASL LOGIN whose first response (the name) is empty: the second is
    the password, and it must not be taken for the name (issue 13 item 4).
    Dovecot refuses an empty name at once, so a scripted server that asks
    for the password anyway stands in for a backend that does."""
    secret = f"Login-Pw-{os.getpid()}"
    H.guard_secret(secret)
    answers = {b"AUTH LOGIN": b"+ " + b64("Username:").encode(),
               b"": b"+ " + b64("Password:").encode(),
               b64(secret).encode(): b"-ERR [AUTH] failed", b"QUIT": b"+OK bye"}

    def handler(conn):
        conn.send(fakepop.GREETING)
        while (line := conn.readline()):
            conn.send(answers.get(line.rstrip(b"\r\n"), b"-ERR what?") + b"\r\n")
            if line.startswith(b"QUIT"):
                conn.close()
                return

    be = fakepop.ScriptedBackend(handler)
    try:
        p = popsd(backend_addr=be.address)
        with H.Pop3Client(p.port, certs.client_context()) as c:
            c.readline()
            assert c.cmd("AUTH LOGIN").startswith(b"+ ")
            assert c.cmd("").startswith(b"+ ")
            assert c.cmd(b64(secret)).startswith(b"-ERR [AUTH]")
            c.ok("QUIT")
        s = p.wait_session(port=c.local_port)
        assert s["user"] == "-", s["_line"]
        assert H.logged_secrets(p.log()) == []
    finally:
        be.close()


def test_cancel_and_bad_response_do_not_close(popsd, backend, tap, certs):
    """max-auth-errors counts each failed login once and a cancel not at
    all (issue 13 item 8): under the default 3, a client's "*", a SASL
    response popsd refuses (it sends "*" for it) and a real failed login
    leave the session open for a good login. Before, this counted 1 + 2 +
    1 and closed."""
    p, conn, c = tls_session(popsd, backend, tap, certs)
    with c:
        assert c.cmd("AUTH PLAIN") == b"+ \r\n"
        assert c.cmd("*").startswith(b"-ERR")
        assert c.cmd("AUTH PLAIN") == b"+ \r\n"
        assert c.cmd("not base64!").startswith(b"-ERR")
        assert c.cmd(f"AUTH PLAIN {b64(chr(0) + 'demo' + chr(0) + 'wrong-pw')}").startswith(b"-ERR")
        c.login("demo", DEMO_PW)
        c.ok("QUIT")
    s = session(p, c.local_port)
    assert (s["login"], s["user"]) == ("yes", "demo"), s["_line"]
    assert s["reason"] != "too-many-errors", s["_line"]


def test_password_guard_finds_passwords():
    """The popsd fixture's guard (issue 13 item 4) finds a test password
    in a log in the forms a leak would take, and not a user name."""
    assert H.logged_secrets(f'session=1 user="{DEMO_PW}" reason=x') == [DEMO_PW]
    assert H.logged_secrets(f"debug: {b64(DEMO_PW)}") == [DEMO_PW]
    assert H.logged_secrets(f"debug: {PLAIN_DEMO}") == [DEMO_PW]
    assert H.logged_secrets('session=1 user="demo" reason=x') == []
