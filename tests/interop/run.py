#!/usr/bin/python3
"""run.py — popsd's interoperability matrix (`make interop`).

Drives every combination of backend × client × mode through popsd and
prints one table (backend × mode → one column per client), with a reason
for every cell that is not a pass:

  pass   the client logged in, listed, retrieved the message (its content
         checked line by line against the stored message: the one with
         dot-stuffed lines) and quit, and popsd's session line says
         login=yes over TLS (pop3s, or STLS); with PROXY v2 Dovecot's login
         line also carries the client's own address and port (and, pop3s,
         "secured" from the SSL TLV). Plain mode: the client's plaintext
         login was refused by popsd (auth_refused=yes; the client shows
         -ERR [AUTH]) and the tap in front of the backend (tap.py) saw no
         USER/PASS/APOP/AUTH line.
  FAIL   anything else, with why; logs in build/interop-logs/CELL.txt.
  n/a    the client cannot do this mode at all, or (plain mode) will not
         send credentials without TLS by itself (reason given).
  skip   the backend cannot run here or needs a popsd feature that is not
         implemented yet (reason given).

Writes build/interop.txt (the table), build/interop.md (the same for the
README) and build/interop.json. Exit status 1 if any cell failed or a
backend did not stop cleanly.

Backends run in parallel (--jobs); the cells of one backend run one after
another (they share its mailbox, its popsd and its logs, which is what lets
every check attribute log lines to a cell).

Usage: run.py [--jobs N] [--backend NAME]... [--client NAME]... [--mode M]...
              [--out DIR] [--keep]
"""

import argparse
import concurrent.futures
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import backends as B  # noqa: E402
import clients as C  # noqa: E402
import tap as T  # noqa: E402

H = B.H
MODES = ("pop3s", "stls", "plain")
MODE_TITLES = {"pop3s": "pop3s", "stls": "pop3+STLS", "plain": "plain refused"}
LONG_MODE = {"pop3s": "POP3S: implicit TLS on popsd's pop3s port",
             "stls": "POP3 + STLS on popsd's pop3 port",
             "plain": "POP3 without TLS on popsd's pop3 port (require-tls yes): "
                      "the login must be refused"}

print_lock = threading.Lock()


def say(*a):
    with print_lock:
        print(*a, flush=True)


class Result:
    def __init__(self, status, reason="", seconds=0.0, log=""):
        self.status, self.reason, self.seconds, self.log = status, reason, seconds, log


# --------------------------------------------------------------------------
# Checks

def content_problem(retrieved, message):
    """None if `retrieved` holds `message` (every header line, and the body
    as one block), else what is missing. Line ends are normalised; clients
    may add headers of their own (Received:, ...)."""
    text = retrieved.replace(b"\r\n", b"\n")
    head, _, body = message.partition(b"\n\n")
    have = set(text.split(b"\n"))
    for h in head.split(b"\n"):
        if h not in have:
            return f"header line {h.decode(errors='replace')!r} missing from what was retrieved"
    if body not in text:
        got = text.partition(b"\n\n")[2]
        for i, (x, y) in enumerate(zip(body.split(b"\n"), got.split(b"\n"))):
            if x != y:
                return (f"body differs at line {i + 1}: expected {x[:80]!r}, got {y[:80]!r}")
        return f"body not found ({len(text)} bytes retrieved)"
    return None


def popsd_mark(p):
    try:
        return os.path.getsize(p.log_path)
    except OSError:
        return 0


def new_sessions(p, mark):
    with open(p.log_path, "rb") as f:
        f.seek(mark)
        text = f.read().decode(errors="replace")
    out = []
    for line in text.splitlines():
        if "session=" in line and "reason=" in line:
            d = {k: v[1:-1] if v.startswith('"') else v
                 for k, v in re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)', line)}
            d["_line"] = line
            out.append(d)
    return out


def settle(p, mark, tap, tap_mark, timeout=15):
    """Wait until popsd has closed every client connection of the cell and
    logged at least one session line, and the tap is idle; return the new
    session lines."""
    ports = [x for x in (p.port, p.pop3_port) if x]

    def done():
        return (new_sessions(p, mark) and B.established(ports) == 0
                and (tap is None or tap.idle()))
    try:
        H.wait_until(done, timeout, "popsd to log the cell's sessions")
    except AssertionError:
        pass
    return new_sessions(p, mark)


