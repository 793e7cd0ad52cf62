/* The floor: the least a guest init can do. Writes one line with the time
 * it started (guest monotonic clock, microseconds since the kernel started)
 * to the console and reboots (QEMU runs with -no-reboot, so it exits). */
#include <stdio.h>
#include <sys/reboot.h>
#include <time.h>
#include <unistd.h>
int main(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	char line[64];
	int n = snprintf(line, sizeof line, "floor %lld\n",
			 (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
	write(1, line, (size_t)n);
	reboot(RB_AUTOBOOT);
	return 0;
}
