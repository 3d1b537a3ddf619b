"""Fault injection (issue 7): what a client sees, and what popsd logs, when
the backend dies or misbehaves, when a client resets or stalls at every
stage, and when popsd runs out of file descriptors.

Backends: the shared Dovecot where a real server can produce the fault
(its pop3 process killed mid-RETR), otherwise a scripted fake backend
(fakepop.ScriptedBackend) that does exactly the wrong thing on cue. Every
test bounds the time it waits with a deadline and asserts: the client's
connection ends (or gets "-ERR [SYS/TEMP]") within the configured timeout
plus slack, the session's summary line names the reason, popsd lets go of
the backend connection, and popsd keeps serving other sessions."""

import contextlib
import os
import poplib
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time

import pytest

import fakepop
import popsd_harness as H

SLACK = 4.0     # seconds allowed past a timeout (timer + scheduling + TLS)


# ---------------------------------------------------------------- helpers

def read_until_end(c, timeout):
    """Read from a Pop3Client until the connection ends. Returns (bytes,
    how): how is "eof" (clean; close_notify under TLS), "eof-no-notify"
    (TCP FIN without close_notify), or "reset". Fails if it does not end
    within timeout seconds."""
    c.sock.settimeout(timeout)
    out = bytearray()
    deadline = time.monotonic() + timeout
    while True:
        if time.monotonic() > deadline:
            raise AssertionError(f"connection still open after {timeout}s ({len(out)} bytes read)")
        try:
            chunk = c.f.read1(65536)
        except ssl.SSLEOFError:
            return bytes(out), "eof-no-notify"
        except (ConnectionResetError, BrokenPipeError):
            return bytes(out), "reset"
        except socket.timeout:
            raise AssertionError(f"connection still open after {timeout}s "
                                 f"({len(out)} bytes read)") from None
        except ssl.SSLError as e:       # e.g. a fatal alert after a reset
            return bytes(out), f"tls-error {e.reason}"
        if not chunk:
            return bytes(out), "eof"
        out += chunk


def raw_ends_within(s, timeout):
    """True when the peer of raw socket s closes (EOF or reset) within
    timeout seconds; whatever it sends before is read and returned too."""
    s.settimeout(timeout)
    got = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            b = s.recv(65536)
            if not b:
                return True, got
            got += b
    except ConnectionResetError:
        return True, got
    except socket.timeout:
        pass
    return False, got


def rst(sock, *files):
    fakepop.rst_close(sock, *files)


def good_session(p, certs):
    """A complete pop3s session against Dovecot: login, STAT, QUIT."""
    c = poplib.POP3_SSL("127.0.0.1", p.port, context=certs.client_context(), timeout=20)
    c.user("demo")
    c.pass_(H.PASSWORDS["demo"])
    assert c.stat()[0] == 3
    assert c.quit().startswith(b"+OK")


class Background:
    """Run fn in a thread; .result() re-raises its exception."""

    def __init__(self, fn, *args):
        self.exc = None
        self.value = None
        self.t = threading.Thread(target=self._run, args=(fn,) + args, daemon=True)
        self.t.start()

    def _run(self, fn, *args):
        try:
            self.value = fn(*args)
        except BaseException as e:      # noqa: BLE001 — re-raised in result()
            self.exc = e

    def result(self, timeout=60):
        self.t.join(timeout)
        assert not self.t.is_alive(), "background task did not finish"
        if self.exc:
            raise self.exc
        return self.value


def retr_handler(size, then):
    """A fake backend that logs anyone in and answers RETR with "+OK" and
    `size` bytes of body, then does then(conn)."""
    body = fakepop.message_bytes(size)

    def handler(c):
        verb, _ = fakepop.pop3_until(c, {"RETR"})
        if verb != "RETR":
            return
        c.send(b"+OK %d octets\r\n" % len(body))
        then(c, body)
    return handler


# ---------------------------------------------------------------- backend dies

