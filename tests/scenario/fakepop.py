"""fakepop — scripted POP3 backends for faults a real server will not
produce on demand, and a light greeter for load tests.

ScriptedBackend runs one Python function per accepted connection, in a
thread, and records what the peer (popsd) did to the connection, so a test
can assert that popsd let go of its backend side. Greeter is a separate
process (`python3 fakepop.py greeter`) that holds tens of thousands of
connections on one thread with selectors: it greets, answers QUIT with
"+OK" and a close, anything else with "+OK".

Everything listens on 127.0.0.1 only and is stopped by the test that made
it; nothing sleeps to synchronise (waits poll with deadlines)."""

import contextlib
import os
import resource
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

GREETING = b"+OK fakepop ready\r\n"


def rst_close(sock, *files):
    """Close with a TCP reset (SO_LINGER 0) instead of a FIN. The socket's
    makefile() objects must be passed too: while one is open, close()
    leaves the descriptor open."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    for f in files:
        with contextlib.suppress(OSError):
            f.close()
    sock.close()


class Conn:
    """One accepted connection as a handler sees it."""

    def __init__(self, sock, n):
        self.sock = sock
        self.n = n
        self.f = sock.makefile("rb")
        self.peer_gone = None       # "eof" or "reset" once popsd let go
        self.peer_gone_at = None
        self.lines = []             # what popsd sent, line by line

    def send(self, data):
        self.sock.sendall(data)

    def close(self, rst=False):
        """End the connection: a FIN, or a reset with rst=True."""
        if rst:
            rst_close(self.sock, self.f)
        else:
            self.f.close()
            self.sock.close()

    def readline(self):
        """A line from popsd, or b"" at EOF; records EOF/reset."""
        try:
            line = self.f.readline(65536)
        except (ConnectionResetError, BrokenPipeError):
            self._gone("reset")
            return b""
        except OSError:
            self._gone("reset")
            return b""
        if not line:
            self._gone("eof")
        else:
            self.lines.append(line)
        return line

    def _gone(self, how):
        if self.peer_gone is None:
            self.peer_gone = how
            self.peer_gone_at = time.monotonic()

    def wait_peer_gone(self, timeout=30):
        """Block until popsd closes its side (EOF or reset), reading and
        discarding whatever it still sends; return "eof" or "reset". Gives up
        after timeout seconds and returns None."""
        self.sock.settimeout(timeout)
        try:
            while self.readline():
                pass
        except socket.timeout:
            return None
        return self.peer_gone

    def stream(self, data, chunk=65536):
        """Send data; stop early (recording it) if popsd goes away."""
        try:
            for i in range(0, len(data), chunk):
                self.sock.sendall(data[i:i + chunk])
        except (BrokenPipeError, ConnectionResetError):
            self._gone("reset")
            return False
        except socket.timeout:
            return False
        return True


class ScriptedBackend:
    """A TCP server on 127.0.0.1 that runs handler(conn) for each accepted
    connection, in its own thread. conns lists the Conn objects in accept
    order; a handler's exception is kept in errors (a test can assert none)."""

    def __init__(self, handler, timeout=30):
        self.handler = handler
        self.timeout = timeout
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.conns = []
        self.errors = []
        self.threads = []
        self.stopping = False
        self.t = threading.Thread(target=self._accept, daemon=True)
        self.t.start()

    def _accept(self):
        self.sock.settimeout(0.1)
        while not self.stopping:
            try:
                s, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            s.settimeout(self.timeout)
            c = Conn(s, len(self.conns))
            self.conns.append(c)
            th = threading.Thread(target=self._run, args=(c,), daemon=True)
            self.threads.append(th)
            th.start()

    def _run(self, c):
        try:
            self.handler(c)
        except (OSError, ValueError) as e:   # the peer going away mid-script
            c._gone("reset")
            self.errors.append(f"conn {c.n}: {e!r}")
        except Exception as e:              # noqa: BLE001 — a test bug
            self.errors.append(f"conn {c.n}: {e!r}")

    def wait_conns(self, n, timeout=10):
        deadline = time.monotonic() + timeout
        while len(self.conns) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"backend: {len(self.conns)} connections, wanted {n}")
            time.sleep(0.02)        # poll interval, not synchronisation
        return self.conns[n - 1]

    def close(self):
        self.stopping = True
        self.t.join(5)
        self.sock.close()
        for c in self.conns:
            with contextlib.suppress(OSError):
                c.close()
        for th in self.threads:
            th.join(5)


