"""Two popsd hosts behind a real HAProxy (issue 17): the haproxy.cfg of
the README's "More than one host" (taken from README.md itself, addresses
swapped for loopback ports) in TCP mode with send-proxy-v2 in front of two
popsd (accept-proxy-protocol) sharing one tls-ticket-key-file, and a
Dovecot that trusts PROXY headers behind them. Shown: sessions are spread
over both hosts; a ticket from one resumes on the other; the real client
address reaches popsd's log and Dovecot; max-sessions-per-ip counts the
real client; SIGTERM on one host loses no session in flight while HAProxy
moves new ones to the other.

Clients connect from 127.0.0.2 and 127.0.0.3 (HAProxy and popsd see
127.0.0.1 for each other), so the real address is told apart from the
balancer's. HAProxy's health checks are sessions from 127.0.0.1 in
popsd's logs; the assertions look at the clients' addresses only."""

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile

import pytest

import popsd_harness as H
from test_ticket_keys import give_to_popsd, guard_keys

README = os.path.join(H.REPO, "README.md")


def readme_haproxy_cfg():
    """The ```haproxy block of the README's "More than one host"."""
    with open(README) as f:
        text = f.read()
    section = text.split("\n## More than one host\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```haproxy\n(.*?)```", section, re.S).group(1)


@pytest.fixture(scope="module")
def hap_dovecot():
    d = tempfile.mkdtemp(prefix="popsd-dovecot-hap.")
    dv = None
    try:
        dv = H.Dovecot(d, [f"demo:{H.PASSWORDS['demo']}"], haproxy=True)
        yield dv
    finally:
        if dv is not None:
            dv.stop()
        shutil.rmtree(d, ignore_errors=True)


class Cluster:
    """HAProxy and two popsd hosts on loopback ports."""

    def __init__(self, directory, dovecot, per_ip):
        self.dir = directory
        os.chmod(directory, 0o755)
        self.certs = H.Certs(os.path.join(directory, "certs"))
        self.certs.ctx = self.certs.client_context()
        os.chmod(self.certs.dir, 0o755)
        give_to_popsd(self.certs.key)
        self.keyfile = os.path.join(directory, "ticket.keys")
        H.ticketkeys("new", self.keyfile)
        give_to_popsd(self.keyfile)
        guard_keys(self.keyfile)
        self.hosts = []
        for name in ("popsd1", "popsd2"):
            p = H.Popsd(directory, self.certs, f"127.0.0.1:{dovecot.port}", pop3=True,
                        name=name, timeouts={"drain": "30s"},
                        extra=["backend-proxy-protocol v2",
                               "accept-proxy-protocol 127.0.0.1/32",
                               f"tls-ticket-key-file {self.keyfile}",
                               f"max-sessions-per-ip {per_ip}"])
            self.hosts.append(p.start())
        self.port, self.pop3_port = H.free_port(), H.free_port()
        a, b = self.hosts
        cfg = readme_haproxy_cfg()
        for old, new in (("192.0.2.10:995", f"127.0.0.1:{self.port}"),
                         ("192.0.2.10:110", f"127.0.0.1:{self.pop3_port}"),
                         ("10.0.0.11:995", f"127.0.0.1:{a.port}"),
                         ("10.0.0.12:995", f"127.0.0.1:{b.port}"),
                         ("10.0.0.11:110", f"127.0.0.1:{a.pop3_port}"),
                         ("10.0.0.12:110", f"127.0.0.1:{b.pop3_port}"),
                         ("mail.example.org", "localhost"),
                         ("/etc/ssl/certs/ca-certificates.crt", self.certs.ca)):
            assert old in cfg, old
            cfg = cfg.replace(old, new)
        self.cfg = os.path.join(directory, "haproxy.cfg")
        with open(self.cfg, "w") as f:
            f.write(cfg)
        self.hap_log = os.path.join(directory, "haproxy.log")
        self.hap = None

    def start_haproxy(self):
        subprocess.run(["haproxy", "-c", "-q", "-f", self.cfg], check=True, timeout=30)
        with open(self.hap_log, "ab") as log:
            self.hap = subprocess.Popen(["haproxy", "-db", "-f", self.cfg],
                                        stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=subprocess.STDOUT)
        H.wait_until(lambda: self.hap.poll() is not None or
                     (H.listening(self.port) and H.listening(self.pop3_port)),
                     30, "HAProxy to listen")
        assert self.hap.poll() is None, self.haproxy_log()
        # Both hosts pass a health check (a session through TLS to
        # Dovecot's greeting, from HAProxy's address) before clients come.
        for p in self.hosts:
            H.wait_until(lambda p=p: sum(s["client"] == "127.0.0.1" and
                                         s["listener"] == "pop3s"
                                         for s in p.session_lines()) >= 1,
                         30, f"a health check of {p.name}")

    def haproxy_log(self):
        with open(self.hap_log, errors="replace") as f:
            return f.read()

    def client_lines(self, p, client):
        return [s for s in p.session_lines() if s["client"] == client]

    def stop(self):
        if self.hap is not None and self.hap.poll() is None:
            self.hap.terminate()
            try:
                self.hap.wait(10)
            except subprocess.TimeoutExpired:
                self.hap.kill()
                self.hap.wait(10)
        problems = []
        for p in self.hosts:
            crashed = p.proc.poll() is not None and not p.expected_exit
            status, _ = p.stop()
            if crashed:
                problems.append(f"{p.name} exited on its own with status {status}")
        return problems


