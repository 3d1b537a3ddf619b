"""backends — the POP3 servers of the interoperability matrix, each behind
its own popsd.

Every backend gives the matrix two popsd processes:

* ``main``: ``listen pop3s`` and ``listen pop3`` (require-tls yes, the
  default) in front of the backend: the pop3s and STLS cells;
* ``refused``: ``listen pop3`` only, in front of a *tap* (tap.py) that
  records whatever popsd sends toward the backend: the plaintext cells,
  which pass only if that record holds no USER/PASS/APOP/AUTH line.

and an ``Account``: user, password, and the message the cells retrieve
(exactly as stored), so a cell can check what it got.

A backend that cannot run here says why (``unavailable``) and its cells are
reported as skipped with that reason instead of being left out.
"""

import contextlib
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "scenario"))

import popsd_harness as H  # noqa: E402
import legacy as L  # noqa: E402
import tap as T  # noqa: E402

LEGACY_SH = os.path.join(REPO, "tests", "lib", "legacy-backend.sh")
TAP = os.path.join(HERE, "tap.py")
PYTHON = "/usr/bin/python3"
POP3D = "/usr/sbin/pop3d"      # GNU mailutils
NOBODY_UID = 65534
MAIL_GID = 8


class Unavailable(Exception):
    """This backend cannot run here; the message says why."""


class Account:
    def __init__(self, user, password, msgno, message, apop_password=None):
        self.user = user
        self.password = password
        self.msgno = msgno          # the message single-message clients RETR
        self.message = message      # message msgno exactly as stored (LF)
        # curl and mpop (auth auto) pick SASL if CAPA offers it, else APOP
        # when the greeting has a timestamp, else USER: for APOP they must
        # be given the APOP secret (solid-pop3d keeps a separate one).
        self.apop_password = apop_password or password


# --------------------------------------------------------------------------
# Feature probes: what this popsd's configuration parser accepts.

def popsd_accepts(workdir, certs, backend_line, extra=()):
    """(True, '') if `popsd -n` accepts a config with these lines, else
    (False, its last line of output)."""
    conf = os.path.join(workdir, "probe.conf")
    lines = ["listen pop3s 127.0.0.1:1", backend_line,
             f"certificate {certs.cert}", f"key {certs.key}"]
    if os.geteuid() == 0:
        lines += ["user nobody", "group nogroup"]
    lines += list(extra)
    with open(conf, "w") as f:
        f.write("\n".join(lines) + "\n")
    binary = H.popsd_binary()
    r = subprocess.run([binary, "-n", "-f", conf], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=30)
    out = r.stdout.strip().splitlines()
    return r.returncode == 0, (out[-1] if out else f"exit {r.returncode}")


def probe_features(workdir, certs):
    """{'exec': reason-or-None, 'proxy_v2': reason-or-None}."""
    feats = {}
    ok, why = popsd_accepts(workdir, certs, "backend exec /bin/cat")
    feats["exec"] = None if ok else f"popsd: `backend exec` not implemented yet (popsd -n: {why})"
    feats["exec_inet_stdin"] = feats["exec"] or exec_stdin_problem(workdir, certs)
    ok, why = popsd_accepts(workdir, certs, "backend 127.0.0.1:1",
                            ["backend-proxy-protocol v2"])
    feats["proxy_v2"] = None if ok else \
        f"popsd: `backend-proxy-protocol v2` not implemented yet (popsd -n: {why})"
    return feats