def judge(backend, client, mode, out, sessions, reached, extra_mark):
    """(status, reason) for a cell that ran."""
    if mode == "plain":
        logged_in = [s for s in sessions if s.get("login") == "yes"]
        if out.ok or logged_in:
            return "FAIL", "plaintext login went through popsd (require-tls yes)"
        if reached:
            shown = b", ".join(r[:40] for r in reached[:3]).decode(errors="replace")
            return "FAIL", f"credentials reached the backend: {shown}"
        if any(s.get("auth_refused") == "yes" for s in sessions):
            return "pass", ""   # (out.refused_seen: the client showed -ERR [AUTH])
        if not sessions:
            return "FAIL", f"no popsd session logged; client: {out.error or 'no error'}"
        broken = [s for s in sessions if s.get("to_client") == "0"]
        if broken or "[SYS/TEMP]" in out.transcript:
            s = (broken or sessions)[0]
            return "FAIL", (f"the session failed before any login (popsd: reason={s.get('reason')}"
                            + (f", {s['detail']}" if s.get("detail") else "") + ")")
        # It got popsd's greeting (and CAPA) and chose not to log in.
        return ("n/a", f"{client.name} would not send credentials without TLS: "
                f"{out.note or out.error or 'no error'}")
    if not out.ok:
        return "FAIL", f"client failed: {out.error}"
    problem = content_problem(out.retrieved, backend.account.message)
    if problem:
        return "FAIL", problem
    leak = [s for s in sessions if s.get("login") == "yes" and s.get("tls") == "none"]
    if leak:
        return "FAIL", "a session logged in without TLS"
    if mode == "pop3s":
        good = [s for s in sessions if s.get("login") == "yes" and s.get("listener") == "pop3s"
                and s.get("tls") != "none"]
    else:
        good = [s for s in sessions if s.get("login") == "yes" and s.get("stls") == "yes"
                and s.get("tls") != "none"]
    if not good:
        return "FAIL", ("popsd logged no session with login=yes over "
                        + ("pop3s" if mode == "pop3s" else "STLS"))
    problem = backend.check_cell(mode, good, extra_mark)
    if problem:
        return "FAIL", problem
    return "pass", ""


def run_cell(backend, client, mode, workdir):
    p = backend.popsd_for(mode)
    cdir = os.path.join(workdir, "cells", f"{backend.name}.{mode}.{client.name}")
    os.makedirs(cdir)
    os.chmod(cdir, 0o755)
    mark = popsd_mark(p)
    tap = backend.tap if mode == "plain" else None
    tap_mark = tap.mark() if tap is not None else None
    extra_mark = backend.cell_mark()
    port = p.port if mode == "pop3s" else p.pop3_port
    cell = C.Cell(mode, port, backend.certs.ca, backend.account, cdir)
    t0 = time.monotonic()
    try:
        out = client.run(cell)
    except Exception as e:      # a crashed driver is a failed cell, not a crashed run
        out = C.Outcome()
        out.error = f"{type(e).__name__}: {e}"
        out.transcript = traceback.format_exc()
    sessions = settle(p, mark, tap, tap_mark)
    reached = T.suspicious(tap.since(tap_mark)) if tap is not None else []
    status, reason = judge(backend, client, mode, out, sessions, reached, extra_mark)
    secs = time.monotonic() - t0
    log = ""
    if status != "pass":
        log = (f"cell {backend.name} × {client.name} × {mode}: {status} {reason}\n"
               f"--- client transcript:\n{out.transcript[-8000:]}\n"
               f"--- popsd session lines:\n" + "\n".join(s["_line"] for s in sessions) + "\n")
        for title, text in backend.logs().items():
            log += f"--- {title}:\n{text}\n"
    return Result(status, reason, secs, log)


