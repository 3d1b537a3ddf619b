/* privdrop.c — user/group/chroot, verified; no core dumps. */
#include "privdrop.h"

#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "log.h"

void
privdrop_no_core_dumps(void)
{
	struct rlimit rl = { 0, 0 };

	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == -1)
		fatal("prctl(PR_SET_DUMPABLE)");
	if (setrlimit(RLIMIT_CORE, &rl) == -1)
		fatal("setrlimit(RLIMIT_CORE)");
}

/* resolve: the configured user and group into pd; 0 or -1. */
static int
resolve(const struct conf *c, struct privdrop *pd, char *err, size_t errsz)
{
	struct passwd *pw;
	struct group *gr;
	char q[64];

	if ((pw = getpwnam(c->user)) == NULL) {
		snprintf(err, errsz, "%s: user \"%s\": no such user", c->path,
		    log_sanitize(q, sizeof(q), c->user, strlen(c->user)));
		return -1;
	}
	pd->uid = pw->pw_uid;
	pd->gid = pw->pw_gid;
	snprintf(pd->user, sizeof(pd->user), "%s", pw->pw_name);
	if (c->group != NULL) {
		if ((gr = getgrnam(c->group)) == NULL) {
			snprintf(err, errsz, "%s: group \"%s\": no such group",
			    c->path, log_sanitize(q, sizeof(q), c->group,
			    strlen(c->group)));
			return -1;
		}
		pd->gid = gr->gr_gid;
	}
	/* Running as root, or in root's group, is what the drop avoids. */
	if (pd->uid == 0 || pd->gid == 0) {
		snprintf(err, errsz, "%s: user \"%s\"%s: uid or gid 0 is no "
		    "privilege drop; name an unprivileged user such as popsd",
		    c->path, pd->user, c->group ? " with its group" : "");
		return -1;
	}
	return 0;
}

static int
check_chroot(const struct conf *c, struct privdrop *pd, char *err,
    size_t errsz)
{
	const char *why = NULL;
	struct stat st;
	char q[256];

	if (c->chroot_dir == NULL)
		return 0;
	if (c->chroot_dir[0] != '/')
		why = "not an absolute path";
	else if (stat(c->chroot_dir, &st) == -1)
		why = strerror(errno);
	else if (!S_ISDIR(st.st_mode))
		why = "not a directory";
	else if (strlen(c->chroot_dir) >= sizeof(pd->chroot_dir))
		why = "path too long";
	if (why != NULL) {
		snprintf(err, errsz, "%s: chroot \"%s\": %s", c->path,
		    log_sanitize(q, sizeof(q), c->chroot_dir,
		    strlen(c->chroot_dir)), why);
		return -1;
	}
	snprintf(pd->chroot_dir, sizeof(pd->chroot_dir), "%s", c->chroot_dir);
	return 0;
}

/* plan_unprivileged: started as someone else than root, popsd cannot
 * change ids; what is configured must already be what we are. */
static int
plan_unprivileged(const struct conf *c, const struct privdrop *pd,
    char *err, size_t errsz)
{
	if (c->chroot_dir != NULL) {
		snprintf(err, errsz, "%s: chroot needs popsd to be started as "
		    "root (it runs as uid %u)", c->path, (unsigned)geteuid());
		return -1;
	}
	if (c->user != NULL && (pd->uid != geteuid() || pd->uid != getuid())) {
		snprintf(err, errsz, "%s: user \"%s\" (uid %u): popsd runs as "
		    "uid %u and cannot switch; start it as root, or as that "
		    "user", c->path, pd->user, (unsigned)pd->uid,
		    (unsigned)geteuid());
		return -1;
	}
	if (c->group != NULL && (pd->gid != getegid() || pd->gid != getgid())) {
		snprintf(err, errsz, "%s: group \"%s\" (gid %u): popsd runs "
		    "as gid %u and cannot switch; start it as root", c->path,
		    c->group, (unsigned)pd->gid, (unsigned)getegid());
		return -1;
	}
	return 0;
}

int
privdrop_plan(const struct conf *c, struct privdrop *pd, char *err,
    size_t errsz)
{
	memset(pd, 0, sizeof(*pd));
	if (c->user != NULL && resolve(c, pd, err, errsz) == -1)
		return -1;
	if (c->user == NULL && c->group != NULL) {
		snprintf(err, errsz, "%s: group needs a user directive too",
		    c->path);
		return -1;
	}
	if (check_chroot(c, pd, err, errsz) == -1)
		return -1;
	if (geteuid() != 0)
		return plan_unprivileged(c, pd, err, errsz);
	if (c->user == NULL) {
		snprintf(err, errsz, "refusing to run as root: add \"user "
		    "NAME\" (and optionally \"group NAME\") to %s so that popsd "
		    "drops privileges once its sockets are bound", c->path);
		return -1;
	}
	pd->switch_ids = true;
	return 0;
}

/* verify: the drop is complete and cannot be undone. */
static void
verify(const struct privdrop *pd)
{
	uid_t ru, eu, su;
	gid_t rg, eg, sg, groups[2];
	int n;

	if (getresuid(&ru, &eu, &su) == -1 || getresgid(&rg, &eg, &sg) == -1)
		fatal("getresuid/getresgid");
	if (ru != pd->uid || eu != pd->uid || su != pd->uid ||
	    rg != pd->gid || eg != pd->gid || sg != pd->gid)
		fatalx("privilege drop incomplete: uids %u/%u/%u gids %u/%u/%u",
		    (unsigned)ru, (unsigned)eu, (unsigned)su, (unsigned)rg,
		    (unsigned)eg, (unsigned)sg);
	if ((n = getgroups(2, groups)) != 1 || groups[0] != pd->gid)
		fatalx("privilege drop incomplete: supplementary groups remain");
	/* The point of it all: both must fail now. */
	if (setuid(0) != -1 || setgid(0) != -1)
		fatalx("privilege drop failed: root could be regained");
}

void
privdrop_apply(const struct privdrop *pd)
{
	if (!pd->switch_ids)
		return;
	if (pd->chroot_dir[0] != '\0' &&
	    (chroot(pd->chroot_dir) == -1 || chdir("/") == -1))
		fatal("chroot %s", pd->chroot_dir);
	if (setgroups(1, &pd->gid) == -1)
		fatal("setgroups %u", (unsigned)pd->gid);
	if (setresgid(pd->gid, pd->gid, pd->gid) == -1)
		fatal("setresgid %u", (unsigned)pd->gid);
	if (setresuid(pd->uid, pd->uid, pd->uid) == -1)
		fatal("setresuid %u", (unsigned)pd->uid);
	verify(pd);
	/* A change of ids resets the dumpable flag to the system default
	 * (fs.suid_dumpable); keys are still in memory, so set it again. */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == -1)
		fatal("prctl(PR_SET_DUMPABLE)");
	log_info("dropped privileges to user %s (uid %u, gid %u)%s%s",
	    pd->user, (unsigned)pd->uid, (unsigned)pd->gid,
	    pd->chroot_dir[0] ? ", chroot " : "", pd->chroot_dir);
}
