"""PROXY protocol both ways (issue 6): popsd tells its backend who the
client is (`backend-proxy-protocol v1|v2`, checked against a real Dovecot
with `haproxy = yes`, which logs the address it was told), and believes a
header only from trusted balancers (`accept-proxy-protocol`), then uses
that address for logs, plaintext-allow, per-address limits, TCPREMOTEIP
and its own header to the backend."""

import os
import re
import shutil
import socket
import ssl
import struct
import tempfile
import threading

import pytest

import popsd_harness as H

SIG = b"\r\n\r\n\x00\r\nQUIT\n"


@pytest.fixture(scope="module")
def haproxy_dovecot():
    d = tempfile.mkdtemp(prefix="popsd-dovecot-hap.")
    dv = None
    try:
        dv = H.Dovecot(d, [f"demo:{H.PASSWORDS['demo']}"], haproxy=True)
        yield dv
    finally:
        if dv is not None:
            dv.stop()
        shutil.rmtree(d, ignore_errors=True)


def connect_from(port, source):
    s = socket.socket()
    s.settimeout(20)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def tls_client(sock, certs):
    c = H.Pop3Client.__new__(H.Pop3Client)
    c.local_port = sock.getsockname()[1]
    c.sock = certs.client_context().wrap_socket(sock, server_hostname="localhost")
    c.f = c.sock.makefile("rb", buffering=65536)
    c.sent = c.received = 0
    return c


def plain_client(sock):
    c = H.Pop3Client.__new__(H.Pop3Client)
    c.local_port = sock.getsockname()[1]
    c.sock = sock
    c.f = sock.makefile("rb", buffering=65536)
    c.sent = c.received = 0
    return c


def dovecot_logged_rip(dv, rip, timeout=10):
    def seen():
        with open(dv.log, errors="replace") as f:
            return re.search(rf"Login: user=<demo>.*rip={re.escape(rip)},", f.read())
    return H.wait_until(seen, timeout, f"Dovecot to log a login from {rip}")


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_backend_proxy_header_to_dovecot(popsd, certs, haproxy_dovecot, version):
    """Dovecot behind popsd sees the real client address (127.0.0.2 here,
    not popsd's 127.0.0.1) and serves the session normally."""
    p = popsd(backend_addr=f"127.0.0.1:{haproxy_dovecot.port}",
              extra=[f"backend-proxy-protocol {version}"])
    with tls_client(connect_from(p.port, "127.0.0.2"), certs) as c:
        c.login("demo", H.PASSWORDS["demo"])
        c.ok("RETR 1")
        assert b"Subject: Welcome to popsd" in c.multiline()
        assert c.cmd("QUIT").startswith(b"+OK")
    dovecot_logged_rip(haproxy_dovecot, "127.0.0.2")
    p.wait_session(client="127.0.0.2", login="yes")


class RecordingBackend:
    """Accepts one connection, records its first bytes, greets, answers
    QUIT. Only to read the exact v2 TLVs, which Dovecot does not log."""

    def __init__(self):
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(4)
        self.port = self.srv.getsockname()[1]
        self.data = b""
        self.done = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        conn, _ = self.srv.accept()
        conn.settimeout(10)
        greeted = False
        with conn:
            while not self.data.endswith(b"QUIT\r\n"):
                chunk = conn.recv(4096)
                if not chunk:
                    break
                self.data += chunk
                # Greet once the whole v2 header is in (16 bytes + length).
                if not greeted and len(self.data) >= 16 and len(self.data) >= \
                        16 + struct.unpack(">H", self.data[14:16])[0]:
                    greeted = True
                    conn.sendall(b"+OK recorder\r\n")
            conn.sendall(b"+OK bye\r\n")
        self.srv.close()
        self.done.set()


