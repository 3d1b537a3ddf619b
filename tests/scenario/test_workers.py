"""workers N (issue 8): several processes on the same sockets, sharing
session ticket keys, supervised by a master that forwards signals and
restarts a worker that dies."""

import os
import re
import signal
import subprocess

import popsd_harness as H


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(d))
    return sorted(out)


def session(p, certs):
    with H.Pop3Client(p.port, certs.client_context()) as c:
        c.login("demo", "demo")
        assert c.cmd("QUIT").startswith(b"+OK")


def test_two_workers_serve_and_ids_are_distinct(popsd, certs):
    p = popsd(extra=["workers 2"])
    kids = H.wait_until(lambda: len(children(p.pid)) == 2 and children(p.pid), 10,
                        "two workers")
    for k in kids + [p.pid]:
        with open(f"/proc/{k}/status") as f:
            uids = [l for l in f if l.startswith("Uid:")][0].split()[1:]
        if os.geteuid() == 0:
            assert "0" not in uids, (k, uids)
    for _ in range(12):
        session(p, certs)
    H.wait_until(lambda: len(p.session_lines()) >= 12, 10, "12 session lines")
    ids = [int(s["session"]) for s in p.session_lines()]
    assert len(ids) == len(set(ids)), ids


def test_worker_restarted_after_crash(popsd, certs):
    p = popsd(extra=["workers 2"])
    kids = H.wait_until(lambda: len(children(p.pid)) == 2 and children(p.pid), 10,
                        "two workers")
    os.kill(kids[0], signal.SIGKILL)
    H.wait_until(lambda: len(children(p.pid)) == 2 and kids[0] not in children(p.pid),
                 10, "the master to start a new worker")
    assert re.search(r"worker \d \(pid \d+\) ended unexpectedly", p.log())
    for _ in range(4):
        session(p, certs)


def test_resumption_across_workers(popsd, certs, tmp_path):
    """A ticket from one worker resumes with any: every reconnection of a
    client that keeps its session is resumed."""
    p = popsd(extra=["workers 2"])
    sess = str(tmp_path / "sess.pem")
    reused = 0
    for i in range(8):
        args = ["openssl", "s_client", "-connect", f"127.0.0.1:{p.port}",
                "-CAfile", certs.ca, "-servername", "localhost", "-sess_out", sess,
                "-ign_eof"]     # wait for the server's close: tickets come first
        if i:
            args += ["-sess_in", sess]
        r = subprocess.run(args, input=b"QUIT\r\n", stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=20)
        if i and b"Reused, TLSv1.3" in r.stdout:
            reused += 1
    assert reused == 7, p.log()


def test_sighup_and_sigterm_reach_workers(popsd, certs):
    p = popsd(extra=["workers 2"])
    kids = H.wait_until(lambda: len(children(p.pid)) == 2 and children(p.pid), 10,
                        "two workers")
    p.signal(signal.SIGHUP)
    H.wait_until(lambda: "passing SIGHUP to 2 workers" in p.log() and
                 len(re.findall(r"^reload(?:ed| failed)", p.log(), re.M)) == 2,
                 10, "both workers to act on the reload")
    session(p, certs)
    p.signal(signal.SIGTERM)
    assert p.wait(15) == 0
    for k in kids:
        assert not H.pid_alive(k)