def exec_stdin_problem(workdir, certs):
    """None if a `backend exec` child gets an AF_INET/AF_INET6 socket on
    stdin, else why that matters. Measured with solid-pop3d 0.15: it calls
    getpeername(0) and, unless that is an inet address, binds [::]:110 and
    forks a standalone daemon (on the host's network: never run it so)."""
    d = os.path.join(workdir, "probe-exec")
    p = HostPopsd(d, certs, f"exec {PYTHON} {TAP} --stdin-kind", "popsd-probe", pop3s=False)
    try:
        p.start()
        greeting = probe_greeting(p.pop3_port).decode(errors="replace").strip()
    except Exception as e:      # noqa: BLE001 - any failure is the reason
        return f"probe of `backend exec` failed: {e}"
    finally:
        if p.proc is not None:
            p.stop()
    m = re.search(r"stdin=(\S+)", greeting)
    fam = m.group(1) if m else greeting
    if fam in ("AF_INET", "AF_INET6"):
        return None
    return (f"popsd's `backend exec` gives the daemon an {fam} socket on stdin; "
            "solid-pop3d 0.15 then (getpeername(0) not AF_INET) binds [::]:110 and "
            "forks a standalone daemon instead of serving the session: not run "
            "(it needs a TCP socket on stdin, as from inetd/socat)")


# --------------------------------------------------------------------------
# popsd processes

def group_line(group="nogroup"):
    return [f"group {group}"] if os.geteuid() == 0 else []


class HostPopsd(H.Popsd):
    """A popsd on this host (the harness's Popsd, plus `group`)."""

    def __init__(self, directory, certs, backend, name, pop3s=True, group="nogroup",
                 extra=()):
        os.makedirs(directory, exist_ok=True)
        super().__init__(directory, certs, backend, pop3s=pop3s, pop3=True,
                         extra=group_line(group) + list(extra), name=name)

    def ports(self):
        return [p for p in (self.port, self.pop3_port) if p]


class NamespacedPopsd(H.Popsd):
    """A popsd that runs as pid 1 of legacy-backend.sh's private namespace
    (`legacy-backend.sh run KIND DIR -- popsd ...`), so that the daemon it
    starts with `backend exec` sees the scratch passwd/shadow/PAM/mbox.

    The backend line may use {daemon} and {args}: the unpacked daemon and
    its arguments (only known once the namespace directory exists)."""

    def __init__(self, directory, certs, kind, backend_tmpl, name, pop3s=True):
        os.makedirs(directory, exist_ok=True)
        self.kind = kind
        # legacy-backend.sh wants an empty (or absent) directory of its own.
        self.nsdir = tempfile.mkdtemp(prefix=f"ns-{kind}-", dir=directory)
        daemon = os.path.join(self.nsdir, "pkg", "usr", "sbin", kind)
        args = "-f /var/lib/solid-pop3d/spop3d.conf" if kind == "solid-pop3d" else ""
        backend = backend_tmpl.format(daemon=daemon, args=args).rstrip()
        super().__init__(directory, certs, backend, pop3s=pop3s, pop3=True,
                         extra=group_line(), name=name)
        self.log_path = os.path.join(self.nsdir, "log", "ns.log")
        self.env = {}
        self.pid = None
        self.watchdog = None

    def start(self, timeout=30):
        env = dict(os.environ, LEGACY_OWNER_PID=str(os.getpid()))
        r = subprocess.run([LEGACY_SH, "run", self.kind, self.nsdir, "--"]
                           + self.argv("-d", "-f", self.conf),
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           env=env, timeout=120)
        if r.returncode != 0:
            raise AssertionError(f"legacy-backend.sh run {self.kind} failed: "
                                 f"{r.stderr.strip()[-400:]}")
        self.env = L._parse_env(r.stdout)
        self.pid = int(self.env["LEGACY_PID"])
        wd = os.path.join(self.nsdir, "watchdog-sh.pid")
        with contextlib.suppress(OSError, ValueError):
            self.watchdog = int(open(wd).read())
        try:
            H.wait_until(lambda: not H.pid_alive(self.pid) or "popsd ready" in self.log(),
                         timeout, "popsd (in the namespace) to log 'popsd ready'")
            if not H.pid_alive(self.pid):
                raise AssertionError("popsd in the namespace exited at start-up")
            for p in (self.port, self.pop3_port):
                if p:
                    H.wait_until(lambda: H.listening(p), timeout, f"popsd to listen on {p}")
        except AssertionError as e:
            log = self.log()
            self.stop()
            raise AssertionError(f"{e}\n--- namespace log:\n{log[-2000:]}") from None
        return self

    def alive(self):
        return self.pid is not None and H.pid_alive(self.pid)

    def stop(self, timeout=10):
        """legacy-backend.sh stop: TERM to the namespace's process group,
        then checks that no daemon is left. Returns (rc, stderr)."""
        if self.pid is None:
            return 0, ""
        r = subprocess.run([LEGACY_SH, "stop", self.nsdir], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=60)
        for pid in (self.pid, self.watchdog):
            if pid:
                deadline = time.monotonic() + 2
                while time.monotonic() < deadline:
                    try:
                        if os.waitpid(pid, os.WNOHANG)[0]:
                            break
                    except ChildProcessError:
                        break
                    time.sleep(0.01)    # poll interval
        self.pid = None
        return r.returncode, r.stderr

    def account(self):
        msg = os.path.join(self.nsdir, "messages", "2.eml")
        with open(msg, "rb") as f:
            message = f.read()
        apop = self.env.get("LEGACY_APOP_SECRET") or None
        return Account(self.env["LEGACY_USER"], self.env["LEGACY_PASSWORD"], 2, message,
                       apop_password=apop)


