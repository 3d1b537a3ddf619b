/*
 * sd.h — the two systemd protocols popsd speaks, without libsystemd:
 * socket activation (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES; see
 * sd_listen_fds(3)) and readiness notification (NOTIFY_SOCKET,
 * WATCHDOG_USEC, WATCHDOG_PID; see sd_notify(3)). Both are specified as
 * stable interfaces that a daemon may implement itself, and each is a few
 * dozen lines; linking libsystemd for them would add a dependency for
 * nothing. Names avoid libsystemd's own (sd_notify, sd_listen_fds) so
 * that nobody mistakes these for them.
 */
#ifndef POPSD_SD_H
#define POPSD_SD_H

#include <stdbool.h>
#include <stddef.h>

#include "conf.h"

/* At most this many sockets are taken from systemd. */
#define SD_MAX_LISTEN_FDS	32

struct sd_listen_fd {
	int		 fd;
	enum listen_kind kind;
	char		 text[80];	/* local address, for logs */
};

/*
 * sd_adopt_listen_fds: if LISTEN_PID names this process, take the
 * LISTEN_FDS sockets passed from fd 3 on. Each must be named (in
 * LISTEN_FDNAMES, from FileDescriptorName= in the .socket unit) "pop3s"
 * or "pop3", which gives its listener kind, and must be a listening
 * SOCK_STREAM socket. Adopted fds are made non-blocking and close-on-exec.
 * The three variables are removed from the environment in every case, so
 * nothing popsd starts later believes it is being activated.
 * Returns the number of sockets written to out (0 when not activated),
 * or -1 with the reason in err; the caller owns the fds in out.
 */
int	sd_adopt_listen_fds(struct sd_listen_fd *out, int max, char *err,
	    size_t errsz);

/*
 * sd_check_stream_socket: is fd a SOCK_STREAM socket that is listening
 * (listening true) or connected (listening false)? 0, or -1 with the
 * reason in why.
 */
int	sd_check_stream_socket(int fd, bool listening, char *why, size_t whysz);

/*
 * sd_notify_open: read NOTIFY_SOCKET (a path, or "@name" for the abstract
 * namespace), WATCHDOG_USEC and WATCHDOG_PID, and remove them from the
 * environment. The datagram socket is connected now, before any chroot,
 * because a path is looked up at connect time and would be out of reach
 * afterwards. Problems are logged and leave notification off; popsd runs
 * the same without it.
 */
void	sd_notify_open(void);

/* sd_notify_close: this process will not notify (a worker: the master
 * speaks for all of them); no watchdog either. */
void	sd_notify_close(void);

/* sd_notify_active: was a usable NOTIFY_SOCKET given? */
bool	sd_notify_active(void);

/*
 * sd_notify_send: send one state message ("READY=1\nSTATUS=...", printf
 * style) if notification is on; never blocks (a full receiver loses the
 * message, which systemd tolerates for status and watchdog updates).
 */
void	sd_notify_send(const char *fmt, ...)
	    __attribute__((format(printf, 1, 2)));

/*
 * sd_notify_status: send "STATUS=status" unless it is what the last call
 * sent. For polled status lines: a server whose counts did not change
 * sends nothing, and none sends a datagram per connection.
 */
void	sd_notify_status(const char *status);

/*
 * sd_watchdog_interval: seconds between WATCHDOG=1 pings (half of
 * WATCHDOG_USEC, as systemd recommends), or 0 when no watchdog is asked
 * of this process.
 */
double	sd_watchdog_interval(void);

/* sd_monotonic_usec: CLOCK_MONOTONIC in microseconds (for RELOADING=1's
 * MONOTONIC_USEC=, which systemd compares against its own clock). */
unsigned long long sd_monotonic_usec(void);

#endif
