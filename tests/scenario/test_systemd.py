"""popsd the way systemd and inetd run it, without systemd as PID 1:
socket activation (LISTEN_FDS/LISTEN_FDNAMES from systemd-socket-activate
or a tiny launcher), sd_notify (a NOTIFY_SOCKET the test binds and reads),
inetd mode (popsd -i, driven by systemd-socket-activate --inetd and by
socat), privilege drop (user/group/chroot, proven from /proc), and the unit
files in systemd/ (systemd-analyze verify and security).

Goal of these tests: every way of starting popsd serves the same full
POP3S session against the shared Dovecot, and each start-up refusal says
why. Every popsd here runs as root with "user nobody" / "group nogroup",
as a root-started popsd must.
"""

import contextlib
import grp
import os
import poplib
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

import popsd_harness as H

REPO = H.REPO
UNITS = os.path.join(REPO, "systemd")
SSA = shutil.which("systemd-socket-activate")
ANALYZE = shutil.which("systemd-analyze")
SOCAT = shutil.which("socat")
NOBODY = pwd.getpwnam("nobody").pw_uid
NOGROUP = grp.getgrnam("nogroup").gr_gid
DROP = ["user nobody", "group nogroup"]

needs_ssa = pytest.mark.skipif(
    SSA is None, reason="systemd-socket-activate missing (Debian package systemd)")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop privileges")


# ---------------------------------------------------------------- helpers