# --------------------------------------------------------------------------
# Backends

class Backend:
    """Base: name (row label), title (what it is), unavailable(features)."""

    name = "?"
    title = "?"
    needs = ()          # feature keys of probe_features() this backend needs

    def __init__(self, workdir, certs):
        self.workdir = os.path.join(workdir, self.name)
        self.certs = certs
        self.main = None
        self.refused = None
        self.tap = None
        self.account = None
        self.stop_problems = []

    def unavailable(self, features):
        for k in self.needs:
            if features.get(k):
                return features[k]
        return None

    def popsd_for(self, mode):
        return self.refused if mode == "plain" else self.main

    def start(self):
        raise NotImplementedError

    def stop(self):
        for p in (self.main, self.refused):
            if p is not None and p.proc is not None:
                status, how = p.stop()
                if how == "kill":
                    self.stop_problems.append(f"{p.name} ignored SIGTERM")
        if self.tap is not None and hasattr(self.tap, "close"):
            self.tap.close()

    def logs(self):
        """Log excerpts for a failure report: {title: text}."""
        out = {}
        for p in (self.main, self.refused):
            if p is not None:
                out[f"{p.name} log"] = p.log()[-6000:]
        return out

    def check_cell(self, mode, sessions, mark):
        """Backend-side checks after a passing cell; a problem string or
        None. `mark` is what cell_mark() returned before the cell."""
        return None

    def cell_mark(self):
        return None

    @staticmethod
    def _require_root(what):
        if os.geteuid() != 0:
            raise Unavailable(f"{what} needs root")


# ---- Dovecot

DOVECOT_PROXY_CONF = """
# Added by tests/interop: a second listener that wants a PROXY header.
haproxy_trusted_networks = 127.0.0.0/8
login_log_format_elements = user=<%u> method=%m rip=%r rport=%{{rport}} lip=%l lport=%{{lport}} mpid=%e %c session=<%{{session}}>
service pop3-login {{
  inet_listener pop3-haproxy {{
    address = 127.0.0.1
    port = {port}
    haproxy = yes
  }}
}}
"""


