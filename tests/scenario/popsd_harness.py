"""popsd_harness — processes and clients for popsd's scenario tests.

Everything here talks to loopback only, stops what it starts by PID, and
waits by polling with a deadline: nothing sleeps to synchronise.
"""

import base64
import contextlib
import ctypes
import hashlib
import os
import queue
import re
import signal
import socket
import ssl
import subprocess
import threading
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DOVECOT_UP = os.path.join(REPO, "tests", "lib", "dovecot-up.sh")
MKCERT = os.path.join(REPO, "certs", "mkcert.sh")

# Keys every session summary line must carry.
SESSION_KEYS = ("session", "client", "port", "listener", "tls", "cipher",
                "from_client", "to_client", "duration", "reason")


# The session Dovecot's accounts (conftest.py): user -> password. Every
# password differs from its user name and from anything else popsd logs,
# so that the password guard below means something: a guard on "demo"
# would fire on every user="demo". (The old name-equals-password logins,
# demo/demo etc., still work through a second passdb for tests written
# before; new tests use these.)
PASSWORDS = {"demo": "demo-Pw-7d1e", "load": "load-Pw-9c2f", "big": "big-Pw-4a8b"}

# Secrets no popsd log may contain (issue 13 item 4): conftest's
# password_guard fails any test whose popsd logged one of them.
_GUARDED = {}
# Everything with a popsd log a test started (.name, .log()): the guard
# reads them after the test's own fixtures stopped them.
_WATCHED = []


def watch_log(obj):
    """Have the password guard read obj.log() (popsd's output) once the
    test is over. Popsd instances watch themselves."""
    _WATCHED.append(obj)


def guard_secret(password, user=None):
    """Add a password to those the popsd fixture looks for in every popsd
    log at teardown: the password, its base64, and (with the user) the
    SASL PLAIN message for it."""
    if not password:
        return
    forms = {password, base64.b64encode(password.encode()).decode()}
    if user:
        for m in (f"\0{user}\0{password}", f"{user}\0{password}"):
            forms.add(base64.b64encode(m.encode()).decode())
    _GUARDED[password] = forms


def logged_secrets(text):
    """The guarded passwords that appear in text (in any guarded form)."""
    return sorted(pw for pw, forms in _GUARDED.items()
                  if any(f in text for f in forms))


for _u, _p in PASSWORDS.items():
    guard_secret(_p, _u)


class Timeout(AssertionError):
    pass


def wait_until(pred, timeout, what, interval=0.02):
    """Poll pred() until it returns something true; return that value.
    Raises Timeout (an AssertionError) naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise Timeout(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)    # poll interval, not synchronisation


def popsd_binary():
    """The popsd to test: $POPSD, else the newer of ./popsd and build/popsd
    (make links build/popsd, then copies it to ./popsd; the copy can fail
    while an old ./popsd is running)."""
    env = os.environ.get("POPSD")
    if env:
        return os.path.abspath(env)
    found = [p for p in (os.path.join(REPO, "popsd"), os.path.join(REPO, "build", "popsd"))
             if os.access(p, os.X_OK)]
    return max(found, key=lambda p: os.stat(p).st_mtime) if found else None


def become_subreaper():
    """Make this process the reaper of orphaned descendants (Dovecot is
    started by a script that exits), so we can waitpid() them."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except OSError:
        pass


def children(pid):
    """The live (not zombie) child processes of pid, sorted: a popsd
    master's workers."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(d))
    return sorted(out)


def wait_children(pid, n, timeout=10, what=None):
    """Wait until pid has exactly n live children; returns them."""
    def found():
        kids = children(pid)
        return kids if len(kids) == n else None
    return wait_until(found, timeout, what or f"{n} children of {pid}")


def proc_state(pid):
    """pid's state letter from /proc (R, S, T, Z...), None once gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def pid_alive(pid):
    """True while pid exists and is not a zombie."""
    return proc_state(pid) not in (None, "Z")


