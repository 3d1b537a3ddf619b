"""TLS scanners against popsd's default TLS configuration (issue 7):
testssl.sh on the pop3s port and with "--starttls pop3" on the pop3 port,
and nmap's ssl-enum-ciphers on both. Both must find nothing below TLS 1.2
and no vulnerability, and agree on the protocols offered.

The scans are bounded: testssl runs only protocols (-p), cipher
categories (-s), server defaults (-S) and vulnerabilities (-U), with
connect and openssl timeouts; the whole run has a subprocess timeout.

Findings are read from testssl's JSON: every one must be OK or INFO,
except those about the development certificate itself (DEV_CERT) and,
for now, KNOWN ones, which are daemon findings reported to the lead. A
KNOWN finding that disappears fails the test too, so the list is kept
honest when the configuration is fixed."""

import json
import os
import shutil
import socket
import subprocess
import xml.etree.ElementTree as ET

import pytest

TESTSSL = shutil.which("testssl") or shutil.which("testssl.sh")
NMAP = shutil.which("nmap")

# Properties of the test certificate (a private CA's, no CRL or OCSP URI),
# not of popsd: a real certificate would carry them.
DEV_CERT = {"cert_revocation"}
# Daemon findings tolerated for now: none. (popsd's default TLS 1.2 list
# is AEAD-only since testssl flagged libtls' CBC suites: LUCKY13.)
KNOWN = set()
# testssl ids that must be present: proof that the scan really ran.
MUST_SEE = {"SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3", "heartbleed", "CCS",
            "ROBOT", "secure_renego", "secure_client_renego", "POODLE_SSL", "fallback_SCSV",
            "SWEET32", "FREAK", "DROWN", "LOGJAM", "BEAST", "LUCKY13", "RC4",
            "cipherlist_NULL", "cipherlist_aNULL", "cipherlist_EXPORT", "cipherlist_LOW"}
BELOW_12 = ("SSLv2", "SSLv3", "TLS1", "TLS1_1")
# testssl's resumption checks under --starttls sometimes end "WARN: check
# failed": openssl s_client (which they drive) can quit before it reads the
# TLS 1.3 tickets, which a STARTTLS server sends after the handshake with
# nothing else to read. On pop3s its ticket check sometimes ends "WARN: check
# failed because of connect problem" (about 1 scan in 3 on a loaded machine,
# and with popsd builds from before this test's last change too): its first
# s_client then left no output at all and never reached popsd, no session
# was logged for it, so there is nothing popsd can do. Resumption is checked
# here instead (resumed_session), and only these tool WARNs are excused.
RESUMPTION_TOOL_WARN = {"sessionresumption_ticket", "sessionresumption_ID"}

pytestmark = pytest.mark.skipif(TESTSSL is None or NMAP is None,
                                reason="needs testssl.sh and nmap (make deps)")


def run_testssl(tmp_path, ca, target, starttls=False):
    out = tmp_path / ("testssl-starttls.json" if starttls else "testssl.json")
    out.unlink(missing_ok=True)     # testssl will not overwrite it
    cmd = [TESTSSL, "--quiet", "--color", "0", "--warnings", "batch", "--nodns", "none",
           "--connect-timeout", "10", "--openssl-timeout", "10", "--add-ca", ca,
           "--jsonfile", str(out), "-p", "-s", "-S", "-U"]
    if starttls:
        cmd += ["--starttls", "pop3"]
    r = subprocess.run(cmd + [target], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT,
                       timeout=300, text=True, cwd=tmp_path)
    assert out.exists(), f"testssl wrote no JSON (exit {r.returncode}):\n{r.stdout[-3000:]}"
    findings = json.loads(out.read_text())
    return {f["id"]: f for f in findings}, r.stdout