def run_backend(backend, features, clients, modes, workdir):
    results = {}
    reason = backend.unavailable(features)
    started = False
    if reason is None:
        t0 = time.monotonic()
        try:
            backend.start()
            started = True
            say(f"  {backend.name}: started in {time.monotonic() - t0:.1f}s")
        except B.Unavailable as e:
            reason = str(e)
            backend.stop()
        except Exception as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            log = traceback.format_exc() + "".join(
                f"--- {t}:\n{x}\n" for t, x in backend.logs().items())
            say(f"  {backend.name}: FAILED to start: {msg}")
            for mode in modes:
                for c in clients:
                    results[(mode, c.name)] = Result("FAIL", f"backend did not start: {msg}",
                                                     log=log)
            backend.stop()
            return results
    try:
        for mode in modes:
            for c in clients:
                na = c.missing() or c.not_applicable(mode)
                if reason is not None:
                    results[(mode, c.name)] = Result("skip", reason)
                elif c.missing():
                    results[(mode, c.name)] = Result("skip", c.missing())
                elif na:
                    results[(mode, c.name)] = Result("n/a", na)
                else:
                    r = run_cell(backend, c, mode, workdir)
                    results[(mode, c.name)] = r
                    if r.status == "FAIL":
                        say(f"  {backend.name} × {c.name} × {mode}: FAIL {r.reason}")
    finally:
        if started:
            backend.stop()
            for prob in backend.stop_problems:
                say(f"  {backend.name}: stop: {prob}")
    return results


# --------------------------------------------------------------------------
# The table

def render(backends, clients, modes, results, features, elapsed):
    notes = {}          # reason → footnote number

    def cell_text(r):
        if r.status == "pass" and not r.reason:
            return "pass"
        n = notes.setdefault(r.reason, len(notes) + 1)
        return f"{r.status} [{n}]"

    rows = []
    for b in backends:
        for m in modes:
            rows.append((b.name, MODE_TITLES[m],
                         [cell_text(results[b.name][(m, c.name)]) for c in clients]))
    head = ["backend", "mode"] + [c.name for c in clients]
    widths = [max(len(head[i]), *(len(r[0] if i == 0 else r[1] if i == 1 else r[2][i - 2])
                                   for r in rows)) for i in range(len(head))]

    def line(cols):
        return "  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip()

    count = {}
    for b in backends:
        for k, r in results[b.name].items():
            count[r.status] = count.get(r.status, 0) + 1
    summary = ", ".join(f"{count.get(s, 0)} {s}" for s in ("pass", "FAIL", "n/a", "skip"))

    txt = ["popsd interoperability matrix " + time.strftime("%Y-%m-%d %H:%M:%S"),
           f"({summary}; {elapsed:.0f}s)", "", line(head), line(["-" * w for w in widths])]
    prev = None
    for name, mode, cells in rows:
        txt.append(line([name if name != prev else "", mode] + cells))
        prev = name
    txt += ["", "Notes:"]
    for reason, n in notes.items():
        txt.append(f"  [{n}] {reason}")
    txt += ["", "Backends:"]
    for b in backends:
        txt.append(f"  {b.name}: {b.title}")
    txt += ["", "Modes:"] + [f"  {MODE_TITLES[m]}: {LONG_MODE[m]}" for m in modes]
    txt += ["", "Clients:"]
    for c in clients:
        for m in modes:
            if m in c.how:
                txt.append(f"  {c.name} {MODE_TITLES[m]}: {c.how[m]}")
    txt += ["", "Versions: " + versions()]

    md = ["| backend | mode | " + " | ".join(c.name for c in clients) + " |",
          "|---|---|" + "---|" * len(clients)]
    prev = None
    for name, mode, cells in rows:
        md.append(f"| {name if name != prev else ''} | {mode} | " + " | ".join(cells) + " |")
        prev = name
    md += ["", f"{summary}.", ""]
    for reason, n in notes.items():
        md.append(f"{n}. {reason}")
    md += [""] + [f"- **{b.name}**: {b.title}" for b in backends]
    md += ["", "Versions: " + versions()]
    return "\n".join(txt) + "\n", "\n".join(md) + "\n"