@pytest.fixture
def cluster(request, hap_dovecot):
    made = []

    def factory(per_ip=20):
        d = tempfile.mkdtemp(prefix="popsd-hap.")
        c = Cluster(d, hap_dovecot, per_ip)
        made.append(c)
        c.start_haproxy()
        return c

    yield factory
    failed = any(getattr(request.node, "rep_" + w, None) is not None and
                 getattr(request.node, "rep_" + w).failed for w in ("setup", "call"))
    problems = []
    for c in made:
        problems += c.stop()
        if failed or problems:
            for p in c.hosts:
                print(f"\n----- {p.log_path} -----\n{p.log()}", end="")
            print(f"\n----- {c.hap_log} -----\n{c.haproxy_log()}")
            print(f"\n----- Dovecot log (tail) -----\n{hap_dovecot.log_tail()}")
        shutil.rmtree(c.dir, ignore_errors=True)
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


def connect_from(port, source):
    s = socket.socket()
    s.settimeout(30)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def pop3s_tls(raw, certs, session=None):
    """A Pop3Client over TLS on the connected socket raw."""
    c = H.Pop3Client.__new__(H.Pop3Client)
    c.local_port = raw.getsockname()[1]
    # One context for all: Python resumes a session only in its own.
    c.sock = certs.ctx.wrap_socket(raw, server_hostname="localhost", session=session)
    c.f = c.sock.makefile("rb", buffering=65536)
    c.sent = c.received = 0
    return c


def pop3s_from(port, source, certs, session=None):
    """A POP3S client from source through HAProxy, resuming session."""
    return pop3s_tls(connect_from(port, source), certs, session)


def full_session(port, source, certs, session=None):
    """Log in, list, quit; returns (resumed?, the TLS session to reuse)."""
    with pop3s_from(port, source, certs, session) as c:
        c.login("demo", H.PASSWORDS["demo"])
        c.ok("LIST")
        c.multiline()
        assert c.cmd("QUIT").startswith(b"+OK")
        # After QUIT: a TLS 1.3 ticket comes after the handshake.
        return c.sock.session_reused, c.sock.session


def dovecot_rips(dv, rip):
    with open(dv.log, errors="replace") as f:
        return len(re.findall(rf"Login: user=<demo>.*rip={re.escape(rip)},", f.read()))


