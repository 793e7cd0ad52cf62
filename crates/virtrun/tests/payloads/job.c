#define _GNU_SOURCE
/* A test binary's place among processes, as on a host under a test
 * harness: not a session leader, the leader of its own process group, in a
 * session someone else leads. Then what killed whole suites when it was a
 * session leader: it opens a pseudo-terminal's slave without O_NOCTTY and
 * closes the master; it must live on (a session leader would have got the
 * slave as its controlling terminal and die of SIGHUP). Then it runs
 * itself again through argv[0], as Go's tests do with os.Args[0]. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
	if (argc > 1 && strcmp(argv[1], "again") == 0) {
		printf("ran again\n");
		return 0;
	}
	pid_t pid = getpid();
	pid_t sid = getsid(0);
	printf("session leader: %d\n", sid == pid);
	printf("group leader: %d\n", getpgrp() == pid);
	printf("in a session: %d\n", sid > 0 && getpgrp() > 0);
	printf("controlling terminal: %d\n", open("/dev/tty", O_RDWR) >= 0);
	int master = posix_openpt(O_RDWR | O_NOCTTY);
	if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0) {
		perror("ptmx");
		return 2;
	}
	int slave = open(ptsname(master), O_RDWR);
	if (slave < 0) {
		perror("slave");
		return 3;
	}
	close(master);
	close(slave);
	printf("pty closed: alive\n");
	printf("argv[0]: %s\n", argv[0]);
	fflush(stdout);
	pid_t child = fork();
	if (child == 0) {
		execl(argv[0], argv[0], "again", (char *)NULL);
		perror("exec argv[0]");
		_exit(127);
	}
	int status;
	waitpid(child, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