@contextlib.contextmanager
def only_worker(master, worker):
    """Steer new connections to one worker of a popsd master: the other
    workers share its listening sockets, so while they are stopped only
    `worker` accepts (the kernel's choice among running workers is its
    own, and under a sanitizer one worker can win every time). They are
    resumed whatever happens in the block; a stop is not a death to the
    master (libev ignores stopped children unless asked)."""
    others = [k for k in children(master) if k != worker]
    try:
        for k in others:
            os.kill(k, signal.SIGSTOP)
        wait_until(lambda: all(proc_state(k) in ("T", "t", None) for k in others),
                   10, "the other workers to stop")
        yield
    finally:
        for k in others:
            with contextlib.suppress(ProcessLookupError):
                os.kill(k, signal.SIGCONT)


def reap(pid):
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def stop_pid(pid, timeout=10):
    """SIGTERM pid, wait for it to go; SIGKILL after timeout. Returns True
    if it went on SIGTERM alone."""
    if not pid_alive(pid):
        reap(pid)
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reap(pid)
        if not pid_alive(pid):
            return True
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: (reap(pid), not pid_alive(pid))[1], 10, f"pid {pid} to die")
    return False


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def refused_port():
    """A port on 127.0.0.1 where nothing listens (connect is refused)."""
    while True:
        port = free_port()
        with socket.socket() as s:
            s.settimeout(2)
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return port


def listening(port):
    """Is a TCP socket listening on 127.0.0.1:port? Read from /proc, so
    that asking opens no connection (which popsd would log as a session)."""
    want = f":{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[1].endswith(want) and fields[3] == "0A":
                    return True
    return False


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


# --------------------------------------------------------------------------
# Certificates and Dovecot: thin wrappers over the shell implementations.

class Certs:
    def __init__(self, directory, rsa=False):
        self.dir = directory
        cmd = ["sh", MKCERT] + (["-r"] if rsa else []) + [directory]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, timeout=60)
        self.ca = os.path.join(directory, "ca.pem")
        self.cert = os.path.join(directory, "cert.pem")
        self.key = os.path.join(directory, "key.pem")

    def client_context(self):
        ctx = ssl.create_default_context(cafile=self.ca)
        return ctx


class Dovecot:
    """A private Dovecot started by tests/lib/dovecot-up.sh."""

    def __init__(self, directory, users, haproxy=False, tls=None):
        """tls=(cert, key): Dovecot's own TLS, STLS on .port and pop3s
        on .tls_port."""
        self.dir = directory
        self.port = free_port()
        self.tls_port = None
        env = dict(os.environ, DOVECOT_HAPROXY="yes" if haproxy else "no")
        if tls:
            self.tls_port = free_port()
            env["DOVECOT_TLS"] = f"{tls[0]}:{tls[1]}:{self.tls_port}"
        out = subprocess.run(["sh", DOVECOT_UP, directory, str(self.port)] + users,
                             check=True, stdout=subprocess.PIPE, timeout=60,
                             text=True, env=env).stdout
        self.pid = int(out.strip().splitlines()[-1])
        env = {}
        with open(os.path.join(directory, "dovecot.env")) as f:
            for line in f:
                k, _, v = line.strip().partition("=")
                env[k] = v
        self.log = env["DOVECOT_LOG"]
        self.uid = int(env["MAIL_UID"])
        self.gid = int(env["MAIL_GID"])
        self.home = env["MAIL_HOME"]

    def add_message(self, user, name, writer):
        """Deliver a message to user's Maildir/new: writer(fileobj) writes
        it. The file appears atomically (written in tmp/, then renamed)."""
        md = os.path.join(self.home, user, "Maildir")
        tmp = os.path.join(md, "tmp", name)
        with open(tmp, "wb") as f:
            writer(f)
        os.chown(tmp, self.uid, self.gid)
        os.rename(tmp, os.path.join(md, "new", name))

    def stop(self):
        stop_pid(self.pid)

    def log_tail(self, n=40):
        with contextlib.suppress(OSError), open(self.log, errors="replace") as f:
            # Inotify-limit warnings come by the hundred under load: noise.
            return "".join([l for l in f if "Inotify instance limit" not in l][-n:])
        return ""