class Proc:
    """One process under test, its output in a log file; stopped by PID."""

    def __init__(self, directory, name, argv, env=None, **popen):
        self.name = name
        self.log_path = os.path.join(directory, f"{name}.log")
        self.logf = open(self.log_path, "ab")
        full_env = dict(os.environ)
        for k in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET",
                  "WATCHDOG_USEC", "WATCHDOG_PID"):
            full_env.pop(k, None)
        full_env.update(env or {})
        popen.setdefault("stdin", subprocess.DEVNULL)
        popen.setdefault("cwd", directory)
        self.proc = subprocess.Popen(argv, stdout=self.logf, stderr=subprocess.STDOUT,
                                     env=full_env, **popen)
        self.pid = self.proc.pid
        H.watch_log(self)       # popsd's output: the password guard reads it

    def log(self):
        with contextlib.suppress(OSError), open(self.log_path, errors="replace") as f:
            return f.read()
        return ""

    def wait_log(self, pattern, timeout=15):
        """Wait until the log matches pattern (a regex); return the match."""
        def find():
            m = re.search(pattern, self.log())
            if m is None and self.proc.poll() is not None:
                # One last look: the line may have come with the exit.
                m = re.search(pattern, self.log())
                if m is None:
                    raise AssertionError(f"{self.name} exited with "
                                         f"{self.proc.returncode} before logging "
                                         f"{pattern!r}:\n{self.log()}")
            return m
        try:
            return H.wait_until(find, timeout, f"{self.name} to log {pattern!r}")
        except H.Timeout as e:
            raise AssertionError(f"{e}\n--- {self.log_path}:\n{self.log()}") from None

    def wait_exit(self, timeout=15):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} still running after {timeout}s:\n"
                                 f"{self.log()}") from None

    def stop(self):
        if self.proc.poll() is None:
            H.stop_pid(self.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        self.logf.close()


@pytest.fixture
def procs(request, tmp_path):
    """Factory: procs(name, argv, env=None) → a started Proc. All are
    stopped by PID at teardown; their logs are printed if the test failed."""
    made = []

    def factory(name, argv, env=None, **popen):
        p = Proc(str(tmp_path), name, argv, env, **popen)
        made.append(p)
        return p

    yield factory
    for p in made:
        p.stop()
    rep = getattr(request.node, "rep_call", None)
    if rep is None or rep.failed:
        for p in made:
            print(f"\n----- {p.log_path} -----\n{p.log()}", end="")


def popsd_bin():
    b = H.popsd_binary()
    if b is None:
        pytest.fail("popsd is not built (run make)")
    return b


def write_conf(directory, certs, backend, listens=(), extra=DROP, name="popsd.conf",
               key=None, cert=None, no_listen=False):
    """A popsd.conf in directory. When the test gives no listen line, a
    spare pop3s port on loopback is used, unless no_listen (a file for
    socket activation or inetd mode, with none at all)."""
    lines = [f"listen {kind} 127.0.0.1:{port}" for kind, port in listens]
    if not lines and not no_listen:
        lines = [f"listen pop3s 127.0.0.1:{H.free_port()}"]
    lines += [f"backend {backend.address}", f"certificate {cert or certs.cert}",
              f"key {key or certs.key}", "timeout connect 10s", "timeout drain 5s"]
    lines += list(extra)
    path = os.path.join(str(directory), name)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def status_is(m, sessions):
    """STATUS= is "serving 2 sessions" from one process and "serving 2
    sessions, 4 workers" from the master of several (the default: one per
    CPU), which counts every worker's sessions."""
    st = m.get("STATUS", "")
    return st == sessions or re.fullmatch(re.escape(sessions) + r", \d+ workers", st) is not None


def pop3s_session(port, certs, timeout=20):
    """A full POP3S session as demo: login, STAT, LIST, RETR, QUIT, EOF.
    Returns the client's local port (the session line's port=)."""
    with H.Pop3Client(port, certs.client_context(), timeout=timeout) as c:
        c.login("demo", H.PASSWORDS["demo"])
        assert c.cmd("STAT").startswith(b"+OK 3 ")
        c.ok("LIST")
        assert len(c.multiline().splitlines()) == 3
        c.ok("RETR 1")
        assert b"\r\n\r\n" in c.multiline()
        assert c.cmd("QUIT").startswith(b"+OK")
        assert c.read_to_eof() == b""
        return c.local_port


def pop3_stls_session(port, certs):
    """Plain POP3 on port, STLS, then login and STAT."""
    c = poplib.POP3("127.0.0.1", port, timeout=20)
    try:
        c.stls(certs.client_context())
        c.user("demo")
        c.pass_(H.PASSWORDS["demo"])
        assert c.stat()[0] == 3
        c.quit()
    finally:
        with contextlib.suppress(OSError):
            c.close()


def launcher(sockets, names, argv):
    """argv for a tiny launcher that puts the given sockets on fds 3, 4, ...
    with LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES, as systemd would, then execs
    argv. sockets: 'listen' (a listening TCP socket), 'connected' (a bound,
    not listening TCP socket), 'dgram' (a UDP socket)."""
    code = (
        "import fcntl, os, socket, sys\n"
        "kinds, names, argv = sys.argv[1].split(','), sys.argv[2], sys.argv[3:]\n"
        "high = []\n"
        "for k in kinds:\n"
        "    s = socket.socket(type=socket.SOCK_DGRAM if k == 'dgram' else socket.SOCK_STREAM)\n"
        "    s.bind(('127.0.0.1', 0))\n"
        "    if k == 'listen':\n"
        "        s.listen(8)\n"
        # Out of the way first, so that moving one to 3+i clobbers no other.
        "    high.append(fcntl.fcntl(s.detach(), fcntl.F_DUPFD, 100))\n"
        "for i, fd in enumerate(high):\n"
        "    os.dup2(fd, 3 + i)\n"      # inheritable by default
        "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS=str(len(kinds)),\n"
        "                  LISTEN_FDNAMES=names)\n"
        "os.execv(argv[0], argv)\n")
    return [sys.executable, "-c", code, ",".join(sockets), names] + argv


class NotifySocket:
    """A NOTIFY_SOCKET: a unix datagram socket bound at a path or, for an
    address starting with '@', in the abstract namespace."""

    def __init__(self, address):
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.setblocking(False)
        self.messages = []

    def _drain(self):
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return
            self.messages.append(data.decode())

    def wait_for(self, pred, what, timeout=15):
        """Wait for a message m (a str) with pred(m) true, among those not
        yet consumed; return it and consume everything up to it."""
        def find():
            self._drain()
            for i, m in enumerate(self.messages):
                if pred(m):
                    del self.messages[:i + 1]
                    return m
            return None
        return H.wait_until(find, timeout, f"a notify message with {what}")

    def close(self):
        self.sock.close()
        if not self.address.startswith("@"):
            with contextlib.suppress(OSError):
                os.unlink(self.address)


def fields(msg):
    return dict(line.split("=", 1) for line in msg.split("\n") if "=" in line)


def ids(pid):
    """Uid, Gid and Groups lines of /proc/PID/status, as lists of ints."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Uid", "Gid", "Groups", "CapEff", "CapPrm"):
                out[k] = v.split()
    return out


def nobody_keypair(directory, certs):
    """Copies of the test key and certificate in directory that popsd can
    read after dropping to nobody: the key nobody's, mode 0600 (popsd
    refuses keys others can read). Returns (key, cert)."""
    key, cert = os.path.join(directory, "key.pem"), os.path.join(directory, "cert.pem")
    shutil.copy(certs.key, key)
    shutil.copy(certs.cert, cert)
    os.chown(key, NOBODY, NOGROUP)
    os.chmod(key, 0o600)
    os.chmod(cert, 0o644)
    return key, cert


def public_dir(prefix):
    """A temp dir that an unprivileged popsd can enter (pytest's are 0700)."""
    d = tempfile.mkdtemp(prefix=prefix)
    os.chmod(d, 0o755)
    return d


# ---------------------------------------------------------------- socket activation

@needs_ssa
@needs_root
def test_socket_activation_two_named_fds(procs, tmp_path, certs, backend):
    """Two sockets from systemd-socket-activate, named pop3s and pop3, plus
    a listen line popsd binds itself, plus a listen line for an address
    systemd passed (served by the passed socket, not bound twice)."""
    p1, p2, p3 = H.free_port(), H.free_port(), H.free_port()
    conf = write_conf(tmp_path, certs, backend,
                      listens=[("pop3s", p1), ("pop3s", p3)])
    d = procs("ssa", [SSA, "-l", f"127.0.0.1:{p1}", "-l", f"127.0.0.1:{p2}",
                      "--fdname=pop3s:pop3", popsd_bin(), "-d", "-f", conf])
    d.wait_log(rf"Listening on 127.0.0.1:{p2}")
    # systemd-socket-activate starts popsd on the first connection; this
    # first session is the one that wakes it.
    local = pop3s_session(p1, certs)
    d.wait_log(r"popsd ready: 3 listeners")
    log = d.log()
    assert f"listening: pop3s 127.0.0.1:{p1}" in log
    assert f"listening: pop3 127.0.0.1:{p2}" in log
    assert f"listening: pop3s 127.0.0.1:{p3}" in log
    d.wait_log(rf"session=\d+ client=127.0.0.1 port={local} listener=pop3s .*reason=")
    pop3_stls_session(p2, certs)
    pop3s_session(p3, certs)
    assert ids(d.pid)["Uid"] == [str(NOBODY)] * 4
    d.proc.send_signal(signal.SIGTERM)
    assert d.wait_exit() == 0


@needs_ssa
@pytest.mark.parametrize("names,expect", [
    ("imaps", r'socket 1 of 1 passed by systemd \(fd 3\) is named "imaps": expected '
              r"FileDescriptorName=pop3s, pop3, tls or outbound"),
    (None, r"socket 1 of 1 passed by systemd \(fd 3\) has no name: set "
           r"FileDescriptorName=pop3s"),
])
def test_socket_activation_bad_name_refused(procs, tmp_path, certs, backend, names, expect):
    port = H.free_port()
    conf = write_conf(tmp_path, certs, backend)
    argv = [SSA, "-l", f"127.0.0.1:{port}"]
    if names:
        argv.append(f"--fdname={names}")
    d = procs("ssa", argv + [popsd_bin(), "-d", "-f", conf])
    d.wait_log(rf"Listening on 127.0.0.1:{port}")
    with socket.create_connection(("127.0.0.1", port), timeout=10):
        assert d.wait_exit() == 1
    assert re.search(expect, d.log()), d.log()


@pytest.mark.parametrize("kind,expect", [
    ("connected", r"\(fd 3, pop3s\): not a listening socket"),
    ("dgram", r"\(fd 3, pop3s\): not a stream socket"),
])
def test_socket_activation_non_listening_fd_refused(procs, tmp_path, certs, backend,
                                                    kind, expect):
    conf = write_conf(tmp_path, certs, backend)
    d = procs("launch", launcher([kind], "pop3s", [popsd_bin(), "-d", "-f", conf]))
    assert d.wait_exit() == 1
    assert re.search(expect, d.log()), d.log()


def test_socket_activation_second_fd_checked(procs, tmp_path, certs, backend):
    """Every passed fd is checked, not just the first; the names count."""
    conf = write_conf(tmp_path, certs, backend)
    d = procs("launch", launcher(["listen", "listen"], "pop3s",
                                 [popsd_bin(), "-d", "-f", conf]))
    assert d.wait_exit() == 1
    assert "socket 2 of 2 passed by systemd (fd 4) has no name" in d.log()


@needs_root
def test_listen_fds_for_another_pid_ignored(procs, tmp_path, certs, backend):
    """LISTEN_PID naming another process: the fds are not ours; popsd binds
    its listen lines as usual."""
    port = H.free_port()
    conf = write_conf(tmp_path, certs, backend, listens=[("pop3s", port)])
    d = procs("popsd", [popsd_bin(), "-d", "-f", conf],
              env={"LISTEN_PID": "1", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "pop3s"})
    d.wait_log(r"popsd ready: 1 listeners")
    pop3s_session(port, certs)


# ---------------------------------------------------------------- no listen lines

NO_SOCKETS = "no listen directive, and no sockets passed by systemd (LISTEN_FDS): nothing to serve"


@needs_ssa
@needs_root
def test_no_listen_lines_socket_activation(procs, tmp_path, certs, backend):
    """A file without listen lines serves the sockets systemd passes."""
    port = H.free_port()
    conf = write_conf(tmp_path, certs, backend, no_listen=True)
    d = procs("ssa", [SSA, "-l", f"127.0.0.1:{port}", "--fdname=pop3s",
                      popsd_bin(), "-d", "-f", conf])
    d.wait_log(rf"Listening on 127.0.0.1:{port}")
    pop3s_session(port, certs)
    d.wait_log(r"popsd ready: 1 listeners")
    assert f"listening: pop3s 127.0.0.1:{port}" in d.log()


@needs_ssa
@needs_root
def test_no_listen_lines_inetd_mode(procs, tmp_path, certs, backend):
    """popsd -i ignores listen lines, so it needs none: a full session, and
    -n -i says the file is fine for inetd mode."""
    port = H.free_port()
    conf = write_conf(tmp_path, certs, backend, no_listen=True)
    r = subprocess.run([popsd_bin(), "-n", "-i", "pop3s", "-f", conf],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=10)
    assert r.returncode == 0 and r.stdout == "configuration OK\n", r.stdout
    d = procs("ssa", [SSA, "--accept", "--inetd", "-l", f"127.0.0.1:{port}",
                      popsd_bin(), "-d", "-i", "pop3s", "-f", conf])
    d.wait_log(rf"Listening on 127.0.0.1:{port}")
    local = pop3s_session(port, certs)
    d.wait_log(rf"session=\d+ client=127.0.0.1 port={local} listener=pop3s .*login=yes")
    assert "no listen directive" not in d.log()


@needs_root
def test_no_listen_lines_and_no_sockets_refused(procs, tmp_path, certs, backend):
    """Started plainly, with neither listen lines nor systemd's sockets,
    popsd has nothing to serve: it says so and exits 1, and -n (which
    checks as a plain start would unless told -i) says the same."""
    conf = write_conf(tmp_path, certs, backend, no_listen=True)
    d = procs("popsd", [popsd_bin(), "-d", "-f", conf])
    assert d.wait_exit() == 1
    assert NO_SOCKETS in d.log() and conf in d.log(), d.log()
    r = subprocess.run([popsd_bin(), "-n", "-f", conf], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=10)
    assert r.returncode == 1 and NO_SOCKETS in r.stdout, r.stdout
    # With sockets from systemd, -n is satisfied (and checks their names).
    d = procs("launch", launcher(["listen"], "pop3s", [popsd_bin(), "-n", "-f", conf]))
    assert d.wait_exit() == 0 and "configuration OK" in d.log(), d.log()
    d = procs("launch-bad", launcher(["listen"], "imaps", [popsd_bin(), "-n", "-f", conf]))
    assert d.wait_exit() == 1 and 'is named "imaps"' in d.log(), d.log()


# ---------------------------------------------------------------- sd_notify

def monotonic_usec():
    return int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6)