class DovecotTcp(Backend):
    name = "dovecot"
    title = "Dovecot 2.3 pop3 over TCP (tests/lib/dovecot-up.sh)"
    proxy = False

    def start(self):
        if not shutil.which("dovecot") and not os.path.exists("/usr/sbin/dovecot"):
            raise Unavailable("dovecot is not installed")
        os.makedirs(self.workdir, exist_ok=True)
        # Dovecot's unprivileged processes must reach their homes: not in
        # the 0700 temp dir of the run.
        self.dvdir = tempfile.mkdtemp(prefix=f"popsd-interop-{self.name}.")
        self.dovecot = H.Dovecot(self.dvdir, ["demo:demo"])
        port = self.dovecot.port
        extra = []
        if self.proxy:
            port = self._add_proxy_listener()
            extra = ["backend-proxy-protocol v2"]
        new = os.path.join(self.dovecot.home, "demo", "Maildir", "new")
        [msg] = glob.glob(os.path.join(new, "*.M2P1.popsd-demo"))
        with open(msg, "rb") as f:
            self.account = Account("demo", "demo", 2, f.read())
        self.main = HostPopsd(self.workdir, self.certs, f"127.0.0.1:{port}", "popsd-main",
                              extra=extra).start()
        self.tap = T.TcpTap("127.0.0.1", port)
        self.refused = HostPopsd(self.workdir, self.certs, self.tap.address, "popsd-refused",
                                 pop3s=False, extra=extra).start()

    def _add_proxy_listener(self):
        port = H.free_port()
        with open(os.path.join(self.dvdir, "dovecot.conf"), "a") as f:
            f.write(DOVECOT_PROXY_CONF.format(port=port))
        os.kill(self.dovecot.pid, signal.SIGHUP)       # reload: binds the new listener
        H.wait_until(lambda: H.listening(port), 20, f"Dovecot to listen on {port} (haproxy)")
        return port

    def stop(self):
        super().stop()
        with contextlib.suppress(AttributeError):
            self.dovecot.stop()
        with contextlib.suppress(AttributeError):
            shutil.rmtree(self.dvdir, ignore_errors=True)

    def logs(self):
        out = super().logs()
        with contextlib.suppress(AttributeError):
            out["Dovecot log (tail)"] = self.dovecot.log_tail(60)
        return out

    def cell_mark(self):
        try:
            return os.path.getsize(self.dovecot.log)
        except OSError:
            return 0


class DovecotProxy(DovecotTcp):
    name = "dovecot-proxy2"
    title = ("Dovecot, listener with haproxy = yes; popsd sends a PROXY v2 header "
             "(backend-proxy-protocol v2)")
    proxy = True
    needs = ("proxy_v2",)

    def check_cell(self, mode, sessions, mark):
        """Dovecot must log the client's own address and port (from the
        PROXY header), not popsd's outgoing connection."""
        want = [s for s in sessions if s.get("login") == "yes"]
        found = {}

        def logged():
            with open(self.dovecot.log, errors="replace") as f:
                f.seek(mark)
                text = f.read()
            for s in want:
                m = re.search(rf"Login: user=<demo>,.* rip={re.escape(s['client'])}, "
                              rf"rport={s['port']},.*", text)
                if not m:
                    return False
                found[s["port"]] = m.group(0)
            return True
        try:
            H.wait_until(logged, 5, "Dovecot to log the client's address")
        except AssertionError:
            return ("Dovecot's login line does not carry the client's address/port "
                    f"({', '.join(s['client'] + ':' + s['port'] for s in want)}): "
                    "PROXY header missing or wrong")
        if mode == "pop3s" and not all(", secured," in line for line in found.values()):
            # The SSL TLV of popsd's v2 header makes Dovecot count the
            # connection as secured (an STLS session's header, sent before
            # STLS, cannot carry it).
            return ("Dovecot does not count the pop3s session as secured: no SSL TLV in "
                    "popsd's PROXY v2 header? " + "; ".join(found.values()))
        return None


# ---- popa3d / solid-pop3d

class LegacySocat(Backend):
    """popa3d or solid-pop3d served by socat (an inetd) in the private
    namespace of tests/lib/legacy-backend.sh; popsd connects over TCP."""

    def __init__(self, workdir, certs, kind):
        self.kind = kind
        self.name = f"{kind}-socat"
        self.title = f"{kind} (inetd-style) via socat TCP-LISTEN in legacy-backend.sh's namespace"
        super().__init__(workdir, certs)
        self.legacy = None

    def start(self):
        self._require_root(f"{self.kind} (mount/pid namespaces, PAM against a scratch shadow)")
        os.makedirs(self.workdir, exist_ok=True)
        self.legacy = L.LegacyBackend(self.kind, self.workdir).start()
        b = self.legacy
        self.account = Account(b.user, b.password, 2, b.message(2), apop_password=b.apop_secret)
        addr = f"127.0.0.1:{b.port}"
        self.main = HostPopsd(self.workdir, self.certs, addr, "popsd-main").start()
        self.tap = T.TcpTap("127.0.0.1", b.port)
        self.refused = HostPopsd(self.workdir, self.certs, self.tap.address, "popsd-refused",
                                 pop3s=False).start()

    def stop(self):
        super().stop()
        if self.legacy is not None:
            try:
                self.legacy.stop()
            except L.LegacyBackendError as e:
                self.stop_problems.append(str(e))

    def logs(self):
        out = super().logs()
        if self.legacy is not None:
            out["socat log"] = self.legacy.log()[-3000:]
        return out


