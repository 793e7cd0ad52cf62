/* Says it is ready, waits for SIGINT, reports it, then dies of it. */
#include <signal.h>
#include <string.h>
#include <unistd.h>
static void on_int(int sig) {
	const char msg[] = "got SIGINT\n";
	write(1, msg, sizeof msg - 1);
	signal(sig, SIG_DFL);
	raise(sig);
}
int main(void) {
	signal(SIGINT, on_int);
	if (write(1, "ready\n", 6) != 6) return 1;
	for (;;) pause();
}
