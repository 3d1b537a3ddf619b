# popsd — TLS in front of legacy POP3 servers.
# make            build popsd (warning-free, hardened)
# make run        build, make a dev certificate, start Dovecot + popsd, print how to try it
# make check      install test dependencies, build, run every test tier
# make install    PREFIX=/usr/local DESTDIR=

PREFIX  ?= /usr/local
SBINDIR ?= $(PREFIX)/sbin
MANDIR  ?= $(PREFIX)/share/man
DESTDIR ?=

CC      ?= cc
PKGS     = libtls libcrypto
CPPFLAGS += -D_GNU_SOURCE -D_FORTIFY_SOURCE=2 $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -Wall -Wextra -Wshadow -Wpointer-arith -Wstrict-prototypes \
           -Wmissing-prototypes -Wformat=2 -fstack-protector-strong -fPIE \
           -fno-strict-aliasing
LDFLAGS += -pie -Wl,-z,relro -Wl,-z,now -Wl,-z,noexecstack
LDLIBS  += $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -ltls -lcrypto) -lev

BUILD   ?= build
SRCS     = $(wildcard src/*.c)
LIBSRCS  = $(filter-out src/main.c,$(SRCS))
OBJS     = $(SRCS:src/%.c=$(BUILD)/%.o)
LIBOBJS  = $(LIBSRCS:src/%.c=$(BUILD)/%.o)
UNIT_SRCS = $(wildcard tests/unit/test_*.c)
UNIT_BINS = $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)

all: popsd

# Copy then rename: a running ./popsd would make a plain cp fail with ETXTBSY.
popsd: $(BUILD)/popsd
	cp $(BUILD)/popsd $@.tmp && mv -f $@.tmp $@

$(BUILD)/popsd: $(OBJS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(OBJS) $(LDLIBS)

$(BUILD)/%.o: src/%.c $(wildcard src/*.h) | $(BUILD)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(BUILD):
	mkdir -p $(BUILD)/tests

$(BUILD)/tests/%: tests/unit/%.c $(LIBOBJS) $(wildcard src/*.h) | $(BUILD)
	$(CC) $(CPPFLAGS) -Isrc $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIBOBJS) $(LDLIBS) -lcmocka

# It checks libtls_shim.c against OpenSSL's own headers and functions.
$(BUILD)/tests/test_tls_shim: LDLIBS += -lssl

# Run every unit test program, then fail if any failed.
unit: $(UNIT_BINS)
	@fail=0; for t in $(UNIT_BINS); do echo "== $$t"; $$t || fail=1; done; exit $$fail

deps:
	@sh tests/install-deps.sh

check: deps
	@sh tests/check.sh

run: deps popsd
	@sh tests/demo.sh

lint-man:
	mandoc -T lint -W warning src/popsd.8 src/popsd.conf.5

install: popsd
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man5
	install -m 755 popsd $(DESTDIR)$(SBINDIR)/popsd
	@for m in src/*.8; do [ -f "$$m" ] && install -m 644 $$m $(DESTDIR)$(MANDIR)/man8/ || true; done
	@for m in src/*.5; do [ -f "$$m" ] && install -m 644 $$m $(DESTDIR)$(MANDIR)/man5/ || true; done

clean:
	rm -rf $(BUILD) build-* popsd

.PHONY: all unit deps check run install clean lint-man

# Further tiers: fuzzing, sanitizers/robustness, benchmark.
-include tests/fuzz/fuzz.mk tests/robustness.mk tests/bench/bench.mk \
	tests/interop/interop.mk
