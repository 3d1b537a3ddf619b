"""Backends beyond plain TCP (issue 6): `backend exec` (inetd-style
daemons started per session by the privileged spawner), `backend unix:`
for every listener kind, and `listen tls`, the plain TLS wrap with no POP3
mediation, driven with a POP2-style exchange.

The exec'd daemons here are small scripts: they report what popsd handed
them (environment, uid, stdin/stdout) and can die on request, which no
real POP daemon does on cue. Real legacy daemons through `backend exec`
are in the interoperability matrix (tests/interop)."""

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import textwrap

import pytest

import popsd_harness as H

# A POP3-ish inetd daemon: any USER/PASS logs in; after login "ENV" prints
# what it was given, "DIE" exits without a word, "QUIT" says goodbye.
INETD_POP3 = r'''#!/usr/bin/python3
import os, socket, sys
out = sys.stdout.buffer
def say(s):
    out.write(s.encode() + b"\r\n"); out.flush()
sys.stderr.write("inetd-pop3 started: pid=%d\n" % os.getpid()); sys.stderr.flush()
say("+OK inetd-pop3 ready <%d.1@test>" % os.getpid())
for raw in sys.stdin.buffer:
    words = raw.decode(errors="replace").strip().split()
    cmd = words[0].upper() if words else ""
    if cmd in ("USER", "PASS"):
        say("+OK")
    elif cmd == "ENV":
        keys = ("PROTO", "TCPREMOTEIP", "TCPREMOTEPORT", "TCPLOCALIP",
                "TCPLOCALPORT", "SSL_PROTOCOL", "SSL_CIPHER")
        say("+OK " + " ".join("%s=%s" % (k, os.environ.get(k, "-")) for k in keys)
            + " uid=%d stdin_is_stdout=%s stdin_family=%s" % (os.getuid(),
              os.path.samestat(os.fstat(0), os.fstat(1)),
              socket.socket(fileno=os.dup(0)).family.name))
    elif cmd == "DIE":
        sys.stderr.write("inetd-pop3 dying on request\n"); sys.stderr.flush()
        os._exit(3)
    elif cmd == "QUIT":
        say("+OK bye"); break
    else:
        say("-ERR unknown")
'''

# A POP2 (RFC 937) server in miniature, for the plain TLS wrap.
INETD_POP2 = r'''#!/usr/bin/python3
import sys
out = sys.stdout.buffer
def say(s):
    out.write(s + b"\r\n"); out.flush()
body = b"Subject: pop2\r\n\r\nhello over POP2\r\n"
say(b"+ POP2 test server ready")
for raw in sys.stdin.buffer:
    w = raw.strip().split()
    c = w[0].upper() if w else b""
    if c == b"HELO":
        say(b"#1 messages ready")
    elif c == b"READ":
        say(b"=%d characters in message 1" % len(body))
    elif c == b"RETR":
        out.write(body); out.flush()
    elif c == b"ACKD":
        say(b"=0 no more messages")
    elif c == b"QUIT":
        say(b"+ bye"); break
    else:
        say(b"- what")
'''

# Client-first: answers only after the client spoke, never greets.
INETD_ECHO = r'''#!/usr/bin/python3
import sys
for raw in sys.stdin.buffer:
    sys.stdout.buffer.write(b"echo: " + raw); sys.stdout.buffer.flush()
'''


def script(name, text):
    """Write an executable script where root (the spawner) can run it."""
    d = tempfile.mkdtemp(prefix="popsd-exec.")
    os.chmod(d, 0o755)
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o755)
    return path


@pytest.fixture
def inetd_pop3():
    path = script("inetd-pop3", INETD_POP3)
    yield path
    shutil.rmtree(os.path.dirname(path), ignore_errors=True)


def env_of(line):
    return dict(re.findall(r"(\w+)=(\S+)", line.decode()))


