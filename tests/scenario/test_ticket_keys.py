"""Session ticket keys shared by several hosts (issue 17,
`tls-ticket-key-file`): a ticket issued by one popsd resumes on another
that reads the same file; the file's first key encrypts (the key name in
the ticket is the one derived from the first line, computed here apart
from popsd), the others only decrypt, so rotating by prepending a key and
reloading keeps old tickets working until their key is dropped. The file
is made and rotated with certs/ticketkeys.sh, as an admin would.

popsd runs as root here and drops to an unprivileged user, and a reload
re-reads the configuration and keys as that user: so the files live in a
world-traversable temp dir, keys owned by that user, mode 0600."""

import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

import popsd_harness as H

DROP_USER = os.environ.get("POPSD_TEST_USER", "nobody")


def give_to_popsd(path):
    """Make path popsd's after its privilege drop (it re-reads on reload)."""
    if os.geteuid() == 0:
        pw = pwd.getpwnam(DROP_USER)
        os.chown(path, pw.pw_uid, pw.pw_gid)


@pytest.fixture(scope="module")
def pub_certs():
    d = tempfile.mkdtemp(prefix="popsd-tk.")
    os.chmod(d, 0o755)
    c = H.Certs(os.path.join(d, "certs"))
    os.chmod(c.dir, 0o755)
    give_to_popsd(c.key)
    yield c
    shutil.rmtree(d, ignore_errors=True)


def guard_keys(path):
    """Have conftest's guard fail the test if a popsd log holds one of
    the file's keys (as it does for passwords)."""
    for line in H.ticket_key_lines(path):
        H.guard_secret(line)


class Hosts:
    """popsd "hosts" on loopback reading one ticket key file, each with
    its own configuration and log."""

    def __init__(self, directory, certs, backend):
        self.dir = directory
        self.certs = certs
        self.backend = backend
        self.keyfile = os.path.join(directory, "ticket.keys")
        H.ticketkeys("new", self.keyfile)
        give_to_popsd(self.keyfile)
        guard_keys(self.keyfile)
        self.made = []

    def host(self, keyfile=True, extra=(), **kw):
        lines = [f"tls-ticket-key-file {self.keyfile}"] if keyfile else []
        p = H.Popsd(self.dir, self.certs, self.backend,
                    name=f"host{chr(ord('a') + len(self.made))}",
                    extra=lines + list(extra), **kw)
        os.chmod(p.conf, 0o644)
        self.made.append(p)
        return p.start()

    def rotate(self, keep=3):
        H.ticketkeys("rotate", self.keyfile, str(keep))
        assert os.stat(self.keyfile).st_mode & 0o777 == 0o600
        guard_keys(self.keyfile)

    def names(self):
        return [H.ticket_key_name(l) for l in H.ticket_key_lines(self.keyfile)]


@pytest.fixture
def hosts(request, pub_certs, backend):
    d = tempfile.mkdtemp(prefix="popsd-tk.", dir=os.path.dirname(pub_certs.dir))
    os.chmod(d, 0o755)
    hs = Hosts(d, pub_certs, backend.address)
    yield hs
    failed = any(getattr(request.node, "rep_" + w, None) is not None and
                 getattr(request.node, "rep_" + w).failed for w in ("setup", "call"))
    problems = []
    for p in hs.made:
        crashed = p.proc.poll() is not None and not p.expected_exit
        status, _ = p.stop()
        if crashed:
            problems.append(f"{p.name} exited on its own with status {status}")
    if failed or problems:
        for p in hs.made:
            print(f"\n----- {p.log_path} -----\n{p.log()}", end="")
    shutil.rmtree(d, ignore_errors=True)
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


def reload(p, what="reloaded"):
    """SIGHUP p and wait for its verdict; returns the log line."""
    mark = len(p.log())
    p.proc.send_signal(signal.SIGHUP)
    rx = re.compile(r"^.*(reloaded .*|reload failed.*)$", re.M)
    m = H.wait_until(lambda: rx.search(p.log(), mark), 15, f"{p.name} to reload")
    assert what in m.group(0), m.group(0)
    return m.group(0)


