/* Runs on a terminal (virtrun -tty): says what it sees of it, then waits
 * for a resize and says the new size, then echoes one line read in the
 * terminal's canonical mode, then waits in a read that only Ctrl-C (a
 * SIGINT from the terminal's line discipline) ends. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static void size(const char *what) {
	struct winsize ws;
	if (ioctl(0, TIOCGWINSZ, &ws) != 0) {
		perror("TIOCGWINSZ");
		return;
	}
	printf("%s: %d rows %d cols\n", what, ws.ws_row, ws.ws_col);
}

int main(void) {
	setvbuf(stdout, NULL, _IONBF, 0);
	sigset_t winch;
	sigemptyset(&winch);
	sigaddset(&winch, SIGWINCH);
	sigprocmask(SIG_BLOCK, &winch, NULL);
	printf("terminal: %d %d %d, foreground: %d\n", isatty(0), isatty(1), isatty(2),
	       tcgetpgrp(0) == getpgrp());
	size("size");
	printf("ready\n");
	int sig;
	sigwait(&winch, &sig);
	size("resized");
	char line[256];
	if (!fgets(line, sizeof line, stdin))
		return 3;
	line[strcspn(line, "\n")] = 0;
	printf("line: %s\n", line);
	fgets(line, sizeof line, stdin);
	return 4;
}