class LegacyExec(Backend):
    """popa3d or solid-pop3d started by popsd itself (`backend exec`), with
    popsd running inside legacy-backend.sh's private namespace."""

    needs = ("exec",)

    def __init__(self, workdir, certs, kind):
        self.kind = kind
        if kind == "solid-pop3d":
            self.needs = ("exec", "exec_inet_stdin")
        self.name = f"{kind}-exec"
        self.title = (f"{kind} started per session by popsd `backend exec` "
                      "(popsd runs in legacy-backend.sh's namespace: `run` subcommand)")
        super().__init__(workdir, certs)

    def start(self):
        self._require_root(f"{self.kind} (mount/pid namespaces, PAM against a scratch shadow)")
        os.makedirs(self.workdir, exist_ok=True)
        self.main = NamespacedPopsd(self.workdir, self.certs, self.kind,
                                    "exec {daemon} {args}", "popsd-main")
        self.main.start()
        self.account = self.main.account()
        self.tap = T.ExecTapDir(os.path.join(self.workdir, "tap"))
        self.refused = NamespacedPopsd(self.workdir, self.certs, self.kind,
                                       f"exec {PYTHON} {TAP} {self.tap.dir} {{daemon}} {{args}}",
                                       "popsd-refused", pop3s=False)
        self.refused.start()

    def stop(self):
        for p in (self.main, self.refused):
            if p is not None:
                rc, err = p.stop()
                if rc != 0:
                    self.stop_problems.append(f"legacy-backend.sh stop: {err.strip()[-500:]}")


# ---- GNU mailutils pop3d

MU_DOMAIN = "interop.test"
MU_USER = "mu"
MU_PASSWORD = "Mu-Pa55-word"

MU_MESSAGES = [
    b"From: Alice <alice@example.test>\nTo: mu@interop.test\nSubject: first\n"
    b"Date: Mon, 01 Jan 2024 10:00:00 +0000\nMessage-ID: <mu-1@example.test>\n\n"
    b"Hello from GNU mailutils pop3d.\n",
    b"From: Bob <bob@example.test>\nTo: mu@interop.test\nSubject: dot-stuffing check\n"
    b"Date: Mon, 01 Jan 2024 11:00:00 +0000\nMessage-ID: <mu-2@example.test>\n\n"
    b"The next lines start with dots and must be dot-stuffed on the wire.\n"
    b".leading dot line\n.\n..two dots\n. dot space\n...\nend of dot test\n",
    b"From: Carol <carol@example.test>\nTo: mu@interop.test\nSubject: larger\n"
    b"Date: Mon, 01 Jan 2024 12:00:00 +0000\nMessage-ID: <mu-3@example.test>\n\n"
    + b"".join(b"line %04d abcdefghijklmnopqrstuvwxyz 0123456789\n" % i for i in range(1, 1201)),
]

MU_CONF = """# Written by tests/interop: GNU mailutils pop3d, unprivileged, inetd mode.
logging {{ syslog no; print-severity yes; }}
# Accounts: user@{domain} from the passwd-format file {dir}/vdom/{domain}
# (crypt(3) hashes); the mailbox is HOME/INBOX. "generic" checks the
# password against that hash; no PAM, no /etc/shadow.
auth {{ authorization virtdomain; authentication generic; }}
virtdomain {{ passwd-dir {dir}/vdom; }}
apop-database-file {dir}/apop.db;
# Started by popsd's `backend exec` pop3d runs as root (like under inetd),
# via socat as nobody: the database is nobody's either way.
apop-database-owner nobody;
tcp-wrappers {{ enable no; }}
"""


