"""The root spawner behind `backend exec` against other local users and
against popsd's death (issue 13, items 1 and 2).

1. Another local user (nobody, via setpriv) floods the listening sockets
   the spawner has on 127.0.0.1 (found in /proc, as any user could find
   root's listeners in /proc/net/tcp). Exec sessions must still start at once, and the
   spawner must still reap its daemons.
2. SIGKILL popsd (idle, mid-session, and while flooded): the root spawner
   must be gone within a bounded wait, and a daemon it had started ends
   when its connection closes.

Needs root (setpriv, and the spawner is root only when popsd starts as
root)."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading

import pytest

import popsd_harness as H

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

# A POP3-ish inetd daemon: greets with its pid, any USER/PASS logs in,
# QUIT says goodbye; ends at EOF on stdin.
DAEMON = r'''#!/usr/bin/python3
import os, sys
out = sys.stdout.buffer
def say(s):
    out.write(s.encode() + b"\r\n"); out.flush()
say("+OK spawned <%d.1@test>" % os.getpid())
for raw in sys.stdin.buffer:
    cmd = raw.decode(errors="replace").strip().upper()
    if cmd.startswith(("USER", "PASS")):
        say("+OK")
    elif cmd == "QUIT":
        say("+OK bye"); break
    else:
        say("-ERR unknown")
'''

# Run as nobody: flood, 200 non-blocking connects at a time, every port
# listed in the file argv[1], over and over. Closing the sockets after each
# burst leaves what was accepted into a queue sitting there in CLOSE-WAIT,
# as the attack in the issue does by exiting. Prints "flooded PORT" once
# per port.
FLOODER = r'''
import socket, sys, time
seen = set()
while True:
    try:
        with open(sys.argv[1]) as f:
            ports = {int(p) for p in f.read().split()}
    except OSError:
        ports = set()
    for port in ports:
        socks = []
        for _ in range(200):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", port))
            except OSError:
                pass
            socks.append(s)
        for s in socks:
            s.close()
        if port not in seen:
            seen.add(port)
            print("flooded", port, flush=True)
    time.sleep(0.05)    # pace of the flood, not synchronisation
'''


@pytest.fixture
def daemon():
    d = tempfile.mkdtemp(prefix="popsd-exec.")
    os.chmod(d, 0o755)
    path = os.path.join(d, "daemon")
    with open(path, "w") as f:
        f.write(DAEMON)
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(d, ignore_errors=True)


def root_loopback_listeners():
    """{port: inode} of uid 0's listening sockets on 127.0.0.1."""
    out = {}
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            w = line.split()
            addr, port = w[1].split(":")
            if w[3] == "0A" and addr == "0100007F" and w[7] == "0":
                out[int(port, 16)] = w[9]
    return out


def socket_inodes(pid):
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            out.add(link[8:-1])
    return out


def the_spawner(p):
    """popsd's child named popsd-spawner: it renames itself just after
    the fork, so a slow (ASan) start may show its old name for a while."""
    def named():
        for kid in H.children(p.pid):
            try:
                with open(f"/proc/{kid}/comm") as f:
                    if f.read().strip() == "popsd-spawner":
                        return kid
            except OSError:
                pass
        return None
    return H.wait_until(named, 10, "the spawner")


def zombies_of(pid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] == "Z":
            out.append(int(d))
    return out