def test_exec_pop3s_environment(popsd, certs, inetd_pop3):
    """The daemon gets the connection on stdin/stdout and the UCSPI-TCP
    environment with SSL_PROTOCOL/SSL_CIPHER on a pop3s session; it runs
    with the spawner's privileges while popsd itself has dropped them."""
    p = popsd(backend_addr=f"exec {inetd_pop3}")
    with H.Pop3Client(p.port, certs.client_context()) as c:
        assert c.login("someone", "secret").startswith(b"+OK inetd-pop3 ready <")
        env = env_of(c.ok("ENV"))
        assert c.cmd("QUIT") == b"+OK bye\r\n"
    assert env["PROTO"] == "TCP"
    assert env["TCPREMOTEIP"] == "127.0.0.1"
    assert env["TCPREMOTEPORT"] == str(c.local_port)
    assert env["TCPLOCALIP"] == "127.0.0.1"
    assert env["TCPLOCALPORT"] == str(p.port)
    assert env["SSL_PROTOCOL"].startswith("TLSv1.")
    assert env["SSL_CIPHER"] not in ("-", "")
    assert env["stdin_is_stdout"] == "True"
    # A TCP socket, as under inetd: solid-pop3d goes standalone otherwise.
    assert env["stdin_family"] == "AF_INET"
    if os.geteuid() == 0:
        assert env["uid"] == "0"
        with open(f"/proc/{p.pid}/status") as f:
            uids = [l for l in f if l.startswith("Uid:")][0].split()[1:]
        assert "0" not in uids
    s = p.wait_session(login="yes")
    # The daemon's stderr is in popsd's log, tagged with the session id.
    assert re.search(rf"session={s['session']} backend stderr: inetd-pop3 "
                     r"started: pid\?\d+", p.log())


def test_exec_stls_session_has_no_ssl_environment(popsd, certs, inetd_pop3):
    """On the plaintext port the daemon starts before STLS: no SSL_*."""
    p = popsd(backend_addr=f"exec {inetd_pop3}", pop3s=False, pop3=True)
    with H.Pop3Client(p.pop3_port) as c:
        assert c.readline().startswith(b"+OK inetd-pop3 ready")
        assert c.cmd("STLS").startswith(b"+OK")
        tls = certs.client_context().wrap_socket(c.sock, server_hostname="localhost")
        f = tls.makefile("rb")
        tls.sendall(b"USER a\r\nPASS b\r\nENV\r\nQUIT\r\n")
        lines = [f.readline() for _ in range(4)]
    env = env_of(lines[2])
    assert env["SSL_PROTOCOL"] == "-" and env["TCPREMOTEIP"] == "127.0.0.1"
    assert lines[3] == b"+OK bye\r\n"
    p.wait_session(stls="yes", login="yes")


def test_exec_child_dies_mid_session(popsd, certs, inetd_pop3):
    """A daemon that dies mid-session ends the session cleanly: the client
    sees the end of the stream, popsd logs it and keeps serving."""
    p = popsd(backend_addr=f"exec {inetd_pop3}")
    with H.Pop3Client(p.port, certs.client_context()) as c:
        c.login("a", "b")
        c.send("DIE\r\n")
        assert c.read_to_eof() == b""
    s = p.wait_session(reason="backend-closed")
    assert re.search(rf"session={s['session']} backend stderr: inetd-pop3 dying",
                     p.log())
    H.wait_until(lambda: re.search(r"pid \d+ exited with status 3", p.log()), 10,
                 "the spawner to log the exit status")
    with H.Pop3Client(p.port, certs.client_context()) as c:
        c.login("a", "b")
        assert c.cmd("QUIT") == b"+OK bye\r\n"


def test_exec_missing_program_is_config_error(popsd, tmp_path):
    p = popsd(backend_addr=f"exec {tmp_path}/nonexistent", start=False)
    rc, out = p.check()
    assert rc == 1
    assert re.search(r":\d+: backend exec: .*not an absolute path to an "
                     r"executable file: No such file", out)


