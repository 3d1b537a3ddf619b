# tests/bench/bench.mk — the side-by-side benchmark of issue 8.
# Included from the Makefile:
#   make bench         the full run, about 5.5 minutes: popsd, stunnel4 and
#                      nginx mail before one Dovecot; prints the table and
#                      writes $(BUILD)/bench/results.txt and table.txt
#   make bench-quick   a smoke run of the same script (under a minute)
#   make bench-report  the table of $(BUILD)/bench/results.txt again
# Runs as root on Debian 12 and installs what it needs (bench.sh --deps).
# Knobs: BENCH_* environment variables, listed at the top of bench.sh.

BENCH_DIR	 = $(BUILD)/bench
BENCH_CFLAGS	?= -O2 -g -std=c11 -Wall -Wextra -Wshadow -Wmissing-prototypes
BENCH_ENV	 = POPSD=$(CURDIR)/popsd LOADGEN=$(CURDIR)/$(BENCH_DIR)/loadgen \
		   POPSD_FIX=$(CURDIR)/$(BENCH_DIR)/popsd-fix.so \
		   FLOOR=$(CURDIR)/$(BENCH_DIR)/floor \
		   BENCH_OUT=$(CURDIR)/$(BENCH_DIR)

bench-deps:
	@sh tests/bench/bench.sh --deps

$(BENCH_DIR)/loadgen: tests/bench/loadgen.c | bench-deps
	@mkdir -p $(BENCH_DIR)
	$(CC) $(BENCH_CFLAGS) -o $@ tests/bench/loadgen.c -lssl -lcrypto

$(BENCH_DIR)/popsd-fix.so: tests/bench/popsd-fix.c | bench-deps
	@mkdir -p $(BENCH_DIR)
	$(CC) $(BENCH_CFLAGS) -shared -fPIC -o $@ tests/bench/popsd-fix.c -ldl

# The kernel's and OpenSSL's own floor under the bulk and handshake targets.
$(BENCH_DIR)/floor: tests/bench/floor.c | bench-deps
	@mkdir -p $(BENCH_DIR)
	$(CC) $(BENCH_CFLAGS) -o $@ tests/bench/floor.c -lssl -lcrypto

bench-tools: $(BENCH_DIR)/loadgen $(BENCH_DIR)/popsd-fix.so $(BENCH_DIR)/floor

bench: deps popsd bench-tools
	@$(BENCH_ENV) sh tests/bench/bench.sh

bench-quick: deps popsd bench-tools
	@$(BENCH_ENV) sh tests/bench/bench.sh --quick

bench-report:
	@sh tests/bench/bench.sh --report $(BENCH_DIR)/results.txt

.PHONY: bench bench-quick bench-report bench-deps bench-tools