class Mailutils(Backend):
    """GNU mailutils pop3d in inetd mode (`pop3d --inetd`), unprivileged:
    uid nobody, gid mail (it setgid()s to group "mail" at start-up, which an
    unprivileged process may only do if that is already its group)."""

    def __init__(self, workdir, certs, via):
        self.via = via
        self.name = f"mailutils-{via}"
        if via == "socat":
            self.title = ("GNU mailutils pop3d --inetd via socat TCP-LISTEN, as nobody:mail, "
                          "virtdomain accounts in a temp dir")
        else:
            self.title = ("GNU mailutils pop3d --inetd started per session by popsd "
                          "`backend exec`, virtdomain accounts in a temp dir")
        self.needs = ("exec",) if via == "exec" else ()
        super().__init__(workdir, certs)
        self.socat = None

    def _prepare(self):
        if not os.access(POP3D, os.X_OK):
            raise Unavailable("GNU mailutils pop3d is not installed (apt-get install mailutils-pop3d)")
        if os.geteuid() != 0 and os.getegid() != MAIL_GID:
            raise Unavailable("pop3d setgid()s to group mail at start-up: run as root "
                              "(it then runs as nobody:mail) or as a user whose group is mail")
        d = os.path.join(self.workdir, "mu")
        os.makedirs(os.path.join(d, "vdom"))
        home = os.path.join(d, "home", MU_USER)
        os.makedirs(home)
        h = subprocess.run(["openssl", "passwd", "-6", MU_PASSWORD], check=True,
                           capture_output=True, text=True).stdout.strip()
        uid, gid = (NOBODY_UID, MAIL_GID) if os.geteuid() == 0 else (os.geteuid(), os.getegid())
        with open(os.path.join(d, "vdom", MU_DOMAIN), "w") as f:
            f.write(f"{MU_USER}:{h}:{uid}:{gid}:interop:{home}:/dev/null\n")
        with open(os.path.join(home, "INBOX"), "wb") as f:
            for i, m in enumerate(MU_MESSAGES, 1):
                f.write(b"From sender@example.test  Mon Jan  1 1%d:00:00 2024\n" % i + m + b"\n")
        # APOP secrets (curl uses APOP: the greeting has a timestamp).
        src = os.path.join(d, "apop.txt")
        with open(src, "w") as f:
            f.write(f"{MU_USER}@{MU_DOMAIN} {MU_PASSWORD}\n")
        subprocess.run(["popauth", "-c", "-f", src, "-o", os.path.join(d, "apop.db")],
                       check=True, capture_output=True, timeout=30)
        os.unlink(src)
        self.conf = os.path.join(d, "pop3d.conf")
        with open(self.conf, "w") as f:
            f.write(MU_CONF.format(dir=d, domain=MU_DOMAIN))
        for root, dirs, files in os.walk(self.workdir):
            for n in dirs + files:
                os.chown(os.path.join(root, n), uid, gid)
            os.chmod(root, 0o755)
        os.chown(self.workdir, uid, gid)
        self.account = Account(f"{MU_USER}@{MU_DOMAIN}", MU_PASSWORD, 2, MU_MESSAGES[1])
        return [POP3D, "--inetd", f"--config-file={self.conf}"]

    def start(self):
        os.makedirs(self.workdir, exist_ok=True)
        os.chmod(self.workdir, 0o755)
        cmd = self._prepare()
        if self.via == "socat":
            port = H.free_port()
            drop = (["setpriv", f"--reuid={NOBODY_UID}", f"--regid={MAIL_GID}", "--clear-groups"]
                    if os.geteuid() == 0 else [])
            self.socat_log = open(os.path.join(self.workdir, "socat.log"), "ab")
            self.socat = subprocess.Popen(
                drop + ["socat", "-d", "-d", "-lu",
                        f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork",
                        "EXEC:" + " ".join(cmd) + ",nofork"],
                stdin=subprocess.DEVNULL, stdout=self.socat_log, stderr=subprocess.STDOUT,
                start_new_session=True)
            H.wait_until(lambda: self.socat.poll() is not None or H.listening(port), 20,
                         "socat to listen")
            if self.socat.poll() is not None:
                raise AssertionError(f"socat exited: {self.socat_log_text()}")
            self.main = HostPopsd(self.workdir, self.certs, f"127.0.0.1:{port}",
                                  "popsd-main").start()
            self.tap = T.TcpTap("127.0.0.1", port)
            self.refused = HostPopsd(self.workdir, self.certs, self.tap.address,
                                     "popsd-refused", pop3s=False).start()
        else:
            # group mail: pop3d setgid()s to "mail" at start-up, which works
            # unprivileged only if that is already its group (should popsd
            # start exec children as its own user rather than as root).
            self.main = HostPopsd(self.workdir, self.certs, "exec " + " ".join(cmd),
                                  "popsd-main", group="mail").start()
            self.tap = T.ExecTapDir(os.path.join(self.workdir, "tap"))
            self.refused = HostPopsd(self.workdir, self.certs,
                                     f"exec {PYTHON} {TAP} {self.tap.dir} " + " ".join(cmd),
                                     "popsd-refused", pop3s=False, group="mail").start()

    def socat_log_text(self):
        with contextlib.suppress(OSError), open(os.path.join(self.workdir, "socat.log"),
                                                errors="replace") as f:
            return f.read()[-3000:]
        return ""

    def stop(self):
        super().stop()
        if self.socat is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.socat.pid, signal.SIGTERM)
            try:
                self.socat.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.socat.pid, signal.SIGKILL)
                self.socat.wait(10)
                self.stop_problems.append("socat ignored SIGTERM")
            self.socat_log.close()

    def logs(self):
        out = super().logs()
        if self.socat is not None:
            out["socat log"] = self.socat_log_text()
        return out