@needs_root
@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_notify_ready_reload_stopping(procs, tmp_path, certs, backend, abstract):
    port = H.free_port()
    conf = write_conf(tmp_path, certs, backend, listens=[("pop3s", port)])
    addr = f"@popsd-test-{os.getpid()}-{port}" if abstract else str(tmp_path / "notify")
    ns = NotifySocket(addr)
    try:
        d = procs("popsd", [popsd_bin(), "-d", "-f", conf], env={"NOTIFY_SOCKET": addr})
        ready = fields(ns.wait_for(lambda m: "READY=1" in m.split("\n"), "READY=1"))
        assert status_is(ready, "serving 0 sessions")
        # READY=1 means serving: a session works at once.
        pop3s_session(port, certs)

        before = monotonic_usec()
        d.proc.send_signal(signal.SIGHUP)
        m = fields(ns.wait_for(lambda m: "RELOADING=1" in m.split("\n"), "RELOADING=1"))
        assert before <= int(m["MONOTONIC_USEC"]) <= monotonic_usec()
        m = fields(ns.wait_for(lambda m: "READY=1" in m.split("\n"), "READY=1 after reload"))
        # The key is root's, mode 0600, in a root-only dir: after the drop
        # to nobody the reload cannot read it and keeps what runs.
        assert m["STATUS"].startswith("reload failed, kept the running configuration")
        d.wait_log(r"reload failed, keeping the running configuration: .*Permission denied")
        pop3s_session(port, certs)
        # The client is done before its worker has seen the close: wait
        # for both sessions' summary lines, or the drain may count one.
        H.wait_until(lambda: len(re.findall(r"^session=.* reason=", d.log(), re.M)) >= 2,
                     10, "two session summary lines")

        d.proc.send_signal(signal.SIGTERM)
        m = fields(ns.wait_for(lambda m: "STOPPING=1" in m.split("\n"), "STOPPING=1"))
        assert status_is(m, "draining 0 sessions")
        assert d.wait_exit() == 0
        assert "NOTIFY_SOCKET" not in d.log()     # no warnings about it
    finally:
        ns.close()


