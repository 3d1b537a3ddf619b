#!/bin/sh
# robustness.sh — run the scenario tests against an instrumented popsd.
#
#   robustness.sh asan BINARY     the whole scenario suite (tests/scenario)
#                                 with POPSD=BINARY, an ASan+UBSan build
#                                 (make asan). Every sanitizer report goes
#                                 to its own file; the sanitizer_reports
#                                 pytest plugin fails the test during which
#                                 one appeared, and prints it.
#   robustness.sh valgrind        tests/scenario/test_memcheck.py: popsd
#                                 under valgrind memcheck, 0 errors and no
#                                 definite leaks (it runs in make check too)
#
# Ends with "N passed, N failed[, N skipped]" and exits non-zero on any
# failure, like tests/check.sh. Environment: PYTEST_ARGS (extra pytest
# arguments, e.g. "-k faults"), ROBUSTNESS_TIMEOUT (seconds, default 1800).
set -u
cd "$(dirname "$0")/.." || exit 1

PY=/usr/bin/python3          # Debian's, which has python3-pytest
mode=${1:-}
out=$(mktemp -d "${TMPDIR:-/tmp}/popsd-robustness.XXXXXX")
trap 'rm -rf "$out"' EXIT
trap 'exit 130' INT TERM

case $mode in
asan)
	bin=${2:?usage: $0 asan BINARY}
	[ -x "$bin" ] || { echo "robustness: $bin not built (make asan)" >&2; exit 1; }
	POPSD=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
	# popsd drops privileges after start-up and writes its reports (leaks
	# at exit) as that user: the report directory must be writable by it.
	reports=$out/reports
	mkdir -p "$reports" && chmod 1777 "$out" "$reports"
	# abort_on_error=0/exitcode: a report ends popsd with status 23, which
	# the popsd fixture reports as "exited on its own" if it was mid-test.
	# detect_leaks: LeakSanitizer runs when popsd exits (SIGTERM at
	# teardown); popsd frees its sessions, configuration and TLS state.
	export POPSD ASAN_OPTIONS="log_path=$reports/asan:detect_leaks=1:abort_on_error=0:exitcode=23:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1:print_summary=1"
	export UBSAN_OPTIONS="log_path=$reports/ubsan:print_stacktrace=1:halt_on_error=1:exitcode=23"
	export POPSD_SANITIZER_DIR=$reports
	export PYTHONPATH="$PWD/tests/scenario${PYTHONPATH:+:$PYTHONPATH}"
	plugin="-p sanitizer_reports"
	what=tests/scenario
	;;
valgrind)
	command -v valgrind >/dev/null || { echo "robustness: valgrind not installed (make deps)" >&2; exit 1; }
	plugin=""
	what=tests/scenario/test_memcheck.py
	;;
*)
	echo "usage: $0 asan BINARY | valgrind" >&2
	exit 2
	;;
esac

echo "=== $mode: pytest $what"
# shellcheck disable=SC2086 # PYTEST_ARGS and plugin are word lists on purpose
{ timeout -k 10 "${ROBUSTNESS_TIMEOUT:-1800}" "$PY" -m pytest -p no:cacheprovider $plugin \
	-rfEs --durations=10 ${PYTEST_ARGS:-} "$what" 2>&1; echo $? >"$out/rc"; } | tee "$out/log"
rc=$(cat "$out/rc")

count() {
	sed -n -E "s/$1/\\1/p" "$out/last" | awk '{ s += $1 } END { print s + 0 }'
}
grep -E '^=+ .*( in [0-9.]+s).* =+$' "$out/log" | tail -n 1 >"$out/last"
p=$(count '.* ([0-9]+) passed.*')
f=$(count '.* ([0-9]+) failed.*')
e=$(count '.* ([0-9]+) errors?.*')
s=$(count '.* ([0-9]+) skipped.*')
xp=$(count '.* ([0-9]+) xpassed.*')
f=$((f + e + xp))
if [ $((p + f)) -eq 0 ] || { [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; }; then
	echo "robustness $mode: pytest exit $rc with no failure counted (interrupted, timed out, or reports outside a test)"
	f=$((f + 1))
fi
echo
if [ "$s" -gt 0 ]; then
	echo "robustness-$mode: $p passed, $f failed, $s skipped"
else
	echo "robustness-$mode: $p passed, $f failed"
fi
[ "$f" -eq 0 ]
