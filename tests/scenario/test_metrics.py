"""Observability (issue 16): Prometheus metrics on metrics-listen, summed
over the workers; SIGUSR1; require-tls warn; the fail2ban filter.

Every scenario runs popsd with two workers and scrapes /metrics with curl
before and after: each counter must move by exactly what the scenario
did, and every other figure must stay where it was. Waits are on the
session lines in the log: a session is counted before its line is
written, so once the line is there the scrape must show it.
"""

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time

import pytest

import popsd_harness as H

ROOT = os.geteuid() == 0
REPO = H.REPO
FILTER = os.path.join(REPO, "contrib", "fail2ban", "filter.d", "popsd.conf")
JAIL = os.path.join(REPO, "contrib", "fail2ban", "jail.d", "popsd.local")
NOBODY = 65534

R_TLS_REQUIRED = b"-ERR [AUTH] TLS required: use STLS first (or connect to port 995)\r\n"
R_BAD_CHAR = b"-ERR invalid character in command\r\n"

ANY = object()      # an expected change of any positive amount


# ---------------------------------------------------------------- helpers

def curl(port, *args, path="/metrics"):
    r = subprocess.run(["curl", "-sS", "--max-time", "20", *args,
                        f"http://127.0.0.1:{port}{path}"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=30)
    return r


def scrape(p):
    """{sample: value} from one scrape of p's /metrics with curl."""
    r = curl(p.mport, "-f")
    assert r.returncode == 0, f"curl: {r.stderr}\n{p.log()}"
    out = {}
    for line in r.stdout.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, val = line.rpartition(" ")
        out[key] = int(val)
    return out


def assert_moved(before, after, expect):
    """Each sample moved by exactly expect[sample] (ANY: by something),
    and every other sample not at all."""
    wrong = {}
    for k in set(before) | set(after):
        d = after.get(k, 0) - before.get(k, 0)
        want = expect.get(k, 0)
        if (want is ANY and d <= 0) or (want is not ANY and d != want):
            wrong[k] = (d, "want", "any" if want is ANY else want)
    missing = [k for k in expect if k not in after]
    assert not wrong and not missing, f"wrong: {wrong}; missing: {missing}"


def mpopsd(popsd, extra=(), workers=2, **kw):
    """popsd with metrics-listen and two workers (each serves the scrape)."""
    mport = H.free_port()
    p = popsd(extra=[f"workers {workers}", f"metrics-listen 127.0.0.1:{mport}"]
              + list(extra), **kw)
    p.mport = mport
    H.wait_until(lambda: H.listening(mport), 15, "the metrics port")
    if workers > 1:
        H.wait_children(p.pid, workers, what="the workers")
    return p


def wait_lines(p, n):
    H.wait_until(lambda: len(p.session_lines()) >= n, 30,
                 f"{n} session lines\n{p.log()}")
    assert len(p.session_lines()) == n, p.log()


def client_bytes(p, since):
    lines = p.session_lines()[since:]
    return (sum(int(s["from_client"]) for s in lines),
            sum(int(s["to_client"]) for s in lines))


def with_bytes(p, since, expect):
    fc, tc = client_bytes(p, since)
    expect = dict(expect)
    expect['popsd_client_bytes_total{direction="from_client"}'] = fc
    expect['popsd_client_bytes_total{direction="to_client"}'] = tc
    return expect


def S(kind):
    return f'popsd_sessions_total{{listener="{kind}"}}'


def LOGIN(transport):
    return f'popsd_logins_total{{transport="{transport}"}}'


def TLSV(v):
    return f'popsd_tls_sessions_total{{version="{v}"}}'


def TLSFAIL(reason):
    return f'popsd_tls_handshake_failures_total{{reason="{reason}"}}'


def LIMIT(name):
    return f'popsd_limit_rejections_total{{limit="{name}"}}'


def tls12_context(certs):
    ctx = certs.client_context()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def stls_client(port, ctx):
    c = H.Pop3Client(port)
    assert c.readline().startswith(b"+OK")
    assert c.cmd("STLS").startswith(b"+OK")
    c.sock = ctx.wrap_socket(c.sock, server_hostname="localhost")
    c.f = c.sock.makefile("rb", buffering=65536)
    return c


def pop3s_login(p, certs, user="demo", password=H.PASSWORDS["demo"], ctx=None):
    with H.Pop3Client(p.port, ctx or certs.client_context()) as c:
        c.login(user, password)
        assert c.cmd("QUIT").startswith(b"+OK")


def s_client(port, *args, data=b"QUIT\r\n"):
    return subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
                           "-servername", "localhost", *args],
                          input=data, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=30)