def parse_v2(data):
    assert data[:12] == SIG
    ver_cmd, fam, length = data[12], data[13], struct.unpack(">H", data[14:16])[0]
    body = data[16:16 + length]
    assert ver_cmd == 0x21 and fam == 0x11
    src, dst = socket.inet_ntoa(body[0:4]), socket.inet_ntoa(body[4:8])
    sport, dport = struct.unpack(">HH", body[8:12])
    tlvs, rest = {}, body[12:]
    while rest:
        t, l = rest[0], struct.unpack(">H", rest[1:3])[0]
        tlvs[t] = rest[3:3 + l]
        rest = rest[3 + l:]
    return src, sport, dst, dport, tlvs


def test_backend_proxy_v2_carries_tls(popsd, certs):
    """v2 on a pop3s session: TCP4 addresses and the PP2_TYPE_SSL TLV with
    the negotiated version and cipher."""
    rb = RecordingBackend()
    p = popsd(backend_addr=f"127.0.0.1:{rb.port}", extra=["backend-proxy-protocol v2"])
    with tls_client(connect_from(p.port, "127.0.0.3"), certs) as c:
        assert c.readline() == b"+OK recorder\r\n"
        assert c.cmd("QUIT") == b"+OK bye\r\n"
        version = c.sock.version()
        cipher = c.sock.cipher()[0]
    assert rb.done.wait(10)
    src, sport, dst, dport, tlvs = parse_v2(rb.data)
    assert (src, sport) == ("127.0.0.3", c.local_port)
    assert (dst, dport) == ("127.0.0.1", p.port)
    ssl_tlv = tlvs[0x20]
    assert ssl_tlv[0] & 0x01          # PP2_CLIENT_SSL
    sub, rest = {}, ssl_tlv[5:]
    while rest:
        t, l = rest[0], struct.unpack(">H", rest[1:3])[0]
        sub[t] = rest[3:3 + l]
        rest = rest[3 + l:]
    assert sub[0x21].decode() == version      # PP2_SUBTYPE_SSL_VERSION
    assert sub[0x23].decode() == cipher       # PP2_SUBTYPE_SSL_CIPHER


def v1(src, sport, dst="127.0.0.1", dport=995):
    return f"PROXY TCP4 {src} {dst} {sport} {dport}\r\n".encode()


def v2(src, sport, dst="127.0.0.1", dport=995):
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack(">HH", sport, dport)
    return SIG + bytes([0x21, 0x11]) + struct.pack(">H", len(body)) + body


@pytest.mark.parametrize("header", [v1, v2], ids=["v1", "v2"])
def test_accept_proxy_pop3s(popsd, certs, backend, header):
    """A trusted balancer's header comes before the ClientHello; the
    session is logged with the client it names and the balancer as via."""
    p = popsd(extra=["accept-proxy-protocol 127.0.0.1"])
    s = connect_from(p.port, "127.0.0.1")
    s.sendall(header("192.0.2.7", 40000, dport=p.port))
    with tls_client(s, certs) as c:
        c.login("demo", H.PASSWORDS["demo"])
        assert c.cmd("QUIT").startswith(b"+OK")
    line = p.wait_session(client="192.0.2.7", port="40000")
    assert line["via"] == "127.0.0.1"


def test_accept_proxy_plaintext_allow_uses_real_client(popsd, backend):
    """plaintext-allow judges the address in the header, not the balancer."""
    p = popsd(pop3s=False, pop3=True,
              extra=["accept-proxy-protocol 127.0.0.1", "plaintext-allow 192.0.2.0/24"])
    for src, allowed in (("192.0.2.7", True), ("198.51.100.9", False)):
        s = connect_from(p.pop3_port, "127.0.0.1")
        s.sendall(v1(src, 40001, dport=p.pop3_port))
        with plain_client(s) as c:
            assert c.readline().startswith(b"+OK")
            r = c.cmd("USER demo")
            if allowed:
                assert r.startswith(b"+OK"), r
                assert c.cmd(f"PASS {H.PASSWORDS['demo']}").startswith(b"+OK")
            else:
                assert r.startswith(b"-ERR [AUTH]"), r
            c.cmd("QUIT")
        p.wait_session(client=src)