@needs_root
def test_reload_after_drop_rereads_readable_files(procs, certs, backend):
    """With the config and key readable by the popsd user (owner nobody,
    mode 0600), a reload after the drop works and READY=1 follows."""
    d_ = public_dir("popsd-reload.")
    try:
        key, cert = nobody_keypair(d_, certs)
        port = H.free_port()
        conf = write_conf(d_, certs, backend, listens=[("pop3s", port)], key=key,
                          cert=cert)
        os.chmod(conf, 0o644)
        ns = NotifySocket(os.path.join(d_, "notify"))
        try:
            d = procs("popsd", [popsd_bin(), "-d", "-f", conf],
                      env={"NOTIFY_SOCKET": ns.address})
            ns.wait_for(lambda m: "READY=1" in m.split("\n"), "READY=1")
            with open(conf, "a") as f:
                f.write("max-sessions 7\n")
            d.proc.send_signal(signal.SIGHUP)
            ns.wait_for(lambda m: "RELOADING=1" in m.split("\n"), "RELOADING=1")
            m = fields(ns.wait_for(lambda m: "READY=1" in m.split("\n"), "READY=1"))
            assert status_is(m, "serving 0 sessions")
            d.wait_log(r"reloaded .*popsd.conf: new sessions use the new configuration")
            pop3s_session(port, certs)
        finally:
            ns.close()
    finally:
        shutil.rmtree(d_, ignore_errors=True)