@pytest.mark.parametrize("death", ["fin", "rst"])
def test_backend_dies_mid_retr(popsd, certs, death):
    """The backend sends a quarter of a 4 MiB message and dies (a close,
    or a reset). The client's connection ends at once (no hang) with the
    message visibly truncated, and the session is logged with the reason."""
    def then(c, body):
        c.stream(body[:len(body) // 4])
        c.close(rst=death == "rst")
    be = fakepop.ScriptedBackend(retr_handler(4 << 20, then))
    try:
        p = popsd(backend_addr=be.address)
        with H.Pop3Client(p.port, certs.client_context()) as c:
            c.login("user", "secret")
            c.send("RETR 1\r\n")
            assert c.readline().startswith(b"+OK")
            t0 = time.monotonic()
            got, how = read_until_end(c, 15)
            elapsed = time.monotonic() - t0
        assert 0 < len(got) < 4 << 20, len(got)
        assert not got.endswith(b"\r\n.\r\n"), "a truncated message must not look complete"
        s = p.wait_session(port=c.local_port)
        print(f"backend {death}: client read {len(got)} bytes, end={how} after "
              f"{elapsed:.2f}s; {s['_line']}")
        assert s["login"] == "yes"
        assert s["reason"] in ("backend-closed", "backend-error"), s["_line"]
        if death == "fin":
            # Everything popsd got was relayed, then a clean TLS close.
            assert how == "eof", how
            assert s["reason"] == "backend-closed", s["_line"]
        assert p.alive()
    finally:
        be.close()


def dovecot_pop3_pids(master):
    """PIDs of Dovecot's pop3 (mail) processes: children of the master."""
    out = set()
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError):
            with open(f"/proc/{d}/stat") as f:
                head, rest = f.read().rsplit(")", 1)
            comm = head.split("(", 1)[1]
            if comm == "pop3" and int(rest.split()[1]) == master and H.pid_alive(int(d)):
                out.add(int(d))
    return out


def test_dovecot_pop3_killed_mid_retr(popsd, certs, backend):
    """A real backend dies: Dovecot's pop3 process serving this session is
    SIGKILLed while it sends the ~100 MiB message. The client's connection
    ends within seconds, short of the message, and the session is logged."""
    p = popsd()
    before = dovecot_pop3_pids(backend.dovecot.pid)
    with H.Pop3Client(p.port, certs.client_context()) as c:
        c.login("big", H.PASSWORDS["big"])
        new = H.wait_until(lambda: dovecot_pop3_pids(backend.dovecot.pid) - before, 10,
                           "Dovecot's pop3 process for this session")
        assert len(new) == 1, new
        victim = new.pop()
        c.send("LIST\r\n")
        assert c.readline().startswith(b"+OK")
        sizes = dict(line.split() for line in c.multiline().decode().splitlines())
        n = [k for k, v in sizes.items() if int(v) == backend.big_wire][0]
        c.send(f"RETR {n}\r\n")
        assert c.readline().startswith(b"+OK")
        first = c.f.read(1 << 20)
        assert len(first) == 1 << 20
        os.kill(victim, signal.SIGKILL)
        t0 = time.monotonic()
        rest, how = read_until_end(c, 20)
        elapsed = time.monotonic() - t0
    total = len(first) + len(rest)
    assert total < backend.big_wire, "the whole message arrived: the kill came too late"
    s = p.wait_session(port=c.local_port)
    print(f"pop3 killed: client read {total} of {backend.big_wire} bytes, end={how} "
          f"{elapsed:.2f}s after the kill; {s['_line']}")
    assert s["reason"] in ("backend-closed", "backend-error"), s["_line"]
    assert p.alive()
    good_session(p, certs)


# ---------------------------------------------------------------- backend misbehaves

def be_silent(c):
    c.wait_peer_gone(60)


def be_garbage_greeting(c):
    c.send(b"\x16\x03\x01\x00\x05garbage \xff\xfe\x00 not pop3\r\n")
    c.wait_peer_gone(60)


def be_long_greeting(c):
    c.send(b"+OK " + b"x" * (100 * 1024) + b"\r\n")
    c.wait_peer_gone(60)


def be_long_answer(c):
    verb, _ = fakepop.pop3_until(c, {"CAPA"})
    if verb:
        c.stream(b"+OK " + b"y" * (100 * 1024) + b"\r\n")
        c.wait_peer_gone(60)


BAD_BACKENDS = {"silent": be_silent, "garbage-greeting": be_garbage_greeting,
                "100KiB-greeting": be_long_greeting, "100KiB-answer": be_long_answer}


@pytest.mark.parametrize("listener", ["pop3s", "pop3"])
@pytest.mark.parametrize("bad", list(BAD_BACKENDS))
def test_backend_misbehaves_bounded(popsd, certs, bad, listener):
    """A backend that never greets, greets with something that is not
    POP3, or sends a 100 KiB line: within "timeout connect" (2s) plus
    slack the client gets "-ERR [SYS/TEMP] ..." and a close, or just the
    close; never the garbage; and popsd closes its backend connection."""
    be = fakepop.ScriptedBackend(BAD_BACKENDS[bad], timeout=60)
    try:
        p = popsd(backend_addr=be.address, pop3=True, timeouts={"connect": "2s"})
        port = p.port if listener == "pop3s" else p.pop3_port
        ctx = certs.client_context() if listener == "pop3s" else None
        t0 = time.monotonic()
        with H.Pop3Client(port, ctx) as c:
            if bad == "100KiB-answer":
                # CAPA: forwarded on either listener, whatever the TLS policy.
                assert c.readline() == fakepop.GREETING
                c.send("CAPA\r\n")
            first = c.readline()
            rest, how = read_until_end(c, 2 + SLACK)
            elapsed = time.monotonic() - t0
        s = p.wait_session(port=c.local_port)
        print(f"{bad} on {listener}: client got {first[:60]!r} + {len(rest)} bytes, "
              f"end={how}, {elapsed:.2f}s; {s['_line']}")
        assert first == b"" or first.startswith(b"-ERR [SYS/TEMP]"), first[:200]
        assert rest == b"", rest[:200]
        assert elapsed < 2 + SLACK
        # popsd ended it, for a reason of its own (not the client leaving).
        want = {"silent": {"backend-silent"}, "100KiB-greeting": {"backend-line-too-long"},
                "100KiB-answer": {"backend-line-too-long"}}.get(bad)
        if want:
            assert s["reason"] in want, s["_line"]
        else:
            assert s["reason"] != "client-closed", s["_line"]
        conn = be.wait_conns(1)
        assert conn.wait_peer_gone(10), "popsd kept its backend connection open"
        assert p.alive()
    finally:
        be.close()


# ---------------------------------------------------------------- client resets

def test_client_reset_mid_handshake_never_reaches_backend(popsd, certs):
    """A pop3s client that sends its ClientHello and resets: the session is
    logged, and popsd never connected to the backend for it."""
    be = fakepop.ScriptedBackend(lambda c: fakepop.pop3_until(c, set()))
    try:
        p = popsd(backend_addr=be.address)
        locals_ = []
        for _ in range(3):
            s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
            locals_.append(s.getsockname()[1])
            s.sendall(H.client_hello())
            assert s.recv(1)            # the ServerHello is on its way
            rst(s)
        for port in locals_:
            line = p.wait_session(port=port)
            assert line["reason"] in ("tls-handshake-failed", "client-error"), line["_line"]
            assert line["tls"] == "none"
        assert len(be.conns) == 0, "popsd connected to the backend before TLS was up"
        assert p.alive()
        with H.Pop3Client(p.port, certs.client_context()) as c:
            assert c.readline() == fakepop.GREETING
    finally:
        be.close()


def test_client_reset_mid_stls_handshake(popsd, certs):
    """A client that says STLS, gets "+OK", starts the handshake and
    resets: logged, and the backend connection is closed at once."""
    be = fakepop.ScriptedBackend(lambda c: (fakepop.pop3_until(c, set()), c.wait_peer_gone(30)))
    try:
        p = popsd(backend_addr=be.address, pop3=True, pop3s=False)
        s = socket.create_connection(("127.0.0.1", p.pop3_port), timeout=10)
        f = s.makefile("rb")
        assert f.readline() == fakepop.GREETING
        s.sendall(b"STLS\r\n")
        assert f.readline().startswith(b"+OK")
        s.sendall(H.client_hello())
        assert s.recv(1)
        local = s.getsockname()[1]
        t0 = time.monotonic()
        rst(s, f)
        line = p.wait_session(port=local)
        conn = be.wait_conns(1)
        assert conn.wait_peer_gone(10), "backend connection not closed"
        print(f"reset mid-STLS: backend released after {conn.peer_gone_at - t0:.2f}s; "
              f"{line['_line']}")
        assert line["stls"] == "yes"
        assert line["reason"] in ("tls-handshake-failed", "client-error"), line["_line"]
        assert p.alive()
    finally:
        be.close()


def test_client_reset_mid_retr(popsd, certs):
    """A client that resets while a 32 MiB RETR streams to it: popsd ends
    the session and closes the backend connection within a second or two
    (it does not keep reading the backend into a dead client)."""
    released = {}

    def then(c, body):
        c.stream(body)
        released["how"] = c.wait_peer_gone(30)
    be = fakepop.ScriptedBackend(retr_handler(32 << 20, then))
    try:
        p = popsd(backend_addr=be.address)
        c = H.Pop3Client(p.port, certs.client_context())
        c.login("user", "secret")
        c.send("RETR 1\r\n")
        assert c.readline().startswith(b"+OK")
        assert len(c.f.read(256 * 1024)) == 256 * 1024
        local = c.local_port
        t0 = time.monotonic()
        rst(c.sock, c.f)
        line = p.wait_session(port=local)
        conn = be.wait_conns(1)
        H.wait_until(lambda: conn.peer_gone, 10, "popsd to close the backend connection")
        print(f"reset mid-RETR: backend released after {conn.peer_gone_at - t0:.2f}s; "
              f"{line['_line']}")
        assert line["login"] == "yes"
        assert line["reason"] in ("client-error", "client-closed"), line["_line"]
        assert int(line["to_client"]) < 32 << 20
        assert p.alive()
        with H.Pop3Client(p.port, certs.client_context()) as c2:
            assert c2.readline() == fakepop.GREETING
    finally:
        be.close()


# ---------------------------------------------------------------- stalled clients

def test_no_client_hello(popsd, certs):
    """A pop3s client that connects and sends nothing is closed by
    "timeout handshake" (2s), with the reason logged."""
    p = popsd(timeouts={"handshake": "2s"})
    s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
    local = s.getsockname()[1]
    t0 = time.monotonic()
    ended, got = raw_ends_within(s, 2 + SLACK)
    elapsed = time.monotonic() - t0
    s.close()
    assert ended, "still open"
    assert elapsed >= 1.5, f"closed after {elapsed:.2f}s, before the timeout"
    line = p.wait_session(port=local)
    assert line["reason"] == "timeout-handshake", line["_line"]


def test_no_client_hello_after_stls(popsd, certs):
    """After "+OK" to STLS the client sends nothing: closed by "timeout
    handshake", and the backend session (Dovecot) is released."""
    p = popsd(pop3=True, pop3s=False, timeouts={"handshake": "2s"})
    s = socket.create_connection(("127.0.0.1", p.pop3_port), timeout=10)
    f = s.makefile("rb")
    assert f.readline().startswith(b"+OK")
    s.sendall(b"STLS\r\n")
    assert f.readline().startswith(b"+OK")
    local = s.getsockname()[1]
    t0 = time.monotonic()
    ended, _ = raw_ends_within(s, 2 + SLACK)
    elapsed = time.monotonic() - t0
    f.close()
    s.close()
    assert ended and elapsed >= 1.5, elapsed
    line = p.wait_session(port=local)
    assert line["reason"] == "timeout-handshake", line["_line"]
    assert line["stls"] == "yes"


def slowloris_handshake(port, interval=1.0, limit=20):
    """Send a ClientHello one byte per interval; return seconds until the
    server closed, or None if it never did within limit seconds."""
    hello = H.client_hello()
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    t0 = time.monotonic()
    try:
        for i in range(len(hello)):
            if time.monotonic() - t0 > limit:
                return None
            try:
                s.sendall(hello[i:i + 1])
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - t0
            ended, _ = raw_ends_within(s, interval)   # this is the 1 s pace
            if ended:
                return time.monotonic() - t0
        return None
    finally:
        s.close()


def test_slowloris_handshake(popsd, certs):
    """A ClientHello trickled at 1 byte/s is cut off by "timeout handshake"
    (2s, counted from the start of the handshake, not from the last byte),
    while a good session on the same popsd completes meanwhile."""
    p = popsd(timeouts={"handshake": "2s"})
    bg = Background(slowloris_handshake, p.port)
    good_session(p, certs)
    closed_after = bg.result()
    assert closed_after is not None, "a 1 byte/s ClientHello kept its session for 20s"
    assert closed_after < 2 + SLACK, closed_after
    line = H.wait_until(lambda: [d for d in p.session_lines() if d["tls"] == "none"], 10,
                        "the slowloris session's line")[0]
    assert line["reason"] == "timeout-handshake", line["_line"]


def slowloris_command(port, ctx, interval=1.0, limit=10):
    """After the greeting, send "USER " and then one byte per interval of a
    line that never ends; return (seconds until the server closed or None,
    what the server sent after the greeting)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    s = ctx.wrap_socket(raw, server_hostname="localhost") if ctx else raw
    got = b""
    try:
        greeting = b""
        while not greeting.endswith(b"\r\n"):
            b = s.recv(1)
            assert b, "closed before the greeting"
            greeting += b
        assert greeting.startswith(b"+OK"), greeting
        s.sendall(b"USER ")
        s.settimeout(interval)                       # this is the 1 s pace
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit:
            try:
                s.sendall(b"a")
                b = s.recv(4096)
            except socket.timeout:
                continue
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                return time.monotonic() - t0, got
            if not b:
                return time.monotonic() - t0, got
            got += b
        return None, got
    finally:
        s.close()


@pytest.mark.parametrize("listener", ["pop3s", "pop3"])
def test_slowloris_command_line(popsd, certs, listener):
    """A command line trickled at 1 byte/s before login is cut off by the
    pre-login timeout ("timeout login 3s") rather than held open as long as
    the trickle goes on; a good session completes meanwhile."""
    p = popsd(pop3=True, timeouts={"login": "3s"},
              extra=["plaintext-allow 127.0.0.0/8"])
    port = p.port if listener == "pop3s" else p.pop3_port
    ctx = certs.client_context() if listener == "pop3s" else None
    bg = Background(slowloris_command, port, ctx)
    good_session(p, certs)
    closed_after, said = bg.result()
    print(f"slowloris command line on {listener}: closed after {closed_after}; said {said!r}")
    assert closed_after is not None, \
        "a command line trickled at 1 byte/s kept its session open for 10s with timeout login 3s"
    assert closed_after < 3 + SLACK, closed_after


# ---------------------------------------------------------------- fd exhaustion

def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_fd_exhaustion_burst_pauses_and_recovers(popsd, certs, monkeypatch):
    """popsd with RLIMIT_NOFILE 64 (set by prlimit as a wrapper: without
    CAP_SYS_RESOURCE it cannot be changed from outside after the privilege
    drop) gets 150 plaintext connections that stay open: it serves what
    fits, pauses accepting on EMFILE (logged) and uses little CPU while the
    rest wait in the backlog (no spin), then, once the first clients leave,
    serves every waiting connection."""
    be = fakepop.Greeter()
    try:
        limit = 64
        monkeypatch.setenv("POPSD_WRAPPER", f"prlimit --nofile={limit}:{limit} -- " +
                           os.environ.get("POPSD_WRAPPER", ""))
        p = popsd(backend_addr=be.address, pop3=True, pop3s=False)
        base = open_fds(p.pid)
        clients = []
        for _ in range(150):
            s = socket.create_connection(("127.0.0.1", p.pop3_port), timeout=10)
            s.setblocking(False)
            clients.append(s)

        def answered(s):
            try:
                return s.recv(4096)
            except BlockingIOError:
                return None
        got = {}

        def poll():
            for i, s in enumerate(clients):
                if i not in got:
                    b = answered(s)
                    if b is not None:
                        got[i] = b
            return got
        H.wait_until(lambda: "out of file descriptors" in p.log(), 10, "the EMFILE pause log")
        # Let it settle: every session that fits has its greeting.
        H.wait_until(lambda: len(poll()) >= (limit - base) // 2 - 2, 10, "the first sessions")
        served_first = len(poll())
        assert served_first < len(clients), "nothing was left waiting: the limit did not bite"
        t0, c0 = time.monotonic(), cpu_seconds(p.pid)
        H.wait_until(lambda: time.monotonic() - t0 >= 3, 10, "a 3 s measuring window")
        cpu = cpu_seconds(p.pid) - c0
        window = time.monotonic() - t0
        print(f"fd exhaustion: {served_first} of {len(clients)} served at once; popsd used "
              f"{cpu:.2f}s CPU in {window:.1f}s while out of descriptors")
        assert cpu < 0.15 * window, f"popsd used {cpu:.2f}s of CPU in {window:.1f}s: spinning"
        assert p.alive()
        # The first clients leave; everyone else is served in turn.
        first_ids = list(got)
        for i in first_ids:
            clients[i].close()
        waiting = [i for i in range(len(clients)) if i not in first_ids]

        def all_served():
            poll()
            return all(i in got for i in waiting)
        # Each closed batch frees descriptors; the waiting ones need those
        # of the ones before them, so close each as soon as it is served.
        deadline = time.monotonic() + 60
        while not all_served():
            assert time.monotonic() < deadline, \
                f"{sum(i in got for i in waiting)} of {len(waiting)} waiting connections served"
            for i in waiting:
                if i in got and clients[i].fileno() != -1:
                    clients[i].close()
            time.sleep(0.05)    # poll interval, not synchronisation
        ok = sum(got[i].startswith(b"+OK") for i in waiting)
        err = sum(got[i].startswith(b"-ERR [SYS/TEMP]") for i in waiting)
        print(f"after the pause: {ok} greeted, {err} told -ERR [SYS/TEMP], "
              f"of {len(waiting)} waiting")
        assert ok + err == len(waiting), [got[i][:40] for i in waiting if
                                         not got[i].startswith((b"+OK", b"-ERR"))][:5]
        assert ok > 0
        for s in clients:
            s.close()
        H.wait_until(lambda: open_fds(p.pid) == base, 15, "popsd's descriptors back to idle")
        assert p.alive()
    finally:
        be.close()


# ---------------------------------------------------------------- accept() failing

ACCEPT_FAULT_C = os.path.join(os.path.dirname(__file__), "accept_fault.c")


def sanitized():
    with open(H.popsd_binary(), "rb") as f:
        return b"__asan_init" in f.read()


@pytest.fixture
def accept_fault(tmp_path, monkeypatch):
    """popsd started with accept_fault.c preloaded: yields (flag, calls),
    the file whose existence makes accept() fail and a function counting
    the calls so far."""
    if shutil.which("cc") is None:
        pytest.skip("needs a C compiler (gcc)")
    shim = str(tmp_path / "accept_fault.so")
    r = subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", shim, ACCEPT_FAULT_C, "-ldl"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    assert r.returncode == 0, r.stdout
    # popsd drops to an unprivileged user: the flag and counter live
    # where it can still see and write them.
    pub = tempfile.mkdtemp(prefix="popsd-accept.")
    try:
        os.chmod(pub, 0o755)
        flag, count = os.path.join(pub, "fault"), os.path.join(pub, "calls")
        with open(count, "w"):
            pass
        os.chmod(count, 0o666)
        env = [f"LD_PRELOAD={shim}", f"POPSD_ACCEPT_FAULT={flag}",
               f"POPSD_ACCEPT_FAULT_COUNT={count}"]
        if sanitized():     # the shim comes before the ASan runtime
            env.append("ASAN_OPTIONS=" + os.environ.get("ASAN_OPTIONS", "") +
                       ":verify_asan_link_order=0")
        monkeypatch.setenv("POPSD_WRAPPER", "env " + " ".join(env) + " " +
                           os.environ.get("POPSD_WRAPPER", ""))
        yield flag, lambda: os.path.getsize(count)
    finally:
        shutil.rmtree(pub, ignore_errors=True)


def test_accept_enobufs_pauses_rate_limits_and_recovers(popsd, accept_fault):
    """accept() failing with ENOBUFS (an LD_PRELOAD shim, tests/scenario/
    accept_fault.c, fails it while a flag file exists, leaving the
    connection queued and the socket readable): popsd stops accepting for
    a second at a time instead of calling accept() in a loop, says so in
    one log line (not one per call or per pause), and once accept() works
    again serves the client that waited in the queue and logs that."""
    flag, calls = accept_fault
    be = fakepop.Greeter()
    try:
        p = popsd(backend_addr=be.address, pop3=True, pop3s=False)
        with socket.create_connection(("127.0.0.1", p.pop3_port), timeout=10) as s:
            assert s.makefile("rb").readline().startswith(b"+OK")   # shim loaded, idle
        mark = len(p.log())
        open(flag, "w").close()
        t_on = time.monotonic()
        waiting = socket.create_connection(("127.0.0.1", p.pop3_port), timeout=10)
        # A persistent failure: a pause, then a call, a second apart.
        H.wait_until(lambda: calls() >= 4, 30, "four accept() calls")
        n, elapsed = calls(), time.monotonic() - t_on
        print(f"accept() failing: {n} calls in {elapsed:.1f}s")
        assert n <= 2 * elapsed + 3, f"{n} accept() calls in {elapsed:.1f}s: spinning"
        assert re.search(rf"accept on 127\.0\.0\.1:{p.pop3_port}: No buffer space "
                         rf"available: pausing accept for 1s", p.log()[mark:]), p.log()
        lines = [l for l in p.log()[mark:].splitlines() if "accept" in l]
        assert len(lines) == 1, lines       # rate-limited: one line, not one a pause
        os.unlink(flag)
        waiting.settimeout(15)
        assert waiting.makefile("rb").readline().startswith(b"+OK"), p.log()
        waiting.close()
        H.wait_until(lambda: re.search(rf"accept on 127\.0\.0\.1:{p.pop3_port} works "
                                       rf"again", p.log()), 10, "the recovery log")
        assert p.alive()
    finally:
        be.close()


def test_metrics_accept_enobufs_pauses(popsd, accept_fault):
    """The same fault on the metrics endpoint: a pause a second, one log
    line, and the scraper that waited is answered once accept() works."""
    flag, calls = accept_fault
    mport = H.free_port()
    p = popsd(extra=[f"metrics-listen 127.0.0.1:{mport}"])
    mark = len(p.log())
    open(flag, "w").close()
    t_on = time.monotonic()
    waiting = socket.create_connection(("127.0.0.1", mport), timeout=10)
    H.wait_until(lambda: calls() >= 4, 30, "four accept() calls")
    n, elapsed = calls(), time.monotonic() - t_on
    assert n <= 2 * elapsed + 3, f"{n} accept() calls in {elapsed:.1f}s: spinning"
    lines = [l for l in p.log()[mark:].splitlines() if "accept" in l]
    assert len(lines) == 1 and re.search(
        rf"metrics: accept on 127\.0\.0\.1:{mport}: No buffer space available: "
        r"pausing for 1s", lines[0]), lines
    os.unlink(flag)
    waiting.settimeout(15)
    waiting.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
    assert waiting.makefile("rb").readline().startswith(b"HTTP/1.1 200"), p.log()
    waiting.close()
    assert p.alive()
