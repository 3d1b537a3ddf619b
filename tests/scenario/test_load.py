"""Load (issue 7): ~10,000 concurrent sessions opened and closed in rounds
with no descriptor or memory growth, and SIGHUP reloads under load with no
session dropped.

Why a fake backend for the 10k test: every popsd session holds one
backend connection, and Dovecot serves each POP3 connection with a login
process slot and then a mail process (service_count, process_limit,
mail_max_userip_connections): 10,000 of those would measure Dovecot's
process spawning on a 2-core machine, not popsd. fakepop.Greeter (one
process, one selectors loop) greets, answers QUIT, and holds 10,000
connections for a few MiB. The SIGHUP test uses the real Dovecot.

Why "about" 10,000: each session costs popsd two descriptors (client and
backend), so it needs RLIMIT_NOFILE above 20,000 plus its own dozen. This
sandbox caps the hard limit at 20,000 and grants no CAP_SYS_RESOURCE to
raise it, so the test runs the largest round that fits (9,976 here; 10,000
wherever the limit can be raised to 20,050 or more) and prints the figure.
POPSD_LOAD_SESSIONS, POPSD_LOAD_ROUNDS, POPSD_LOAD_TLS, POPSD_LOAD_TLS_SMALL
and POPSD_LOAD_TLS_SMALL_ROUNDS change the sizes."""

import contextlib
import os
import poplib
import re
import resource
import selectors
import shutil
import signal
import socket
import ssl
import tempfile
import threading
import time

import pytest

import fakepop
import popsd_harness as H

WANT_SESSIONS = int(os.environ.get("POPSD_LOAD_SESSIONS", "10000"))
ROUNDS = int(os.environ.get("POPSD_LOAD_ROUNDS", "4"))
TLS_SESSIONS = int(os.environ.get("POPSD_LOAD_TLS", "10000"))
TLS_SMALL = int(os.environ.get("POPSD_LOAD_TLS_SMALL", "1000"))
TLS_SMALL_ROUNDS = int(os.environ.get("POPSD_LOAD_TLS_SMALL_ROUNDS", "7"))
POPSD_FDS = 48                  # popsd's own descriptors, with room to spare
IP_BIND_ADDRESS_NO_PORT = 24    # <linux/in.h>; Python 3.11 lacks the name
SOURCES = [f"127.0.0.{i}" for i in range(2, 10)]


