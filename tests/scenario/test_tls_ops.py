"""TLS operations (issue 5): live certificate reload under traffic, failed
reloads, SNI, OCSP stapling, TLS policy (protocols, ciphers, curves, client
certificates), session resumption across reloads and key rotation, the
session limits (max-sessions, max-sessions-per-ip, EMFILE pause), and the
man pages.

popsd runs as root here and drops to an unprivileged user, and a reload
re-reads the configuration and keys as that user: so these tests keep
their files in world-traversable temp dirs (pytest's are 0700) with the
keys owned by the popsd user, mode 0600, the way an admin would set it up.
Certificates come from certs/mkcert.sh (-n for a second name, -c for a
client certificate, -o for OCSP staples). Nothing sleeps to synchronise:
every wait polls a condition with a deadline."""

import contextlib
import hashlib
import os
import pwd
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

SNI_NAME = "mail.example.test"
CLIENT = "alice"
DROP_USER = os.environ.get("POPSD_TEST_USER", "nobody")


# ---------------------------------------------------------------- helpers

def drop_ids():
    """(uid, gid) popsd drops to when started as root, else None."""
    if os.geteuid() != 0:
        return None
    pw = pwd.getpwnam(DROP_USER)
    return pw.pw_uid, pw.pw_gid


def public_dir(parent=None, prefix="popsd-tls."):
    d = tempfile.mkdtemp(prefix=prefix, dir=parent)
    os.chmod(d, 0o755)
    return d


def install(src, dst, key=False):
    """Copy src to dst atomically (rename), as an ACME client would: a key
    mode 0600 owned by popsd's user, anything else mode 0644."""
    tmp = dst + ".new"
    shutil.copyfile(src, tmp)
    os.chmod(tmp, 0o600 if key else 0o644)
    ids = drop_ids()
    if key and ids:
        os.chown(tmp, *ids)
    os.replace(tmp, dst)


def fingerprint_pem(path):
    with open(path) as f:
        return hashlib.sha256(ssl.PEM_cert_to_DER_cert(f.read())).hexdigest()


class CertSet:
    """A CA with a "localhost" certificate, one for SNI_NAME, a client
    certificate for CLIENT and OCSP staples, made by certs/mkcert.sh."""

    def __init__(self, directory):
        self.dir = directory
        subprocess.run(["sh", H.MKCERT, "-o", "-n", SNI_NAME, "-c", CLIENT, directory],
                       check=True, stdout=subprocess.DEVNULL, timeout=60)
        j = lambda n: os.path.join(directory, n)   # noqa: E731
        self.ca, self.ca_key = j("ca.pem"), j("ca.key")
        self.cert, self.key, self.ocsp = j("cert.pem"), j("key.pem"), j("cert.ocsp")
        self.sni_cert, self.sni_key = j(f"{SNI_NAME}.pem"), j(f"{SNI_NAME}.key")
        self.client_cert, self.client_key = j(f"client-{CLIENT}.pem"), j(f"client-{CLIENT}.key")
        self.fp = fingerprint_pem(self.cert)
        self.sni_fp = fingerprint_pem(self.sni_cert)
        ids = drop_ids()
        if ids:     # popsd re-reads the keys it names on reload, as its user
            for k in (self.key, self.sni_key):
                os.chown(k, *ids)

    def ocsp_response(self, cert, out, revoked=False):
        """Write a DER OCSP response for cert, signed by this CA: "good",
        or "revoked" (index.txt status R) to tell two staples apart."""
        with tempfile.TemporaryDirectory() as t:
            x509 = lambda *a: subprocess.run(   # noqa: E731
                ["openssl", "x509", "-in", cert, "-noout", *a], check=True,
                stdout=subprocess.PIPE, text=True).stdout.strip()
            serial = x509("-serial").split("=", 1)[1]
            subject = re.sub(r"^subject=", "", x509("-subject", "-nameopt", "compat"))
            end = time.strptime(x509("-enddate").split("=", 1)[1], "%b %d %H:%M:%S %Y %Z")
            gm = lambda t_: time.strftime("%y%m%d%H%M%SZ", t_)   # noqa: E731
            status, revtime = ("R", gm(time.gmtime(time.time() - 3600))) if revoked else ("V", "")
            with open(os.path.join(t, "index.txt"), "w") as f:
                f.write(f"{status}\t{gm(end)}\t{revtime}\t{serial}\tunknown\t{subject}\n")
            req = os.path.join(t, "req.der")
            subprocess.run(["openssl", "ocsp", "-issuer", self.ca, "-cert", cert, "-no_nonce",
                            "-reqout", req], check=True, capture_output=True)
            subprocess.run(["openssl", "ocsp", "-index", os.path.join(t, "index.txt"),
                            "-rsigner", self.ca, "-rkey", self.ca_key, "-CA", self.ca,
                            "-reqin", req, "-respout", out, "-ndays", "7"],
                           check=True, capture_output=True)
        os.chmod(out, 0o644)


class Live:
    """The files popsd's configuration names, in the test's own public
    dir, so that a test can swap them under a running popsd."""

    def __init__(self, directory, certs):
        self.dir = directory
        self.cert = os.path.join(directory, "cert.pem")
        self.key = os.path.join(directory, "key.pem")
        self.ocsp = os.path.join(directory, "cert.ocsp")
        self.use(certs)

    def use(self, certs):
        # Key first: a reload in between then fails on a mismatch and
        # keeps what runs, never serves a certificate with a wrong key.
        install(certs.key, self.key, key=True)
        install(certs.cert, self.cert)
        install(certs.ocsp, self.ocsp)


