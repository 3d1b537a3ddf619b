"""clients — the POP3 clients of the interoperability matrix.

Each client is driven the way a user would configure it for one mode:

  pop3s   implicit TLS on popsd's pop3s port, the CA file trusted;
  stls    popsd's pop3 port, the client told to upgrade with STLS (and to
          fail if it cannot);
  plain   popsd's pop3 port, the client told to log in without TLS: popsd
          (require-tls yes) must refuse it.

and logs in, lists, retrieves the account's message (clients that only
fetch whole mailboxes retrieve all of them), and quits. run() returns an
Outcome; the checks on it are the runner's.

A combination a client cannot do at all returns a reason from
not_applicable() instead of running.
"""

import os
import poplib
import re
import shutil
import ssl
import subprocess

HOST = "127.0.0.1"
TIMEOUT = 60        # per client run, seconds
NOBODY = 65534


class Outcome:
    def __init__(self):
        self.ok = False             # the client reported success
        self.error = ""             # its own words when it did not
        self.retrieved = b""        # what it retrieved (message text)
        self.whole_mailbox = False  # retrieved is every message, not one
        self.transcript = ""        # protocol trace / output, for diagnosis
        self.refused_seen = False   # it saw "-ERR [AUTH]" from popsd
        self.note = ""


class Cell:
    def __init__(self, mode, port, ca, account, directory):
        self.mode, self.port, self.ca = mode, port, ca
        self.account, self.dir = account, directory


def _run(argv, cell, input_=None, env=None, user=None):
    """Run a client command; returns CompletedProcess (text, errors replaced)."""
    if user is not None and os.geteuid() == 0:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] + argv
    return subprocess.run(argv, input=input_, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=env, cwd=cell.dir, timeout=TIMEOUT)


def _text(b):
    return b.decode("utf-8", "replace") if isinstance(b, bytes) else (b or "")


def _last_line(text):
    lines = [l for l in text.strip().splitlines() if l.strip()]
    return lines[-1].strip()[:300] if lines else ""


LOCAL_USER = "nobody" if os.geteuid() == 0 else os.environ.get("USER", "nobody")


def _give_to_nobody(*paths):
    """Clients that run as nobody (when we are root) must own their files."""
    if os.geteuid() == 0:
        for p in paths:
            os.chown(p, NOBODY, NOBODY)


def _ensure(name):
    if shutil.which(name) is None:
        return f"{name} is not installed"
    return None


# --------------------------------------------------------------------------

class Client:
    name = "?"
    package = ""        # the Debian package, for the versions line
    how = {}            # mode → how the client is configured (for the notes)

    def missing(self):
        return None

    def not_applicable(self, mode):
        return None

    def run(self, cell):
        raise NotImplementedError


class OpenSSL(Client):
    """openssl s_client -quiet, a scripted pipelined session."""
    name = "openssl"
    package = "openssl"
    how = {"pop3s": "s_client -quiet -connect -CAfile -verify_ip; USER, PASS, LIST, RETR, "
                    "QUIT pipelined in one write",
           "stls": "the same with -starttls pop3"}

    def missing(self):
        return _ensure("openssl")

    def not_applicable(self, mode):
        if mode == "plain":
            return ("openssl s_client always speaks TLS (pop3s, or -starttls pop3): "
                    "it has no plaintext login to refuse")
        return None

    def run(self, cell):
        a = cell.account
        script = (f"USER {a.user}\r\nPASS {a.password}\r\nLIST\r\n"
                  f"RETR {a.msgno}\r\nQUIT\r\n").encode()
        argv = ["openssl", "s_client", "-quiet", "-connect", f"{HOST}:{cell.port}",
                "-CAfile", cell.ca, "-verify_return_error", "-verify_ip", HOST]
        if cell.mode == "stls":
            argv += ["-starttls", "pop3"]
        r = _run(argv, cell, input_=script)
        o = Outcome()
        o.transcript = _text(r.stdout) + "\n--- stderr:\n" + _text(r.stderr)
        try:
            o.retrieved = parse_transcript(r.stdout, greeting=cell.mode == "pop3s")
            o.ok = r.returncode == 0
            if not o.ok:
                o.error = f"exit {r.returncode}: {_last_line(_text(r.stderr))}"
        except ValueError as e:
            o.error = str(e)
        return o


