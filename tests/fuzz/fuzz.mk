# tests/fuzz/fuzz.mk — libFuzzer harnesses for the pure protocol modules.
# Included from the Makefile:
#   make fuzz          each harness for $(FUZZ_SECONDS) s (default 60);
#                      new inputs go to $(BUILD)/fuzz/corpus-NAME, never
#                      into the seed corpora under tests/fuzz/corpus/
#   make fuzz-replay   replay every seed (regressions), then run each
#                      harness $(FUZZ_REPLAY_SECONDS) s (for make check)
# A crasher goes into tests/fuzz/corpus/NAME/ as a regression seed.

BUILD		?= build
FUZZ_CC		?= clang
FUZZ_SECONDS	?= 60
FUZZ_REPLAY_SECONDS ?= 20
FUZZ_DIR	 = $(BUILD)/fuzz
FUZZ_CFLAGS	 = -std=c11 -D_GNU_SOURCE -Isrc -g -O1 \
		   -fsanitize=fuzzer,address,undefined \
		   -fno-sanitize-recover=undefined -Wall -Wextra
FUZZ_NAMES	 = pop3 capa proxy scrape ticketkeys outbound
FUZZ_BINS	 = $(FUZZ_NAMES:%=$(FUZZ_DIR)/fuzz_%)
FUZZ_OPTS_pop3	 = -max_len=4096
FUZZ_OPTS_capa	 = -max_len=2048
FUZZ_OPTS_proxy	 = -max_len=2048
FUZZ_OPTS_scrape = -max_len=2048
FUZZ_OPTS_ticketkeys = -max_len=2048
FUZZ_OPTS_outbound = -max_len=2048

$(FUZZ_DIR)/fuzz_pop3: tests/fuzz/fuzz_pop3.c src/pop3.c src/capa.c \
    src/base64.c src/buf.c src/log.c src/pop3.h src/capa.h src/base64.h \
    src/buf.h src/log.h
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ tests/fuzz/fuzz_pop3.c src/pop3.c \
	    src/capa.c src/base64.c src/buf.c src/log.c

$(FUZZ_DIR)/fuzz_capa: tests/fuzz/fuzz_capa.c src/capa.c src/capa.h
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ tests/fuzz/fuzz_capa.c src/capa.c

$(FUZZ_DIR)/fuzz_proxy: tests/fuzz/fuzz_proxy.c src/proxy.c src/proxy.h
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ tests/fuzz/fuzz_proxy.c src/proxy.c

$(FUZZ_DIR)/fuzz_scrape: tests/fuzz/fuzz_scrape.c src/metrics_http.c \
    src/certtime.c src/base64.c src/metrics.c src/sockbind.c src/xio.c src/buf.c \
    src/log.c src/metrics_http.h src/certtime.h src/base64.h src/metrics.h \
    src/sockbind.h
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ tests/fuzz/fuzz_scrape.c \
	    src/metrics_http.c src/certtime.c src/base64.c src/metrics.c \
	    src/sockbind.c src/xio.c src/buf.c src/log.c -ltls -lev

$(FUZZ_DIR)/fuzz_ticketkeys: tests/fuzz/fuzz_ticketkeys.c src/ticketkeys.c \
    src/base64.c src/ticketkeys.h src/base64.h
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ tests/fuzz/fuzz_ticketkeys.c \
	    src/ticketkeys.c src/base64.c $(shell pkg-config --libs libcrypto 2>/dev/null || \
	    echo -lcrypto)

$(FUZZ_DIR)/fuzz_outbound: tests/fuzz/fuzz_outbound.c src/upstream.c \
    src/route.c src/buf.c src/upstream.h src/route.h src/buf.h
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ tests/fuzz/fuzz_outbound.c \
	    src/upstream.c src/route.c src/buf.c

fuzz-build: $(FUZZ_BINS)

# fuzz_run NAME SECONDS: grow the build-local corpus from the seeds.
# Expanded by make ($(foreach)), so that $(FUZZ_OPTS_NAME) is found: in a
# shell loop over $$n it would name no variable.
fuzz_run = mkdir -p $(FUZZ_DIR)/corpus-$(1) && \
	$(FUZZ_DIR)/fuzz_$(1) $(FUZZ_OPTS_$(1)) -max_total_time=$(2) \
	    -print_final_stats=1 -artifact_prefix=$(FUZZ_DIR)/crash-$(1)- \
	    $(FUZZ_DIR)/corpus-$(1) tests/fuzz/corpus/$(1);

fuzz: $(FUZZ_BINS)
	@set -e; $(foreach n,$(FUZZ_NAMES),\
	    echo "== fuzz_$(n) for $(FUZZ_SECONDS) s"; \
	    $(call fuzz_run,$(n),$(FUZZ_SECONDS)))

fuzz-replay: $(FUZZ_BINS)
	@set -e; $(foreach n,$(FUZZ_NAMES),\
	    echo "== fuzz_$(n): replay tests/fuzz/corpus/$(n)"; \
	    $(FUZZ_DIR)/fuzz_$(n) $(FUZZ_OPTS_$(n)) tests/fuzz/corpus/$(n)/*; \
	    echo "== fuzz_$(n) for $(FUZZ_REPLAY_SECONDS) s"; \
	    $(call fuzz_run,$(n),$(FUZZ_REPLAY_SECONDS)))

.PHONY: fuzz fuzz-build fuzz-replay