@needs_root
def test_workers_reload_then_restarted_worker_keeps_it(procs, certs, backend):
    """With two workers and files popsd can read after the drop: a reload
    reaches both workers, and a worker that dies afterwards comes back
    with the reloaded configuration, not the one popsd started with (the
    master reloads too, and new workers are forked from it)."""
    d_ = public_dir("popsd-workers.")
    try:
        key, cert = nobody_keypair(d_, certs)
        port = H.free_port()
        conf = write_conf(d_, certs, backend, listens=[("pop3", port)], key=key,
                          cert=cert, extra=DROP + ["workers 2", "require-tls no"])
        os.chmod(conf, 0o644)
        d = procs("popsd", [popsd_bin(), "-d", "-f", conf])
        d.wait_log(r"popsd ready: 2 workers")
        with open(conf, "a") as f:
            f.write("max-sessions-per-ip 1\n")
        d.proc.send_signal(signal.SIGHUP)
        H.wait_until(lambda: len(re.findall(r"^reloaded ", d.log(), re.M)) == 3, 10,
                     "the master and both workers to reload")
        kids = H.wait_children(d.pid, 2, what="two workers")
        for k in kids:
            os.kill(k, signal.SIGKILL)
        H.wait_until(lambda: len(H.children(d.pid)) == 2 and
                     not set(kids) & set(H.children(d.pid)), 15, "two new workers")
        new = H.wait_children(d.pid, 2, what="two new workers")
        # Each new worker refuses the second session once, whichever holds
        # the first: both came back with the limit. The first is in before
        # the second is tried (two workers admitting the last place at the
        # same instant may both refuse, src/ledger.h).
        for i, (a, b) in enumerate([(0, 1), (1, 0), (0, 0), (1, 1)]):
            with H.only_worker(d.pid, new[a]):
                first = H.Pop3Client(port)
                assert first.readline().startswith(b"+OK"), d.log()
            with first, H.only_worker(d.pid, new[b]), H.Pop3Client(port) as second:
                line = second.readline()
                assert line.startswith(b"-ERR [SYS/TEMP] ") and b"your address" in line, \
                    (line, d.log())
            # The first one's end is logged once its worker has let it go.
            H.wait_until(lambda: len(re.findall(r"^session=", d.log(), re.M)) > i, 10,
                         "the session to end")
    finally:
        shutil.rmtree(d_, ignore_errors=True)


@needs_root
def test_notify_status_counts_sessions(procs, tmp_path, certs, backend):
    port = H.free_port()
    conf = write_conf(tmp_path, certs, backend, listens=[("pop3s", port)])
    ns = NotifySocket(str(tmp_path / "notify"))
    try:
        procs("popsd", [popsd_bin(), "-d", "-f", conf], env={"NOTIFY_SOCKET": ns.address})
        ns.wait_for(lambda m: "READY=1" in m.split("\n"), "READY=1")
        with H.Pop3Client(port, certs.client_context()) as c:
            c.login("demo", H.PASSWORDS["demo"])
            ns.wait_for(lambda m: status_is(fields(m), "serving 1 session"),
                        "STATUS=serving 1 session", timeout=15)
            c.cmd("QUIT")
        ns.wait_for(lambda m: status_is(fields(m), "serving 0 sessions"),
                    "STATUS=serving 0 sessions", timeout=15)
    finally:
        ns.close()