@pytest.fixture(scope="module")
def tls_root():
    d = public_dir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def set_a(tls_root):
    return CertSet(public_dir(tls_root, "a."))


@pytest.fixture(scope="module")
def set_b(tls_root):
    """A second CA and certificates: fingerprints differ from set_a's."""
    return CertSet(public_dir(tls_root, "b."))


@pytest.fixture
def tpopsd(request, tls_root, set_a, backend):
    """Factory like conftest's popsd, but in a public dir with the keys
    owned by popsd's user, so that reloads can re-read everything.
    tpopsd(extra=[...], pop3=..., verbose=..., start=...) → (H.Popsd, Live)."""
    d = public_dir(tls_root, "t.")
    live = Live(d, set_a)
    made = []

    def factory(start=True, **kw):
        p = H.Popsd(d, live, backend.address, name=f"popsd{len(made) + 1}", **kw)
        os.chmod(p.conf, 0o644)
        made.append(p)
        if start:
            p.start()
        return p, live

    yield factory

    failed = any(getattr(request.node, "rep_" + w, None) is not None and
                 getattr(request.node, "rep_" + w).failed for w in ("setup", "call"))
    problems = []
    for p in made:
        if p.proc is None:
            continue
        crashed = p.proc.poll() is not None and not p.expected_exit
        status, _ = p.stop()
        if crashed:
            problems.append(f"{p.name} exited on its own with status {status}")
    if failed or problems:
        for p in made:
            print(f"\n----- {p.log_path} -----\n{p.log()}", end="")
    shutil.rmtree(d, ignore_errors=True)
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


def wait_log(p, pattern, timeout=10, after=0):
    """Wait for a log line matching pattern in p's log past offset after;
    return the match."""
    rx = re.compile(pattern, re.M)
    try:
        return H.wait_until(lambda: rx.search(p.log(), after), timeout, f"log /{pattern}/")
    except H.Timeout as e:
        raise AssertionError(f"{e}\n--- {p.log_path}:\n{p.log()}") from None


def reload(p, what="reloaded"):
    """SIGHUP p and wait for its verdict: 'reloaded' or 'reload failed'.
    Returns the log line."""
    mark = len(p.log())
    p.proc.send_signal(signal.SIGHUP)
    m = wait_log(p, r"^.*(reloaded .*|reload failed.*)$", after=mark)
    line = m.group(0)
    assert what in line, line
    return line


def context(*cas, cert=None, key=None):
    ctx = ssl.create_default_context()
    for ca in cas:
        ctx.load_verify_locations(ca)
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def peer_fingerprint(port, servername="localhost", ctx=None):
    """The sha256 of the certificate popsd presents, after a full POP3
    greeting and QUIT (so the session logs cleanly)."""
    if ctx is None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    with H.Pop3Client(port, ctx, server_hostname=servername) as c:
        assert c.readline().startswith(b"+OK")
        fp = hashlib.sha256(c.sock.getpeercert(binary_form=True)).hexdigest()
        c.cmd("QUIT")
        return fp, c.local_port


def s_client(port, *args, data=b"QUIT\r\n", timeout=20):
    """openssl s_client against 127.0.0.1:port; returns (status, output).
    -ign_eof keeps it until popsd closes, so that a TLS 1.3 ticket sent
    after the handshake is received (-sess_out)."""
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-ign_eof",
                        *args], input=data, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=timeout)
    return r.returncode, r.stdout.decode(errors="replace")


def last_session(p, count_before, timeout=10):
    """The first session line logged after the first count_before ones
    (s_client does not tell its local port, so sessions go by order)."""
    H.wait_until(lambda: len(p.session_lines()) > count_before, timeout,
                 "a new session line")
    return p.session_lines()[count_before]


# ---------------------------------------------------------------- reload

def big_number(port, ctx, backend):
    with H.Pop3Client(port, ctx) as c:
        c.login("big", H.PASSWORDS["big"])
        assert c.cmd("LIST").startswith(b"+OK")
        sizes = dict(tuple(map(int, l.split())) for l in c.multiline().split(b"\r\n") if l)
        c.cmd("QUIT")
    nums = [n for n, sz in sizes.items() if sz == backend.big_wire]
    assert nums, f"no message of {backend.big_wire} octets in {sizes}"
    return nums[0]


def read_body(c, h, limit=None):
    """Read a multi-line body into hash h (un-stuffed, CRLF kept), up to
    about limit bytes (None: to the end). Returns (bytes, finished)."""
    n = 0
    while limit is None or n < limit:
        line = c.readline()
        if not line:
            raise AssertionError("EOF inside RETR")
        if line == b".\r\n":
            return n, True
        if line.startswith(b"."):
            line = line[1:]
        h.update(line)
        n += len(line)
    return n, False