def write_big_message(f, size):
    """Write a message of at least `size` bytes (LF line ends, as stored in
    a Maildir) to f. Lines that start with "." exercise dot-stuffing.
    Returns (stored_bytes, wire_bytes, sha256_hex of the CRLF form a
    correct POP3 client returns)."""
    header = (b"From: popsd test <test@localhost>\n"
              b"To: big@localhost\n"
              b"Subject: a big message\n"
              b"Message-ID: <big@localhost>\n\n")
    lines = []
    for i in range(1024):
        if i % 7 == 0:
            lines.append(b".%05d a line that starts with a dot\n" % i)
        elif i % 13 == 0:
            lines.append(b".\n")            # a lone dot inside the message
        elif i % 17 == 0:
            lines.append(b"\n")
        else:
            lines.append(b"%05d " % i + b"0123456789abcdefghijklmnopqrstuvwxyz" * (i % 3 + 1) + b"\n")
    block = b"".join(lines)
    block_crlf = block.replace(b"\n", b"\r\n")
    h = hashlib.sha256()
    head_crlf = header.replace(b"\n", b"\r\n")
    f.write(header)
    h.update(head_crlf)
    stored, wire = len(header), len(head_crlf)
    while stored < size:
        f.write(block)
        h.update(block_crlf)
        stored += len(block)
        wire += len(block_crlf)
    return stored, wire, h.hexdigest()


# --------------------------------------------------------------------------
# popsd