@needs_root
def test_watchdog_pings(procs, tmp_path, certs, backend):
    port = H.free_port()
    conf = write_conf(tmp_path, certs, backend, listens=[("pop3s", port)])
    ns = NotifySocket(str(tmp_path / "notify"))
    try:
        # WATCHDOG_PID must be popsd's own: the shell execs popsd, keeping $$.
        procs("popsd", ["sh", "-c", f'WATCHDOG_PID=$$ exec "$0" -d -f {conf}', popsd_bin()],
              env={"NOTIFY_SOCKET": ns.address, "WATCHDOG_USEC": "200000"})
        ns.wait_for(lambda m: "READY=1" in m.split("\n"), "READY=1")
        t0 = time.monotonic()
        for _ in range(3):
            ns.wait_for(lambda m: m == "WATCHDOG=1", "WATCHDOG=1", timeout=5)
        # Every 100 ms (half of WATCHDOG_USEC): three pings well within 2 s.
        assert time.monotonic() - t0 < 2
    finally:
        ns.close()


@needs_root
def test_watchdog_for_another_pid_not_pinged(procs, tmp_path, certs, backend):
    port = H.free_port()
    conf = write_conf(tmp_path, certs, backend, listens=[("pop3s", port)])
    ns = NotifySocket(str(tmp_path / "notify"))
    try:
        d = procs("popsd", [popsd_bin(), "-d", "-f", conf],
                  env={"NOTIFY_SOCKET": ns.address, "WATCHDOG_USEC": "50000",
                       "WATCHDOG_PID": "1"})
        ns.wait_for(lambda m: "READY=1" in m.split("\n"), "READY=1")
        pop3s_session(port, certs)       # > 25 ms, i.e. many would-be pings
        d.proc.send_signal(signal.SIGTERM)
        ns.wait_for(lambda m: "STOPPING=1" in m.split("\n"), "STOPPING=1")
        assert d.wait_exit() == 0
        ns._drain()
        assert "WATCHDOG=1" not in ns.messages
    finally:
        ns.close()


# ---------------------------------------------------------------- inetd mode

@needs_ssa
@needs_root
def test_inetd_mode_systemd_accept(procs, tmp_path, certs, backend):
    """systemd-socket-activate --accept --inetd: one popsd -i pop3s per
    connection, the connection on stdin/stdout; a full session, then that
    popsd exits."""
    port = H.free_port()
    conf = write_conf(tmp_path, certs, backend)     # its listen line is ignored
    d = procs("ssa", [SSA, "--accept", "--inetd", "-l", f"127.0.0.1:{port}",
                      popsd_bin(), "-d", "-i", "pop3s", "-f", conf])
    d.wait_log(rf"Listening on 127.0.0.1:{port}")
    for _ in range(2):
        local = pop3s_session(port, certs)
        d.wait_log(rf"session=\d+ client=127.0.0.1 port={local} listener=pop3s "
                   rf".*login=yes .*reason=")
    # Each popsd exits 0 when its session ends (systemd-socket-activate
    # reports its children's exits).
    m = H.wait_until(lambda: len(re.findall(r"Child \d+ died with code 0", d.log())) >= 2,
                     10, "both inetd popsd processes to exit 0")
    assert m
    assert "popsd ready" not in d.log()     # no listeners: -i ignores them
    assert "dropped privileges to user nobody" in d.log()


@needs_ssa
@needs_root
def test_inetd_mode_pop3_stls(procs, tmp_path, certs, backend):
    port = H.free_port()
    conf = write_conf(tmp_path, certs, backend)
    d = procs("ssa", [SSA, "--accept", "--inetd", "-l", f"127.0.0.1:{port}",
                      popsd_bin(), "-d", "-i", "pop3", "-f", conf])
    d.wait_log(rf"Listening on 127.0.0.1:{port}")
    pop3_stls_session(port, certs)
    d.wait_log(r"listener=pop3 .*stls=yes login=yes")


@pytest.mark.skipif(SOCAT is None, reason="socat missing (Debian package socat)")
@needs_root
def test_inetd_mode_socat(procs, tmp_path, certs, backend):
    """socat as the inetd: EXEC with nofork puts the TCP connection itself
    on the child's stdin and stdout."""
    port = H.free_port()
    conf = write_conf(tmp_path, certs, backend)
    d = procs("socat", [SOCAT, f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork",
                        f"EXEC:{popsd_bin()} -d -i pop3s -f {conf},nofork"])
    H.wait_until(lambda: H.Popsd._accepts(port), 10, "socat to listen")
    local = pop3s_session(port, certs)
    d.wait_log(rf"session=\d+ client=127.0.0.1 port={local} listener=pop3s .*login=yes")


@needs_root
def test_inetd_mode_stdin_not_a_connection(procs, tmp_path, certs, backend):
    """-i with stdin not a socket, or a listening socket (Accept=no by
    mistake): refused with the reason."""
    conf = write_conf(tmp_path, certs, backend)
    d = procs("null", [popsd_bin(), "-d", "-i", "pop3s", "-f", conf])
    assert d.wait_exit() == 1
    assert "-i pop3s: stdin is not a socket" in d.log(), d.log()
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(1)
    with lst:
        d = procs("listening", [popsd_bin(), "-d", "-i", "pop3s", "-f", conf], stdin=lst)
        assert d.wait_exit() == 1
    assert "stdin is a listening socket, not a connection" in d.log(), d.log()