def sanitized():
    """Is the popsd under test an ASan build? Its allocator keeps freed
    memory in quarantine, so RSS says nothing about leaks there (LeakSanitizer
    checks at exit instead, tests/robustness.sh)."""
    binary = H.popsd_binary()
    with open(binary, "rb") as f:
        return b"__asan_init" in f.read()


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def raise_nofile():
    """Soft RLIMIT_NOFILE up to the hard limit (for this process and the
    processes it starts); returns the old soft limit to restore."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 1 << 20
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return soft, hard


# ---------------------------------------------------------------- clients

class Round:
    """Open n sessions to 127.0.0.1:port at most `pace` connecting at a
    time, until every one has its greeting (all n are then open at once);
    then end them: every other one sends QUIT and waits for "+OK" and the
    close, the rest just close. Non-blocking sockets on one selectors
    loop; with tls, each session does a full handshake first."""

    def __init__(self, port, n, ctx=None, pace=400, timeout=120):
        self.port, self.n, self.ctx, self.pace = port, n, ctx, pace
        self.deadline = time.monotonic() + timeout
        self.sel = selectors.DefaultSelector()
        self.state = {}         # sock -> [phase, bytes]
        self.greeted = []
        self.errors = []

    def _check_deadline(self, what):
        if time.monotonic() > self.deadline:
            raise AssertionError(f"load round: timed out {what}; errors: {self.errors[:5]}")

    def _connect(self, i):
        s = socket.socket()
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        s.bind((SOURCES[i % len(SOURCES)], 0))
        err = s.connect_ex(("127.0.0.1", self.port))
        if err not in (0, 115):         # EINPROGRESS
            s.close()
            raise AssertionError(f"connect: {os.strerror(err)}")
        if self.ctx:
            s = self.ctx.wrap_socket(s, server_hostname="localhost",
                                     do_handshake_on_connect=False)
            self.state[s] = ["handshake", b""]
            self.sel.register(s, selectors.EVENT_WRITE)
        else:
            self.state[s] = ["greeting", b""]
            self.sel.register(s, selectors.EVENT_READ)

    def _handshake(self, s):
        try:
            s.do_handshake()
        except ssl.SSLWantReadError:
            self.sel.modify(s, selectors.EVENT_READ)
            return
        except ssl.SSLWantWriteError:
            self.sel.modify(s, selectors.EVENT_WRITE)
            return
        self.state[s][0] = "greeting"
        self.sel.modify(s, selectors.EVENT_READ)
        self._read(s)                    # the greeting may be in already

    def _read(self, s):
        st = self.state[s]
        try:
            data = s.recv(4096)
        except (ssl.SSLWantReadError, BlockingIOError):
            return
        except ssl.SSLWantWriteError:
            return
        except OSError as e:
            data = None
            if st[0] != "closing":
                self.errors.append(f"{st[0]}: {e!r}")
        if not data:
            if data is not None and st[0] != "closing":
                self.errors.append(f"{st[0]}: EOF after {st[1]!r}")
            elif st[0] == "closing" and b"+OK" not in st[1]:
                self.errors.append(f"QUIT: closed after {st[1]!r}")
            self._drop(s, done=st[0] == "closing")
            return
        st[1] += data
        if st[0] == "greeting" and b"\n" in st[1]:
            if not st[1].startswith(b"+OK"):
                self.errors.append(f"greeting {st[1]!r}")
            self.sel.unregister(s)
            st[0], st[1] = "open", b""
            self.greeted.append(s)

    def _drop(self, s, done):
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(s)
        self.state.pop(s, None)
        s.close()
        if done:
            self.quit_done += 1

    def open_all(self):
        i = 0
        while len(self.greeted) + len(self.errors) < self.n:
            self._check_deadline(f"opening ({len(self.greeted)} of {self.n} greeted)")
            while i < self.n and len(self.state) - len(self.greeted) < self.pace:
                self._connect(i)
                i += 1
            for key, _ in self.sel.select(timeout=0.5):
                s = key.fileobj
                if self.state[s][0] == "handshake":
                    self._handshake(s)
                else:
                    self._read(s)
        assert not self.errors, f"{len(self.errors)} sessions failed, e.g. {self.errors[:5]}"

    def close_all(self):
        self.quit_done = 0
        quitters = self.greeted[::2]
        for s in self.greeted[1::2]:
            self.state.pop(s, None)
            s.close()
        for s in quitters:
            self.state[s] = ["closing", b""]
            try:
                s.send(b"QUIT\r\n")
            except OSError as e:
                self.errors.append(f"QUIT: {e!r}")
            self.sel.register(s, selectors.EVENT_READ)
        while self.state:
            self._check_deadline(f"closing ({self.quit_done} of {len(quitters)} QUITs done)")
            for key, _ in self.sel.select(timeout=0.5):
                self._read(key.fileobj)
        self.greeted = []
        assert not self.errors, f"{len(self.errors)} QUITs failed, e.g. {self.errors[:5]}"
        assert self.quit_done == len(quitters)


# ---------------------------------------------------------------- 10k

def run_round(p, port, n, base, ctx=None, pace=400):
    """One Round of n sessions; returns (seconds, peak fds, RSS after) once
    popsd is back to `base` descriptors."""
    t0 = time.monotonic()
    rd = Round(port, n, ctx=ctx, pace=pace)
    rd.open_all()
    t_open = time.monotonic() - t0
    peak = open_fds(p.pid)
    assert peak >= base + 2 * n, f"{n} sessions open but popsd holds only {peak} descriptors"
    rd.close_all()
    H.wait_until(lambda: open_fds(p.pid) == base, 60, f"popsd back to {base} descriptors")
    return t_open, time.monotonic() - t0, peak, p.rss_kib()


def test_10k_sessions_no_fd_or_memory_growth(popsd, certs):
    """~10,000 concurrent sessions, opened and closed again and again:

    1. TLS_SMALL_ROUNDS rounds of TLS_SMALL pop3s sessions from a fresh
       popsd. OpenSSL's many small allocations fragment the heap, so RSS
       creeps up for a few rounds and converges (measured: +28, +9, +3,
       +1.7, +0.8, +0.2 MiB); a leak would add the same amount every round.
       Asserted: one of the last three rounds grew RSS by less than 1 MiB,
       i.e. less than 1 KiB per session.
    2. ROUNDS rounds of ~10,000 concurrent plaintext sessions on the pop3
       port (all greeted through popsd at once; then half QUIT and wait
       for "+OK", half just close). Asserted: popsd's descriptor count is
       back to idle after each round, and one of the last two rounds grew
       RSS by less than 8 MiB (under 1 KiB per session). The heap's
       high-water mark may take a few rounds to reach its plateau (measured
       2026-12-05: 157, 168, 190, 195 MiB in one run, 195 from the first
       round in another); a leak would add the same amount every round.
    3. One round of ~10,000 concurrent pop3s sessions (full handshakes).
       Asserted: all greeted, descriptors back to idle.
    Every session line ends with client-closed or backend-closed. Against
    an ASan build the RSS checks are off (quarantine), the rest holds."""
    old = raise_nofile()
    try:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        n = min(WANT_SESSIONS, (hard - POPSD_FDS) // 2)
        assert n >= 1000, f"RLIMIT_NOFILE hard limit {hard} is too low for a load test"
        be = fakepop.Greeter(nofile=hard)
        try:
            # All from a few loopback addresses: no per-address limit
            # (the default, a tenth of max-sessions, would refuse most).
            p = popsd(backend_addr=be.address, pop3=True, max_sessions=n + 100,
                      timeouts={"login": "120s"}, extra=["max-sessions-per-ip 0"])
            base = open_fds(p.pid)
            ctx = certs.client_context()
            total = 0

            small = []
            for r in range(TLS_SMALL_ROUNDS):
                t_open, t_all, peak, rss = run_round(p, p.port, TLS_SMALL, base, ctx, pace=200)
                small.append(rss)
                total += TLS_SMALL
                print(f"TLS round {r + 1}: {TLS_SMALL} concurrent pop3s sessions opened in "
                      f"{t_open:.1f}s, {t_all:.1f}s in all; fds peak {peak}, RSS after {rss} KiB")
            steps = [b - a for a, b in zip(small, small[1:])]
            print(f"TLS rounds: RSS growth per round {steps} KiB")
            check_rss = not sanitized()
            if len(steps) >= 3 and check_rss:
                assert min(steps[-3:]) < 1024, \
                    f"popsd RSS grew every TLS round by >= 1 MiB: {steps} KiB (a leak?)"

            plain = []
            for r in range(ROUNDS):
                t_open, t_all, peak, rss = run_round(p, p.pop3_port, n, base)
                plain.append(rss)
                total += n
                print(f"round {r + 1}: {n} concurrent sessions opened in {t_open:.1f}s, "
                      f"{t_all:.1f}s in all; popsd fds {base} -> {peak} -> {base}, "
                      f"RSS after {rss} KiB")
            steps = [b - a for a, b in zip(plain, plain[1:])]
            print(f"plaintext rounds: RSS after each {plain} KiB (growth per round {steps} KiB)")
            if len(steps) >= 2 and check_rss:
                assert min(steps[-2:]) < 8 * 1024, \
                    f"popsd RSS grew every plaintext round by >= 8 MiB: {steps} KiB (a leak?)"

            tn = min(TLS_SESSIONS, n)
            if tn:
                t_open, t_all, peak, rss = run_round(p, p.port, tn, base, ctx, pace=200)
                total += tn
                print(f"TLS: {tn} concurrent pop3s sessions opened in {t_open:.1f}s, "
                      f"{t_all:.1f}s in all; fds peak {peak}, RSS after {rss} KiB")

            assert p.alive()
            H.wait_until(lambda: p.log().count(" reason=") >= total, 30,
                         f"{total} session lines")
            odd = re.findall(r" reason=(?!client-closed|backend-closed)(\S+)", p.log())
            assert not odd, f"unexpected session endings: {sorted(set(odd))}"
        finally:
            be.close()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, old)


# ---------------------------------------------------------------- SIGHUP

@pytest.fixture
def hpopsd(request, certs, backend):
    """popsd in a world-readable temp dir with its key owned by the user it
    drops to, so that a reload (run after the privilege drop) can re-read
    the configuration and the key."""
    d = tempfile.mkdtemp(prefix="popsd-hup.")
    os.chmod(d, 0o755)

    class Files:
        cert = os.path.join(d, "cert.pem")
        key = os.path.join(d, "key.pem")
    shutil.copyfile(certs.cert, Files.cert)
    shutil.copyfile(certs.key, Files.key)
    os.chmod(Files.key, 0o600)
    if os.geteuid() == 0:
        import pwd
        pw = pwd.getpwnam(os.environ.get("POPSD_TEST_USER", "nobody"))
        os.chown(Files.key, pw.pw_uid, pw.pw_gid)
    p = H.Popsd(d, Files, backend.address, pop3=True, extra=["plaintext-allow 127.0.0.0/8"])
    os.chmod(p.conf, 0o644)
    p.start()
    yield p
    crashed = p.proc.poll() is not None and not p.expected_exit
    status, _ = p.stop()
    rep = getattr(request.node, "rep_call", None)
    if crashed or (rep is not None and rep.failed):
        print(f"\n----- {p.log_path} -----\n{p.log()}")
    shutil.rmtree(d, ignore_errors=True)
    if crashed:
        pytest.fail(f"popsd exited on its own with status {status}", pytrace=False)


def test_sighup_under_load_drops_no_session(hpopsd, certs, backend):
    """24 clients run complete sessions against Dovecot in a loop (pop3s,
    and STLS on the pop3 port: login, STAT, LIST, RETR 1, QUIT) while popsd
    is sent SIGHUP over and over (each time once the previous reload was
    logged). Every reload succeeds, every session completes, and every
    session line ends normally."""
    p = hpopsd
    ctx = certs.client_context()
    want = poplib.POP3("127.0.0.1", backend.port, timeout=20)
    want.user("load")
    want.pass_(H.PASSWORDS["load"])
    want_stat, want_msg = want.stat(), want.retr(1)[1]
    want.quit()
    stop = threading.Event()
    done, errors = [0], []
    lock = threading.Lock()

    def worker(i):
        while not stop.is_set():
            try:
                if i % 2:
                    c = poplib.POP3_SSL("127.0.0.1", p.port, context=ctx, timeout=30)
                else:
                    c = poplib.POP3("127.0.0.1", p.pop3_port, timeout=30)
                    c.stls(ctx)
                c.user("load")
                c.pass_(H.PASSWORDS["load"])
                assert c.stat() == want_stat
                assert len(c.list()[1]) == want_stat[0]
                assert c.retr(1)[1] == want_msg
                assert c.quit().startswith(b"+OK")
                with lock:
                    done[0] += 1
            except Exception as e:          # noqa: BLE001 — reported below
                with lock:
                    errors.append(f"worker {i}: {e!r}")
                return

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(24)]
    for t in threads:
        t.start()
    reloads = 0
    t0 = time.monotonic()
    H.wait_until(lambda: done[0] >= 24, 30, "the first sessions to complete")
    while time.monotonic() - t0 < 10 and not errors:
        before = p.log().count("reloaded ")
        os.kill(p.pid, signal.SIGHUP)
        H.wait_until(lambda: p.log().count("reloaded ") > before or "reload failed" in p.log(),
                     10, "the reload to be logged")
        assert "reload failed" not in p.log(), p.log()[-2000:]
        reloads += 1
    stop.set()
    for t in threads:
        t.join(60)
    print(f"SIGHUP under load: {reloads} reloads in {time.monotonic() - t0:.1f}s, "
          f"{done[0]} sessions completed, {len(errors)} failed")
    assert not errors, errors[:5]
    assert reloads >= 20, f"only {reloads} reloads"
    assert done[0] >= 100
    assert p.alive()
    H.wait_until(lambda: p.log().count(" reason=") >= done[0], 15, "every session line")
    odd = re.findall(r" reason=(?!client-closed|backend-closed)(\S+)", p.log())
    assert not odd, f"unexpected session endings: {sorted(set(odd))}"
