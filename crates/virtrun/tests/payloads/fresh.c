/* Prints 32 bytes of getrandom(2) in hex and the wall clock (seconds since
 * the epoch), a line each: what must differ between two restores of one
 * snapshot, and what must be the host's. */
#include <stdio.h>
#include <sys/random.h>
#include <time.h>
int main(void) {
	unsigned char buf[32];
	if (getrandom(buf, sizeof buf, 0) != sizeof buf) return 1;
	for (size_t i = 0; i < sizeof buf; i++) printf("%02x", buf[i]);
	printf("\n%lld\n", (long long)time(NULL));
	return 0;
}