class Popsd:
    """One popsd process with its own config and log in `directory`."""

    def __init__(self, directory, certs, backend, pop3s=True, pop3=False,
                 timeouts=None, max_sessions=1000, extra=(), verbose=False,
                 name="popsd"):
        self.dir = directory
        self.name = name
        self.conf = os.path.join(directory, f"{name}.conf")
        self.log_path = os.path.join(directory, f"{name}.log")
        self.port = free_port() if pop3s else None
        self.pop3_port = free_port() if pop3 else None
        self.proc = None
        self.expected_exit = False
        self._last_log = ""
        watch_log(self)
        t = {"connect": "10s", "drain": "5s"}
        t.update(timeouts or {})
        lines = []
        if pop3s:
            lines.append(f"listen pop3s 127.0.0.1:{self.port}")
        if pop3:
            lines.append(f"listen pop3 127.0.0.1:{self.pop3_port}")
        lines.append(f"backend {backend}")
        lines.append(f"certificate {certs.cert}")
        lines.append(f"key {certs.key}")
        for k, v in t.items():
            lines.append(f"timeout {k} {v}")
        lines.append(f"max-sessions {max_sessions}")
        if os.geteuid() == 0:
            # popsd refuses to keep root; it drops to this user after bind.
            lines.append(f"user {os.environ.get('POPSD_TEST_USER', 'nobody')}")
        if not any(l.split()[:1] == ["workers"] for l in extra):
            # One process, which tests look at (descriptors, memory,
            # strace, signals); the default, one per CPU, and the limits
            # shared by workers are tested in test_workers.py.
            lines.append("workers 1")
        lines.extend(extra)
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.verbose = verbose

    def argv(self, *args):
        binary = popsd_binary()
        if binary is None:
            raise AssertionError("popsd is not built (run make)")
        wrapper = os.environ.get("POPSD_WRAPPER", "").split()
        return wrapper + [binary] + list(args)

    def start(self, timeout=15):
        args = ["-d", "-f", self.conf] + (["-v"] if self.verbose else [])
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv(*args), stdin=subprocess.DEVNULL,
                                     stdout=self.logf, stderr=subprocess.STDOUT,
                                     cwd=self.dir)
        self.pid = self.proc.pid
        try:
            wait_until(lambda: self.proc.poll() is not None or "popsd ready" in self.log(),
                       timeout, "popsd to log 'popsd ready'")
            if self.proc.poll() is not None:
                raise AssertionError(f"popsd exited with {self.proc.returncode} at start-up")
            for p in (self.port, self.pop3_port):
                if p:
                    wait_until(lambda: listening(p), timeout, f"popsd to listen on {p}")
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- {self.log_path}:\n{self.log()}") from None
        return self

    @staticmethod
    def _accepts(port):
        with socket.socket() as s:
            s.settimeout(2)
            return s.connect_ex(("127.0.0.1", port)) == 0

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        self.expected_exit = True
        self.proc.send_signal(sig)

    def wait(self, timeout):
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout=10):
        """SIGTERM, then SIGKILL after timeout. Returns (exit status, how):
        how is 'term', 'kill', or 'already' (it had exited before)."""
        if self.proc is None:
            return None, "never"
        if self.proc.poll() is not None:
            how = "already"
        else:
            self.expected_exit = True
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
                how = "term"
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                how = "kill"
        self.logf.close()
        self.log()      # kept for the password guard: fixtures may remove it
        return self.proc.returncode, how

    def log(self):
        """The log so far (once its directory is gone, as last read)."""
        try:
            with open(self.log_path, errors="replace") as f:
                self._last_log = f.read()
        except OSError:
            pass
        return self._last_log

    def session_lines(self):
        """Parsed session summary lines: a list of dicts of key=value."""
        out = []
        for line in self.log().splitlines():
            if "session=" in line and "reason=" in line:
                d = {k: v[1:-1] if v.startswith('"') else v
                     for k, v in re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)', line)}
                d["_line"] = line
                out.append(d)
        return out

    def wait_session(self, timeout=10, **match):
        """Wait for a session line whose keys equal `match` (as strings)."""
        def find():
            for d in self.session_lines():
                if all(d.get(k) == str(v) for k, v in match.items()):
                    return d
            return None
        try:
            return wait_until(find, timeout, f"a session line with {match}")
        except Timeout as e:
            raise AssertionError(f"{e}\n--- {self.log_path}:\n{self.log()}") from None

    def rss_kib(self):
        return rss_kib(self.pid)

    def check(self, *extra_args):
        """Run popsd -n -f CONF; return (exit status, combined output)."""
        r = subprocess.run(self.argv("-n", "-f", self.conf, *extra_args),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=30)
        return r.returncode, r.stdout


# --------------------------------------------------------------------------
# Clients and fake backends

class LineReader:
    """Read a subprocess's stdout line by line with a deadline (a thread
    feeds a queue, so a silent client fails the test instead of hanging)."""

    def __init__(self, proc):
        self.proc = proc
        self.lines = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def readline(self, timeout=20):
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no line from the client within the timeout") from None
        assert line is not None, "client closed its output"
        return line


class Pop3Client:
    """A minimal line-oriented POP3 client over TLS (or plain), for tests
    that need to see exact bytes or control the pace."""

    def __init__(self, port, ctx=None, host="127.0.0.1", server_hostname="localhost",
                 timeout=20):
        raw = socket.create_connection((host, port), timeout=timeout)
        self.local_port = raw.getsockname()[1]
        self.sock = ctx.wrap_socket(raw, server_hostname=server_hostname) if ctx else raw
        self.f = self.sock.makefile("rb", buffering=65536)
        self.sent = 0
        self.received = 0

    def readline(self):
        line = self.f.readline(65536)
        self.received += len(line)
        return line

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)
        self.sent += len(data)

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.readline()

    def ok(self, line):
        r = self.cmd(line)
        assert r.startswith(b"+OK"), f"{line!r} → {r!r}"
        return r

    def multiline(self):
        """Read a multi-line body up to the lone '.', un-stuffed, CRLF kept."""
        out = []
        while True:
            line = self.readline()
            if not line:
                raise AssertionError("EOF inside a multi-line response")
            if line == b".\r\n":
                return b"".join(out)
            if line.startswith(b"."):
                line = line[1:]
            out.append(line)

    def login(self, user, password):
        greeting = self.readline()
        assert greeting.startswith(b"+OK"), f"greeting {greeting!r}"
        self.ok(f"USER {user}")
        self.ok(f"PASS {password}")
        return greeting

    def read_to_eof(self, limit=1 << 20):
        """Read until a clean EOF; return the bytes. A TLS connection cut
        without close_notify raises ssl.SSLEOFError."""
        out = b""
        while len(out) < limit:
            chunk = self.f.read1(65536)
            if not chunk:
                return out
            self.received += len(chunk)
            out += chunk
        raise AssertionError("peer did not close")

    def close(self):
        with contextlib.suppress(OSError):
            self.f.close()
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