def test_inetd_mode_checks_config(procs, tmp_path, certs, backend):
    conf = write_conf(tmp_path, certs, backend, extra=DROP + ["frobnicate yes"])
    a, b = socket.socketpair()
    with a, b:
        d = procs("bad", [popsd_bin(), "-d", "-i", "pop3s", "-f", conf], stdin=a)
        assert d.wait_exit() == 1
    assert re.search(r"popsd.conf:\d+: unknown keyword \"frobnicate\"", d.log()), d.log()


def test_usage_mentions_inetd_mode():
    r = subprocess.run([popsd_bin(), "-h"], stdout=subprocess.PIPE, text=True, timeout=10)
    assert r.returncode == 0
    assert "-i kind" in r.stdout and "inetd" in r.stdout
    r = subprocess.run([popsd_bin(), "-i", "imap"], stderr=subprocess.PIPE, text=True,
                       timeout=10)
    assert r.returncode == 1 and "usage:" in r.stderr


# ---------------------------------------------------------------- privilege drop

@needs_root
def test_privilege_drop_to_nobody(procs, tmp_path, certs, backend):
    port = H.free_port()
    conf = write_conf(tmp_path, certs, backend, listens=[("pop3s", port)])
    d = procs("popsd", [popsd_bin(), "-d", "-f", conf])
    d.wait_log(r"popsd ready")
    st = ids(d.pid)
    assert st["Uid"] == [str(NOBODY)] * 4, st
    assert st["Gid"] == [str(NOGROUP)] * 4, st
    assert st["Groups"] == [str(NOGROUP)], st
    assert int(st["CapEff"][0], 16) == 0 and int(st["CapPrm"][0], 16) == 0, st
    pop3s_session(port, certs)
    d.wait_log(r"listener=pop3s .*login=yes")
    # Non-dumpable (a core file would hold the key): the kernel then gives
    # the private files of /proc/PID to root rather than to the process's
    # user (the directory itself keeps the euid, for ps).
    assert os.stat(f"/proc/{d.pid}/environ").st_uid == 0


@needs_root
def test_root_without_user_refused(procs, tmp_path, certs, backend):
    conf = write_conf(tmp_path, certs, backend, extra=())
    d = procs("popsd", [popsd_bin(), "-d", "-f", conf])
    assert d.wait_exit() == 1
    assert f'refusing to run as root: add "user NAME"' in d.log(), d.log()
    assert conf in d.log()
    # -n as root applies the start's checks: the same refusal, not "OK".
    r = subprocess.run([popsd_bin(), "-n", "-f", conf], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=10)
    assert r.returncode == 1 and "configuration OK" not in r.stdout, r.stdout
    assert f'refusing to run as root: add "user NAME"' in r.stdout, r.stdout


@pytest.mark.parametrize("extra,expect", [
    (["user no-such-user-popsd"], 'user "no-such-user-popsd": no such user'),
    (["user nobody", "group no-such-group-popsd"], 'group "no-such-group-popsd": no such group'),
    (["user root"], "uid or gid 0 is no privilege drop"),
    (["group nogroup"], "group needs a user directive too"),
    (DROP + ["chroot /nonexistent-popsd"], 'chroot "/nonexistent-popsd": No such file'),
])
def test_bad_privilege_config_refused_by_check(tmp_path, certs, backend, extra, expect):
    conf = write_conf(tmp_path, certs, backend, extra=extra)
    r = subprocess.run([popsd_bin(), "-n", "-f", conf], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=10)
    assert r.returncode == 1, r.stdout
    assert expect in r.stdout, r.stdout


