# tests/interop/interop.mk — the interoperability matrix; included from the
# Makefile.
#
#   make interop   every backend × client × mode through popsd (Dovecot over
#                  TCP and with PROXY v2, popa3d and solid-pop3d via socat
#                  and via `backend exec`, GNU mailutils pop3d; openssl
#                  s_client, curl, poplib, mpop, fetchmail, getmail6; pop3s,
#                  STLS, plaintext refused). Prints one table and writes
#                  build/interop.txt, build/interop.md (for the README),
#                  build/interop.json and build/interop-logs/ (cells that did
#                  not pass). Fails if any cell fails; n/a and skip cells say
#                  why. Run as root (namespaces, Dovecot, daemons that
#                  setuid); about 30 s on an idle 2-core machine.
#
# INTEROP_ARGS: extra run.py arguments, e.g.
#   make interop INTEROP_ARGS="--backend dovecot --client curl --mode stls"
# INTEROP_JOBS: backends run in parallel (default 4).

INTEROP_ARGS ?=

interop: popsd
	/usr/bin/python3 tests/interop/run.py $(INTEROP_ARGS)

.PHONY: interop