class SilentBackend:
    """Accepts TCP connections on 127.0.0.1 and never writes a byte."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.accepted = 0
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.sock.settimeout(0.2)
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.conns.append(c)
            self.accepted += 1

    def close(self):
        self.stopping = True
        self.thread.join(5)
        for c in self.conns:
            c.close()
        self.sock.close()


def client_hello():
    """The bytes of a real TLS ClientHello (for half-finished handshakes)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        obj.do_handshake()
    return out.read()


# --------------------------------------------------------------------------
# Session ticket keys shared by several hosts (tls-ticket-key-file)

TICKETKEYS = os.path.join(REPO, "certs", "ticketkeys.sh")


def ticketkeys(*args):
    """Run certs/ticketkeys.sh (new FILE | rotate FILE [KEEP])."""
    subprocess.run(["sh", TICKETKEYS, *args], check=True, timeout=30,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def ticket_key_lines(path):
    """The key lines of a ticket key file, in order."""
    with open(path) as f:
        return [l.strip() for l in f if l.strip() and not l.lstrip().startswith("#")]


def ticket_key_name(line):
    """The 16-byte ticket key name popsd gives libtls for one key line
    (ticketkeys.h: HKDF-SHA512, empty salt, bytes 0-3 of the output, then
    12 zero bytes), computed here independently of popsd."""
    import base64
    import hmac
    prk = hmac.new(b"\0" * 64, base64.b64decode(line, validate=True), hashlib.sha512).digest()
    okm = hmac.new(prk, b"popsd tls-ticket-key-file v1\x01", hashlib.sha512).digest()
    return okm[:4] + bytes(12)


def s_client_session(port, ca, sess_in=None, sess_out=None, args=(), timeout=30):
    """One pop3s connection by openssl s_client that sends QUIT and waits
    for popsd to close (so a TLS 1.3 ticket, sent after the handshake,
    is received), reusing the session in sess_in and saving it to
    sess_out. Returns 'New' or 'Reused'."""
    cmd = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", ca,
           "-servername", "localhost", "-ign_eof", *args]
    if sess_in:
        cmd += ["-sess_in", sess_in]
    if sess_out:
        cmd += ["-sess_out", sess_out]
    r = subprocess.run(cmd, input=b"QUIT\r\n", stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=timeout)
    out = r.stdout.decode(errors="replace")
    m = re.search(r"^(New|Reused), TLSv", out, re.M)
    assert r.returncode == 0 and m, f"s_client failed:\n{out}"
    return m.group(1)


def session_ticket_name(sess):
    """The key name (first 16 bytes) of the ticket in a session saved by
    s_client -sess_out, or None if it holds no ticket (or there is no
    file: s_client saves none when it resumed without a new ticket)."""
    if not os.path.exists(sess):
        return None
    out = subprocess.run(["openssl", "sess_id", "-in", sess, "-noout", "-text"],
                         check=True, stdout=subprocess.PIPE, text=True, timeout=30).stdout
    m = re.search(r"TLS session ticket:\n\s*0000 - ((?:[0-9a-f]{2}[ -]){16})", out)
    return bytes.fromhex(m.group(1).replace("-", " ")) if m else None
