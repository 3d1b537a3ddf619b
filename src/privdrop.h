/*
 * privdrop.h — run with the least privilege: no core dumps, and after the
 * sockets are bound, the "user", "group" and "chroot" of the
 * configuration, verified.
 *
 * The order is main.c's: privdrop_no_core_dumps() first of all, then the
 * configuration and keys are loaded, privdrop_plan() resolves names
 * (NSS may need files a chroot hides), sockets are bound or adopted, and
 * privdrop_apply() drops for good. Only a root-started popsd switches
 * ids; one started unprivileged (systemd User=, DynamicUser=) keeps its
 * ids and merely checks that they are the configured ones.
 */
#ifndef POPSD_PRIVDROP_H
#define POPSD_PRIVDROP_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct conf;

struct privdrop {
	bool	switch_ids;		/* started as root: become uid/gid */
	uid_t	uid;
	gid_t	gid;
	char	user[64];		/* for logs; "" if not configured */
	char	chroot_dir[PATH_MAX];	/* "" if not configured */
};

/*
 * privdrop_no_core_dumps: a core dump of popsd would hold its private
 * keys. Marks the process non-dumpable (which also keeps same-uid
 * processes from ptrace-attaching) and sets RLIMIT_CORE to 0; exits on
 * failure. Call before any key is read.
 */
void	privdrop_no_core_dumps(void);

/*
 * privdrop_plan: decide from c how privileges will be dropped, into pd.
 * Resolves "user" (and "group", else the user's primary group) and checks
 * that a "chroot" directory exists. Started as root, a "user" is
 * required; started as another user, "user"/"group" must name the
 * current ids and "chroot" cannot be honoured. popsd -n calls it too, so
 * that "configuration OK" means a start with the same ids would get past
 * this. Returns 0, or -1 with one message in err.
 */
int	privdrop_plan(const struct conf *c, struct privdrop *pd, char *err,
	    size_t errsz);

/*
 * privdrop_apply: when pd->switch_ids: chroot (if configured), then
 * setgroups to the one target group, setresgid, setresuid; then verify
 * that real, effective and saved ids are all the target and that root
 * cannot be regained. Any failure is fatal: popsd must not serve with
 * more privilege than configured. A no-op otherwise.
 */
void	privdrop_apply(const struct privdrop *pd);

#endif