class Flooder:
    """FLOODER as nobody against the spawner's listening sockets on
    127.0.0.1, whatever they are at the moment: a thread of ours (root)
    looks them up in /proc and keeps the target file up to date. Only
    the spawner's: other tests on this machine have listeners too."""

    def __init__(self, spawner):
        self.spawner = spawner
        self.dir = tempfile.mkdtemp(prefix="popsd-flood.")
        os.chmod(self.dir, 0o755)
        self.targets = os.path.join(self.dir, "targets")
        self.stopping = threading.Event()
        self._update()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        self.proc = subprocess.Popen(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
             "/usr/bin/python3", "-c", FLOODER, self.targets],
            stdout=subprocess.PIPE, cwd="/")
        self.lines = H.LineReader(self.proc)

    def _update(self):
        try:
            mine = socket_inodes(self.spawner)
        except OSError:
            return
        ports = [port for port, ino in root_loopback_listeners().items() if ino in mine]
        tmp = self.targets + ".tmp"
        with open(tmp, "w") as f:
            f.write(" ".join(map(str, ports)))
        os.chmod(tmp, 0o644)
        os.rename(tmp, self.targets)

    def _watch(self):
        while not self.stopping.wait(0.01):
            self._update()

    def wait_flooded(self):
        line = self.lines.readline(timeout=30)
        assert line.startswith(b"flooded "), line
        return int(line.split()[1])

    def stop(self):
        self.stopping.set()
        self.thread.join(10)
        self.proc.kill()
        self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


def session(port, ctx, results, i):
    try:
        with H.Pop3Client(port, ctx) as c:
            greeting = c.login("someone", "secret")
            results[i] = (greeting, c.cmd("QUIT"))
    except Exception as e:   # reported by the assertion below
        results[i] = (repr(e).encode(), b"")