def epoch_of_enddate(cert):
    out = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-dateopt",
                          "iso_8601", "-in", cert], stdout=subprocess.PIPE,
                         text=True, check=True).stdout
    # notAfter=2029-03-12 10:12:03Z
    s = out.strip().split("=", 1)[1]
    t = time.strptime(s, "%Y-%m-%d %H:%M:%SZ")
    import calendar
    return calendar.timegm(t)


# ------------------------------------------------ sessions, TLS and logins

def test_sessions_tls_versions_logins_and_bytes(popsd, certs):
    tport = H.free_port()
    p = mpopsd(popsd, pop3=True, extra=[f"listen tls 127.0.0.1:{tport}"])
    H.wait_until(lambda: H.listening(tport), 15, "the tls listener")
    b = scrape(p)
    pop3s_login(p, certs)                       # implicit TLS 1.3, login
    with stls_client(p.pop3_port, certs.client_context()) as c:
        c.ok("USER demo")                       # STLS, login
        c.ok(f"PASS {H.PASSWORDS['demo']}")
        assert c.cmd("QUIT").startswith(b"+OK")
    with H.Pop3Client(tport, tls12_context(certs)) as c:
        assert c.readline().startswith(b"+OK")  # plain TLS wrap, TLS 1.2
        assert c.cmd("QUIT").startswith(b"+OK")
    wait_lines(p, 3)
    a = scrape(p)
    assert_moved(b, a, with_bytes(p, 0, {
        S("pop3s"): 1, S("pop3"): 1, S("tls"): 1,
        "popsd_stls_upgrades_total": 1,
        "popsd_implicit_tls_sessions_total": 2,
        TLSV("TLSv1.3"): 2, TLSV("TLSv1.2"): 1,
        LOGIN("tls"): 2,
    }))
    # The gauge: one session held open, then closed.
    with H.Pop3Client(p.port, certs.client_context()) as c:
        assert c.readline().startswith(b"+OK")
        held = scrape(p)
        assert held["popsd_sessions_active"] == 1
    wait_lines(p, 4)
    done = scrape(p)
    assert done["popsd_sessions_active"] == 0
    assert_moved(a, done, with_bytes(p, 3, {
        S("pop3s"): 1, "popsd_implicit_tls_sessions_total": 1,
        TLSV("TLSv1.3"): 1}))


def test_resumed_handshakes(popsd, certs, tmp_path):
    p = mpopsd(popsd)
    b = scrape(p)
    sess = str(tmp_path / "sess.pem")
    for i in range(2):
        args = ["-CAfile", certs.ca, "-sess_out", sess, "-ign_eof"]
        if i:
            args += ["-sess_in", sess]
        r = s_client(p.port, *args)
    assert b"Reused, TLSv1.3" in r.stdout, r.stdout
    wait_lines(p, 2)
    assert_moved(b, scrape(p), with_bytes(p, 0, {
        S("pop3s"): 2, "popsd_implicit_tls_sessions_total": 2,
        TLSV("TLSv1.3"): 2, "popsd_tls_resumed_total": 1}))


# ----------------------------------------- plaintext, failures, the shield

def refusals_failures_shield(p, certs):
    """The scenario behind two tests: a plaintext login refused, two
    wrong passwords, one malformed line, one good login."""
    with H.Pop3Client(p.pop3_port) as c:
        assert c.readline().startswith(b"+OK")
        assert c.cmd("USER demo") == R_TLS_REQUIRED
        assert c.cmd("QUIT").startswith(b"+OK")
    with H.Pop3Client(p.port, certs.client_context()) as c:
        assert c.readline().startswith(b"+OK")
        for pw in ("wrong1", "wrong2"):
            assert c.cmd("USER demo").startswith(b"+OK")
            assert c.cmd(f"PASS {pw}").startswith(b"-ERR")
        assert c.cmd("QUIT").startswith(b"+OK")
    with H.Pop3Client(p.port, certs.client_context()) as c:
        assert c.readline().startswith(b"+OK")
        assert c.cmd("US\x01ER demo") == R_BAD_CHAR
        assert c.cmd("QUIT").startswith(b"+OK")
    pop3s_login(p, certs)
    wait_lines(p, 4)


