#define _GNU_SOURCE
/* Prints what a program may assume of any Linux system, one fact a line:
 * whether it leads its session and process group, the names of uid 0 and
 * gid 0, the host name, whether POSIX shared memory and a pseudo-terminal
 * work, and the modes of /tmp and /var/tmp. */
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int mode_of(const char *path) {
	struct stat st;
	return stat(path, &st) == 0 ? (int)(st.st_mode & 07777) : -1;
}

int main(void) {
	pid_t pid = getpid();
	printf("session leader: %d\n", getsid(0) == pid);
	printf("group leader: %d\n", getpgrp() == pid);
	struct passwd *pw = getpwuid(0);
	printf("uid 0: %s\n", pw ? pw->pw_name : "?");
	struct group *gr = getgrgid(0);
	printf("gid 0: %s\n", gr ? gr->gr_name : "?");
	struct passwd *nobody = getpwnam("nobody");
	printf("nobody: %d\n", nobody ? (int)nobody->pw_uid : -1);
	char host[256] = "";
	gethostname(host, sizeof host);
	printf("hostname: %s\n", host);
	int shm = shm_open("/virtrun-test", O_CREAT | O_RDWR, 0600);
	printf("shm_open: %d\n", shm >= 0 && shm_unlink("/virtrun-test") == 0);
	int pty = posix_openpt(O_RDWR | O_NOCTTY);
	printf("pty: %d\n", pty >= 0 && grantpt(pty) == 0 && unlockpt(pty) == 0 && ptsname(pty) != NULL);
	printf("/tmp: %o\n", mode_of("/tmp"));
	printf("/var/tmp: %o\n", mode_of("/var/tmp"));
	return 0;
}