def parse_transcript(out, greeting):
    """Responses of a pipelined USER, PASS, LIST, RETR, QUIT: returns the
    RETR body un-dot-stuffed, or raises ValueError saying what went wrong."""
    lines = out.split(b"\n")
    i = 0

    def next_line(what):
        nonlocal i
        if i >= len(lines) or (i == len(lines) - 1 and not lines[i]):
            raise ValueError(f"connection ended before the reply to {what}")
        line = lines[i] + b"\n"
        i += 1
        return line

    if greeting:
        g = next_line("the greeting")
        if not g.startswith(b"+OK"):
            raise ValueError(f"greeting: {g.strip()!r}")
    body = b""
    for cmd, multi in (("USER", False), ("PASS", False), ("LIST", True),
                       ("RETR", True), ("QUIT", False)):
        r = next_line(cmd)
        if not r.startswith(b"+OK"):
            raise ValueError(f"{cmd} → {r.strip().decode('utf-8', 'replace')}")
        if multi:
            out_lines = []
            while True:
                l = next_line(f"the end of the {cmd} listing")
                if l == b".\r\n":
                    break
                out_lines.append(l[1:] if l.startswith(b".") else l)
            if cmd == "RETR":
                body = b"".join(out_lines)
    return body


class Curl(Client):
    """curl: lists (URL /) and retrieves (URL /N) on one connection."""
    name = "curl"
    package = "curl"
    how = {"pop3s": "pop3s://HOST:PORT/ and /N on one connection, --cacert",
           "stls": "pop3://... --ssl-reqd (STLS, fail without it)",
           "plain": "pop3://... without --ssl-reqd (curl uses STLS only when asked); it "
                    "logs in with SASL if CAPA offers it, else APOP if the greeting has a "
                    "timestamp, else USER if CAPA lists it"}

    def missing(self):
        return _ensure("curl")

    def run(self, cell):
        a = cell.account
        scheme = "pop3s" if cell.mode == "pop3s" else "pop3"
        base = f"{scheme}://{HOST}:{cell.port}"
        argv = ["curl", "-sS", "-v", "--cacert", cell.ca, "--max-time", str(TIMEOUT - 5),
                "-u", f"{a.user}:{a.apop_password}"]
        if cell.mode == "stls":
            argv.append("--ssl-reqd")
        listing = os.path.join(cell.dir, "list.txt")
        msg = os.path.join(cell.dir, "msg.txt")
        argv += [f"{base}/", "-o", listing, f"{base}/{a.msgno}", "-o", msg]
        r = _run(argv, cell)
        o = Outcome()
        o.transcript = _text(r.stderr)
        o.refused_seen = "-ERR [AUTH]" in o.transcript
        o.ok = r.returncode == 0
        if o.ok:
            with open(listing, "rb") as f:
                if not re.search(rb"^%d \d+" % a.msgno, f.read(), re.M):
                    o.ok, o.error = False, "the listing (URL /) lacks the message"
            with open(msg, "rb") as f:
                o.retrieved = f.read()
        else:
            o.error = f"exit {r.returncode}: {_last_line(o.transcript)}"
            if "No known authentication mechanisms" in o.transcript:
                o.note = ("curl finds no login method it may use: popsd's pre-TLS CAPA lists "
                          "neither USER nor SASL and the greeting has no APOP timestamp")
        return o