def session(p, certs, tmp, name, sess_in=None, version="-tls1_3"):
    """A session with p saving its ticket as tmp/name; returns
    (New|Reused, the saved ticket's key name)."""
    out = os.path.join(tmp, name)
    how = H.s_client_session(p.port, certs.ca, sess_in=sess_in, sess_out=out,
                             args=[version])
    return how, H.session_ticket_name(out)


@pytest.mark.parametrize("version", ["-tls1_3", "-tls1_2"])
def test_ticket_from_host_a_resumes_on_host_b(hosts, pub_certs, tmp_path, version):
    a, b = hosts.host(), hosts.host()
    how, name = session(a, pub_certs, tmp_path, "t.pem", version=version)
    assert how == "New"
    # Encrypted with the file's key, under the name derived from its line.
    assert name == hosts.names()[0], (name.hex(), [n.hex() for n in hosts.names()])
    how, _ = session(b, pub_certs, tmp_path, "x.pem", sess_in=str(tmp_path / "t.pem"),
                     version=version)
    assert how == "Reused"
    assert b.wait_session(resumed="yes")["tls"] == version.replace("-tls1_", "TLSv1.")
    # And the other way: B's ticket resumes on A.
    assert session(b, pub_certs, tmp_path, "t2.pem", version=version)[0] == "New"
    how, _ = session(a, pub_certs, tmp_path, "x.pem", sess_in=str(tmp_path / "t2.pem"),
                     version=version)
    assert how == "Reused"


def test_without_key_file_no_host_resumes_anothers_ticket(hosts, pub_certs, tmp_path):
    """Control: without the file each popsd has keys of its own, and a
    ticket resumes only where it was issued."""
    a, b = hosts.host(keyfile=False), hosts.host(keyfile=False)
    assert session(a, pub_certs, tmp_path, "t.pem")[0] == "New"
    assert session(b, pub_certs, tmp_path, "t2.pem", sess_in=str(tmp_path / "t.pem"))[0] == "New"
    assert session(a, pub_certs, tmp_path, "t3.pem", sess_in=str(tmp_path / "t.pem"))[0] == "Reused"


def test_rotation_prepend_and_reload(hosts, pub_certs, tmp_path):
    """ticketkeys.sh rotate puts a new key first; after a reload it
    encrypts on both hosts, and a ticket of the old key still resumes on
    both until that key leaves the file."""
    a, b = hosts.host(), hosts.host()
    k1 = hosts.names()[0]
    assert session(a, pub_certs, tmp_path, "t1.pem") == ("New", k1)
    t1 = str(tmp_path / "t1.pem")

    hosts.rotate()
    k2, old = hosts.names()
    assert old == k1 and k2 != k1
    for p in (a, b):
        reload(p)
    for p in (a, b):
        assert session(p, pub_certs, tmp_path, "x.pem", sess_in=t1)[0] == "Reused"
    # New tickets are the new key's, and resume on the other host.
    assert session(b, pub_certs, tmp_path, "t2.pem") == ("New", k2)
    t2 = str(tmp_path / "t2.pem")
    assert session(a, pub_certs, tmp_path, "x.pem", sess_in=t2)[0] == "Reused"

    # Keep one key: k1 is dropped, its tickets no longer resume anywhere.
    hosts.rotate(keep=2)
    hosts.rotate(keep=1)
    assert hosts.names()[0] not in (k1, k2) and len(hosts.names()) == 1
    for p in (a, b):
        reload(p)
    for p in (a, b):
        assert session(p, pub_certs, tmp_path, "x.pem", sess_in=t1)[0] == "New"
        assert session(p, pub_certs, tmp_path, "x.pem", sess_in=t2)[0] == "New"


def test_bad_key_file_keeps_running_keys(hosts, pub_certs, tmp_path):
    """A broken file on reload: the reload fails with file and line, the
    running keys stay; `popsd -n` says the same."""
    a = hosts.host()
    assert session(a, pub_certs, tmp_path, "t.pem")[0] == "New"
    good = open(hosts.keyfile).read()
    with open(hosts.keyfile, "w") as f:
        f.write(good + "not-a-key\n")
    line = reload(a, "reload failed")
    n = len(good.splitlines()) + 1
    assert f'tls-ticket-key-file "{hosts.keyfile}" line {n}: not a base64 key' in line, line
    assert session(a, pub_certs, tmp_path, "x.pem", sess_in=str(tmp_path / "t.pem"))[0] == "Reused"
    status, out = a.check()
    assert status == 1 and f"line {n}: not a base64 key" in out, out
    # Readable by group or others: refused like a private key.
    with open(hosts.keyfile, "w") as f:
        f.write(good)
    os.chmod(hosts.keyfile, 0o640)
    status, out = a.check()
    assert status == 1 and "(mode 0640); chmod 600 it" in out, out


