"""sanitizer_reports — a pytest plugin (loaded with `-p sanitizer_reports`
by tests/robustness.sh) that fails a test when popsd wrote an
AddressSanitizer, LeakSanitizer or UBSan report while it ran.

tests/robustness.sh runs the suite with POPSD=build-asan/popsd and points
ASAN_OPTIONS/UBSAN_OPTIONS log_path into $POPSD_SANITIZER_DIR, so each
report lands in its own file (asan.PID, ubsan.PID). A report from a leak
is written when popsd exits, i.e. when the popsd fixture stops it at
teardown: this plugin's fixture is autouse and set up before the test's
own, so it is torn down after them and sees those reports too. Reports
that appear outside any test fail the session."""

import glob
import os

import pytest

DIR = os.environ.get("POPSD_SANITIZER_DIR")


def _reports():
    return set(glob.glob(os.path.join(DIR, "*"))) if DIR else set()


def _show(paths):
    out = []
    for path in sorted(paths):
        with open(path, errors="replace") as f:
            text = f.read()
        out.append(f"----- {path} -----\n{text[:20000]}")
    return "\n".join(out)


_seen = set()


@pytest.fixture(autouse=True)
def _no_sanitizer_report():
    _seen.update(_reports())
    yield
    new = _reports() - _seen
    _seen.update(new)
    if new:
        pytest.fail(f"popsd wrote {len(new)} sanitizer report(s):\n{_show(new)}", pytrace=False)


def pytest_sessionfinish(session, exitstatus):
    new = _reports() - _seen
    if new:
        print(f"\nsanitizer report(s) outside any test:\n{_show(new)}")
        session.exitstatus = 1