def test_accept_proxy_per_ip_limit_counts_real_client(popsd, backend):
    """max-sessions-per-ip counts header addresses: a second session for
    the same real client is refused, another real client is not, however
    many connections the balancer holds."""
    p = popsd(pop3s=False, pop3=True,
              extra=["accept-proxy-protocol 127.0.0.1", "max-sessions-per-ip 1"])
    first = connect_from(p.pop3_port, "127.0.0.1")
    first.sendall(v1("192.0.2.7", 1, dport=p.pop3_port))
    c1 = plain_client(first)
    assert c1.readline().startswith(b"+OK")
    second = connect_from(p.pop3_port, "127.0.0.1")
    second.sendall(v1("192.0.2.7", 2, dport=p.pop3_port))
    with plain_client(second) as c2:
        assert c2.readline().startswith(b"-ERR [SYS/TEMP]")
    third = connect_from(p.pop3_port, "127.0.0.1")
    third.sendall(v1("192.0.2.8", 3, dport=p.pop3_port))
    with plain_client(third) as c3:
        assert c3.readline().startswith(b"+OK")
        c3.cmd("QUIT")
    c1.cmd("QUIT")
    c1.close()
    assert "refused client=192.0.2.7 reason=max-sessions-per-ip" in p.log()


def v1_tcp6(src, sport, dport):
    return f"PROXY TCP6 {src} ::1 {sport} {dport}\r\n".encode()


@pytest.mark.parametrize("prefix", [None, 128], ids=["default-64", "128"])
def test_accept_proxy_per_ip_counts_ipv6_per_prefix(popsd, backend, prefix):
    """IPv6 clients count per /64 by default (a host picks any address in
    its /64), per-ip-ipv6-prefix 128 counts each address; an IPv4-mapped
    address counts as the IPv4 one. The refusal logs what was counted."""
    extra = ["accept-proxy-protocol 127.0.0.1", "max-sessions-per-ip 2"]
    if prefix:
        extra.append(f"per-ip-ipv6-prefix {prefix}")
    p = popsd(pop3s=False, pop3=True, extra=extra)

    def session(header):
        s = connect_from(p.pop3_port, "127.0.0.1")
        s.sendall(header)
        c = plain_client(s)
        return c, c.readline()

    held = []
    for i, src in enumerate(["2001:db8:1:2::1", "2001:db8:1:2::2"]):
        c, line = session(v1_tcp6(src, 1000 + i, p.pop3_port))
        assert line.startswith(b"+OK"), (src, line)
        held.append(c)
    c, line = session(v1_tcp6("2001:db8:1:2:abcd:1:2:3", 1003, p.pop3_port))
    if prefix is None:
        assert line.startswith(b"-ERR [SYS/TEMP]"), line
        c.close()
        assert re.search(r"refused client=2001:db8:1:2:abcd:1:2:3 reason=max-sessions-per-ip "
                         r"sessions=2 limit=2 counted_as=2001:db8:1:2::/64 ", p.log()), p.log()
    else:
        assert line.startswith(b"+OK"), line
        held.append(c)
    c, line = session(v1_tcp6("2001:db8:1:3::1", 1004, p.pop3_port))
    assert line.startswith(b"+OK"), line     # the next /64 is another client
    held.append(c)
    # IPv4-mapped: the same client as its IPv4 address, whatever the prefix.
    for i in range(2):
        c, line = session(v1("192.0.2.9", 1010 + i, dport=p.pop3_port))
        assert line.startswith(b"+OK"), line
        held.append(c)
    c, line = session(v1_tcp6("::ffff:192.0.2.9", 1012, p.pop3_port))
    assert line.startswith(b"-ERR [SYS/TEMP]"), line
    c.close()
    assert re.search(r"reason=max-sessions-per-ip sessions=2 limit=2 counted_as=192\.0\.2\.9 ",
                     p.log()), p.log()
    for c in held:
        c.cmd("QUIT")
        c.close()
    # Every place is given back: the /64 is admitted again.
    H.wait_until(lambda: len(p.session_lines()) >= len(held), 15, "the sessions to end")
    c, line = session(v1_tcp6("2001:db8:1:2::7", 1020, p.pop3_port))
    assert line.startswith(b"+OK"), line
    c.cmd("QUIT")
    c.close()