def test_file_keys_renewed_past_session_lifetime(hosts, pub_certs, tmp_path):
    """libtls stops using a key tls-session-lifetime after it was given
    one; popsd gives the file's keys again every quarter of it, so tickets
    are still issued (and resume on the other host) long after start."""
    a = hosts.host(extra=["tls-session-lifetime 8s"], verbose=True)
    b = hosts.host(extra=["tls-session-lifetime 8s"])
    started = time.monotonic()
    H.wait_until(lambda: "session ticket keys from" in a.log() and
                 time.monotonic() - started > 10, 30, "two lifetimes of renewals")
    how, name = session(a, pub_certs, tmp_path, "t.pem")
    assert how == "New" and name == hosts.names()[0]
    assert session(b, pub_certs, tmp_path, "x.pem", sess_in=str(tmp_path / "t.pem"))[0] == "Reused"


def test_workers_share_file_keys_and_own_keys_after_reload(hosts, pub_certs, tmp_path):
    """With workers, every worker of every host resumes the file's
    tickets; and once the line is removed and popsd reloads, its own
    keys are the same in every worker again (the master makes the first
    and the workers take it)."""
    a = hosts.host(extra=["workers 2"])
    b = hosts.host(extra=["workers 2"])
    H.wait_children(a.pid, 2, what="host a's workers")
    H.wait_children(b.pid, 2, what="host b's workers")
    sess = str(tmp_path / "s.pem")
    assert session(a, pub_certs, tmp_path, "s.pem")[0] == "New"
    for i in range(6):
        p = (a, b)[i % 2]
        assert session(p, pub_certs, tmp_path, "s.pem", sess_in=sess)[0] == "Reused"

    with open(a.conf) as f:
        text = f.read()
    with open(a.conf, "w") as f:
        f.write(text.replace(f"tls-ticket-key-file {hosts.keyfile}\n", ""))
    mark = len(a.log())
    a.proc.send_signal(signal.SIGHUP)
    H.wait_until(lambda: len(re.findall(r"^reloaded ", a.log()[mark:], re.M)) == 3, 15,
                 "the master and both workers to reload")
    assert session(a, pub_certs, tmp_path, "s.pem")[0] == "New"
    reused = sum(session(a, pub_certs, tmp_path, "s.pem", sess_in=sess)[0] == "Reused"
                 for _ in range(8))
    assert reused == 8, a.log()
    # Host b still has the file's keys, not a's own: no resumption there.
    assert session(b, pub_certs, tmp_path, "x.pem", sess_in=sess)[0] == "New"


def test_inetd_mode_resumes_with_key_file(hosts, pub_certs, tmp_path, backend):
    """Each `popsd -i` process serves one connection: with its own keys a
    ticket could never resume; with the file, the next process resumes
    it (socat as the inetd)."""
    port = H.free_port()
    conf = os.path.join(hosts.dir, "inetd.conf")
    with open(conf, "w") as f:
        f.write(f"listen pop3s 127.0.0.1:{port}\nbackend {backend.address}\n"
                f"certificate {pub_certs.cert}\nkey {pub_certs.key}\n"
                f"tls-ticket-key-file {hosts.keyfile}\n"
                + (f"user {DROP_USER}\n" if os.geteuid() == 0 else ""))
    log = open(os.path.join(hosts.dir, "inetd.log"), "wb")
    inetd = subprocess.Popen(
        ["socat", f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork",
         f"EXEC:{H.popsd_binary()} -d -i pop3s -f {conf},nofork"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        H.wait_until(lambda: H.listening(port), 15, "socat to listen")
        sess = str(tmp_path / "s.pem")
        assert H.s_client_session(port, pub_certs.ca, sess_out=sess) == "New"
        assert H.s_client_session(port, pub_certs.ca, sess_in=sess) == "Reused"
    finally:
        inetd.terminate()
        inetd.wait(10)
        log.close()