def test_spread_resumed_across_hosts_real_address(cluster, hap_dovecot):
    c = cluster()
    before = dovecot_rips(hap_dovecot, "127.0.0.2")
    reused, sess = full_session(c.port, "127.0.0.2", c.certs)
    assert not reused
    for _ in range(5):
        reused, sess = full_session(c.port, "127.0.0.2", c.certs, sess)
        assert reused, "a ticket from one host did not resume on the other"
    a, b = c.hosts
    for p in (a, b):
        lines = H.wait_until(lambda p=p: len(c.client_lines(p, "127.0.0.2")) >= 3 and
                             c.client_lines(p, "127.0.0.2"), 15, f"{p.name}'s sessions")
        # Round robin: three each, and each host resumed the other's tickets.
        assert len(lines) == 3, [s["_line"] for s in lines]
        assert all(s["via"] == "127.0.0.1" and s["login"] == "yes" for s in lines)
        assert sum(s["resumed"] == "yes" for s in lines) >= 2
    # Dovecot, behind popsd's own PROXY header, saw the real client.
    H.wait_until(lambda: dovecot_rips(hap_dovecot, "127.0.0.2") >= before + 6, 15,
                 "Dovecot to log six logins from 127.0.0.2")

    # STLS on port 110 through HAProxy too.
    raw = connect_from(c.pop3_port, "127.0.0.3")
    f = raw.makefile("rb")
    assert f.readline().startswith(b"+OK")
    raw.sendall(b"STLS\r\n")
    assert f.readline().startswith(b"+OK")
    f.close()
    with pop3s_tls(raw, c.certs) as p3:
        p3.ok("USER demo")
        p3.ok(f"PASS {H.PASSWORDS['demo']}")
        assert p3.cmd("QUIT").startswith(b"+OK")
    H.wait_until(lambda: any(s["stls"] == "yes" and s["login"] == "yes"
                             for p in c.hosts for s in c.client_lines(p, "127.0.0.3")),
                 15, "the STLS session from 127.0.0.3 in a popsd log")


def test_max_sessions_per_ip_counts_the_real_client(cluster):
    """max-sessions-per-ip 1 on each host: 127.0.0.2 holds one session on
    each; its third is refused by whichever host gets it, while 127.0.0.3
    (the same HAProxy in between) is served."""
    c = cluster(per_ip=1)
    held = []
    try:
        for _ in range(2):
            h = pop3s_from(c.port, "127.0.0.2", c.certs)
            assert h.readline().startswith(b"+OK")
            held.append(h)
        # Closed before TLS: the handshake fails, or the line is EOF.
        try:
            with pop3s_from(c.port, "127.0.0.2", c.certs) as x:
                got = x.readline()
        except (ssl.SSLError, OSError):
            got = b""
        assert got == b"", f"a third session from 127.0.0.2 was served: {got!r}"
        with pop3s_from(c.port, "127.0.0.3", c.certs) as ok:
            assert ok.readline().startswith(b"+OK")
            ok.cmd("QUIT")
    finally:
        for h in held:
            h.close()
    refused = H.wait_until(lambda: [s for p in c.hosts for s in c.client_lines(p, "127.0.0.2")
                                    if s["reason"] == "max-sessions-per-ip"], 15,
                           "a max-sessions-per-ip refusal of 127.0.0.2")
    assert len(refused) == 1 and refused[0]["via"] == "127.0.0.1"
    assert not any(s["reason"] == "max-sessions-per-ip"
                   for p in c.hosts for s in p.session_lines() if s["client"] != "127.0.0.2")


def test_sigterm_on_one_host_loses_nothing(cluster):
    """One session in flight on each host; SIGTERM to the first: its
    session finishes normally, it exits 0, and every new session is
    served by the second."""
    c = cluster()
    a, b = c.hosts
    held = []
    for _ in range(2):
        h = pop3s_from(c.port, "127.0.0.2", c.certs)
        h.login("demo", H.PASSWORDS["demo"])
        held.append(h)
    mark_b = len(c.client_lines(b, "127.0.0.2"))
    a.signal(signal.SIGTERM)
    H.wait_until(lambda: "stopped accepting, draining 1 sessions" in a.log(), 15,
                 f"{a.name} to drain its session")
    for _ in range(6):
        full_session(c.port, "127.0.0.3", c.certs)
    assert not c.client_lines(a, "127.0.0.3"), "a draining host got a new session"
    H.wait_until(lambda: len(c.client_lines(b, "127.0.0.3")) == 6, 15,
                 f"{b.name} to serve the six new sessions")
    # The sessions in flight finish, the one on the draining host too.
    for h in held:
        h.ok("RETR 1")
        assert b"Subject: Welcome to popsd" in h.multiline()
        assert h.cmd("QUIT").startswith(b"+OK")
        h.close()
    assert a.wait(30) == 0
    done = c.client_lines(a, "127.0.0.2")
    assert len(done) == 1 and done[0]["login"] == "yes", [s["_line"] for s in done]
    assert done[0]["reason"] in ("client-closed", "backend-closed"), done[0]["_line"]
    H.wait_until(lambda: len(c.client_lines(b, "127.0.0.2")) == mark_b + 1, 15,
                 f"{b.name}'s held session to end")
