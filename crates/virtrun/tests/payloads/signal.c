/* Kills itself with the signal given as the first argument. */
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
	kill(getpid(), argc > 1 ? atoi(argv[1]) : SIGKILL);
	pause();
	return 0;
}