class Load:
    """Threads running small POP3 sessions back to back (LIST, RETR 1,
    QUIT as demo) until stopped; every session must succeed, against
    either certificate. Records which certificate each one saw."""

    def __init__(self, port, cas, n=4):
        self.ctx = context(*cas)
        self.port = port
        self.stop = threading.Event()
        self.errors, self.seen = [], []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(n)]
        for t in self.threads:
            t.start()

    def _run(self):
        while not self.stop.is_set():
            try:
                with H.Pop3Client(self.port, self.ctx) as c:
                    c.login("demo", H.PASSWORDS["demo"])
                    assert c.cmd("LIST").startswith(b"+OK")
                    c.multiline()
                    assert c.cmd("RETR 1").startswith(b"+OK")
                    assert b"Subject:" in c.multiline()
                    assert c.cmd("QUIT").startswith(b"+OK")
                    fp = hashlib.sha256(c.sock.getpeercert(binary_form=True)).hexdigest()
                with self.lock:
                    self.seen.append(fp)
            except Exception as e:  # noqa: BLE001 — every failure counts
                with self.lock:
                    self.errors.append(repr(e))

    def count(self, fp):
        with self.lock:
            return self.seen.count(fp)

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(30)


def test_reload_swaps_certificate_under_load_retr_intact(tpopsd, set_a, set_b, backend):
    """A certificate rotation under live traffic drops nothing: a RETR of
    the ~100 MiB message paused mid-body across the reload completes with
    the right sha256 over the old TLS context; sessions running in a loop
    meanwhile all succeed; the first client after the reload sees the new
    certificate."""
    p, live = tpopsd()
    ctx_a = context(set_a.ca)
    n = big_number(p.port, ctx_a, backend)

    c = H.Pop3Client(p.port, ctx_a, timeout=60)
    c.login("big", H.PASSWORDS["big"])
    assert hashlib.sha256(c.sock.getpeercert(binary_form=True)).hexdigest() == set_a.fp
    assert c.cmd(f"RETR {n}").startswith(b"+OK")
    h = hashlib.sha256()
    got, done = read_body(c, h, limit=4 << 20)
    assert not done

    load = Load(p.port, [set_a.ca, set_b.ca])
    try:
        H.wait_until(lambda: load.count(set_a.fp) >= 3, 20, "sessions with the old certificate")
        live.use(set_b)
        reload(p)
        fp, _ = peer_fingerprint(p.port)
        assert fp == set_b.fp, "the first client after the reload got the old certificate"
        H.wait_until(lambda: load.count(set_b.fp) >= 3, 20, "sessions with the new certificate")
    finally:
        load.finish()
    assert not load.errors, load.errors[:5]

    # The paused RETR, on the context from before the reload, completes.
    rest, done = read_body(c, h)
    assert done and got + rest > 100 << 20
    assert h.hexdigest() == backend.big_sha256
    assert c.cmd("QUIT").startswith(b"+OK")
    local = c.local_port
    c.close()
    s = p.wait_session(port=local)
    assert s["login"] == "yes" and s["reason"] in ("client-closed", "backend-closed"), s["_line"]
    assert int(s["to_client"]) > backend.big_wire
    assert p.alive()


