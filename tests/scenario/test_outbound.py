"""Outbound listeners: plaintext-only clients reach TLS-only POP3 servers
through popsd, certificates verified, never downgraded (issue 15).

Remotes are real servers: popsd itself in server mode (pop3s, and pop3
with STLS) in front of a private Dovecot. Clients are plaintext: Python
poplib, curl pop3://, fetchmail. The negative cases run against a
recording server (RecordingServer) that keeps every byte it received,
in the clear or inside TLS, so each fails if a credential ever reached
the remote: a self-signed, other-CA, wrong-name or expired certificate,
STLS stripped from CAPA, "-ERR" to STLS, a TLS 1.0-only remote, a routed
host outside upstream-allow, a client outside plaintext-allow.
"""
import contextlib
import datetime
import hashlib
import os
import poplib
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading

import pytest

import popsd_harness as H

BIG = 20 * 1024 * 1024
OB_PW = "ob-Pw-5e3a"            # the mailbox password: never in a log
SECRET = b"s3cret-never-upstream"
H.guard_secret(OB_PW, "ob")
H.guard_secret(SECRET.decode(), "joe")
CREDENTIALS = (b"USER joe\r\nPASS " + SECRET + b"\r\n"
               b"APOP joe 0123456789abcdef0123456789abcdef\r\nAUTH PLAIN\r\n")
LEAKS = (b"USER", b"PASS", b"APOP", b"AUTH", SECRET)


# --------------------------------------------------------------------------
# fixtures: a Dovecot of our own (its 20 MiB message disturbs no one),
# popsd in server mode in front of it, certificates for the bad cases.

class Mail:
    def __init__(self, dovecot, big):
        self.dovecot = dovecot
        self.address = f"127.0.0.1:{dovecot.port}"
        self.big_stored, self.big_wire, self.big_sha256 = big


@pytest.fixture(scope="module")
def mail():
    d = tempfile.mkdtemp(prefix="popsd-outbound.")
    dv = None
    try:
        dv = H.Dovecot(d, [f"ob:{OB_PW}"])
        dv.add_message("ob", "1767254400.M1P1.small",
                       lambda f: f.write(b"Subject: hello\n\nfirst\n"))
        holder = {}

        def writer(f):
            holder["v"] = H.write_big_message(f, BIG)
        dv.add_message("ob", "1767254401.M2P2.big", writer)
        yield Mail(dv, holder["v"])
    finally:
        if dv is not None:
            dv.stop()
        shutil.rmtree(d, ignore_errors=True)


def _key_cert(name, issuer_cert, issuer_key, days=30, expired=False,
              self_signed=False, ca=False):
    """An EC key and certificate for name (DNS SAN, plus 127.0.0.1 for
    localhost), signed by issuer (or by itself)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    if expired:
        start, end = now - datetime.timedelta(days=30), now - datetime.timedelta(days=1)
    else:
        start, end = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=days)
    if self_signed or ca:
        issuer_name, signer = subject, key
    else:
        issuer_name, signer = issuer_cert.subject, issuer_key
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(start).not_valid_after(end))
    if ca:
        b = b.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    else:
        sans = [x509.DNSName(name)]
        if name == "localhost":
            sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = b.sign(signer, hashes.SHA256())
    return key, cert


def _write(directory, stem, key, cert):
    from cryptography.hazmat.primitives import serialization
    kp, cp = os.path.join(directory, stem + ".key"), os.path.join(directory, stem + ".pem")
    with open(kp, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    os.chmod(kp, 0o600)
    with open(cp, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    return cp, kp


@pytest.fixture(scope="module")
def badcerts(tmp_path_factory, certs):
    """(cert, key) paths: good (our CA, localhost), selfsigned, otherca,
    wrongname (our CA, wrong.example), expired (our CA, localhost)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    d = str(tmp_path_factory.mktemp("badcerts"))
    with open(certs.ca, "rb") as f:
        ca = x509.load_pem_x509_certificate(f.read())
    with open(os.path.join(certs.dir, "ca.key"), "rb") as f:
        ca_key = serialization.load_pem_private_key(f.read(), None)
    other_key, other_ca = _key_cert("other test CA", None, None, ca=True)
    out = {"good": (certs.cert, certs.key)}
    out["selfsigned"] = _write(d, "selfsigned", *_key_cert("localhost", None, None, self_signed=True))
    out["otherca"] = _write(d, "otherca", *_key_cert("localhost", other_ca, other_key))
    out["wrongname"] = _write(d, "wrongname", *_key_cert("wrong.example", ca, ca_key))
    out["expired"] = _write(d, "expired", *_key_cert("localhost", ca, ca_key, expired=True))
    return out


