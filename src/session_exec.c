/*
 * session_exec.c — a session whose backend is "backend exec": the daemon
 * is asked of the spawner (spawn.c) with the session's UCSPI-TCP
 * environment, and its stderr is logged, tagged with the session id.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>

#include "log.h"
#include "popsd.h"
#include "session.h"
#include "session_int.h"
#include "spawn.h"

/* backend_stderr_line: one line of the daemon's stderr into our log,
 * sanitized, and only so many per session: a noisy daemon must not be
 * able to flood the log. */
static void
backend_stderr_line(struct session *s, const char *line, size_t len)
{
	char clean[sizeof(s->err_buf) + 4];

	if (len == 0 || ++s->err_lines > 50) {
		if (s->err_lines == 51)
			log_warnx("session=%llu backend stderr: further lines "
			    "suppressed", (unsigned long long)s->id);
		return;
	}
	log_sanitize(clean, sizeof(clean), line, len);
	log_warnx("session=%llu backend stderr: %s",
	    (unsigned long long)s->id, clean);
}

/* stderr_read: one read from the daemon's stderr, logging whole lines.
 * Returns false at EOF or error (the pipe is done), true otherwise. */
static bool
stderr_read(struct session *s)
{
	char *nl;
	ssize_t n;

	n = read(s->err_fd, s->err_buf + s->err_len,
	    sizeof(s->err_buf) - s->err_len);
	if (n <= 0) {
		if (n == -1 && (errno == EAGAIN || errno == EINTR))
			return true;
		backend_stderr_line(s, s->err_buf, s->err_len);
		s->err_len = 0;
		return false;
	}
	s->err_len += (size_t)n;
	while ((nl = memchr(s->err_buf, '\n', s->err_len)) != NULL) {
		backend_stderr_line(s, s->err_buf, (size_t)(nl - s->err_buf));
		s->err_len -= (size_t)(nl + 1 - s->err_buf);
		memmove(s->err_buf, nl + 1, s->err_len);
	}
	if (s->err_len == sizeof(s->err_buf)) {	/* overlong: cut it */
		backend_stderr_line(s, s->err_buf, s->err_len);
		s->err_len = 0;
	}
	return n > 0;
}

/* session_stderr_drain: read what is already in the pipe (bounded). */
void
session_stderr_drain(struct session *s)
{
	int i;

	for (i = 0; i < 16 && stderr_read(s); i++)
		;
	if (s->err_len > 0)
		backend_stderr_line(s, s->err_buf, s->err_len);
}

static void
stderr_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct session *s = w->data;

	(void)revents;
	if (stderr_read(s))
		return;
	ev_io_stop(loop, w);
	close(s->err_fd);
	s->err_fd = -1;
}

static void
spawn_done(void *arg, int conn_fd, int err_fd, pid_t pid, const char *why)
{
	struct session *s = arg;

	s->spawn = NULL;
	if (conn_fd == -1) {
		session_backend_unavailable(s, why);
		session_pump(s);
		return;
	}
	log_debug("session=%llu backend %s started as pid %d",
	    (unsigned long long)s->id, s->conf->backend.text, (int)pid);
	s->err_fd = err_fd;
	ev_io_init(&s->errw, stderr_cb, err_fd, EV_READ);
	s->errw.data = s;
	ev_io_start(s->d->loop, &s->errw);
	session_endpoint_init(s, &s->backend, conn_fd);
	session_backend_ready(s);
	session_pump(s);
}

/* session_start_spawn: ask the spawner for a daemon with the UCSPI-TCP
 * environment of this session (SSL_* only when TLS is already up). */
void
session_start_spawn(struct session *s)
{
	struct spawn_env env;

	memset(&env, 0, sizeof(env));
	session_numeric_host(&s->peer, s->peerlen, env.remote_ip,
	    sizeof(env.remote_ip), env.remote_port, sizeof(env.remote_port));
	session_numeric_host(&s->local, s->locallen, env.local_ip,
	    sizeof(env.local_ip), env.local_port, sizeof(env.local_port));
	snprintf(env.ssl_protocol, sizeof(env.ssl_protocol), "%s",
	    s->tls_version);
	snprintf(env.ssl_cipher, sizeof(env.ssl_cipher), "%s", s->tls_cipher);
	s->spawn = spawner_request(s->d, s->id, &env, spawn_done, s);
	if (s->spawn == NULL) {
		session_backend_unavailable(s, "cannot start the backend (spawner "
		    "unavailable or busy)");
		return;
	}
	session_set_phase(s, PH_SPAWN);
}