@needs_root
def test_chroot(procs, tmp_path, certs, backend):
    """chroot DIR: the process root is DIR, sessions still work (backend
    resolved and keys loaded before), and a reload is refused with a
    clear line since the configuration is out of reach."""
    root = public_dir("popsd-chroot.")
    try:
        port = H.free_port()
        conf = write_conf(tmp_path, certs, backend, listens=[("pop3s", port)],
                          extra=DROP + [f"chroot {root}"])
        env = {}
        if "ASAN_OPTIONS" in os.environ:
            # LeakSanitizer stops the world through /proc, which the
            # chroot lacks: at exit it would spin for ever.
            env["ASAN_OPTIONS"] = os.environ["ASAN_OPTIONS"] + ":detect_leaks=0"
        d = procs("popsd", [popsd_bin(), "-d", "-f", conf], env=env)
        d.wait_log(rf"dropped privileges to user nobody .*chroot {re.escape(root)}")
        assert os.readlink(f"/proc/{d.pid}/root") == root
        pop3s_session(port, certs)
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log(r"reload refused: popsd is chrooted to .*restart popsd to apply")
        pop3s_session(port, certs)
        # It ends cleanly, every worker with it (the default is one per
        # CPU).
        kids = H.children(d.pid)
        d.proc.send_signal(signal.SIGTERM)
        assert d.wait_exit() == 0, d.log()
        H.wait_until(lambda: not any(H.pid_alive(k) for k in kids), 15,
                     "the workers to end")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_not_root_with_other_user_refused(procs, tmp_path, certs, backend):
    """Started unprivileged, popsd cannot switch users: "user" must be who
    it already is (as under systemd User=/DynamicUser=)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to start popsd as nobody")
    d_ = public_dir("popsd-unpriv.")
    try:
        key, cert = nobody_keypair(d_, certs)
        port = H.free_port()
        demote = dict(user=NOBODY, group=NOGROUP, extra_groups=[], cwd=d_)
        bad = write_conf(d_, certs, backend, extra=["user daemon"], key=key, cert=cert,
                         name="bad.conf")
        good = write_conf(d_, certs, backend, listens=[("pop3s", port)], key=key,
                          cert=cert, extra=DROP, name="good.conf")
        for c in (bad, good):
            os.chmod(c, 0o644)
        p = procs("bad", [popsd_bin(), "-d", "-f", bad], **demote)
        assert p.wait_exit() == 1
        assert 'user "daemon"' in p.log() and "cannot switch" in p.log(), p.log()
        # -n as that user refuses it too, and passes the good file.
        p = procs("bad-n", [popsd_bin(), "-n", "-f", bad], **demote)
        assert p.wait_exit() == 1
        assert 'user "daemon"' in p.log() and "cannot switch" in p.log(), p.log()
        p = procs("good-n", [popsd_bin(), "-n", "-f", good], **demote)
        assert p.wait_exit() == 0 and "configuration OK" in p.log(), p.log()
        p = procs("good", [popsd_bin(), "-d", "-f", good], **demote)
        p.wait_log(r"popsd ready")
        assert "dropped privileges" not in p.log()
        pop3s_session(port, certs)
    finally:
        shutil.rmtree(d_, ignore_errors=True)


# ---------------------------------------------------------------- unit files

def unit_copies(directory):
    """The units of systemd/ with ExecStart pointing at the built popsd
    (systemd-analyze verify checks that the binary exists)."""
    for name in os.listdir(UNITS):
        if name.endswith((".service", ".socket")):
            text = open(os.path.join(UNITS, name)).read()
            text = text.replace("/usr/local/sbin/popsd", popsd_bin())
            with open(os.path.join(directory, name), "w") as f:
                f.write(text)
    return sorted(os.path.join(directory, n) for n in os.listdir(directory))


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze missing (package systemd)")
def test_units_verify(tmp_path):
    units = unit_copies(str(tmp_path))
    names = [os.path.basename(u) for u in units]
    assert {"popsd.service", "popsd-pop3s.socket", "popsd-pop3.socket",
            "popsd-inetd.socket", "popsd-inetd@.service"} <= set(names)
    # --man=no: the man pages are checked where they are installed.
    r = subprocess.run([ANALYZE, "verify", "--man=no"] + units, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=120, cwd=str(tmp_path))
    assert r.returncode == 0, r.stdout
    assert r.stdout.strip() == "", r.stdout


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze missing (package systemd)")
@pytest.mark.parametrize("unit", ["popsd.service", "popsd-inetd@.service"])
def test_units_security_ok(tmp_path, unit):
    units = unit_copies(str(tmp_path))
    path = [u for u in units if os.path.basename(u) == unit][0]
    r = subprocess.run([ANALYZE, "security", "--offline=true", "--no-pager", path],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=120, cwd=str(tmp_path))
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", r.stdout)
    assert m, r.stdout
    print(f"{unit}: exposure {m.group(1)} {m.group(2)}")
    # OK is below 4.0 (then MEDIUM, EXPOSED, UNSAFE).
    assert float(m.group(1)) < 4.0 and m.group(2) in ("OK", "SAFE"), r.stdout


def test_socket_units_one_name_each():
    """One FileDescriptorName= names every socket of its unit, so each kind
    has its own socket unit, and both activate popsd.service."""
    for unit, name in (("popsd-pop3s.socket", "pop3s"), ("popsd-pop3.socket", "pop3")):
        text = open(os.path.join(UNITS, unit)).read()
        assert re.search(rf"^FileDescriptorName={name}$", text, re.M), unit
        assert re.search(r"^Service=popsd.service$", text, re.M), unit
    svc = open(os.path.join(UNITS, "popsd.service")).read()
    assert re.search(r"^Type=notify$", svc, re.M)
    assert re.search(r"^CapabilityBoundingSet=$", svc, re.M)
