# tests/robustness.mk — sanitizers, valgrind, fuzzing for CI (issue 7).
# Included from the Makefile AFTER tests/fuzz/fuzz.mk (it adds the config
# parser harness to FUZZ_NAMES there, so `make fuzz` runs it too).
#
#   make asan            popsd with ASan+UBSan into build-asan/popsd
#   make check-asan      the whole scenario suite against build-asan/popsd;
#                        any sanitizer report fails the test it happened in
#   make valgrind-check  tests/scenario/test_memcheck.py: popsd under
#                        valgrind memcheck, 0 errors and no definite leaks
#   make fuzz-ci         replay every corpus (crash = failure), then run each
#                        harness $(FUZZ_CI_SECONDS) s
#   make robustness      all four, one after the other
#
# The heavy scenario tests (10k sessions, TLS scanners) run in `make check`
# already; tests/robustness.sh is the driver behind check-asan and
# valgrind-check and prints the same "N passed, N failed" line as check.sh.

ASAN_BUILD	?= build-asan
ASAN_CC		?= clang
# -O1: ASan's documented choice (usable speed, exact stacks with
# -fno-omit-frame-pointer). -fno-sanitize-recover=all: a UBSan finding
# aborts like an ASan one, so the daemon dies and the harness notices.
ASAN_CFLAGS	?= -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
		   -fno-sanitize-recover=all
ASAN_LDFLAGS	?= -fsanitize=address,undefined
FUZZ_CI_SECONDS	?= 30

# The config parser harness (fuzz.mk builds the protocol ones).
FUZZ_NAMES	+= conf
FUZZ_OPTS_conf	 = -max_len=8192 -timeout=10
# conf.c is linked with open() and getaddrinfo() wrapped: the harness keeps
# every file it may open inside its own scratch directory and never lets a
# host name reach DNS (see fuzz_conf.c).
$(FUZZ_DIR)/fuzz_conf: tests/fuzz/fuzz_conf.c src/conf.c src/log.c \
    src/ticketkeys.c src/base64.c src/route.c src/buf.c src/conf.h \
    src/log.h src/ticketkeys.h src/base64.h src/route.h
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(shell pkg-config --cflags libtls 2>/dev/null) \
	    -Wl,--wrap=open -Wl,--wrap=getaddrinfo \
	    -o $@ tests/fuzz/fuzz_conf.c src/conf.c src/log.c src/ticketkeys.c \
	    src/base64.c src/route.c src/buf.c \
	    $(shell pkg-config --libs libtls libcrypto 2>/dev/null || \
	    echo -ltls -lcrypto)

# The build runs in a sub-make so that BUILD, CC and the flags apply to
# every object. CFLAGS/LDFLAGS go through the environment: the Makefile
# appends its warnings and hardening flags to them (+=), which a command
# line assignment would suppress.
asan:
	CFLAGS="$(ASAN_CFLAGS)" LDFLAGS="$(ASAN_LDFLAGS)" \
	    $(MAKE) --no-print-directory BUILD=$(ASAN_BUILD) CC=$(ASAN_CC) \
	    $(ASAN_BUILD)/popsd

check-asan: asan
	@sh tests/robustness.sh asan $(ASAN_BUILD)/popsd

valgrind-check: popsd
	@sh tests/robustness.sh valgrind

# Per-harness options are expanded by make ($(foreach)), not by a shell
# loop, where $(FUZZ_OPTS_$$n) would name no variable. Seeds are replayed
# file by file, so no run ever writes into tests/fuzz/corpus/.
fuzz-ci: $(FUZZ_BINS)
	@set -e; $(foreach n,$(FUZZ_NAMES),\
	    echo "== fuzz_$(n): replay tests/fuzz/corpus/$(n)"; \
	    $(FUZZ_DIR)/fuzz_$(n) $(FUZZ_OPTS_$(n)) tests/fuzz/corpus/$(n)/* \
	        2>$(FUZZ_DIR)/replay-$(n).log || \
	        { tail -n 60 $(FUZZ_DIR)/replay-$(n).log; exit 1; }; \
	    echo "== fuzz_$(n) for $(FUZZ_CI_SECONDS) s"; \
	    mkdir -p $(FUZZ_DIR)/corpus-$(n); \
	    $(FUZZ_DIR)/fuzz_$(n) $(FUZZ_OPTS_$(n)) \
	        -max_total_time=$(FUZZ_CI_SECONDS) -print_final_stats=1 \
	        -artifact_prefix=$(FUZZ_DIR)/crash-$(n)- \
	        $(FUZZ_DIR)/corpus-$(n) tests/fuzz/corpus/$(n) \
	        2>$(FUZZ_DIR)/fuzz-$(n).log || \
	        { tail -n 60 $(FUZZ_DIR)/fuzz-$(n).log; exit 1; }; \
	    grep -E "^(stat::number_of_executed_units|#[0-9]+ *DONE)" \
	        $(FUZZ_DIR)/fuzz-$(n).log | tail -n 2;) \
	echo "fuzz-ci: $(words $(FUZZ_NAMES)) passed, 0 failed"

robustness: fuzz-ci check-asan valgrind-check

.PHONY: asan check-asan valgrind-check fuzz-ci robustness
