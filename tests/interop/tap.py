#!/usr/bin/python3
"""tap — see what popsd sends to a backend, to prove that a refused
plaintext login never reached it.

Two forms, both record every byte popsd sends toward the backend *before*
passing it on, so once popsd has logged the end of a session everything it
sent the backend is on record:

* ``TcpTap(host, port)``: an in-process TCP relay on 127.0.0.1 in front of
  a TCP backend (PROXY protocol headers pass through untouched). One record
  per connection.
* ``tap.py DIR PROGRAM [ARGS...]`` as the program of popsd's
  ``backend exec``: it starts PROGRAM on its own socketpair, exactly as
  popsd would (stdin and stdout are the socket, the environment passes
  through, stderr is popsd's), relays between popsd and PROGRAM, and writes
  what popsd sent into a new file DIR/tap-PID.log (one file per
  connection).

``suspicious(records)`` returns the command lines that carry credentials.

``tap.py --stdin-kind`` is a probe for `backend exec` (see stdin_kind_main).
"""

import os
import re
import select
import socket
import sys
import threading

CREDENTIAL_LINE = re.compile(rb"^\s*(USER|PASS|APOP|AUTH)\b", re.I)


def suspicious(records):
    """The lines of `records` (a list of bytes, one per connection) that
    would hand credentials to the backend."""
    out = []
    for rec in records:
        for line in rec.split(b"\n"):
            if CREDENTIAL_LINE.match(line):
                out.append(line.rstrip(b"\r"))
    return out


class TcpTap:
    """127.0.0.1:port → target, recording client→target bytes."""

    def __init__(self, host, port):
        self.target = (host, port)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.lock = threading.Lock()
        self.records = []       # one bytearray per connection
        self.active = 0
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        self.sock.settimeout(0.2)
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            rec = bytearray()
            with self.lock:
                self.records.append(rec)
                self.active += 1
            threading.Thread(target=self._serve, args=(conn, rec), daemon=True).start()

    def _serve(self, conn, rec):
        try:
            up = socket.create_connection(self.target, timeout=10)
        except OSError:
            conn.close()
            with self.lock:
                self.active -= 1
            return
        up.settimeout(None)

        def pump(src, dst, record):
            try:
                while True:
                    data = src.recv(65536)
                    if not data:
                        break
                    if record is not None:
                        with self.lock:
                            record += data      # on record before it is sent
                    dst.sendall(data)
            except OSError:
                pass
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        t = threading.Thread(target=pump, args=(up, conn, None), daemon=True)
        t.start()
        pump(conn, up, rec)
        t.join(60)
        conn.close()
        up.close()
        with self.lock:
            self.active -= 1

    def mark(self):
        with self.lock:
            return len(self.records)

    def since(self, mark):
        with self.lock:
            return [bytes(r) for r in self.records[mark:]]

    def idle(self):
        with self.lock:
            return self.active == 0

    def close(self):
        self.stopping = True
        self.thread.join(5)
        self.sock.close()


class ExecTapDir:
    """The runner's side of `tap.py DIR PROGRAM...`: the records are the
    files DIR/tap-*.log."""

    def __init__(self, directory):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        os.chmod(directory, 0o1777)     # popsd's children run unprivileged

    def _files(self):
        return sorted(f for f in os.listdir(self.dir) if f.startswith("tap-"))

    def mark(self):
        return set(self._files())

    def since(self, mark):
        out = []
        for f in self._files():
            if f not in mark:
                with open(os.path.join(self.dir, f), "rb") as fh:
                    out.append(fh.read())
        return out

    def idle(self):
        return True     # records are written before bytes are passed on


def pair_like_stdin():
    """A connected pair of sockets of the kind popsd gave us on stdin: a
    loopback TCP connection if stdin is a TCP socket (some daemons, e.g.
    solid-pop3d, insist on that), else a socketpair."""
    try:
        fam = socket.socket(fileno=os.dup(0)).family
    except OSError:
        fam = None
    if fam not in (socket.AF_INET, socket.AF_INET6):
        return socket.socketpair()
    with socket.socket() as lst:
        lst.bind(("127.0.0.1", 0))
        lst.listen(1)
        ours = socket.create_connection(lst.getsockname())
        theirs, _ = lst.accept()
    return ours, theirs


def exec_main(argv):
    """tap.py DIR PROGRAM [ARGS...] (see the module docstring)."""
    if len(argv) < 3:
        print("usage: tap.py DIR PROGRAM [ARGS...]", file=sys.stderr)
        return 2
    directory, prog = argv[1], argv[2:]
    ours, theirs = pair_like_stdin()
    pid = os.fork()
    if pid == 0:
        ours.close()
        os.dup2(theirs.fileno(), 0)
        os.dup2(theirs.fileno(), 1)
        theirs.close()
        try:
            os.execv(prog[0], prog)
        finally:
            os._exit(127)
    theirs.close()
    log = open(os.path.join(directory, f"tap-{os.getpid()}.log"), "ab", buffering=0)
    # popsd's end: fd 0 and fd 1 are the same socket.
    try:
        peer = socket.socket(fileno=os.dup(0))
    except OSError:
        peer = None
    from_popsd_open, from_daemon_open = True, True
    while from_popsd_open or from_daemon_open:
        fds = ([0] if from_popsd_open else []) + ([ours] if from_daemon_open else [])
        ready, _, _ = select.select(fds, [], [])
        if 0 in ready:
            data = os.read(0, 65536)
            if data:
                log.write(data)             # on record before it is sent
                try:
                    ours.sendall(data)
                except OSError:
                    from_popsd_open = False
            else:
                from_popsd_open = False
                try:
                    ours.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
        if ours in ready:
            try:
                data = ours.recv(65536)
            except OSError:
                data = b""
            if data:
                try:
                    os.write(1, data) if peer is None else peer.sendall(data)
                except OSError:
                    from_daemon_open = False
                    from_popsd_open = False
            else:
                from_daemon_open = False
                if peer is not None:
                    try:
                        peer.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                else:
                    os.close(1)
                # The daemon is gone: nothing more can reach it.
                from_popsd_open = False
    log.close()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) if status else 0


def stdin_kind_main():
    """tap.py --stdin-kind: a one-line POP3 "server" for popsd's `backend
    exec` that greets with the address family of its stdin socket and of
    its peer (solid-pop3d, for one, only stays in inetd mode when its stdin
    is an AF_INET socket), then waits for the client to go."""
    try:
        s = socket.socket(fileno=os.dup(0))
        fam = s.family.name
        try:
            peer = s.getpeername()
        except OSError:
            peer = "?"
    except OSError as e:
        fam, peer = f"not-a-socket({e.strerror})", "-"
    env = " ".join(f"{k}={os.environ.get(k, '-')}" for k in
                   ("PROTO", "TCPREMOTEIP", "TCPREMOTEPORT", "TCPLOCALIP", "TCPLOCALPORT"))
    os.write(1, f"+OK stdin={fam} peer={peer} uid={os.getuid()} {env}\r\n".encode())
    while os.read(0, 4096):
        pass
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--stdin-kind"]:
        sys.exit(stdin_kind_main())
    sys.exit(exec_main(sys.argv))
