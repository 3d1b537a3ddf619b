"""Fixtures for popsd's scenario tests: certificates, a private Dovecot, and
a factory that starts popsd in the test's own temp dir, stops it by PID and
prints its log when the test failed."""

import os
import shutil
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import popsd_harness as H  # noqa: E402

BIG_SIZE = 100 * 1024 * 1024


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item, for fixtures' teardown."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def _failed(node):
    return any(getattr(node, "rep_" + w, None) is not None and getattr(node, "rep_" + w).failed
               for w in ("setup", "call"))


def pytest_sessionstart(session):
    H.become_subreaper()


@pytest.fixture(autouse=True)
def password_guard():
    """No password in a log (issue 13 item 4): after every test (and after
    its fixtures stopped what they started), each popsd log it made
    (H.watch_log: every H.Popsd, test_systemd's processes) is searched
    for the passwords the tests use (H.guard_secret); one found fails
    the test, with the lines that hold it."""
    first = len(H._WATCHED)
    yield
    watched, H._WATCHED[first:] = H._WATCHED[first:], []
    found = []
    for obj in watched:
        text = obj.log()
        leaked = H.logged_secrets(text)
        if leaked:
            lines = [l for l in text.splitlines() if H.logged_secrets(l)]
            found.append(f"{obj.name} ({getattr(obj, 'log_path', '?')}) logged the "
                         f"password(s) {leaked}:\n" + "\n".join(lines))
    if found:
        pytest.fail("\n".join(found), pytrace=False)


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    return H.Certs(str(tmp_path_factory.mktemp("certs")))


class Backend:
    """The shared Dovecot and what the tests know about its mailboxes."""

    def __init__(self, dovecot, big):
        self.dovecot = dovecot
        self.port = dovecot.port
        self.address = f"127.0.0.1:{dovecot.port}"
        self.big_stored, self.big_wire, self.big_sha256 = big


@pytest.fixture(scope="session")
def backend():
    """One Dovecot for the session in its own temp dir (not pytest's: mail
    processes run unprivileged and must reach their homes). Users: demo
    (3 small messages), load (for the concurrency test), big (also a
    ~100 MiB message); passwords in H.PASSWORDS, none equal to its user
    name, so that the password guard can tell a logged name from a
    logged password."""
    d = tempfile.mkdtemp(prefix="popsd-dovecot.")
    dv = None
    try:
        dv = H.Dovecot(d, [f"{u}:{H.PASSWORDS[u]}"
                           for u in ("demo", "load", "big")])
        holder = {}

        def writer(f):
            holder["v"] = H.write_big_message(f, BIG_SIZE)
        # S= and W= in the name spare Dovecot reading 100 MiB to size it;
        # we do not know them until written, so write then rename.
        dv.add_message("big", "1767254500.M9P9.popsd-big", writer)
        stored, wire, _ = holder["v"]
        new = os.path.join(dv.home, "big", "Maildir", "new")
        os.rename(os.path.join(new, "1767254500.M9P9.popsd-big"),
                  os.path.join(new, f"1767254500.M9P9.popsd-big,S={stored},W={wire}"))
        yield Backend(dv, holder["v"])
    finally:
        if dv is not None:
            dv.stop()
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def popsd(request, tmp_path, certs, backend):
    """Factory: popsd(backend=..., timeouts={...}, pop3=False, extra=[...],
    start=True) → a started (or only configured) H.Popsd. Each gets its own
    config and log in this test's tmp_path. At teardown each is stopped by
    PID (SIGTERM, then SIGKILL), a crash fails the test, and on failure the
    logs are printed."""
    made = []

    def factory(backend_addr=None, start=True, **kw):
        p = H.Popsd(str(tmp_path), certs, backend_addr or backend.address,
                    name=f"popsd{len(made) + 1}", **kw)
        made.append(p)
        if start:
            p.start()
        return p

    yield factory

    problems = []
    for p in made:
        if p.proc is None:
            continue
        crashed_before = p.proc.poll() is not None and not p.expected_exit
        status, how = p.stop()
        if crashed_before:
            problems.append(f"{p.name} (pid {p.pid}) exited on its own with status {status}")
        elif how == "kill":
            print(f"{p.name} (pid {p.pid}) ignored SIGTERM for 10s and was killed")
    if problems or _failed(request.node):
        for p in made:
            print(f"\n----- {p.log_path} -----\n{p.log()}", end="")
        print(f"\n----- Dovecot log (tail) -----\n{backend.dovecot.log_tail()}")
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)