@pytest.fixture
def remote(popsd, mail):
    """popsd in server mode in front of our Dovecot: pop3s and pop3+STLS,
    TLS required on both (the default)."""
    return popsd(backend_addr=mail.address, pop3s=True, pop3=True)


@pytest.fixture
def outbound(popsd, certs):
    """Factory: an outbound popsd with these extra lines, started; its
    .out_port is the plaintext port for the inside clients."""
    def make(*lines, allow="127.0.0.0/8"):
        port = H.free_port()
        p = popsd(pop3s=False, start=False,
                  extra=[f"listen outbound 127.0.0.1:{port}",
                         f"plaintext-allow {allow}",
                         f"upstream-ca {certs.ca}", *lines])
        p.start()
        H.wait_until(lambda: H.listening(port), 15, "the outbound port")
        p.out_port = port
        return p
    return make


# --------------------------------------------------------------------------
# helpers

def fetch_small(port, user="ob", password=OB_PW):
    c = poplib.POP3("127.0.0.1", port, timeout=30)
    greeting = c.getwelcome()
    c.user(user)
    c.pass_(password)
    count, _ = c.stat()
    _, lines, _ = c.retr(1)
    c.quit()
    return greeting, count, lines


def big_number(port, user, password, mail):
    c = poplib.POP3("127.0.0.1", port, timeout=30)
    c.user(user)
    c.pass_(password)
    sizes = {int(n): int(sz) for n, sz in (e.split() for e in c.list()[1])}
    c.quit()
    nums = [n for n, sz in sizes.items() if sz == mail.big_wire]
    assert nums, f"no message of {mail.big_wire} octets in {sizes}"
    return nums[0]