def pop3_until(conn, stop, answers=None):
    """Greet, then answer commands like a tiny POP3 server until a command
    whose verb is in `stop` arrives (returned, upper-cased verb and line),
    or EOF (returns (None, b"")). USER/PASS/NOOP/STAT get "+OK", CAPA gets
    "-ERR" (a legacy server), QUIT "+OK bye" and a close."""
    conn.send(GREETING)
    answers = answers or {}
    while True:
        line = conn.readline()
        if not line:
            return None, b""
        verb = line.split(b" ", 1)[0].strip().upper().decode(errors="replace")
        if verb in stop:
            return verb, line
        if verb in answers:
            conn.send(answers[verb])
        elif verb == "CAPA":
            conn.send(b"-ERR no CAPA here\r\n")
        elif verb == "STAT":
            conn.send(b"+OK 1 1048576\r\n")
        elif verb == "QUIT":
            conn.send(b"+OK bye\r\n")
            conn.sock.shutdown(socket.SHUT_WR)
            conn.wait_peer_gone(10)
            return "QUIT", line
        else:
            conn.send(b"+OK\r\n")


def message_bytes(size):
    """A multi-line RETR body of about `size` bytes (no terminator)."""
    line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n"
    return line * (size // len(line) + 1)


# --------------------------------------------------------------------------
# Greeter: a separate process holding many connections.

class Greeter:
    """`python3 fakepop.py greeter` on a free port: greets every connection,
    answers QUIT with "+OK bye" and a close, other lines with "+OK". Runs in
    its own process so that the test's client loop and this server do not
    share one interpreter lock. stats() asks it for (open, accepted)."""

    def __init__(self, nofile=65536):
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "greeter",
                                      str(nofile)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        line = self.proc.stdout.readline()
        if not line.startswith(b"port "):
            raise AssertionError(f"greeter did not start: {line!r}")
        self.port = int(line.split()[1])
        self.address = f"127.0.0.1:{self.port}"

    def stats(self):
        self.proc.stdin.write(b"stats\n")
        self.proc.stdin.flush()
        open_, accepted = self.proc.stdout.readline().split()
        return int(open_), int(accepted)

    def close(self):
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def greeter_main(nofile):
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4096)
    lsock.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(lsock, selectors.EVENT_READ, "listen")
    sel.register(sys.stdin.fileno(), selectors.EVENT_READ, "control")
    sys.stdout.write(f"port {lsock.getsockname()[1]}\n")
    sys.stdout.flush()
    inbuf = {}
    accepted = 0

    def drop(s):
        sel.unregister(s)
        inbuf.pop(s, None)
        s.close()

    while True:
        for key, _ in sel.select():
            if key.data == "listen":
                for _ in range(256):
                    try:
                        s, _ = lsock.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:     # EMFILE: the test sized us wrong
                        break
                    accepted += 1
                    s.setblocking(False)
                    try:
                        s.send(GREETING)
                    except OSError:
                        s.close()
                        continue
                    inbuf[s] = b""
                    sel.register(s, selectors.EVENT_READ, "conn")
            elif key.data == "control":
                cmd = sys.stdin.readline()
                if not cmd:
                    return
                sys.stdout.write(f"{len(inbuf)} {accepted}\n")
                sys.stdout.flush()
            else:
                s = key.fileobj
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    drop(s)
                    continue
                buf = inbuf[s] + data
                close = False
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip().upper() == b"QUIT":
                        with contextlib.suppress(OSError):
                            s.send(b"+OK bye\r\n")
                        close = True
                        break
                    with contextlib.suppress(OSError):
                        s.send(b"+OK\r\n")
                if close:
                    drop(s)
                else:
                    inbuf[s] = buf[-1024:]


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "greeter":
        greeter_main(int(sys.argv[2]) if len(sys.argv) > 2 else 65536)
    else:
        sys.exit("usage: fakepop.py greeter [NOFILE]")