def test_exec_spawn_failure_gives_sys_temp(popsd, certs, tmp_path):
    """A program that cannot be executed after all (bad interpreter) means
    the daemon's connection closes at once: the client gets no greeting
    and a clean close, and the reason is in the log."""
    bad = script("bad", "#!/nonexistent/interpreter\n")
    try:
        p = popsd(backend_addr=f"exec {bad}", timeouts={"connect": "2s"})
        with H.Pop3Client(p.port, certs.client_context()) as c:
            data = c.read_to_eof()
        assert data in (b"", b"-ERR [SYS/TEMP] mail service not answering\r\n")
        s = p.wait_session()
        assert s["reason"] in ("backend-closed", "backend-silent")
        assert "cannot execute" in p.log()
    finally:
        shutil.rmtree(os.path.dirname(bad), ignore_errors=True)


class PublicCerts:
    """The test certificate in a directory popsd's dropped user can read,
    the key owned by that user (mode 0600): what a reload needs."""

    def __init__(self, certs):
        self.dir = tempfile.mkdtemp(prefix="popsd-pub.")
        os.chmod(self.dir, 0o755)
        self.cert = os.path.join(self.dir, "cert.pem")
        self.key = os.path.join(self.dir, "key.pem")
        shutil.copyfile(certs.cert, self.cert)
        shutil.copyfile(certs.key, self.key)
        os.chmod(self.cert, 0o644)
        os.chmod(self.key, 0o600)
        if os.geteuid() == 0:
            import pwd
            pw = pwd.getpwnam(os.environ.get("POPSD_TEST_USER", "nobody"))
            os.chown(self.key, pw.pw_uid, pw.pw_gid)


def test_exec_reload_cannot_change_command(certs, inetd_pop3):
    """The privileged spawner runs only the command it started with: a
    reload that changes it is refused and the old command keeps serving."""
    pub = PublicCerts(certs)
    p = H.Popsd(pub.dir, pub, f"exec {inetd_pop3}")
    os.chmod(p.conf, 0o644)
    p.start()
    try:
        _reload_refused(p, certs, inetd_pop3)
    except BaseException:
        print(p.log())
        raise
    finally:
        p.stop()
        shutil.rmtree(pub.dir, ignore_errors=True)


def _reload_refused(p, certs, inetd_pop3):
    with open(p.conf) as f:
        text = f.read()
    with open(p.conf, "w") as f:
        f.write(text.replace(f"exec {inetd_pop3}", "exec /bin/true"))
    p.signal(signal.SIGHUP)
    H.wait_until(lambda: "can only be changed by a restart" in p.log(), 10,
                 "the reload to be refused")
    with H.Pop3Client(p.port, certs.client_context()) as c:
        assert c.login("a", "b").startswith(b"+OK inetd-pop3 ready")


class UnixRelay:
    """socat from a unix socket to the shared Dovecot: a real POP3 server
    behind `backend unix:`."""

    def __init__(self, dovecot_port):
        self.dir = tempfile.mkdtemp(prefix="popsd-unix.")
        os.chmod(self.dir, 0o755)
        self.path = os.path.join(self.dir, "pop3.sock")
        self.proc = subprocess.Popen(
            ["socat", f"UNIX-LISTEN:{self.path},fork,mode=666",
             f"TCP:127.0.0.1:{dovecot_port}"], stderr=subprocess.DEVNULL)
        H.wait_until(lambda: os.path.exists(self.path), 10, "socat's unix socket")

    def close(self):
        H.stop_pid(self.proc.pid)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def unix_relay(backend):
    r = UnixRelay(backend.port)
    yield r
    r.close()