def test_refused_failed_logins_and_shield(popsd, certs):
    p = mpopsd(popsd, pop3=True)
    b = scrape(p)
    refusals_failures_shield(p, certs)
    assert_moved(b, scrape(p), with_bytes(p, 0, {
        S("pop3"): 1, S("pop3s"): 3,
        "popsd_implicit_tls_sessions_total": 3, TLSV("TLSv1.3"): 3,
        "popsd_plaintext_logins_refused_total": 1,
        "popsd_login_failures_total": 2,
        "popsd_shield_rejections_total": 1,
        LOGIN("tls"): 1}))
    # One line per failed login and per rejection, with the client
    # address, never the password.
    log = p.log()
    failed = re.findall(r'^session=\d+ client=127\.0\.0\.1 port=\d+ '
                        r'event=auth-failed user="demo"$', log, re.M)
    shield = re.findall(r'^session=\d+ client=127\.0\.0\.1 port=\d+ '
                        r'event=shield-rejected$', log, re.M)
    assert len(failed) == 2 and len(shield) == 1, log
    assert "wrong1" not in log and "wrong2" not in log


@pytest.mark.skipif(shutil.which("fail2ban-regex") is None,
                    reason="fail2ban-regex not installed (Debian fail2ban)")
def test_fail2ban_filter_matches_failures_not_logins(popsd, certs, tmp_path):
    """fail2ban-regex with contrib/fail2ban/filter.d/popsd.conf against the
    lines of a real run, as syslog writes them: the two failed logins
    and the shield rejection match, with the client address; nothing
    else (successful login, session lines) does."""
    p = mpopsd(popsd, pop3=True)
    refusals_failures_shield(p, certs)
    lines = [l for l in p.log().splitlines() if l.strip()]
    # Beside fail2ban's own common.conf, as once installed.
    fdir = tmp_path / "fail2ban" / "filter.d"
    fdir.mkdir(parents=True)
    shutil.copy("/etc/fail2ban/filter.d/common.conf", fdir)
    shutil.copy(FILTER, fdir)
    filt = str(fdir / "popsd.conf")
    stamp = time.strftime("%b %e %H:%M:%S", time.gmtime())
    logfile = tmp_path / "mail.log"
    logfile.write_text("".join(f"{stamp} mail popsd[{p.pid}]: {l}\n" for l in lines))
    r = subprocess.run(["fail2ban-regex", "--print-all-matched", str(logfile), filt],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout
    m = re.search(r"Lines: (\d+) lines, (\d+) ignored, (\d+) matched, (\d+) missed", r.stdout)
    assert m, r.stdout
    total, ignored, matched, missed = map(int, m.groups())
    assert total == len(lines) and matched == 3 and ignored == 0, r.stdout
    assert missed == total - 3, r.stdout
    assert re.search(r"127\.0\.0\.1\s+\(", r.stdout) or "127.0.0.1" in r.stdout
    shown = [l for l in r.stdout.splitlines() if "popsd[" in l and "event=" in l]
    assert len(shown) == 3 and all("event=auth-failed" in l or
                                   "event=shield-rejected" in l for l in shown), r.stdout
    # The same lines straight from the journal (no date of their own: the
    # journal keeps it apart) match too.
    logfile.write_text("".join(f"{l}\n" for l in lines))
    r = subprocess.run(["fail2ban-regex", "-d", "{NONE}", str(logfile), filt],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=120)
    m = re.search(r"Lines: (\d+) lines, (\d+) ignored, (\d+) matched", r.stdout)
    assert m and int(m.group(3)) == 3, r.stdout
    # The jail example, in a copy of the system's fail2ban configuration,
    # passes fail2ban's own configuration test.
    conf = tmp_path / "etc-fail2ban"
    shutil.copytree("/etc/fail2ban", conf)
    shutil.copy(FILTER, conf / "filter.d")
    shutil.copy(JAIL, conf / "jail.d")
    r = subprocess.run(["fail2ban-client", "-c", str(conf), "-d"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=120)
    assert r.returncode == 0 and "['add', 'popsd', 'systemd']" in r.stdout, r.stdout


# ---------------------------------------------------------- require-tls warn

def plain_login(p):
    with H.Pop3Client(p.pop3_port) as c:
        c.login("demo", H.PASSWORDS["demo"])
        assert c.cmd("QUIT").startswith(b"+OK")


def test_require_tls_warn_logs_and_counts_plaintext_logins(popsd, certs):
    p = mpopsd(popsd, pop3=True, extra=["require-tls warn"])
    b = scrape(p)
    with H.Pop3Client(p.pop3_port) as c:
        assert c.readline().startswith(b"+OK")
        c.send("CAPA\r\n")
        capa = c.multiline()
        assert b"STLS" in capa and b"USER" in capa, capa   # as with "no"
        c.ok("USER demo")
        c.ok(f"PASS {H.PASSWORDS['demo']}")
        assert c.cmd("QUIT").startswith(b"+OK")
    pop3s_login(p, certs)
    wait_lines(p, 2)
    assert_moved(b, scrape(p), with_bytes(p, 0, {
        S("pop3"): 1, S("pop3s"): 1, "popsd_implicit_tls_sessions_total": 1,
        TLSV("TLSv1.3"): 1, LOGIN("plaintext-warned"): 1, LOGIN("tls"): 1}))
    warned = re.findall(r'^session=(\d+) client=127\.0\.0\.1 port=\d+ listener=pop3 '
                        r'event=plaintext-login user="demo"$', p.log(), re.M)
    assert len(warned) == 1, p.log()
    assert p.wait_session(session=warned[0])["login"] == "yes"


def test_plaintext_allowed_logins(popsd, certs):
    """require-tls no, and warn for a plaintext-allow network: counted as
    allowed, no warning logged."""
    for extra in (["require-tls no"],
                  ["require-tls warn", "plaintext-allow 127.0.0.0/8"]):
        p = mpopsd(popsd, pop3=True, extra=extra)
        b = scrape(p)
        plain_login(p)
        wait_lines(p, 1)
        assert_moved(b, scrape(p), with_bytes(p, 0, {
            S("pop3"): 1, LOGIN("plaintext-allowed"): 1}))
        assert "event=plaintext-login" not in p.log()


# ------------------------------------------------------- handshake failures

def test_tls_handshake_failures_by_reason(popsd, certs):
    p = mpopsd(popsd, timeouts={"handshake": "2s"})
    b = scrape(p)
    with socket.create_connection(("127.0.0.1", p.port)) as s:
        s.sendall(b"USER demo\r\nPASS demo\r\n\r\n")        # not TLS
        s.settimeout(20)
        with pytest.raises(ConnectionResetError):
            while s.recv(100):
                pass
            raise ConnectionResetError     # a clean close will do as well
    wait_lines(p, 1)
    with socket.create_connection(("127.0.0.1", p.port)) as s:
        s.sendall(H.client_hello()[:20])                # then gone
    wait_lines(p, 2)
    s_client(p.port, "-tls1_1")                         # version
    wait_lines(p, 3)
    s_client(p.port, "-tls1_2", "-cipher", "AES128-SHA")    # cipher
    wait_lines(p, 4)
    with socket.create_connection(("127.0.0.1", p.port)) as s:
        s.settimeout(30)                                # silent: timeout
        assert s.recv(100) == b""
    wait_lines(p, 5)
    reasons = [s["reason"] for s in p.session_lines()]
    assert reasons[:4] == ["tls-handshake-failed"] * 4, p.log()
    assert reasons[4] == "timeout-handshake", p.log()
    assert_moved(b, scrape(p), with_bytes(p, 0, {
        S("pop3s"): 5, TLSFAIL("not-tls"): 1, TLSFAIL("closed"): 1,
        TLSFAIL("protocol-version"): 1, TLSFAIL("no-shared-cipher"): 1,
        TLSFAIL("timeout"): 1}))


def test_tls_handshake_failure_client_certificate(popsd, certs):
    p = mpopsd(popsd, extra=[f"tls-client-ca {certs.ca}", "tls-client-cert required"])
    b = scrape(p)
    s_client(p.port, "-CAfile", certs.ca)
    wait_lines(p, 1)
    assert_moved(b, scrape(p), with_bytes(p, 0, {
        S("pop3s"): 1, TLSFAIL("client-certificate"): 1}))


# ------------------------------------------------------- backend and limits

def test_backend_connect_failures(popsd, certs):
    p = mpopsd(popsd, backend_addr=f"127.0.0.1:{H.refused_port()}")
    b = scrape(p)
    with H.Pop3Client(p.port, certs.client_context()) as c:
        assert c.readline().startswith(b"-ERR [SYS/TEMP]")
    wait_lines(p, 1)
    assert_moved(b, scrape(p), with_bytes(p, 0, {
        S("pop3s"): 1, "popsd_implicit_tls_sessions_total": 1,
        TLSV("TLSv1.3"): 1, "popsd_backend_connect_failures_total": 1}))


def plain_from(p, source):
    s = socket.create_connection(("127.0.0.1", p.pop3_port), timeout=20,
                                 source_address=(source, 0))
    f = s.makefile("rb")
    return s, f.readline()


def test_limit_rejections_by_limit(popsd, certs):
    p = mpopsd(popsd, pop3=True, max_sessions=2,
               extra=["max-sessions-per-ip 1", "require-tls no"])
    b = scrape(p)
    s1, g1 = plain_from(p, "127.0.0.1")
    s2, g2 = plain_from(p, "127.0.0.1")
    assert g1.startswith(b"+OK") and b"from your address" in g2, (g1, g2)
    s3, g3 = plain_from(p, "127.0.0.2")
    s4, g4 = plain_from(p, "127.0.0.3")
    assert g3.startswith(b"+OK") and b"too many sessions" in g4, (g3, g4)
    mid = scrape(p)
    assert mid["popsd_sessions_active"] == 2
    for s in (s1, s2, s3, s4):
        s.close()
    wait_lines(p, 2)
    assert_moved(b, scrape(p), with_bytes(p, 0, {
        S("pop3"): 2, LIMIT("max-sessions-per-ip"): 1,
        LIMIT("max-sessions"): 1}))


# -------------------------------------- reloads, restarts, expiry, SIGUSR1

def public_dir():
    d = tempfile.mkdtemp(prefix="popsd-metrics.")
    os.chmod(d, 0o755)
    return d


def keypair_for_nobody(d, src_cert, src_key):
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    shutil.copy(src_cert, cert + ".new")
    shutil.copy(src_key, key + ".new")
    if ROOT:
        os.chown(key + ".new", NOBODY, NOBODY)
    os.chmod(key + ".new", 0o600)
    os.chmod(cert + ".new", 0o644)
    os.rename(cert + ".new", cert)
    os.rename(key + ".new", key)
    return cert, key


def short_lived_keypair(d):
    """A self-signed ECDSA pair valid for 3 days (another notAfter)."""
    cert, key = os.path.join(d, "short.pem"), os.path.join(d, "short.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=localhost",
                    "-days", "3", "-keyout", key, "-out", cert],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=60)
    return cert, key


def reloadable_popsd(popsd, certs, d, extra, **kw):
    """A started popsd whose configuration, certificate and key (in d)
    it can read again after dropping to nobody; with metrics-listen."""
    cert, key = keypair_for_nobody(d, certs.cert, certs.key)
    p = popsd(start=False, extra=extra, **kw)
    p.mport = H.free_port()
    with open(p.conf) as f:
        conf = f.read()
    conf = conf.replace(f"certificate {certs.cert}", f"certificate {cert}")
    conf = conf.replace(f"key {certs.key}", f"key {key}")
    p.conf = os.path.join(d, "popsd.conf")   # readable after the drop
    with open(p.conf, "w") as f:
        f.write(conf + f"metrics-listen 127.0.0.1:{p.mport}\n")
    p.start()
    H.wait_until(lambda: H.listening(p.mport), 15, "the metrics port")
    return p, cert, key


@pytest.mark.skipif(not ROOT, reason="needs root (popsd drops to nobody)")
def test_limit_address_table_full(popsd, certs):
    """The per-address table is sized at start for max-sessions (10: 48
    addresses); a reload to 100 lets the 49th distinct address find it
    full. One worker: each worker has a table of its own."""
    d = public_dir()
    socks = []
    try:
        p, _, _ = reloadable_popsd(popsd, certs, d, ["workers 1"], max_sessions=10)
        b = scrape(p)
        with open(p.conf) as f:
            conf = f.read().replace("max-sessions 10\n", "max-sessions 100\n")
        with open(p.conf, "w") as f:
            f.write(conf)
        p.signal(signal.SIGHUP)
        H.wait_until(lambda: "reloaded " in p.log(), 15, "the reload")
        for i in range(48):     # silent TLS clients: sessions until timeout
            socks.append(socket.create_connection(
                ("127.0.0.1", p.port), timeout=20, source_address=(f"127.0.1.{i + 1}", 0)))
        H.wait_until(lambda: scrape(p)["popsd_sessions_active"] == 48, 20, "48 sessions")
        with socket.create_connection(("127.0.0.1", p.port), timeout=20,
                                      source_address=("127.0.2.1", 0)) as s:
            assert s.recv(100) == b""
        H.wait_until(lambda: "reason=address-table-full" in p.log(), 10, "the refusal")
        assert_moved(b, scrape(p), {
            "popsd_reloads_total": 1, LIMIT("address-table-full"): 1,
            S("pop3s"): 48, "popsd_sessions_active": 48})
    finally:
        for s in socks:
            s.close()
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.skipif(not ROOT, reason="needs root (popsd drops to nobody)")
def test_reloads_expiry_restarts_and_sigusr1(popsd, certs):
    d = public_dir()
    try:
        p, cert, key = reloadable_popsd(popsd, certs, d, ["workers 2"])
        kids = H.wait_children(p.pid, 2, what="the workers")
        expiry = f'popsd_certificate_expiry_seconds{{certificate="{cert}"}}'
        b = scrape(p)
        assert b[expiry] == epoch_of_enddate(certs.cert)
        pop3s_login(p, certs)
        wait_lines(p, 1)
        a = scrape(p)

        # A reload that works counts once (the master's), not per worker.
        p.signal(signal.SIGHUP)
        H.wait_until(lambda: p.log().count("reloaded ") == 3, 15, "3 reloads")
        r1 = scrape(p)
        assert_moved(a, r1, {"popsd_reloads_total": 1})
        # A new certificate: the gauge follows it.
        short_cert, short_key = short_lived_keypair(d)
        keypair_for_nobody(d, short_cert, short_key)
        p.signal(signal.SIGHUP)
        H.wait_until(lambda: p.log().count("reloaded ") == 6, 15, "6 reloads")
        r2 = scrape(p)
        assert r2[expiry] == epoch_of_enddate(short_cert)
        assert r2[expiry] < b[expiry]
        assert_moved(r1, r2, {"popsd_reloads_total": 1,
                              expiry: r2[expiry] - r1[expiry]})
        # A client that does not trust it refuses it: counted as such.
        with pytest.raises(ssl.SSLCertVerificationError):
            H.Pop3Client(p.port, certs.client_context())
        wait_lines(p, 2)
        r2b = scrape(p)
        assert_moved(r2, r2b, {S("pop3s"): 1, TLSFAIL("certificate-rejected"): 1})
        r2 = r2b
        short_ctx = ssl.create_default_context(cafile=short_cert)
        # A reload that fails (the key is root's now): counted, once.
        os.chown(key, 0, 0)
        p.signal(signal.SIGHUP)
        H.wait_until(lambda: "reload failed" in p.log(), 15, "a failed reload")
        r3 = scrape(p)
        assert_moved(r2, r3, {"popsd_reload_failures_total": 1})

        # Workers killed with a session open: the counts they made stay,
        # their live session is no longer counted.
        c = H.Pop3Client(p.port, short_ctx)
        assert c.readline().startswith(b"+OK")
        held = scrape(p)
        assert held["popsd_sessions_active"] == 1
        for k in kids:
            os.kill(k, signal.SIGKILL)
        H.wait_until(lambda: len(H.children(p.pid)) == 2 and
                     not set(kids) & set(H.children(p.pid)), 15, "new workers")
        c.close()
        after = scrape(p)
        assert_moved(held, after, {"popsd_sessions_active": -1})
        assert after[S("pop3s")] == 3 and after[LOGIN("tls")] == 1

        # SIGUSR1: the same figures in the log, from the master and from
        # a worker (which lives on).
        before_usr1 = p.log().count("metrics: ")
        p.proc.send_signal(signal.SIGUSR1)
        want = f'metrics: {S("pop3s")} 3'
        H.wait_until(lambda: want in p.log(), 10, "the figures in the log")
        worker = H.children(p.pid)[0]
        os.kill(worker, signal.SIGUSR1)
        H.wait_until(lambda: p.log().count(want) == 2, 10, "the worker's figures")
        assert H.pid_alive(worker)
        dumped = {}
        for line in p.log().splitlines():
            if line.startswith("metrics: "):
                k, _, v = line[len("metrics: "):].rpartition(" ")
                dumped[k] = int(v)
        assert dumped == scrape(p)
        assert p.log().count("metrics: ") - before_usr1 == 2 * len(dumped)
        pop3s_login(p, certs, ctx=short_ctx)    # still serving
    finally:
        shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------- the endpoint itself

def raw_http(port, data, timeout=20):
    """Send data, read the answer to EOF (popsd reads what is left of a
    refused request before it closes, so no reset cuts the answer)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk


def test_bad_requests_get_http_errors(popsd, certs):
    p = mpopsd(popsd)
    assert curl(p.mport, "-o", "/dev/null", "-w", "%{http_code}", path="/").stdout == "404"
    assert curl(p.mport, "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST").stdout == "405"
    head = curl(p.mport, "-I")
    assert head.stdout.startswith("HTTP/1.1 200") and "popsd_" not in head.stdout
    assert "text/plain; version=0.0.4" in head.stdout
    assert raw_http(p.mport, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n") \
        .startswith(b"HTTP/1.1 400 ")
    assert raw_http(p.mport, b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 8000) \
        .startswith(b"HTTP/1.1 431 ")
    ok = raw_http(p.mport, b"GET /metrics?x=1 HTTP/1.0\n\n")
    headers, _, body = ok.partition(b"\r\n\r\n")
    assert headers.startswith(b"HTTP/1.1 200 OK")
    n = int(re.search(rb"Content-Length: (\d+)", headers).group(1))
    assert n == len(body) and b"popsd_sessions_total" in body


def test_slow_and_huge_scrapes_do_not_disturb_sessions(popsd, certs):
    """Scrapers that trickle, stall or flood hold at most a few bounded
    slots for a few seconds; POP3 sessions go on meanwhile, and the
    endpoint answers again once they are cut."""
    p = mpopsd(popsd)
    slow = []
    for i in range(24):        # more than both workers' slots
        s = socket.create_connection(("127.0.0.1", p.mport), timeout=30)
        s.sendall(b"GET /metr" if i % 2 else b"G")
        slow.append(s)
    flood = socket.create_connection(("127.0.0.1", p.mport), timeout=30)
    with H.Pop3Client(p.port, certs.client_context()) as c:
        c.login("demo", H.PASSWORDS["demo"])
        c.ok("RETR 1")
        assert c.multiline()
        # A flood of header bytes is refused at the bound, never buffered:
        # closed at once when its worker's slots are taken (the sends
        # fail), or answered 431 and read to the end (bounded by the
        # exchange's timeout) when it got a slot.
        try:
            for _ in range(1000):
                flood.sendall(b"X" * 4096)
            flood.shutdown(socket.SHUT_WR)
            answer = flood.recv(100)
        except OSError:
            answer = b""
        assert answer == b"" or answer.startswith(b"HTTP/1.1 431 "), answer
        c.ok("STAT")
        assert c.cmd("QUIT").startswith(b"+OK")
    t0 = time.monotonic()
    for s in slow:             # each one is cut, by the bound or the timeout
        try:
            assert s.recv(100) == b""
        except ConnectionResetError:
            pass
        s.close()
    flood.close()
    assert time.monotonic() - t0 < 30
    H.wait_until(lambda: curl(p.mport, "-f").returncode == 0, 30, "a scrape to work")
    wait_lines(p, 1)
    assert p.session_lines()[0]["login"] == "yes"
    assert scrape(p)[S("pop3s")] == 1


# ------------------------------------------------------------ configuration

@pytest.mark.parametrize("line,want", [
    ("metrics-listen localhost:9100", "metrics-listen: bad address"),
    ("metrics-listen 127.0.0.1:0", "metrics-listen: bad address"),
    ("require-tls maybe", 'expected "yes", "no" or "warn"'),
])
def test_check_catches_bad_values(popsd, line, want):
    p = popsd(start=False, extra=[line])
    status, out = p.check()
    assert status == 1 and want in out, out


def test_metrics_port_same_as_listen_refused(popsd):
    p = popsd(start=False)
    with open(p.conf, "a") as f:
        f.write(f"metrics-listen 127.0.0.1:{p.port}\n")
    status, out = p.check()
    assert status == 1 and "is also a listen address" in out, out