@pytest.mark.parametrize("bad", [
    b"PROXY TCP4 192.0.2.7 127.0.0.1 1 99999\r\n",      # port out of range
    b"PROXY TCP4 ::1 ::1 1 2\r\n",                      # v6 under TCP4
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",    # a ClientHello, no header
    b"USER demo\r\n",
], ids=["bad-port", "family", "tls-first", "pop3-first"])
def test_accept_proxy_malformed_closes(popsd, certs, bad):
    p = popsd(extra=["accept-proxy-protocol 127.0.0.1"])
    s = connect_from(p.port, "127.0.0.1")
    s.sendall(bad)
    s.settimeout(10)
    assert s.recv(100) == b""
    s.close()
    p.wait_session(reason="proxy-invalid")
    assert "no valid PROXY header from a trusted balancer" in p.log()


def test_proxy_header_from_untrusted_is_not_believed(popsd, backend):
    """Only listed networks are believed: from 127.0.0.2 the header is just
    the client's first line, which popsd refuses as a command."""
    p = popsd(pop3s=False, pop3=True, extra=["accept-proxy-protocol 127.0.0.1"])
    s = connect_from(p.pop3_port, "127.0.0.2")
    with plain_client(s) as c:
        assert c.readline().startswith(b"+OK")
        assert c.cmd(v1("192.0.2.7", 5).decode().strip()).startswith(b"-ERR")
        c.cmd("QUIT")
    line = p.wait_session(client="127.0.0.2")
    assert "via" not in line


def test_accept_proxy_header_timeout(popsd):
    """A trusted peer that never sends its header is closed by the
    handshake timeout."""
    p = popsd(extra=["accept-proxy-protocol 127.0.0.1"], timeouts={"handshake": "1s"})
    s = connect_from(p.port, "127.0.0.1")
    s.sendall(b"PROXY TCP4 192.0.2.7")     # and then nothing
    assert s.recv(100) == b""
    s.close()
    p.wait_session(reason="timeout-proxy")


INETD_ENV = r'''#!/usr/bin/python3
import os, sys
sys.stdout.buffer.write(("+OK ip=%s port=%s\r\n" % (os.environ.get("TCPREMOTEIP"),
    os.environ.get("TCPREMOTEPORT"))).encode()); sys.stdout.flush()
for line in sys.stdin.buffer:
    if line.strip().upper() == b"QUIT":
        sys.stdout.buffer.write(b"+OK bye\r\n"); sys.stdout.flush(); break
'''


def test_accept_proxy_exec_sees_real_client(popsd, certs):
    """Behind a balancer, an exec'd legacy daemon is told the real client
    in TCPREMOTEIP/TCPREMOTEPORT (what its own logs and defences use)."""
    d = tempfile.mkdtemp(prefix="popsd-exec.")
    os.chmod(d, 0o755)
    path = os.path.join(d, "envd")
    with open(path, "w") as f:
        f.write(INETD_ENV)
    os.chmod(path, 0o755)
    try:
        p = popsd(backend_addr=f"exec {path}", extra=["accept-proxy-protocol 127.0.0.1"])
        s = connect_from(p.port, "127.0.0.1")
        s.sendall(v2("203.0.113.5", 41000, dport=p.port))
        with tls_client(s, certs) as c:
            assert c.readline() == b"+OK ip=203.0.113.5 port=41000\r\n"
            assert c.cmd("QUIT") == b"+OK bye\r\n"
    finally:
        shutil.rmtree(d, ignore_errors=True)