def test_exec_survives_local_user_flood(popsd, certs, daemon):
    """Another local user floods what the spawner exposes, 200 connects
    at a time, again and again: exec sessions (8 at once) still start
    promptly, and the spawner still reaps every daemon."""
    p = popsd(backend_addr=f"exec {daemon}")
    spawner = the_spawner(p)
    flooder = Flooder(spawner)
    try:
        flooder.wait_flooded()
        for _ in range(3):
            results = [None] * 8
            threads = [threading.Thread(target=session, args=(p.port, certs.client_context(),
                                                              results, i))
                       for i in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            for greeting, bye in results:
                assert greeting.startswith(b"+OK spawned <"), greeting
                assert bye == b"+OK bye\r\n"
    finally:
        flooder.stop()
    # A client that read "+OK bye" may be ahead of popsd's summary line.
    H.wait_until(lambda: len(p.session_lines()) >= 24, 10, "24 session lines")
    assert len([s for s in p.session_lines() if s["login"] == "yes"]) == 24
    assert "spawner:" not in p.log()
    # Every daemon said bye and exited: none is left unreaped.
    H.wait_until(lambda: not zombies_of(spawner) and not H.children(spawner), 10,
                 "the spawner to reap its daemons")
    assert H.pid_alive(spawner)


def kill_popsd(p, spawner):
    """SIGKILL every popsd process but the spawner."""
    others = [k for k in H.children(p.pid) if k != spawner]
    p.signal(signal.SIGKILL)
    for k in others:
        os.kill(k, signal.SIGKILL)
    p.wait(10)


@pytest.mark.parametrize("when", ["idle", "mid-session", "flooded"])
def test_spawner_exits_when_popsd_is_killed(popsd, certs, daemon, when):
    """Whatever kills popsd, the root spawner goes at once (it reads the
    channel's end; a parent-death signal from a dropped user never comes).
    The daemon of a session in progress is not signalled: it sees its
    connection close and ends."""
    p = popsd(backend_addr=f"exec {daemon}")
    spawner = the_spawner(p)
    flooder = client = None
    daemon_pid = None
    try:
        if when == "flooded":
            flooder = Flooder(spawner)
            flooder.wait_flooded()
        if when != "idle":
            client = H.Pop3Client(p.port, certs.client_context())
            greeting = client.readline()
            if greeting.startswith(b"+OK spawned <"):
                daemon_pid = int(greeting.split(b"<")[1].split(b".")[0])
        kill_popsd(p, spawner)
        H.wait_until(lambda: (H.reap(spawner), not H.pid_alive(spawner))[1], 10,
                     "the spawner to exit after popsd was killed")
        if daemon_pid is not None:
            H.wait_until(lambda: (H.reap(daemon_pid), not H.pid_alive(daemon_pid))[1], 10,
                         "the session's daemon to end with its connection")
        assert when == "idle" or daemon_pid is not None, greeting
    finally:
        if client is not None:
            client.close()
        if flooder is not None:
            flooder.stop()
        if H.pid_alive(spawner):
            os.kill(spawner, signal.SIGKILL)
            H.wait_until(lambda: (H.reap(spawner), not H.pid_alive(spawner))[1], 10,
                         "the spawner to die")
    assert "spawner exiting with popsd" in p.log()



def test_reply_truncated_by_emfile_fails_one_session_only(popsd, certs, daemon,
                                                          monkeypatch):
    """popsd out of descriptors when a daemon's two arrive (SCM_RIGHTS is
    truncated, one of them may be installed): that session gets -ERR, the
    descriptors are closed, and the spawner and its channel carry on, so
    the next session, with descriptors to spare, is served. The limit is
    set by prlimit as a wrapper (this sandbox lets no one change it from
    outside): room for one session's three, and a connection that holds
    one more takes the room a reply needs."""
    probe = popsd(backend_addr=f"exec {daemon}")
    base = len(os.listdir(f"/proc/{probe.pid}/fd"))
    probe.stop()
    limit = base + 3     # soft; the spawner (root) takes the hard one
    monkeypatch.setenv("POPSD_WRAPPER", f"prlimit --nofile={limit}:{limit + 64} -- " +
                       os.environ.get("POPSD_WRAPPER", ""))
    p = popsd(backend_addr=f"exec {daemon}")
    spawner = the_spawner(p)
    results = [None]
    session(p.port, certs.client_context(), results, 0)
    assert results[0][0].startswith(b"+OK spawned <"), results[0]
    H.wait_until(lambda: len(os.listdir(f"/proc/{p.pid}/fd")) == base, 10,
                 "popsd back to its idle descriptors")
    with socket.create_connection(("127.0.0.1", p.port)) as holder:
        H.wait_until(lambda: len(os.listdir(f"/proc/{p.pid}/fd")) == base + 1, 10,
                     "the holding connection accepted")
        with H.Pop3Client(p.port, certs.client_context()) as c:
            assert c.readline().startswith(b"-ERR [SYS/TEMP]")
        H.wait_until(lambda: "did not arrive" in p.log(), 10, "the failed reply's line")
    H.wait_until(lambda: len(os.listdir(f"/proc/{p.pid}/fd")) == base, 10,
                 "popsd back to its idle descriptors (nothing leaked)")
    session(p.port, certs.client_context(), results, 0)
    assert results[0][0].startswith(b"+OK spawned <"), results[0]
    assert H.pid_alive(spawner)
    assert "spawner exited" not in p.log()


def test_spawner_caps_daemons_at_max_sessions_it_started_with(popsd, certs, daemon):
    """The root spawner runs at most max-sessions daemons (as popsd
    started: it takes no configuration later). A reload that raises
    max-sessions lets popsd take a third session; the spawner refuses
    its daemon, and serves again once one of the two has ended."""
    from test_metrics import public_dir, reloadable_popsd
    d = public_dir()
    held = []
    try:
        p, _, _ = reloadable_popsd(popsd, certs, d, [], max_sessions=2,
                                   backend_addr=f"exec {daemon}")
        for _ in range(2):
            held.append(H.Pop3Client(p.port, certs.client_context()))
            assert held[-1].readline().startswith(b"+OK spawned <")
        with open(p.conf) as f:
            conf = f.read().replace("max-sessions 2\n", "max-sessions 10\n")
        with open(p.conf, "w") as f:
            f.write(conf)
        p.signal(signal.SIGHUP)
        H.wait_until(lambda: "reloaded " in p.log(), 15, "the reload")
        with H.Pop3Client(p.port, certs.client_context()) as c:
            assert c.readline().startswith(b"-ERR [SYS/TEMP]")
        assert "too many daemons running" in p.log()
        held.pop().close()
        results = [None]
        H.wait_until(lambda: (session(p.port, certs.client_context(), results, 0) or
                              results[0][0].startswith(b"+OK spawned <")), 15,
                     "a daemon once one has ended")
    finally:
        for c in held:
            c.close()
        shutil.rmtree(d, ignore_errors=True)