class Poplib(Client):
    """Python's poplib (Debian /usr/bin/python3), in this process."""
    name = "poplib"
    package = "python3"
    how = {"pop3s": "POP3_SSL(context=CA); user, pass_, list, retr, quit",
           "stls": "POP3(); stls(context)",
           "plain": "POP3(); user() straight away"}

    def run(self, cell):
        a = cell.account
        o = Outcome()
        trace = []
        ctx = ssl.create_default_context(cafile=cell.ca)
        c = None
        try:
            if cell.mode == "pop3s":
                c = poplib.POP3_SSL(HOST, cell.port, context=ctx, timeout=TIMEOUT)
            else:
                c = poplib.POP3(HOST, cell.port, timeout=TIMEOUT)
            trace.append(c.getwelcome())
            if cell.mode == "stls":
                trace.append(c.stls(ctx))
            trace.append(c.user(a.user))
            trace.append(c.pass_(a.password))
            resp, listing, _ = c.list()
            trace.append(resp)
            if not any(l.split()[0] == str(a.msgno).encode() for l in listing):
                raise poplib.error_proto(f"LIST lacks message {a.msgno}")
            resp, lines, _ = c.retr(a.msgno)
            trace.append(resp)
            o.retrieved = b"".join(l + b"\r\n" for l in lines)
            trace.append(c.quit())
            c = None
            o.ok = True
        except (poplib.error_proto, OSError, ssl.SSLError) as e:
            msg = e.args[0] if e.args else repr(e)
            msg = _text(msg) if isinstance(msg, bytes) else str(msg)
            trace.append(f"error: {msg}")
            o.error = msg
            o.refused_seen = "-ERR [AUTH]" in msg
        finally:
            if c is not None:
                try:
                    c.close()
                except OSError:
                    pass
        o.transcript = "\n".join(_text(t) if isinstance(t, bytes) else str(t) for t in trace)
        return o


class Mpop(Client):
    """mpop: all messages into an mbox, keep on, fresh UIDL file."""
    name = "mpop"
    package = "mpop"
    how = {"pop3s": "tls on, tls_starttls off, tls_trust_file, auth auto, keep on",
           "stls": "tls on, tls_starttls on",
           "plain": "tls off, auth user (with auth auto mpop declines by itself: popsd's "
                    "pre-TLS CAPA offers neither USER nor SASL)"}

    def missing(self):
        return _ensure("mpop")

    def run(self, cell):
        a = cell.account
        tls = {"pop3s": "on\ntls_starttls off", "stls": "on\ntls_starttls on",
               "plain": "off"}[cell.mode]
        rc = os.path.join(cell.dir, "mpoprc")
        box = os.path.join(cell.dir, "mbox")
        with open(box, "w"):
            pass
        with open(rc, "w") as f:
            f.write(f"""defaults
tls {tls}
tls_trust_file {cell.ca}
keep on
only_new off
uidls_file {cell.dir}/uidls
delivery mbox {box}
timeout 30

account default
host {HOST}
port {cell.port}
user {a.user}
password {a.password if cell.mode == "plain" else a.apop_password}
""")
            if cell.mode == "plain":
                # Before TLS popsd's CAPA offers neither USER nor SASL, so
                # "auth auto" would not try at all: ask for USER/PASS.
                f.write("auth user\n")
        os.chmod(rc, 0o600)
        r = _run(["mpop", "-C", rc, "-d", "--all-accounts"], cell,
                 env=dict(os.environ, HOME=cell.dir))
        o = Outcome()
        o.transcript = _text(r.stdout) + _text(r.stderr)
        o.refused_seen = "-ERR [AUTH]" in o.transcript
        o.ok = r.returncode == 0
        if not o.ok:
            said = [re.sub(r" \(account .*\)$", "", l) for l in _text(r.stderr).splitlines()
                    if l.startswith("mpop:")]
            o.error = f"exit {r.returncode}: " + "; ".join(said)[:300]
        with open(box, "rb") as f:
            o.retrieved = f.read()
        o.whole_mailbox = True
        return o


