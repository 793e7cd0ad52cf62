/* A payload that attacks the host with what it can reach as root in a guest
 * over ISA UARTs, where it can open the control channel (ttyS1) beside the
 * init. argv[1] names the attack, argv[2] is go test's -test.gocoverdir=DIR
 * (a directory output: the guest names the files in it):
 * - names:   writes DIR/planted (the host has a symlink of that name), then
 *            announces files named "../escape" and "/abs" itself;
 * - endless: an event line that never ends;
 * - huge:    a file announced as 1 TB, of which 1000 bytes follow;
 * - flood:   thousands of error events. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void put(int fd, const char *buf, size_t n) {
	while (n > 0) {
		ssize_t w = write(fd, buf, n);
		if (w < 0) {
			if (errno == EINTR) continue;
			perror("write");
			exit(2);
		}
		buf += w;
		n -= (size_t)w;
	}
}

static void puts_to(int fd, const char *s) { put(fd, s, strlen(s)); }

int main(int argc, char **argv) {
	if (argc < 3 || !strchr(argv[2], '=')) {
		fprintf(stderr, "usage: hostile ATTACK -test.gocoverdir=DIR\n");
		return 2;
	}
	const char *dir = strchr(argv[2], '=') + 1;
	int control = open("/dev/ttyS1", O_WRONLY | O_NOCTTY);
	if (control < 0) {
		perror("/dev/ttyS1");
		return 2;
	}
	char buf[4096];
	if (strcmp(argv[1], "names") == 0) {
		snprintf(buf, sizeof buf, "%s/planted", dir);
		FILE *f = fopen(buf, "w");
		if (!f || fputs("from the guest\n", f) < 0 || fclose(f) != 0) {
			perror(buf);
			return 2;
		}
		puts_to(control, "VIRTRUN_FILE: 0 5 ../escape\nAAAAA");
		puts_to(control, "VIRTRUN_FILE: 0 5 /abs\nBBBBB");
	} else if (strcmp(argv[1], "endless") == 0) {
		memset(buf, 'x', sizeof buf);
		puts_to(control, "VIRTRUN_ERROR: ");
		for (;;) put(control, buf, sizeof buf);
	} else if (strcmp(argv[1], "huge") == 0) {
		puts_to(control, "VIRTRUN_FILE: 0 1099511627776 big\n");
		memset(buf, 'y', 1000);
		put(control, buf, 1000);
	} else if (strcmp(argv[1], "flood") == 0) {
		memset(buf, 'e', 400);
		buf[400] = '\n';
		for (int i = 0; i < 2000; i++) {
			puts_to(control, "VIRTRUN_ERROR: ");
			put(control, buf, 401);
		}
	} else {
		fprintf(stderr, "hostile: unknown attack %s\n", argv[1]);
		return 2;
	}
	return 0;
}