def run_nmap(tmp_path, port, starttls=False):
    """ssl-enum-ciphers' result: {protocol: {"ciphers": [(name, grade)],
    "warnings": [...]}} and the least strength."""
    out = tmp_path / f"nmap-{port}.xml"
    # nmap speaks STARTTLS on a port it knows as "pop3": a services file of
    # one line says so (and makes this port the only one scanned), where
    # service detection (-sV) would take ~30 s and still not recognise
    # Dovecot's greeting.
    services = tmp_path / f"nmap-services-{port}"
    services.write_text(f"{'pop3' if starttls else 'pop3s'}\t{port}/tcp\t0.5\n")
    cmd = [NMAP, "-Pn", "-n", "--servicedb", str(services), "--script", "ssl-enum-ciphers",
           "-oX", str(out)]
    r = subprocess.run(cmd + ["127.0.0.1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=120, text=True)
    assert r.returncode == 0, r.stdout
    script = ET.parse(out).find(".//script[@id='ssl-enum-ciphers']")
    assert script is not None, f"ssl-enum-ciphers gave no result:\n{r.stdout}"
    protos, least = {}, None
    for el in script:
        if el.tag == "elem" and el.get("key") == "least strength":
            least = el.text
        elif el.tag == "table":
            ciphers = [(c.find("elem[@key='name']").text, c.find("elem[@key='strength']").text)
                       for c in el.findall("table[@key='ciphers']/table")]
            warnings = [w.text for w in el.findall("table[@key='warnings']/elem")]
            protos[el.get("key")] = {"ciphers": ciphers, "warnings": warnings}
    return protos, least, r.stdout


def stls_session(port, ctx, session=None):
    """An STLS session on port, resuming `session` if given; returns the
    TLS session and whether it was resumed."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=20)
    with raw, raw.makefile("rb") as f:
        assert f.readline().startswith(b"+OK")
        raw.sendall(b"STLS\r\n")
        assert f.readline().startswith(b"+OK")
        with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as t, \
                t.makefile("rb") as tf:
            t.sendall(b"QUIT\r\n")
            assert tf.readline().startswith(b"+OK")
            return t.session, t.session_reused


def scan(tmp_path, certs, port, starttls):
    """testssl on port: (findings, its output, the findings that are not
    OK, those of them not known); asserts what every scan must show."""
    found, text = run_testssl(tmp_path, certs.ca, f"127.0.0.1:{port}", starttls)
    missing = MUST_SEE - set(found)
    assert not missing, f"testssl did not report {sorted(missing)}:\n{text[-3000:]}"
    for proto in BELOW_12:
        assert found[proto]["finding"].startswith("not offered"), found[proto]
    assert found["TLS1_2"]["finding"] == "offered", found["TLS1_2"]
    assert found["TLS1_3"]["finding"].startswith("offered"), found["TLS1_3"]
    bad = {i: f"{f['severity']}: {f['finding']}" for i, f in found.items()
           if f["severity"] not in ("OK", "INFO", "DEBUG") and i not in DEV_CERT
           and i != "engine_problem"      # about the local openssl (no GOST)
           and not (i in RESUMPTION_TOOL_WARN and f["severity"] == "WARN" and
                    (starttls or "connect problem" in f["finding"]))}
    unexpected = {i: v for i, v in bad.items() if i not in KNOWN}
    return found, text, bad, unexpected


def pop3s_session(port, ctx, session=None):
    """A pop3s session on port, resuming `session` if given; returns the
    TLS session and whether it was resumed."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=20)
    with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as t, \
            t.makefile("rb") as tf:
        assert tf.readline().startswith(b"+OK")
        t.sendall(b"QUIT\r\n")
        assert tf.readline().startswith(b"+OK")
        return t.session, t.session_reused


@pytest.mark.parametrize("kind", ["pop3s", "starttls"])
def test_tls_scanners_find_nothing(popsd, certs, tmp_path, kind):
    p = popsd(pop3=True)
    starttls = kind == "starttls"
    port = p.pop3_port if starttls else p.port

    found, text, bad, unexpected = scan(tmp_path, certs, port, starttls)
    print(f"testssl {kind}: {len(found)} findings; known open: "
          f"{ {i: bad[i] for i in bad if i in KNOWN} }")
    assert not unexpected, f"testssl findings on {kind}: {unexpected}"
    fixed = KNOWN - set(bad)
    assert not fixed, f"no longer found, remove from KNOWN: {sorted(fixed)}"
    ctx = certs.client_context()
    connect = stls_session if starttls else pop3s_session
    sess, _ = connect(port, ctx)
    assert sess is not None and sess.has_ticket, f"no session ticket ({kind})"
    assert connect(port, ctx, sess)[1], f"a {kind} session did not resume"

    protos, least, ntext = run_nmap(tmp_path, port, starttls)
    print(f"nmap {kind}: protocols {sorted(protos)}, least strength {least}, "
          f"{sum(len(v['ciphers']) for v in protos.values())} ciphers")
    assert set(protos) == {"TLSv1.2", "TLSv1.3"}, ntext
    assert least == "A", ntext
    weak = [(proto, c) for proto, v in protos.items() for c in v["ciphers"] if c[1] != "A"]
    assert not weak, weak
    warnings = {proto: v["warnings"] for proto, v in protos.items() if v["warnings"]}
    assert not warnings, warnings
    # The two scanners agree: what testssl calls offered is what nmap lists.
    offered = {"TLS1_2": "TLSv1.2", "TLS1_3": "TLSv1.3"}
    assert {offered[k] for k in offered if found[k]["finding"].startswith("offered")} == set(protos)
    assert p.alive()