class Fetchmail(Client):
    """fetchmail: every message through an MDA into a file, --keep."""
    name = "fetchmail"
    package = "fetchmail"
    how = {"pop3s": "poll localhost proto POP3, ssl sslcertck sslcertfile, keep fetchall, "
                    "run as nobody",
           "stls": "sslproto 'tls1.2+' (STLS mandatory), sslcertck",
           "plain": "sslproto '' (by default fetchmail upgrades with STLS whenever it is "
                    "offered: this forces plaintext)"}

    def missing(self):
        return _ensure("fetchmail")

    def run(self, cell):
        a = cell.account
        ssl_opts = {
            "pop3s": f"ssl sslcertck sslcertfile {cell.ca}",
            # An explicit sslproto makes STLS mandatory.
            "stls": f"sslproto 'tls1.2+' sslcertck sslcertfile {cell.ca}",
            # ...and an empty one forbids it.
            "plain": "sslproto ''",
        }[cell.mode]
        out = os.path.join(cell.dir, "out")
        with open(out, "w"):
            pass
        rc = os.path.join(cell.dir, "fetchmailrc")
        # "localhost": fetchmail matches the certificate's DNS names only,
        # not its IP address entries.
        with open(rc, "w") as f:
            f.write(f"""set no syslog
poll localhost with proto POP3 port {cell.port} timeout 30
  user "{a.user}" there with password "{a.password}" is "{LOCAL_USER}" here
  {ssl_opts}
  keep fetchall
  mda "/bin/sh -c 'cat >> {out}'"
""")
        os.chmod(rc, 0o600)
        _give_to_nobody(cell.dir, out, rc)
        # As root fetchmail would share one pid file, /var/run/fetchmail.pid,
        # between the cells running in parallel: run it as nobody.
        env = dict(os.environ, HOME=cell.dir, FETCHMAILHOME=cell.dir)
        r = _run(["fetchmail", "-f", rc, "-N", "--nosyslog", "-v", "-i",
                  os.path.join(cell.dir, "fetchids")], cell, env=env, user=NOBODY)
        o = Outcome()
        o.transcript = _text(r.stdout) + _text(r.stderr)
        o.refused_seen = "-ERR [AUTH]" in o.transcript or "[AUTH] TLS required" in o.transcript
        o.ok = r.returncode == 0
        if not o.ok:
            last = [l for l in o.transcript.splitlines() if "Running as root" not in l]
            o.error = f"exit {r.returncode}: {_last_line(chr(10).join(last))}"
        with open(out, "rb") as f:
            o.retrieved = f.read()
        o.whole_mailbox = True
        return o


class Getmail(Client):
    """getmail6: every message into an mboxrd file, delete = false. It
    refuses to deliver as root, so it runs as nobody."""
    name = "getmail6"
    package = "getmail6"
    how = {"pop3s": "SimplePOP3SSLRetriever, ca_certs, read_all, delete = false, run as nobody",
           "plain": "SimplePOP3Retriever"}

    def missing(self):
        return _ensure("getmail")

    def not_applicable(self, mode):
        if mode == "stls":
            return ("getmail6 has no STLS for POP3: only SimplePOP3SSLRetriever "
                    "(implicit TLS) or plaintext SimplePOP3Retriever")
        return None

    def run(self, cell):
        """getmail6 6.18 has a race of its own: its SIGCHLD handler can
        signal the delivery child's exit before getmail waits for it, and
        getmail then gives up with "waiting child pid N timed out" although
        the message was retrieved. That (and only that) is retried once;
        the mailbox is written afresh by the retry."""
        o = self._run_once(cell)
        if not o.ok and "waiting child pid" in (o.error or ""):
            o = self._run_once(cell)
        return o

    def _run_once(self, cell):
        a = cell.account
        kind = "SimplePOP3SSLRetriever" if cell.mode == "pop3s" else "SimplePOP3Retriever"
        ca = f"ca_certs = {cell.ca}\n" if cell.mode == "pop3s" else ""
        box = os.path.join(cell.dir, "mbox")
        rc = os.path.join(cell.dir, "getmailrc")
        with open(box, "w"):
            pass
        with open(rc, "w") as f:
            f.write(f"""[retriever]
type = {kind}
server = {HOST}
port = {cell.port}
username = {a.user}
password = {a.password}
timeout = 30
{ca}
[destination]
type = Mboxrd
path = {box}

[options]
read_all = true
delete = false
verbose = 2
""")
        _give_to_nobody(cell.dir, box, rc)
        r = _run(["getmail", "--getmaildir", cell.dir, "--rcfile", rc], cell,
                 env=dict(os.environ, HOME=cell.dir), user=NOBODY)
        o = Outcome()
        o.transcript = _text(r.stdout) + _text(r.stderr)
        o.refused_seen = "-ERR [AUTH]" in o.transcript
        o.ok = r.returncode == 0 and "error" not in _text(r.stderr).lower()
        if not o.ok:
            o.error = f"exit {r.returncode}: {_last_line(_text(r.stderr) or _text(r.stdout))}"
        with open(box, "rb") as f:
            o.retrieved = f.read()
        o.whole_mailbox = True
        return o


CLIENTS = [OpenSSL(), Curl(), Poplib(), Mpop(), Fetchmail(), Getmail()]
