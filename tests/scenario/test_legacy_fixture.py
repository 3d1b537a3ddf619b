"""The legacy backend fixture works: plain poplib against popa3d and
solid-pop3d, no popsd involved.  Run: /usr/bin/python3 -m pytest
tests/scenario/test_legacy_fixture.py"""

import hashlib
import os
import poplib
import pwd
import socket
import subprocess
import time
from pathlib import Path

import pytest

from legacy import KINDS, LegacyBackend, LegacyBackendError

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="legacy backends need root (mount/pid namespaces)")

HOST_FILES = ["/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow"]


def host_snapshot():
    """What the fixture must never change on the machine (it only mounts
    over these inside its own namespace): the account files (hashes), the
    mail spool (names + mtimes), /home and /etc/pam.d (names), and the
    daemons' /var/lib dirs (absent unless installed).  Only things other
    test runs sharing the machine would not touch."""
    snap = {}
    for f in HOST_FILES:
        p = Path(f)
        snap[f] = hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else None
    snap["/var/mail"] = sorted((e.name, e.stat(follow_symlinks=False).st_mtime_ns)
                               for e in os.scandir("/var/mail"))
    snap["/var/mail/legacy"] = os.path.lexists("/var/mail/legacy")
    for d in ("/home", "/etc/pam.d"):
        snap[d] = sorted(os.listdir(d))
    for d in ("/var/lib/popa3d", "/var/lib/solid-pop3d", "/home/legacy"):
        snap[d] = os.path.lexists(d)
    return snap


