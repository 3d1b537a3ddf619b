"""workers N (issue 8): several processes on the same sockets, sharing
session ticket keys, supervised by a master that forwards signals and
restarts a worker that dies."""

import os
import re
import signal
import subprocess

import popsd_harness as H


def session(p, certs):
    with H.Pop3Client(p.port, certs.client_context()) as c:
        c.login("demo", H.PASSWORDS["demo"])
        assert c.cmd("QUIT").startswith(b"+OK")


def test_two_workers_serve_and_ids_are_distinct(popsd, certs):
    p = popsd(extra=["workers 2"])
    kids = H.wait_children(p.pid, 2, what="two workers")
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
    kids = H.wait_children(p.pid, 2, what="two workers")
    os.kill(kids[0], signal.SIGKILL)
    H.wait_until(lambda: len(H.children(p.pid)) == 2 and kids[0] not in H.children(p.pid),
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


def test_sighup_checked_by_master_sigterm_reaches_workers(popsd, certs):
    p = popsd(extra=["workers 2"])
    kids = H.wait_children(p.pid, 2, what="two workers")
    # The master tries the reload first (test_systemd.py has one that
    # works): here the files are root's, out of reach after the drop, so
    # it logs that once and does not bother the workers.
    p.signal(signal.SIGHUP)
    H.wait_until(lambda: "reload failed, keeping the running configuration" in p.log(),
                 10, "the master to check the reload")
    session(p, certs)
    assert len(re.findall(r"^reload(?:ed| failed)", p.log(), re.M)) == 1, p.log()
    assert "passing SIGHUP" not in p.log()
    p.signal(signal.SIGTERM)
    assert p.wait(15) == 0
    for k in kids:
        assert not H.pid_alive(k)


# ------------------------------------------------- limits across workers

def hold_plain(p, n):
    """n plaintext connections that each got the backend's greeting, so
    each is a live session in whichever worker took it."""
    held = []
    for _ in range(n):
        c = H.Pop3Client(p.pop3_port)
        line = c.readline()
        assert line.startswith(b"+OK"), (line, p.log())
        held.append(c)
    return held


def refused_plain(p, why):
    c = H.Pop3Client(p.pop3_port)
    line = c.readline()
    c.close()
    assert line.startswith(b"-ERR [SYS/TEMP] ") and why in line, (line, p.log())


def close_all(held):
    for c in held:
        c.close()


def worker_ids_seen(p):
    """Which workers served the sessions logged so far (ids are
    n * workers + worker + 1)."""
    return {int(s["session"]) % 2 for s in p.session_lines()}


def test_limits_are_exact_across_workers(popsd, certs):
    """With two workers, max-sessions-per-ip 3 and max-sessions 4 mean
    3 and 4 in all, wherever each connection lands: sessions are counted
    in one ledger the workers share (src/ledger.c). Eight rounds steer the
    three held sessions through every split between the workers, and the
    refused fourth to each in turn."""
    p = popsd(pop3=True, extra=["workers 2", "max-sessions-per-ip 3",
                                "require-tls no"])
    kids = H.wait_children(p.pid, 2, what="two workers")
    done = 0
    for r in range(8):
        held = []
        for k in range(3):
            with H.only_worker(p.pid, kids[(r >> k) & 1]):
                held += hold_plain(p, 1)
        with H.only_worker(p.pid, kids[(r & 1) ^ 1]):
            refused_plain(p, b"from your address")
        close_all(held)
        done += 3
        H.wait_until(lambda: len(p.session_lines()) >= done, 10, "the sessions to end")
    assert worker_ids_seen(p) == {0, 1}, "every session went to one worker"
    assert len(re.findall(r"reason=max-sessions-per-ip sessions=3 limit=3", p.log())) == 8


def test_max_sessions_exact_across_workers(popsd, certs):
    p = popsd(pop3=True, max_sessions=4, extra=["workers 2", "require-tls no"])
    kids = H.wait_children(p.pid, 2, what="two workers")
    before = 0
    # Which worker takes each of the four held sessions (bit k), and the
    # refused fifth goes to the other one than the first.
    for split in (0b0000, 0b1111, 0b0101, 0b1010, 0b0011, 0b1110):
        held = []
        for k in range(4):
            with H.only_worker(p.pid, kids[(split >> k) & 1]):
                held += hold_plain(p, 1)
        with H.only_worker(p.pid, kids[(split & 1) ^ 1]):
            refused_plain(p, b"too many sessions")
        close_all(held)
        before += 4
        H.wait_until(lambda: len(p.session_lines()) >= before, 10, "the sessions to end")
    assert worker_ids_seen(p) == {0, 1}, "every session went to one worker"
    assert len(re.findall(r"reason=max-sessions sessions=4 limit=4", p.log())) == 6


def test_dead_workers_sessions_are_forgotten(popsd, certs):
    """A worker killed with sessions open: the master clears its counts,
    or its address would stay at the limit for good."""
    p = popsd(pop3=True, extra=["workers 2", "max-sessions-per-ip 2",
                                "require-tls no"])
    kids = H.wait_children(p.pid, 2, what="two workers")
    held = hold_plain(p, 2)
    refused_plain(p, b"from your address")
    for k in kids:
        os.kill(k, signal.SIGKILL)
    close_all(held)
    H.wait_until(lambda: len(H.children(p.pid)) == 2 and
                 not set(kids) & set(H.children(p.pid)), 15, "two new workers")
    held = hold_plain(p, 2)
    refused_plain(p, b"from your address")
    close_all(held)


def test_workers_end_when_the_master_is_killed(popsd, certs):
    """kill -9 of the master (the OOM killer, an admin): its workers drain
    and end, rather than linger, serve unsupervised and hold the port a
    new popsd must bind (PR_SET_PDEATHSIG)."""
    p = popsd(extra=["workers 2"])
    kids = H.wait_children(p.pid, 2, what="two workers")
    session(p, certs)
    p.expected_exit = True
    os.kill(p.pid, signal.SIGKILL)
    p.wait(10)
    try:
        H.wait_until(lambda: not any(H.pid_alive(k) for k in kids), 15,
                     "the workers to end after the master")
    finally:
        for k in kids:          # orphans the harness would not stop
            if H.pid_alive(k):
                os.kill(k, signal.SIGKILL)