# ---- servers that are not run, with the reason

class NotRun(Backend):
    def __init__(self, workdir, certs, name, title, reason):
        self.name, self.title, self.reason = name, title, reason
        super().__init__(workdir, certs)

    def unavailable(self, features):
        return self.reason


NOT_RUN = [
    ("courier-pop", "Courier pop3d (Debian courier-pop)",
     "not run: Courier's pop3login authenticates only through courier-authlib's "
     "authdaemond (a root daemon on the compiled-in socket /run/courier/authdaemon) "
     "and setuid()s to the mailbox owner; it cannot run unprivileged in a temp dir "
     "(and courier-pop Conflicts: pop3-server, i.e. dovecot-pop3d)"),
    ("cyrus-pop3d", "Cyrus IMAP pop3d (Debian cyrus-pop3d)",
     "not run: Cyrus pop3d is a service of cyrus-master with a Cyrus mailbox "
     "database (cyrus-common: mkimap, ctl_cyrusdb, user cyrus), not an inetd-style "
     "daemon with a temp-dir mailbox; cyrus-pop3d Conflicts: pop3-server (dovecot-pop3d)"),
    ("citadel", "Citadel", "not run: not packaged in Debian 12 (no citadel-server)"),
]


def all_backends(workdir, certs):
    out = [DovecotTcp(workdir, certs), DovecotProxy(workdir, certs)]
    for kind in L.KINDS:
        out += [LegacySocat(workdir, certs, kind), LegacyExec(workdir, certs, kind)]
    out += [Mailutils(workdir, certs, "socat"), Mailutils(workdir, certs, "exec")]
    out += [NotRun(workdir, certs, *t) for t in NOT_RUN]
    return out


def established(ports):
    """Sockets on these local ports that are still open on popsd's side
    (ESTABLISHED or CLOSE_WAIT), from /proc: nothing connects to ask."""
    want = {f"{p:04X}" for p in ports}
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[1].rsplit(":", 1)[1] in want and fields[3] in ("01", "08"):
                    n += 1
    return n


def probe_greeting(port, timeout=5):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        return s.makefile("rb").readline()