def curl_sha256(url):
    proc = subprocess.Popen(["curl", "-sS", "--max-time", "120", url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    h = hashlib.sha256()
    total = 0
    while chunk := proc.stdout.read(1 << 20):
        h.update(chunk)
        total += len(chunk)
    err = proc.stderr.read()
    assert proc.wait(timeout=150) == 0, err
    return total, h.hexdigest()


def session_line(p, **match):
    """The text of the first session line (waiting for it)."""
    return p.wait_session(timeout=20, **match)["_line"]


# --------------------------------------------------------------------------
# a plaintext client through popsd to a TLS-only server

def test_fixed_pop3s(remote, outbound):
    p = outbound(f"upstream localhost:{remote.port} pop3s")
    greeting, count, lines = fetch_small(p.out_port)
    assert greeting.startswith(b"+OK")
    assert count >= 2 and lines
    line = session_line(p)
    assert "listener=outbound" in line and "login=yes" in line
    assert f"upstream=localhost:{remote.port}" in line
    assert "upstream_tls=TLSv1." in line
    # The verified subject, sanitized ("=" is not logged as such).
    assert 'upstream_subject="/O?popsd development/CN?localhost"' in line, line


def test_fixed_stls_relays_the_upstream_greeting_apop(remote, outbound, mail):
    """STLS: popsd checks CAPA, says STLS, verifies, then gives the client
    the upstream's own greeting: APOP works end to end."""
    p = outbound(f"upstream localhost:{remote.pop3_port} stls")
    c = poplib.POP3("127.0.0.1", p.out_port, timeout=30)
    welcome = c.getwelcome()
    assert b"<" in welcome, welcome      # Dovecot's APOP timestamp
    c.apop("ob", OB_PW)
    assert c.stat()[0] >= 2
    caps = c.capa()
    assert "STLS" not in caps
    c.quit()
    line = session_line(p)
    assert "login=yes" in line and "upstream_tls=TLSv1." in line


def test_routed_stls(remote, outbound):
    p = outbound("upstream-allow localhost *.example.net")
    c = poplib.POP3("127.0.0.1", p.out_port, timeout=30)
    welcome = c.getwelcome()
    assert welcome.startswith(b"+OK") and b"<" not in welcome  # no APOP
    assert "USER" in c.capa()
    c.user(f"ob@localhost:{remote.pop3_port}")
    c.pass_(OB_PW)
    assert c.stat()[0] >= 2
    c.quit()
    line = session_line(p)
    assert "login=yes" in line
    assert f"upstream=localhost:{remote.pop3_port}" in line


def test_routed_pop3s_on_995(popsd, mail, outbound):
    """No port (995): implicit TLS. Needs 127.0.0.1:995 free."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", 995))
        except OSError:
            pytest.skip("127.0.0.1:995 is in use")
    r = popsd(backend_addr=mail.address, pop3s=False, start=False,
              extra=["listen pop3s 127.0.0.1:995"])
    try:
        r.start()
    except AssertionError:
        if "Address already in use" in r.log():   # taken meanwhile
            r.expected_exit = True
            pytest.skip("127.0.0.1:995 was taken meanwhile")
        raise
    H.wait_until(lambda: H.listening(995), 15, "the remote on 995")
    p = outbound("upstream-allow localhost")
    _, count, _ = fetch_small(p.out_port, user="ob@localhost")
    assert count >= 2
    assert "upstream=localhost:995" in session_line(p)


def test_curl_20mib_fixed_and_routed(remote, outbound, mail):
    """A 20 MiB RETR arrives intact through both modes (curl pop3://)."""
    fixed = outbound(f"upstream localhost:{remote.port} pop3s")
    n = big_number(fixed.out_port, "ob", OB_PW, mail)
    total, digest = curl_sha256(f"pop3://ob:{OB_PW}@127.0.0.1:{fixed.out_port}/{n}")
    assert (total, digest) == (mail.big_wire, mail.big_sha256)
    routed = outbound("upstream-allow localhost")
    user = f"ob%40localhost%3A{remote.pop3_port}"
    total, digest = curl_sha256(f"pop3://{user}:{OB_PW}@127.0.0.1:{routed.out_port}/{n}")
    assert (total, digest) == (mail.big_wire, mail.big_sha256)


def test_fetchmail_routed(remote, outbound, tmp_path):
    p = outbound("upstream-allow localhost")
    rc = tmp_path / "fetchmailrc"
    mbox = tmp_path / "mbox"
    rc.write_text(
        f'poll 127.0.0.1 service {p.out_port} protocol pop3 auth password\n'
        f'  user "ob@localhost:{remote.pop3_port}" password "{OB_PW}" is "x" here\n'
        f'  keep fetchall sslproto "" mda "cat >> {mbox}"\n')
    rc.chmod(0o600)
    env = dict(os.environ, HOME=str(tmp_path), FETCHMAILHOME=str(tmp_path))
    r = subprocess.run(["fetchmail", "-f", str(rc), "--nodetach", "--nosyslog",
                        "-d0", "--limit", "1000000"], env=env, timeout=120,
                       capture_output=True, text=True)
    assert r.returncode in (0, 1), r.stdout + r.stderr   # 1: nothing new
    assert "Subject: hello" in mbox.read_text(errors="replace"), r.stdout + r.stderr


@pytest.fixture(scope="module")
def tlsdovecot(certs):
    """Dovecot with its own TLS: STLS on .port, pop3s on .tls_port."""
    d = tempfile.mkdtemp(prefix="popsd-outbound-tls.")
    dv = None
    try:
        dv = H.Dovecot(d, [f"ob:{OB_PW}"], tls=(certs.cert, certs.key))
        yield dv
    finally:
        if dv is not None:
            dv.stop()
        shutil.rmtree(d, ignore_errors=True)


def test_dovecot_tls_fixed_pop3s_and_stls(tlsdovecot, outbound):
    """Dovecot's own TLS as the remote: implicit, then STLS with APOP."""
    p = outbound(f"upstream localhost:{tlsdovecot.tls_port} pop3s")
    _, count, lines = fetch_small(p.out_port)
    assert count >= 1 and lines
    assert "upstream_tls=TLSv1." in session_line(p)
    q = outbound(f"upstream localhost:{tlsdovecot.port} stls")
    c = poplib.POP3("127.0.0.1", q.out_port, timeout=30)
    assert b"<" in c.getwelcome()
    assert "STLS" not in c.capa()
    c.apop("ob", OB_PW)
    assert c.stat()[0] >= 1
    c.quit()
    assert "login=yes" in session_line(q)


def test_dovecot_tls_routed(tlsdovecot, outbound):
    p = outbound("upstream-allow localhost")
    _, count, _ = fetch_small(p.out_port, user=f"ob@localhost:{tlsdovecot.port}")
    assert count >= 1
    line = session_line(p)
    assert f"upstream=localhost:{tlsdovecot.port}" in line and "login=yes" in line


def test_routed_unresolvable_host(outbound):
    """An allowed name that does not resolve: "-ERR [SYS/TEMP]", within
    the connect timeout, and the loop never waited on DNS meanwhile."""
    p = outbound("upstream-allow *.invalid", "timeout connect 3s")
    with socket.create_connection(("127.0.0.1", p.out_port), timeout=30) as s:
        f = s.makefile("rb")
        assert f.readline().startswith(b"+OK")
        s.sendall(b"USER joe@nothing.invalid\r\n")
        # Meanwhile another client is served at once.
        with socket.create_connection(("127.0.0.1", p.out_port), timeout=30) as o:
            assert o.makefile("rb").readline().startswith(b"+OK")
        assert f.readline().startswith(b"-ERR [SYS/TEMP]")
    H.wait_until(lambda: any(d.get("reason") in ("upstream-unresolved",
                                                  "upstream-timeout")
                             for d in p.session_lines()),
                 20, "the routed session's line")


# --------------------------------------------------------------------------
# never downgrade: each checked from the remote's side

class RecordingServer:
    """A remote that records every byte it receives, in the clear or
    inside TLS. mode: "pop3s" (TLS with cert/key, optionally TLS 1.0
    only), "stls-stripped" (CAPA without STLS), "stls-err" (STLS listed,
    answered "-ERR")."""

    def __init__(self, mode, cert=None, key=None, tls10=False):
        self.mode = mode
        self.received = bytearray()
        self.connections = 0
        self.handshakes = 0
        self.lock = threading.Lock()
        self.ctx = None
        if cert:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(cert, key)
            if tls10:
                self.ctx.minimum_version = ssl.TLSVersion.TLSv1
                self.ctx.maximum_version = ssl.TLSVersion.TLSv1
                # Debian's OpenSSL refuses TLS 1.0 at its default level.
                self.ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.done = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _record(self, data):
        with self.lock:
            self.received += data

    def _read_all(self, conn):
        with contextlib.suppress(OSError, ssl.SSLError):
            while data := conn.recv(65536):
                self._record(data)

    def _serve(self, conn):
        conn.settimeout(20)
        if self.mode == "pop3s":
            try:
                conn = self.ctx.wrap_socket(conn, server_side=True)
            except (OSError, ssl.SSLError):
                self._read_all(conn)
                return
            with self.lock:
                self.handshakes += 1
        with contextlib.suppress(OSError, ssl.SSLError):
            conn.sendall(b"+OK recorder <1.2@localhost>\r\n")
            for line in conn.makefile("rb"):
                self._record(line)
                cmd = line.strip().upper()
                if cmd == b"CAPA":
                    # STLS listed even under TLS (as a careless server
                    # might): popsd must take it out of what it relays.
                    conn.sendall(b"+OK\r\nTOP\r\nUSER\r\n" +
                                 (b"STLS\r\n" if self.mode != "stls-stripped" else b"") +
                                 b".\r\n")
                elif cmd == b"STLS":
                    conn.sendall(b"-ERR not today\r\n")
                elif cmd == b"QUIT":
                    conn.sendall(b"+OK bye\r\n")
                    return
                else:
                    conn.sendall(b"+OK\r\n")

    def _run(self):
        while not self.done:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def close(self):
        self.done = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()

    def leaked(self):
        with self.lock:
            data = bytes(self.received).upper()
        return [w for w in LEAKS if w.upper() in data]


@pytest.fixture
def recorder():
    made = []

    def make(*a, **kw):
        r = RecordingServer(*a, **kw)
        made.append(r)
        return r
    yield make
    for r in made:
        r.close()


def pipelined_client(port):
    """A client that sends its credentials at once, before any greeting:
    if popsd ever passed client bytes on before verified TLS, the
    recorder would have them. Returns popsd's first line."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(CREDENTIALS)
        f = s.makefile("rb")
        first = f.readline()
        rest = f.read()
    return first, rest


@pytest.mark.parametrize("which", ["selfsigned", "otherca", "wrongname", "expired"])
def test_bad_certificate_refused(which, badcerts, recorder, outbound):
    r = recorder("pop3s", *badcerts[which])
    p = outbound(f"upstream localhost:{r.port} pop3s")
    first, rest = pipelined_client(p.out_port)
    assert first.startswith(b"-ERR [SYS/TEMP]"), first
    assert rest == b""
    line = session_line(p)
    assert "reason=upstream-tls-failed" in line, line
    assert r.leaked() == [], r.received
    assert r.connections == 1         # it was tried, and refused
    if which != "wrongname":
        # libtls checks the name once the handshake is done (the server
        # may see it complete); the chain is checked inside it.
        assert r.handshakes == 0


def test_good_certificate_accepted_by_the_recorder(badcerts, recorder, outbound):
    """The control for the cases above: the same recorder with the good
    certificate is accepted, and then (inside verified TLS) it does get
    the client's USER. So the refusals above are popsd's checks."""
    r = recorder("pop3s", *badcerts["good"])
    p = outbound(f"upstream localhost:{r.port} pop3s")
    with socket.create_connection(("127.0.0.1", p.out_port), timeout=30) as s:
        f = s.makefile("rb")
        assert f.readline().startswith(b"+OK recorder")
        s.sendall(b"CAPA\r\n")
        capa = []
        while (line := f.readline()) not in (b".\r\n", b""):
            capa.append(line.strip())
        assert capa[0].startswith(b"+OK") and b"USER" in capa
        assert b"STLS" not in capa, capa     # the upstream's STLS removed
        s.sendall(b"USER joe\r\n")
        assert f.readline().startswith(b"+OK")
        s.sendall(b"QUIT\r\n")
        f.readline()
    assert r.handshakes == 1
    assert b"CAPA" in bytes(r.received) and b"USER joe" in bytes(r.received)


@pytest.mark.parametrize("mode,why", [
    ("stls-stripped", "does not offer STLS"),
    ("stls-err", "refused STLS"),
])
def test_stls_downgrade_refused(mode, why, recorder, outbound):
    r = recorder(mode)
    p = outbound(f"upstream localhost:{r.port} stls")
    first, rest = pipelined_client(p.out_port)
    assert first.startswith(b"-ERR [SYS/TEMP]"), first
    line = session_line(p)
    assert "reason=upstream-refused" in line and why in line, line
    # Exactly what popsd may say in the clear, nothing of the client's.
    expected = b"CAPA\r\n" + (b"STLS\r\n" if mode == "stls-err" else b"")
    assert bytes(r.received) == expected
    assert r.leaked() == []


def test_tls10_only_remote_refused(badcerts, recorder, outbound):
    r = recorder("pop3s", *badcerts["good"], tls10=True)
    # The remote really speaks TLS 1.0: a client that allows it connects.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with socket.create_connection(("127.0.0.1", r.port), timeout=20) as s:
        with ctx.wrap_socket(s) as t:
            assert t.version() == "TLSv1"
            assert t.recv(64).startswith(b"+OK recorder")
    assert r.handshakes == 1
    p = outbound(f"upstream localhost:{r.port} pop3s")
    first, _ = pipelined_client(p.out_port)
    assert first.startswith(b"-ERR [SYS/TEMP]"), first
    assert "reason=upstream-tls-failed" in session_line(p)
    assert r.handshakes == 1            # popsd's handshake did not complete
    assert r.leaked() == []


def test_routed_host_outside_allow_gets_no_connection(recorder, outbound):
    r = recorder("pop3s", None, None)
    p = outbound("upstream-allow *.example.net mail.example.org")
    with socket.create_connection(("127.0.0.1", p.out_port), timeout=30) as s:
        f = s.makefile("rb")
        assert f.readline().startswith(b"+OK")
        for host in (f"127.0.0.1:{r.port}", f"localhost:{r.port}",
                     "example.net", "evil.example.net.attacker.org"):
            s.sendall(f"USER joe@{host}\r\n".encode())
            assert f.readline().startswith(b"-ERR [AUTH]")
        s.sendall(b"PASS " + SECRET + b"\r\n")
        assert f.readline().startswith(b"-ERR")
        s.sendall(b"QUIT\r\n")
        assert f.readline().startswith(b"+OK")
    session_line(p)
    assert r.connections == 0
    assert "not in upstream-allow" in p.log()


def test_client_outside_plaintext_allow(recorder, outbound, badcerts):
    r = recorder("pop3s", *badcerts["good"])
    p = outbound(f"upstream localhost:{r.port} pop3s", allow="192.0.2.0/24")
    first, _ = pipelined_client(p.out_port)
    assert first.startswith(b"-ERR [AUTH]"), first
    assert "reason=plaintext-denied" in session_line(p)
    assert r.connections == 0


# --------------------------------------------------------------------------
# configuration

@pytest.mark.parametrize("lines,err", [
    (["listen outbound 127.0.0.1:1"], "needs an upstream or upstream-allow"),
    (["listen outbound 127.0.0.1:1", "upstream localhost:995 pop3s",
      "upstream-allow *.example.net"], "cannot be used with upstream"),
    (["listen outbound 127.0.0.1:1", "upstream-allow *"], "open relay"),
    (["listen outbound 127.0.0.1:1", "upstream localhost:995 starttls"],
     "unknown mode"),
    (["listen pop3 127.0.0.1:1", "upstream localhost:995 pop3s"],
     "no effect without"),
])
def test_config_errors(lines, err, tmp_path, certs):
    conf = tmp_path / "c.conf"
    conf.write_text("\n".join(lines + [f"certificate {certs.cert}",
                                       f"key {certs.key}",
                                       "backend 127.0.0.1:1"]) + "\n")
    r = subprocess.run([H.popsd_binary(), "-n", "-f", str(conf)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert err in r.stderr, r.stderr


def test_config_outbound_only_needs_no_backend_or_certificate(tmp_path):
    conf = tmp_path / "c.conf"
    conf.write_text("listen outbound 127.0.0.1:1\n"
                    "upstream-allow *.example.net\n"
                    "plaintext-allow 10.0.0.0/8\n" +
                    ("user nobody\n" if os.geteuid() == 0 else ""))
    r = subprocess.run([H.popsd_binary(), "-n", "-f", str(conf)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "configuration OK" in r.stdout + r.stderr


# --------------------------------------------------------------------------
# workers and reload apply as for the other listeners

def test_routed_with_workers(remote, outbound):
    """Each worker process looks routed hosts up on its own."""
    p = outbound("upstream-allow localhost", "workers 2")
    for _ in range(4):
        _, count, _ = fetch_small(p.out_port, user=f"ob@localhost:{remote.pop3_port}")
        assert count >= 2
    H.wait_until(lambda: sum("login=yes" in d["_line"] for d in p.session_lines()) == 4,
                 20, "four session lines")


def test_reload_changes_upstream_allow(remote, certs):
    """SIGHUP re-reads upstream-allow (and upstream-ca) as popsd's user:
    a host refused before the reload is reached after it."""
    d = tempfile.mkdtemp(prefix="popsd-outbound-reload.")
    os.chmod(d, 0o755)
    p = None
    try:
        ca = os.path.join(d, "ca.pem")
        shutil.copy(certs.ca, ca)
        os.chmod(ca, 0o644)
        port = H.free_port()
        p = H.Popsd(d, certs, "127.0.0.1:1", pop3s=False, name="reload")

        def write(allow):
            with open(p.conf, "w") as f:
                f.write(f"listen outbound 127.0.0.1:{port}\n"
                        f"plaintext-allow 127.0.0.0/8\nupstream-allow {allow}\n"
                        f"upstream-ca {ca}\nworkers 1\n" +
                        (f"user {os.environ.get('POPSD_TEST_USER', 'nobody')}\n"
                         if os.geteuid() == 0 else ""))
            os.chmod(p.conf, 0o644)
        write("*.example.net")
        p.start()
        H.wait_until(lambda: H.listening(port), 15, "the outbound port")
        user = f"ob@localhost:{remote.pop3_port}"
        c = poplib.POP3("127.0.0.1", port, timeout=30)
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
            c.user(user)
        c.quit()
        write("localhost")
        p.proc.send_signal(1)   # SIGHUP
        H.wait_until(lambda: "reloaded" in p.log() or "reload failed" in p.log(),
                     20, "the reload's verdict")
        assert "reload failed" not in p.log(), p.log()
        _, count, _ = fetch_small(port, user=user)
        assert count >= 2
    finally:
        if p is not None and p.proc is not None:
            p.stop()
            if os.environ.get("PYTEST_OUTBOUND_DEBUG"):
                print(p.log())
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("mode", ["stls", "pop3s"])
def test_silent_upstream_times_out(mode, outbound):
    """An upstream that accepts and says nothing (no greeting; no TLS
    answer): "-ERR [SYS/TEMP]" at timeout handshake, nothing hangs."""
    silent = H.SilentBackend()
    try:
        p = outbound(f"upstream 127.0.0.1:{silent.port} {mode}",
                     "timeout handshake 2s")
        first, _ = pipelined_client(p.out_port)
        assert first.startswith(b"-ERR [SYS/TEMP]"), first
        line = session_line(p)
        assert "reason=upstream-timeout" in line, line
        assert silent.accepted == 1
    finally:
        silent.close()


def test_shield_applies(outbound):
    """The authorization-phase shield mediates outbound clients too."""
    p = outbound("upstream-allow localhost")
    with socket.create_connection(("127.0.0.1", p.out_port), timeout=30) as s:
        f = s.makefile("rb")
        assert f.readline().startswith(b"+OK")
        s.sendall(b"USER " + b"x" * 300 + b"@localhost\r\n")
        assert f.readline().startswith(b"-ERR line too long")
        s.sendall(b"STLS\r\n")
        assert f.readline().startswith(b"-ERR")     # no STLS offered here
        s.sendall(b"RETR 1\r\n")
        assert f.readline().startswith(b"-ERR")
        s.sendall(b"QUIT\r\n")
        assert f.readline().startswith(b"+OK")


def test_limits_say_why_on_the_plaintext_port(outbound):
    """Turned away by a limit, an outbound client (plaintext) is told why,
    as on a pop3 port."""
    p = outbound("upstream-allow localhost", "max-sessions-per-ip 1")
    with socket.create_connection(("127.0.0.1", p.out_port), timeout=30) as a:
        assert a.makefile("rb").readline().startswith(b"+OK")
        with socket.create_connection(("127.0.0.1", p.out_port), timeout=30) as b:
            assert b.makefile("rb").readline().startswith(
                b"-ERR [SYS/TEMP] too many sessions from your address")
    H.wait_until(lambda: "refused client=127.0.0.1 listener=outbound "
                 "reason=max-sessions-per-ip" in p.log(), 20, "the refusal's line")


@pytest.mark.skipif(shutil.which("systemd-socket-activate") is None,
                    reason="systemd-socket-activate not installed")
def test_socket_activation_outbound(remote, certs, tmp_path):
    """A socket systemd passes as FileDescriptorName=outbound serves the
    outbound listen line for its address (a configuration with no backend
    and no certificate)."""
    port = H.free_port()
    conf = tmp_path / "sa.conf"
    conf.write_text(f"listen outbound 127.0.0.1:{port}\n"
                    f"upstream localhost:{remote.port} pop3s\n"
                    f"upstream-ca {certs.ca}\nplaintext-allow 127.0.0.0/8\n"
                    "workers 1\n" +
                    (f"user {os.environ.get('POPSD_TEST_USER', 'nobody')}\n"
                     if os.geteuid() == 0 else ""))
    log = open(tmp_path / "sa.log", "wb")
    proc = subprocess.Popen(["systemd-socket-activate", "-l", f"127.0.0.1:{port}",
                             "--fdname=outbound", H.popsd_binary(), "-d", "-f",
                             str(conf)], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    try:
        H.wait_until(lambda: H.listening(port), 20, "the activation socket")
        # The first connection makes systemd-socket-activate start popsd,
        # which then serves it on the socket it was passed.
        _, count, _ = fetch_small(port)
        assert count >= 2
        text = (tmp_path / "sa.log").read_text()
        assert "listening: outbound 127.0.0.1" in text, text
    finally:
        H.stop_pid(proc.pid)
        log.close()


@pytest.mark.skipif(shutil.which("systemd-socket-activate") is None,
                    reason="systemd-socket-activate not installed")
def test_inetd_outbound(remote, certs, tmp_path):
    """popsd -i outbound: one connection on stdin (systemd Accept=yes),
    from a file with no listen line, backend or certificate."""
    port = H.free_port()
    conf = tmp_path / "i.conf"
    conf.write_text(f"upstream localhost:{remote.port} pop3s\n"
                    f"upstream-ca {certs.ca}\nplaintext-allow 127.0.0.0/8\n" +
                    (f"user {os.environ.get('POPSD_TEST_USER', 'nobody')}\n"
                     if os.geteuid() == 0 else ""))
    check = subprocess.run([H.popsd_binary(), "-n", "-i", "outbound", "-f", str(conf)],
                           capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    log = open(tmp_path / "i.log", "wb")
    proc = subprocess.Popen(["systemd-socket-activate", "--accept", "--inetd",
                             "-l", f"127.0.0.1:{port}", H.popsd_binary(), "-d",
                             "-i", "outbound", "-f", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=log,
                            stdin=subprocess.DEVNULL)
    try:
        H.wait_until(lambda: H.listening(port), 20, "the inetd socket")
        _, count, _ = fetch_small(port)
        assert count >= 2
        H.wait_until(lambda: "listener=outbound" in (tmp_path / "i.log").read_text()
                     and "login=yes" in (tmp_path / "i.log").read_text(),
                     20, "the session's line")
    finally:
        H.stop_pid(proc.pid)
        log.close()