@pytest.mark.parametrize("kind", ["pop3s", "pop3", "tls"])
def test_unix_backend_every_listener(popsd, certs, unix_relay, kind):
    """backend unix:/path behind each listener kind, against Dovecot."""
    port = H.free_port()
    extra = [f"listen tls 127.0.0.1:{port}"] if kind == "tls" else []
    p = popsd(backend_addr=f"unix:{unix_relay.path}", pop3s=(kind == "pop3s"),
              pop3=(kind == "pop3"), extra=extra)
    ctx = certs.client_context()
    if kind == "pop3":
        c = H.Pop3Client(p.pop3_port)
        assert c.readline().startswith(b"+OK")
        assert c.cmd("STLS").startswith(b"+OK")
        c.sock = ctx.wrap_socket(c.sock, server_hostname="localhost")
        c.f = c.sock.makefile("rb")
        c.ok("USER demo")
        c.ok(f"PASS {H.PASSWORDS['demo']}")
    else:
        c = H.Pop3Client(p.port if kind == "pop3s" else port, ctx)
        c.login("demo", H.PASSWORDS["demo"])
    with c:
        c.ok("LIST")
        assert b"\r\n" in c.multiline()
        c.ok("RETR 1")
        assert b"Subject:" in c.multiline()
        assert c.cmd("QUIT").startswith(b"+OK")
    p.wait_session(listener=kind, login=("no" if kind == "tls" else "yes"))


@pytest.fixture
def pop2_daemon():
    path = script("pop2d", INETD_POP2)
    yield path
    shutil.rmtree(os.path.dirname(path), ignore_errors=True)


def test_listen_tls_pop2_exchange(popsd, certs, pop2_daemon):
    """listen tls wraps any line protocol: a POP2 (RFC 937) session passes
    byte for byte, commands POP3 would refuse included."""
    port = H.free_port()
    p = popsd(backend_addr=f"exec {pop2_daemon}", pop3s=False,
              extra=[f"listen tls 127.0.0.1:{port}"])
    H.wait_until(lambda: H.listening(port), 10, "the tls listener")
    with H.Pop3Client(port, certs.client_context()) as c:
        assert c.readline() == b"+ POP2 test server ready\r\n"
        assert c.cmd("HELO user secret") == b"#1 messages ready\r\n"
        size = int(c.cmd("READ 1").split()[0][1:])
        c.send("RETR\r\n")
        body = c.f.read(size)
        assert body == b"Subject: pop2\r\n\r\nhello over POP2\r\n"
        assert c.cmd("ACKD") == b"=0 no more messages\r\n"
        assert c.cmd("QUIT") == b"+ bye\r\n"
    s = p.wait_session(listener="tls")
    assert s["stls"] == "no" and s["tls"].startswith("TLSv1.")


def test_listen_tls_client_first_protocol(popsd, certs):
    """No greeting is awaited on a tls listener: a client-first protocol
    outlives `timeout connect` and is answered."""
    echo = script("echo", INETD_ECHO)
    try:
        port = H.free_port()
        p = popsd(backend_addr=f"exec {echo}", pop3s=False,
                  timeouts={"connect": "0.5s"},
                  extra=[f"listen tls 127.0.0.1:{port}"])
        H.wait_until(lambda: H.listening(port), 10, "the tls listener")
        with H.Pop3Client(port, certs.client_context()) as c:
            c.sock.settimeout(1.5)
            with pytest.raises(socket.timeout):
                c.sock.recv(1)      # silence past the connect timeout
            c.sock.settimeout(10)
            assert c.cmd("hello") == b"echo: hello\r\n"
    finally:
        shutil.rmtree(os.path.dirname(echo), ignore_errors=True)


def test_listen_tls_backend_down_clean_close(popsd, certs):
    """No POP3 words on a tls listener: a dead backend is a clean close."""
    port = H.free_port()
    p = popsd(backend_addr=f"127.0.0.1:{H.refused_port()}", pop3s=False,
              extra=[f"listen tls 127.0.0.1:{port}"])
    H.wait_until(lambda: H.listening(port), 10, "the tls listener")
    with H.Pop3Client(port, certs.client_context()) as c:
        assert c.read_to_eof() == b""
    p.wait_session(listener="tls", reason="backend-unavailable")