def versions():
    """Debian versions of the peers (popa3d and solid-pop3d: the cached
    .debs legacy-backend.sh unpacks)."""
    pkgs = ["dovecot-pop3d", "mailutils-pop3d", "openssl", "curl", "python3", "mpop",
            "fetchmail", "getmail6"]
    out = []
    for p in pkgs:
        r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", p],
                           capture_output=True, text=True)
        out.append(f"{p} {r.stdout.strip() if r.returncode == 0 else '(not installed)'}")
    cache = os.path.join(os.environ.get("POPSD_TEST_CACHE", "/var/cache/popsd-tests"), "debs")
    for p in ("popa3d", "solid-pop3d"):
        debs = sorted(glob.glob(os.path.join(cache, f"{p}_*.deb")))
        if debs:
            out.append(f"{p} {os.path.basename(debs[-1]).split('_')[1]}")
    return ", ".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=int(os.environ.get("INTEROP_JOBS", 4)))
    ap.add_argument("--backend", action="append", help="only these backends (repeatable)")
    ap.add_argument("--client", action="append", help="only these clients (repeatable)")
    ap.add_argument("--mode", action="append", choices=MODES, help="only these modes")
    ap.add_argument("--out", default=os.path.join(B.REPO, "build"))
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()

    if H.popsd_binary() is None:
        print("interop: popsd is not built (make popsd)", file=sys.stderr)
        return 2
    H.become_subreaper()
    t0 = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="popsd-interop.")
    os.chmod(workdir, 0o755)    # popsd's and the daemons' unprivileged processes
    certs = H.Certs(os.path.join(workdir, "certs"))
    features = B.probe_features(workdir, certs)
    backends = [b for b in B.all_backends(workdir, certs)
                if not args.backend or b.name in args.backend]
    clients = [c for c in C.CLIENTS if not args.client or c.name in args.client]
    modes = [m for m in MODES if not args.mode or m in args.mode]
    say(f"interop: {len(backends)} backends × {len(clients)} clients × {len(modes)} modes, "
        f"{args.jobs} jobs, popsd {H.popsd_binary()}")
    for k, v in features.items():
        if v:
            say(f"  feature {k}: {v}")

    results = {}

    def terminated(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, terminated)
    ex = concurrent.futures.ThreadPoolExecutor(max(1, args.jobs))
    try:
        futs = {ex.submit(run_backend, b, features, clients, modes, workdir): b
                for b in backends}
        for f in concurrent.futures.as_completed(futs):
            results[futs[f].name] = f.result()
        ex.shutdown()
    except KeyboardInterrupt:
        say("interop: interrupted; stopping the backends")
        ex.shutdown(wait=False, cancel_futures=True)
        for b in backends:
            try:
                b.stop()
            except Exception:   # noqa: BLE001 - best effort on the way out
                pass
        shutil.rmtree(workdir, ignore_errors=True)
        sys.stdout.flush()
        os._exit(130)   # not sys.exit: that would join the busy worker threads
    finally:
        if args.keep:
            say(f"interop: work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    txt, md = render(backends, clients, modes, results, features, time.monotonic() - t0)
    os.makedirs(args.out, exist_ok=True)
    logdir = os.path.join(args.out, "interop-logs")
    shutil.rmtree(logdir, ignore_errors=True)
    os.makedirs(logdir)
    failed = 0
    dump = {}
    for b in backends:
        for (m, c), r in results[b.name].items():
            dump[f"{b.name}/{m}/{c}"] = {"status": r.status, "reason": r.reason,
                                        "seconds": round(r.seconds, 2)}
            failed += r.status == "FAIL"
            if r.log:
                with open(os.path.join(logdir, f"{b.name}.{m}.{c}.txt"), "w") as f:
                    f.write(r.log)
    problems = [f"{b.name}: {p}" for b in backends for p in b.stop_problems]
    if problems:
        txt += "\nBackend stop problems:\n" + "".join(f"  {p}\n" for p in problems)
    with open(os.path.join(args.out, "interop.txt"), "w") as f:
        f.write(txt)
    with open(os.path.join(args.out, "interop.md"), "w") as f:
        f.write(md)
    with open(os.path.join(args.out, "interop.json"), "w") as f:
        json.dump(dump, f, indent=1, sort_keys=True)
    print()
    print(txt, end="")
    print(f"\n(written to {os.path.relpath(args.out)}/interop.txt, interop.md, interop.json; "
          f"logs of cells that did not pass: {os.path.relpath(logdir)}/)")
    return 1 if failed or problems else 0


if __name__ == "__main__":
    sys.exit(main())
