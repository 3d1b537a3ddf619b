/*
 * resolve.h — host name lookups that never block the event loop.
 *
 * Routed outbound sessions learn their upstream's name at run time, and
 * getaddrinfo() blocks for as long as DNS takes. glibc's getaddrinfo_a()
 * runs the lookup on its own thread and signals completion with a
 * SIGEV_THREAD callback; that callback only wakes the loop (ev_async_send
 * is the one libev call safe from another thread), and the loop then
 * collects finished lookups and calls back. Chosen over a resolver helper
 * process because it needs no extra process, socket or protocol, and
 * glibc >= 2.34 has it in libc itself. The caller's phase timer bounds
 * the wait; resolve_cancel() may be called at any time.
 */
#ifndef POPSD_RESOLVE_H
#define POPSD_RESOLVE_H

#include <stdint.h>

#include <ev.h>

struct addrinfo;
struct resolve_req;

/* Called in the loop with the result (NULL and an EAI_* code in err on
 * failure; res is freed after the call returns). */
typedef void (*resolve_cb)(void *arg, const struct addrinfo *res, int err);

/* resolve_start: look up host (TCP, IPv4 and IPv6) for port; cb(arg, ...)
 * is called later from loop, never from inside this call. NULL when the
 * lookup could not be started (then errno-free: out of memory or
 * resources). */
struct resolve_req *resolve_start(struct ev_loop *loop, const char *host,
    uint16_t port, resolve_cb cb, void *arg);

/* resolve_cancel: cb will not be called; the lookup's memory is freed
 * once glibc is done with it. NULL ok. */
void	resolve_cancel(struct resolve_req *r);

#endif