def test_failed_reload_keeps_serving(tpopsd, set_a, set_b):
    """A reload that fails keeps the running configuration, says exactly
    why, and the next good reload applies."""
    p, live = tpopsd()
    with open(set_b.key) as f:
        good_key = f.read()

    # 1. A corrupt key (still PEM-shaped): libtls refuses it.
    with open(live.key, "w") as f:
        f.write("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    install(set_b.cert, live.cert)
    line = reload(p, "reload failed")
    assert "keeping the running configuration" in line
    assert f"key {live.key}" in line, line
    assert peer_fingerprint(p.port)[0] == set_a.fp

    # 2. A certificate that does not match its key.
    install(set_a.key, live.key, key=True)
    line = reload(p, "reload failed")
    assert f"certificate {live.cert}" in line, line
    assert peer_fingerprint(p.port)[0] == set_a.fp

    # 3. Bad syntax: file:line and what is wrong.
    install(set_b.key, live.key, key=True)
    conf = open(p.conf).read()
    with open(p.conf, "a") as f:
        f.write("tls-protocols tlsv9\n")
    n = len(conf.splitlines()) + 1
    line = reload(p, "reload failed")
    assert f"{p.conf}:{n}: tls-protocols: bad protocol list \"tlsv9\"" in line, line
    assert peer_fingerprint(p.port)[0] == set_a.fp

    # 4. A key file others can read.
    os.chmod(live.key, 0o644)
    with open(p.conf, "w") as f:
        f.write(conf)
    line = reload(p, "reload failed")
    assert "is accessible by group or others" in line, line
    assert peer_fingerprint(p.port)[0] == set_a.fp

    # 5. Fixed: the reload applies and B is served.
    os.chmod(live.key, 0o600)
    with open(live.key) as f:
        assert f.read() == good_key
    reload(p, "reloaded")
    assert peer_fingerprint(p.port)[0] == set_b.fp
    assert p.alive()


# ---------------------------------------------------------------- SNI and OCSP

def sni_extra(set_):
    return [f"certificate {set_.sni_cert}", f"key {set_.sni_key}"]


def test_sni_picks_certificate_and_logs_name(tpopsd, set_a):
    p, _ = tpopsd(extra=sni_extra(set_a))
    cases = [(SNI_NAME, SNI_NAME, set_a.sni_fp),
             ("localhost", "localhost", set_a.fp),
             (None, "-", set_a.fp),                       # no SNI: the first pair
             ("unknown.example", "unknown.example", set_a.fp)]  # no match: the first
    for name, logged, fp in cases:
        before = len(p.session_lines())
        args = ["-CAfile", set_a.ca] + (["-servername", name] if name else ["-noservername"])
        status, out = s_client(p.port, *args)
        assert status == 0, out
        m = re.search(r"subject=.*CN ?= ?([\w.-]+)", out)
        assert m, out
        want_cn = SNI_NAME if fp == set_a.sni_fp else "localhost"
        assert m.group(1) == want_cn, (name, out)
        s = last_session(p, before)
        assert s["servername"] == logged, s["_line"]
    # And the fingerprints, from Python's client.
    assert peer_fingerprint(p.port, SNI_NAME)[0] == set_a.sni_fp
    assert peer_fingerprint(p.port, "localhost")[0] == set_a.fp


def test_ocsp_staple_sent_and_reread_on_reload(tpopsd, set_a):
    p, live = tpopsd(extra=sni_extra(set_a), start=False)
    # A staple belongs to the pair just before it: the live one here.
    text = open(p.conf).read()
    text = text.replace(f"key {live.key}\n", f"key {live.key}\nocsp-staple {live.ocsp}\n")
    with open(p.conf, "w") as f:
        f.write(text)
    p.start()

    status, out = s_client(p.port, "-status", "-CAfile", set_a.ca)
    assert status == 0, out
    assert "OCSP Response Status: successful" in out, out
    assert "Cert Status: good" in out, out
    # The SNI pair has no staple.
    status, out = s_client(p.port, "-status", "-servername", SNI_NAME, "-CAfile", set_a.ca)
    assert status == 0, out
    assert "OCSP response: no response sent" in out, out

    # A new response in the file is served after a reload.
    set_a.ocsp_response(set_a.cert, live.ocsp + ".new", revoked=True)
    os.replace(live.ocsp + ".new", live.ocsp)
    status, out = s_client(p.port, "-status", "-CAfile", set_a.ca)
    assert "Cert Status: good" in out, "re-read before the reload"
    reload(p)
    status, out = s_client(p.port, "-status", "-CAfile", set_a.ca)
    assert "Cert Status: revoked" in out, out

    # A file that is not a DER response fails the reload, logged.
    with open(live.ocsp, "w") as f:
        f.write("not DER\n")
    line = reload(p, "reload failed")
    assert f'ocsp-staple: "{live.ocsp}" is not a DER OCSP response' in line, line


# ---------------------------------------------------------------- TLS policy

def test_default_protocols_refuse_tls11(tpopsd, set_a):
    p, _ = tpopsd()
    # Debian's OpenSSL offers TLS 1.1 only at security level 0.
    before = len(p.session_lines())
    status, out = s_client(p.port, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
    assert status != 0, out
    assert re.search(r"alert protocol version|unsupported protocol|no protocols available",
                     out), out
    s = last_session(p, before)
    assert s["reason"] == "tls-handshake-failed", s["_line"]
    for flag, version in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
        status, out = s_client(p.port, flag, "-CAfile", set_a.ca)
        assert status == 0 and f"New, {version}" in out, out


def test_protocols_tls13_only(tpopsd, set_a):
    p, _ = tpopsd(extra=["tls-protocols tlsv1.3"])
    status, out = s_client(p.port, "-tls1_2")
    assert status != 0, out
    status, out = s_client(p.port, "-tls1_3", "-CAfile", set_a.ca)
    assert status == 0 and "New, TLSv1.3" in out, out


def test_ciphers_and_curves(tpopsd, set_a):
    p, _ = tpopsd(extra=["tls-ciphers ECDHE-ECDSA-AES128-GCM-SHA256", "tls-curves P-384"])
    status, out = s_client(p.port, "-tls1_2", "-CAfile", set_a.ca)
    assert status == 0, out
    assert "Cipher is ECDHE-ECDSA-AES128-GCM-SHA256" in out, out
    assert re.search(r"Server Temp Key: ECDH, (P-384|secp384r1)", out), out
    # A client without that cipher, or without that curve, is refused.
    status, out = s_client(p.port, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384")
    assert status != 0, out
    status, out = s_client(p.port, "-tls1_3", "-groups", "X25519")
    assert status != 0, out
    status, out = s_client(p.port, "-tls1_3", "-groups", "P-384", "-CAfile", set_a.ca)
    assert status == 0, out


@pytest.mark.parametrize("line,want", [
    ("tls-protocols tlsv1.4", 'tls-protocols: bad protocol list "tlsv1.4"'),
    ("tls-ciphers NO-SUCH-CIPHER", 'tls-ciphers: libtls refuses "NO-SUCH-CIPHER"'),
    ("tls-curves P-999", 'tls-curves: libtls refuses "P-999": invalid ecdhe curve'),
    ("tls-session-lifetime 1s", 'tls-session-lifetime: bad duration "1s"'),
    ("tls-client-cert sometimes", "tls-client-cert: expected"),
    ("max-sessions-per-ip lots", 'max-sessions-per-ip: "lots" is not a number'),
])
def test_check_catches_bad_tls_values(tpopsd, line, want):
    """popsd -n reports a bad value with file:line, before any handshake."""
    p, _ = tpopsd(start=False, extra=[line])
    n = open(p.conf).read().splitlines().index(line) + 1
    status, out = p.check()
    assert status == 1, out
    assert f"{p.conf}:{n}: {want}" in out, out


# ---------------------------------------------------------------- client certificates

def client_args(set_):
    return ["-cert", set_.client_cert, "-key", set_.client_key]


def test_client_cert_required(tpopsd, set_a, set_b):
    p, _ = tpopsd(extra=[f"tls-client-ca {set_a.ca}", "tls-client-cert required"])
    before = len(p.session_lines())
    status, out = s_client(p.port, "-CAfile", set_a.ca, *client_args(set_a))
    assert status == 0 and "+OK" in out, out
    s = last_session(p, before)
    assert re.fullmatch(r"/O.popsd development/CN.alice", s["client_cert"]), s["_line"]
    assert s["reason"] != "tls-handshake-failed"

    for args in ([], client_args(set_b)):     # none, or from another CA
        before = len(p.session_lines())
        s_client(p.port, "-CAfile", set_a.ca, *args)
        s = last_session(p, before)
        assert s["reason"] == "tls-handshake-failed", s["_line"]
        assert s["client_cert"] == "-"


def test_client_cert_optional(tpopsd, set_a, set_b):
    p, _ = tpopsd(extra=[f"tls-client-ca {set_a.ca}", "tls-client-cert optional"])
    before = len(p.session_lines())
    status, out = s_client(p.port, "-CAfile", set_a.ca)
    assert status == 0 and "+OK" in out, out
    s = last_session(p, before)
    assert s["client_cert"] == "-" and s["tls"] != "none", s["_line"]

    before = len(p.session_lines())
    status, out = s_client(p.port, "-CAfile", set_a.ca, *client_args(set_a))
    assert status == 0, out
    s = last_session(p, before)
    assert s["client_cert"].endswith("CN?alice"), s["_line"]

    # Sent but not verifiable: refused, even though optional.
    before = len(p.session_lines())
    s_client(p.port, "-CAfile", set_a.ca, *client_args(set_b))
    assert last_session(p, before)["reason"] == "tls-handshake-failed"


# ---------------------------------------------------------------- resumption

def resume(p, tmp, *args):
    """A full handshake saving the session, then one resuming it. Returns
    the two outputs and the two session lines."""
    sess = os.path.join(tmp, "sess.pem")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(sess)
    before = len(p.session_lines())
    status, out1 = s_client(p.port, *args, "-sess_out", sess)
    assert status == 0, out1
    s1 = last_session(p, before)
    assert os.path.exists(sess), f"no session saved (no ticket?):\n{out1}"
    status, out2 = s_client(p.port, *args, "-sess_in", sess)
    assert status == 0, out2
    s2 = last_session(p, before + 1)
    return out1, out2, s1, s2


@pytest.mark.parametrize("version", ["-tls1_3", "-tls1_2"])
def test_resumption_and_across_reload(tpopsd, set_a, tmp_path, version):
    p, _ = tpopsd()
    out1, out2, s1, s2 = resume(p, str(tmp_path), version, "-CAfile", set_a.ca)
    assert "New," in out1 and s1["resumed"] == "no", s1["_line"]
    assert "Reused," in out2, out2
    assert s2["resumed"] == "yes", s2["_line"]

    # A ticket from before a reload resumes after it: same keys.
    sess = str(tmp_path / "keep.pem")
    before = len(p.session_lines())
    status, out = s_client(p.port, version, "-CAfile", set_a.ca, "-sess_out", sess)
    assert status == 0 and os.path.exists(sess), out
    reload(p)
    status, out = s_client(p.port, version, "-CAfile", set_a.ca, "-sess_in", sess)
    assert status == 0 and "Reused," in out, out
    assert last_session(p, before + 1)["resumed"] == "yes"


def test_resumption_off(tpopsd, set_a, tmp_path):
    p, _ = tpopsd(extra=["tls-session-lifetime off"])
    sess = str(tmp_path / "s.pem")
    status, out = s_client(p.port, "-CAfile", set_a.ca, "-sess_out", sess)
    assert status == 0, out
    if os.path.exists(sess):        # TLS 1.2 would save even an unusable one
        status, out = s_client(p.port, "-CAfile", set_a.ca, "-sess_in", sess)
        assert "Reused," not in out, out
    assert all(s["resumed"] == "no" for s in p.session_lines())


def test_ticket_key_rotation(tpopsd, set_a, tmp_path):
    """tls-session-lifetime 8s: a new ticket key every 2s; a ticket still
    resumes after a rotation (older keys decrypt), and no longer once the
    lifetime has passed."""
    p, _ = tpopsd(extra=["tls-session-lifetime 8s"], verbose=True)
    sess = str(tmp_path / "s.pem")
    mark = len(p.log())
    status, out = s_client(p.port, "-tls1_3", "-CAfile", set_a.ca, "-sess_out", sess)
    assert status == 0 and os.path.exists(sess), out
    issued = time.monotonic()
    wait_log(p, r"session ticket key rotated", after=mark, timeout=10)
    assert time.monotonic() - issued < 6, "too slow to test rotation within the lifetime"
    status, out = s_client(p.port, "-tls1_3", "-CAfile", set_a.ca, "-sess_in", sess)
    assert "Reused," in out, out
    # Past the lifetime: a full handshake.
    H.wait_until(lambda: time.monotonic() - issued > 9, 15, "the lifetime to pass")
    status, out = s_client(p.port, "-tls1_3", "-CAfile", set_a.ca, "-sess_in", sess)
    assert status == 0 and "New," in out and "Reused," not in out, out


def add_conf(p, *lines):
    with open(p.conf, "a") as f:
        f.write("".join(line + "\n" for line in lines))


def set_conf(p, old, new):
    with open(p.conf) as f:
        text = f.read()
    assert old in text, (old, text)
    with open(p.conf, "w") as f:
        f.write(text.replace(old, new))


def try_resume(p, ca, version, sess, *args):
    """s_client offering the session in sess; returns (reused, session line)."""
    before = len(p.session_lines())
    _, out = s_client(p.port, version, "-CAfile", ca, "-sess_in", sess, *args)
    s = last_session(p, before)
    reused = "Reused," in out
    assert reused == (s["resumed"] == "yes"), (out, s["_line"])
    return reused, s


@pytest.mark.parametrize("version", ["-tls1_3", "-tls1_2"])
def test_resumption_bound_to_client_cert_policy(tpopsd, set_a, set_b, tmp_path, version):
    """issue 13 item 3: a ticket issued without a client certificate does
    not resume after a reload that requires one (the full handshake is
    refused), nor does one whose certificate the new tls-client-ca no
    longer verifies; an unchanged policy still resumes across a reload."""
    p, _ = tpopsd()
    sess = str(tmp_path / "s.pem")
    status, out = s_client(p.port, version, "-CAfile", set_a.ca, "-sess_out", sess)
    assert status == 0 and os.path.exists(sess), out

    add_conf(p, f"tls-client-ca {set_a.ca}", "tls-client-cert required")
    reload(p)
    reused, s = try_resume(p, set_a.ca, version, sess)
    assert not reused and s["reason"] == "tls-handshake-failed", s["_line"]

    # Under the new policy: a ticket for a certificate that verifies, kept
    # across a reload that changes nothing, ...
    cert = str(tmp_path / "cert.pem")
    status, out = s_client(p.port, version, "-CAfile", set_a.ca, "-sess_out", cert,
                           *client_args(set_a))
    assert status == 0 and os.path.exists(cert), out
    reload(p)
    reused, s = try_resume(p, set_a.ca, version, cert, *client_args(set_a))
    assert reused and s["client_cert"].endswith("CN?alice"), s["_line"]
    # ... but not across one to a CA that does not verify it.
    set_conf(p, f"tls-client-ca {set_a.ca}", f"tls-client-ca {set_b.ca}")
    reload(p)
    reused, s = try_resume(p, set_a.ca, version, cert, *client_args(set_a))
    assert not reused and s["reason"] == "tls-handshake-failed", s["_line"]


def test_resumption_bound_to_ciphers(tpopsd, set_a, tmp_path):
    """A TLS 1.2 session does not resume with a cipher suite a reload
    removed (OpenSSL itself checks only the client's list)."""
    p, _ = tpopsd(extra=["tls-ciphers ECDHE+AESGCM"])
    sess = str(tmp_path / "s.pem")
    status, out = s_client(p.port, "-tls1_2", "-CAfile", set_a.ca, "-sess_out", sess)
    assert status == 0 and os.path.exists(sess) and "AES" in out, out
    set_conf(p, "tls-ciphers ECDHE+AESGCM", "tls-ciphers ECDHE+CHACHA20")
    reload(p)
    reused, s = try_resume(p, set_a.ca, "-tls1_2", sess)
    assert not reused and "CHACHA20" in s["cipher"], s["_line"]


def pop3s_session(p, ctx, session=None):
    """A pop3s connection offering session (None: none) that reads the
    greeting, QUITs and reads to EOF, so that TLS 1.3 tickets sent after
    the handshake arrive. Returns (resumed, the latest session, its
    session line). Python's ssl keeps a TLS 1.2 ticket renewed on
    resumption, which s_client -sess_out does not save."""
    before = len(p.session_lines())
    raw = socket.create_connection(("127.0.0.1", p.port), timeout=20)
    with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as c:
        f = c.makefile("rb")
        assert f.readline().startswith(b"+OK")
        c.sendall(b"QUIT\r\n")
        while f.read1(4096):
            pass
        reused, latest = c.session_reused, c.session
        f.close()
    s = last_session(p, before)
    assert reused == (s["resumed"] == "yes"), s["_line"]
    return reused, latest, s


@pytest.mark.parametrize("version", ["TLSv1_3", "TLSv1_2"])
def test_renewed_tickets_end_at_lifetime(tpopsd, set_a, version):
    """issue 13 item 3: each resumption renews the ticket, but a chain of
    renewed tickets resumes only for tls-session-lifetime from its full
    handshake; then a full handshake starts a new chain."""
    lifetime = 4        # the least tls-session-lifetime accepts
    p, _ = tpopsd(extra=[f"tls-session-lifetime {lifetime}s"])
    ctx = context(set_a.ca)
    ctx.minimum_version = ctx.maximum_version = getattr(ssl.TLSVersion, version)
    start = time.time()
    reused, sess, s = pop3s_session(p, ctx)
    issued = time.time()
    assert not reused and sess is not None, s["_line"]
    # Resume with the latest ticket about once a second: each renewed
    # ticket is fresh, only the chain gets old. OpenSSL and popsd count
    # whole seconds: age = now - full handshake, truncated, may not
    # exceed the lifetime, so the chain ends between start + lifetime
    # and issued + lifetime + 1.
    renewed = 0
    deadline = time.monotonic() + 60
    while True:
        assert time.monotonic() < deadline, "the chain took too long to try"
        due = start + renewed + 1
        H.wait_until(lambda: time.time() >= due, 5, "the next try")
        tried = time.time()
        reused, latest, s = pop3s_session(p, ctx, sess)
        done = time.time()
        if not reused:
            break
        assert tried <= issued + lifetime + 1, \
            f"a chain of renewed tickets outlived the lifetime: {s['_line']}"
        renewed += 1
        assert latest.id != sess.id, "a resumed session got no renewed ticket"
        sess = latest
    assert done >= start + lifetime, \
        f"the chain ended {done - start:.1f}s after its full handshake: {s['_line']}"
    assert renewed >= 2, f"only {renewed} renewed tickets tried"
    # The full handshake that ended the chain gave a ticket that resumes.
    reused, _, s = pop3s_session(p, ctx, latest)
    assert reused, s["_line"]


# ---------------------------------------------------------------- limits

def raw_connect(port, source="127.0.0.1"):
    s = socket.socket()
    s.settimeout(10)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


class Held:
    """A pop3s session that has its greeting: it counts as live."""

    def __init__(self, port, ctx, source="127.0.0.1"):
        self.sock = ctx.wrap_socket(raw_connect(port, source), server_hostname="localhost")
        self.local_port = self.sock.getsockname()[1]
        self.f = self.sock.makefile("rb")
        assert self.f.readline().startswith(b"+OK")

    def close(self):
        # Both: the socket stays open while its makefile() does.
        self.f.close()
        self.sock.close()


def read_all(s):
    out = b""
    while chunk := s.recv(4096):
        out += chunk
    return out


def test_max_sessions_per_ip(tpopsd, set_a):
    p, _ = tpopsd(pop3=True, extra=["max-sessions-per-ip 2"])
    ctx = context(set_a.ca)
    held = [Held(p.port, ctx) for _ in range(2)]

    # pop3s: the third gets a clean close (FIN, not RST) before TLS, even
    # with its ClientHello already sent.
    s = raw_connect(p.port)
    s.sendall(H.client_hello())
    assert read_all(s) == b""       # ConnectionResetError here would be an RST
    s.close()
    wait_log(p, r"refused client=127\.0\.0\.1 listener=pop3s reason=max-sessions-per-ip "
                r"sessions=2 limit=2")

    # pop3: "-ERR [SYS/TEMP]" then the close.
    s = raw_connect(p.pop3_port)
    data = read_all(s)
    s.close()
    assert data.startswith(b"-ERR [SYS/TEMP] ") and data.endswith(b"\r\n"), data
    wait_log(p, r"refused client=127\.0\.0\.1 listener=pop3 reason=max-sessions-per-ip")

    # Another address is not affected.
    Held(p.port, ctx, source="127.0.0.2").close()

    # A session that ends frees its slot.
    gone = held.pop()
    gone.close()
    p.wait_session(port=gone.local_port)
    held.append(Held(p.port, ctx))
    for h in held:
        h.close()
    assert p.alive()


def test_max_sessions_per_ip_counts_mapped_as_ipv4(tpopsd, set_a):
    """On a dual-stack listener ("*:P") IPv4 clients appear as
    ::ffff:a.b.c.d; they count with the same address on an IPv4 one."""
    dual = H.free_port()
    p, _ = tpopsd(pop3=True, pop3s=False,
                  extra=[f"listen pop3s *:{dual}", "max-sessions-per-ip 2"])
    H.wait_until(lambda: H.listening(dual), 10, "the dual-stack listener")
    ctx = context(set_a.ca)
    a = Held(dual, ctx)
    plain = raw_connect(p.pop3_port)
    with plain.makefile("rb") as f:
        assert f.readline().startswith(b"+OK")
    s = raw_connect(dual)
    assert read_all(s) == b""
    s.close()
    m = wait_log(p, r"refused client=(\S+) listener=pop3s reason=max-sessions-per-ip "
                    r"sessions=2 limit=2")
    assert m.group(1) in ("::ffff:127.0.0.1", "127.0.0.1"), m.group(0)
    a.close()
    plain.close()


def test_max_sessions_per_ip_default_is_a_tenth(popsd):
    """Unset, max-sessions-per-ip is a tenth of max-sessions: one address
    cannot take every place (200 here, so 20 from 127.0.0.1), while
    another address still gets in."""
    be = fakepop.Greeter()
    held = []
    try:
        p = popsd(backend_addr=be.address, pop3=True, pop3s=False, max_sessions=200)
        for _ in range(20):
            s = raw_connect(p.pop3_port)
            held.append(s)
            assert s.makefile("rb").readline().startswith(b"+OK")
        s = raw_connect(p.pop3_port)
        data = read_all(s)
        s.close()
        assert data.startswith(b"-ERR [SYS/TEMP] too many sessions from your address"), data
        wait_log(p, r"refused client=127\.0\.0\.1 listener=pop3 reason=max-sessions-per-ip "
                    r"sessions=20 limit=20 counted_as=127\.0\.0\.1$")
        s = raw_connect(p.pop3_port, source="127.0.0.2")
        held.append(s)
        assert s.makefile("rb").readline().startswith(b"+OK")
    finally:
        for s in held:
            s.close()
        be.close()


def ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback")
def test_max_sessions_per_ip_ipv6_logged_per_64(popsd):
    """An IPv6 client is counted, and its refusal logged, by its /64."""
    be = fakepop.Greeter()
    try:
        v6 = H.free_port()
        p = popsd(backend_addr=be.address, pop3=True, pop3s=False,
                  extra=[f"listen pop3 [::1]:{v6}", "max-sessions-per-ip 1"])
        H.wait_until(lambda: H.listening(v6), 10, "the IPv6 listener")
        first = socket.create_connection(("::1", v6), timeout=10)
        assert first.makefile("rb").readline().startswith(b"+OK")
        s = socket.create_connection(("::1", v6), timeout=10)
        assert read_all(s).startswith(b"-ERR [SYS/TEMP] too many sessions from your address")
        s.close()
        wait_log(p, r"refused client=::1 listener=pop3 reason=max-sessions-per-ip "
                    r"sessions=1 limit=1 counted_as=::/64$")
        first.close()
    finally:
        be.close()


def test_max_sessions(tpopsd, set_a):
    p, _ = tpopsd(pop3=True, max_sessions=2)
    ctx = context(set_a.ca)
    held = [Held(p.port, ctx, source="127.0.0.2"), Held(p.port, ctx)]
    s = raw_connect(p.pop3_port, source="127.0.0.3")
    data = read_all(s)
    s.close()
    assert data.startswith(b"-ERR [SYS/TEMP] too many sessions"), data
    wait_log(p, r"refused client=127\.0\.0\.3 listener=pop3 reason=max-sessions "
                r"sessions=2 limit=2")
    for h in held:
        h.close()


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])     # utime + stime


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs prlimit (util-linux)")
def test_emfile_pauses_accept_without_spinning(tpopsd, set_a, monkeypatch):
    """Started with RLIMIT_NOFILE just above what it holds idle (prlimit as
    a wrapper: after the privilege drop nobody may lower it from outside
    without CAP_SYS_RESOURCE), popsd runs out of descriptors on the
    second connection: it logs, stops accepting (no busy loop while that
    connection waits in the backlog), and serves it once the first
    session frees its descriptors."""
    probe, _ = tpopsd()
    base = open_fds(probe.pid)
    probe.stop()
    # One session takes two descriptors: client and backend.
    limit = base + 2
    monkeypatch.setenv("POPSD_WRAPPER", f"prlimit --nofile={limit}:{limit} -- " +
                       os.environ.get("POPSD_WRAPPER", ""))
    p, _ = tpopsd()
    assert open_fds(p.pid) == base
    ctx = context(set_a.ca)
    first = Held(p.port, ctx)
    waiting = raw_connect(p.port)     # in the backlog: accept gets EMFILE
    # Only the first pause of a minute is logged: on a loaded machine an
    # accept tried while the first session filled the table (Linux takes
    # the descriptor before it looks at the queue) may have been it.
    wait_log(p, r"out of file descriptors: pausing accept")
    hz = os.sysconf("SC_CLK_TCK")
    t0, c0 = time.monotonic(), cpu_ticks(p.pid)
    H.wait_until(lambda: time.monotonic() - t0 > 1.5, 5, "a measuring window")
    used = cpu_ticks(p.pid) - c0
    assert used < 0.1 * hz, f"popsd used {used}/{hz} s of CPU in 1.5 s while paused"
    first.close()
    w = ctx.wrap_socket(waiting, server_hostname="localhost")
    with w.makefile("rb") as f:
        assert f.readline().startswith(b"+OK")
    w.close()
    assert p.alive()


# ---------------------------------------------------------------- man pages

MANS = [os.path.join(H.REPO, "src", "popsd.8"), os.path.join(H.REPO, "src", "popsd.conf.5")]


@pytest.mark.skipif(shutil.which("mandoc") is None, reason="needs mandoc")
def test_man_pages_lint_clean():
    r = subprocess.run(["mandoc", "-T", "lint", "-W", "warning"] + MANS,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert r.returncode == 0 and r.stdout == "", r.stdout


def test_man_pages_cover_every_directive_and_option():
    conf_c = open(os.path.join(H.REPO, "src", "conf.c")).read()
    table = conf_c[conf_c.index("directives[] = {"):]
    directives = re.findall(r'^\t\{ "([a-z0-9-]+)",', table, re.M)
    assert "listen" in directives and "tls-client-ca" in directives, directives
    page5 = open(MANS[1]).read()
    missing = [d for d in directives if not re.search(rf"^\.It Ic {re.escape(d)}\b", page5, re.M)]
    assert not missing, f"popsd.conf.5 does not describe: {missing}"
    for t in ("connect", "handshake", "login", "idle", "drain"):
        assert re.search(rf"^\.It Ic timeout Cm {t}\b", page5, re.M), t

    main_c = open(os.path.join(H.REPO, "src", "main.c")).read()
    optstring = re.search(r'getopt\(argc, argv, "([^"]+)"\)', main_c).group(1)
    page8 = open(MANS[0]).read()
    for opt in optstring.replace(":", ""):
        assert re.search(rf"^\.It Fl {opt}\b", page8, re.M), f"popsd.8 lacks -{opt}"
    for word in ("SIGHUP", "SIGTERM", "SIGINT", "EXIT STATUS", "FILES", "EXAMPLES",
                 "FileDescriptorName", "Type=notify"):
        assert word in page8, word