def listening(port):
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def our_processes(d):
    """Live processes running a binary from the backend dir or started
    with it on their command line (socat, ns-init, unshare, watchdog)."""
    found = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            if (p / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            exe = os.readlink(p / "exe")
            args = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if exe.startswith(str(d) + "/") or str(d) in args:
            found.append((int(p.name), args))
    return found


def login(b, method="user"):
    p = poplib.POP3(b.host, b.port, timeout=10)
    if method == "apop":
        p.apop(b.user, b.apop_secret)
    else:
        p.user(b.user)
        p.pass_(b.password)
    return p


@pytest.fixture(params=KINDS)
def kind(request):
    return request.param


@pytest.fixture
def legacy(kind, tmp_path):
    """Named so as not to shadow conftest's Dovecot `backend` fixture."""
    with LegacyBackend(kind, tmp_path) as b:
        yield b


def test_login_stat_list_retr_quit_then_stop(kind, tmp_path):
    before = host_snapshot()
    b = LegacyBackend(kind, tmp_path)
    b.start()
    try:
        assert listening(b.port)
        assert our_processes(b.dir), "process check sees nothing while running"
        assert host_snapshot() == before, "host files changed while running"
        with pytest.raises(KeyError):   # the account exists only in the namespace
            pwd.getpwnam(b.user)
        p = login(b)
        if kind == "popa3d":
            assert p.getwelcome() == b"+OK"
        else:
            assert p.getwelcome().startswith(b"+OK Solid POP3 server ready <")
        assert p.stat() == b.stat() == (3, b.stat()[1])
        resp, listing, _ = p.list()
        assert resp.startswith(b"+OK")
        assert listing == [b"%d %d" % (i, b.list_size(i)) for i in (1, 2, 3)]
        for n in (1, 2, 3):
            resp, lines, octets = p.retr(n)
            assert lines == b.retr_lines(n), f"message {n} differs"
        assert b"Hello legacy user," in b.retr_lines(1)
        assert b".leading dot line" in b.retr_lines(2)      # un-stuffed by poplib
        assert b"." in b.retr_lines(2)
        assert p.quit().startswith(b"+OK")
    finally:
        b.stop()
    assert not listening(b.port), "backend port still open after stop"
    assert not b.dir.exists(), "backend dir not cleaned up"
    assert not our_processes(b.dir), "a backend process survived stop"
    assert host_snapshot() == before, "host files changed"


def test_dot_stuffing_on_the_wire(legacy):
    """Raw bytes: the daemon dot-stuffs lines starting with '.'."""
    with socket.create_connection((legacy.host, legacy.port), timeout=10) as s:
        f = s.makefile("rb")
        assert f.readline().startswith(b"+OK")
        for cmd in (b"USER " + legacy.user.encode(), b"PASS " + legacy.password.encode()):
            s.sendall(cmd + b"\r\n")      # one at a time: solid-pop3d drops pipelined input
            assert f.readline().startswith(b"+OK")
        s.sendall(b"RETR 2\r\n")
        assert f.readline().startswith(b"+OK")
        body = b""
        while not body.endswith(b"\r\n.\r\n"):
            line = f.readline()
            assert line, "connection closed mid-message"
            body += line
        assert body == legacy.wire_body(2)
        assert b"\r\n..leading dot line\r\n" in body
        assert b"\r\n..\r\n" in body
        assert b"\r\n...two dots\r\n" in body
        s.sendall(b"QUIT\r\n")
        assert f.readline().startswith(b"+OK")


def test_top_uidl(legacy):
    p = login(legacy)
    assert p.top(1, 1)[1] == legacy.top_lines(1, 1)
    assert p.top(2, 3)[1] == legacy.top_lines(2, 3)
    uidls = p.uidl()[1]
    assert len(uidls) == 3
    ids = [u.split()[1] for u in uidls]
    assert len(set(ids)) == 3
    assert all(len(i) == (16 if legacy.kind == "popa3d" else 32) for i in ids)
    p.quit()


def test_no_capa(legacy):
    p = login(legacy)
    with pytest.raises(poplib.error_proto):
        p.capa()
    p.quit()


def test_dele_updates_mbox(legacy):
    """The daemon can rewrite/lock the scratch mbox as the user."""
    p = login(legacy)
    p.dele(1)
    p.quit()
    p = login(legacy)
    assert p.stat() == (2, legacy.list_size(2) + legacy.list_size(3))
    assert p.retr(1)[1] == legacy.retr_lines(2)
    p.quit()


def test_wrong_password_rejected(legacy):
    p = poplib.POP3(legacy.host, legacy.port, timeout=15)
    p.user(legacy.user)
    with pytest.raises(poplib.error_proto, match="-ERR"):
        p.pass_(legacy.password + "x")
    p.close()


def test_apop(tmp_path):
    with LegacyBackend("solid-pop3d", tmp_path) as b:
        assert b.apop_secret and b.apop_timestamp
        assert b.greeting.endswith(b.apop_timestamp)
        p = login(b, "apop")
        assert p.stat()[0] == 3
        assert p.retr(3)[1] == b.retr_lines(3)
        p.quit()
        # the digest really is checked
        p = poplib.POP3(b.host, b.port, timeout=15)
        with pytest.raises(poplib.error_proto):
            p.apop(b.user, b.apop_secret + "x")
        p.close()
        # manual digest = MD5(timestamp + secret), as a proxy would relay it
        with socket.create_connection((b.host, b.port), timeout=10) as s:
            f = s.makefile("rb")
            ts = f.readline().split()[-1]
            digest = hashlib.md5(ts + b.apop_secret.encode()).hexdigest()
            s.sendall(b"APOP %s %s\r\n" % (b.user.encode(), digest.encode()))
            assert f.readline().startswith(b"+OK")
            s.sendall(b"QUIT\r\n")


def test_popa3d_has_no_apop(tmp_path):
    with LegacyBackend("popa3d", tmp_path) as b:
        assert b.apop_secret is None and b.apop_timestamp is None
        with socket.create_connection((b.host, b.port), timeout=10) as s:
            f = s.makefile("rb")
            assert f.readline() == b"+OK\r\n"
            s.sendall(b"APOP legacy 0123456789abcdef0123456789abcdef\r\n")
            assert f.readline() == b"-ERR\r\n"


def test_detached_daemon_is_reported_and_killed(tmp_path):
    """A solid-pop3d started without a socket on stdin goes standalone on
    port 110 and daemonizes: stop must flag it and leave nothing behind."""
    if listening(110):
        pytest.skip("port 110 is in use on this machine")
    b = LegacyBackend("solid-pop3d", tmp_path).start()
    try:
        nsinit = int(Path(f"/proc/{b.pid}/task/{b.pid}/children").read_text().split()[0])
        subprocess.run(["nsenter", "-t", str(nsinit), "-m", "-p",
                        str(b.dir / "pkg/usr/sbin/solid-pop3d")],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=True, timeout=10)
        deadline = time.monotonic() + 10
        while not listening(110):
            assert time.monotonic() < deadline, "standalone solid-pop3d never listened"
            time.sleep(0.02)
    finally:
        with pytest.raises(LegacyBackendError, match="detached"):
            b.stop()
    assert not our_processes(b.dir)
    assert not listening(110)
    assert not b.dir.exists()


def test_two_backends_share_a_workdir(tmp_path):
    with LegacyBackend("popa3d", tmp_path) as a, LegacyBackend("popa3d", tmp_path) as b:
        assert a.dir != b.dir and a.port != b.port
        for x in (a, b):
            p = login(x)
            assert p.stat()[0] == 3
            p.quit()
    assert list(tmp_path.iterdir()) == []


def test_bad_kind_and_busy_port(tmp_path):
    with pytest.raises(ValueError):
        LegacyBackend("qpopper", tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(LegacyBackendError, match="in use"):
            LegacyBackend("popa3d", tmp_path, port=s.getsockname()[1]).start()
    assert list(tmp_path.iterdir()) == []
