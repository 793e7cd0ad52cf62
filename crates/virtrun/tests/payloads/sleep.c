/* Says it is ready, then waits forever. */
#include <unistd.h>
int main(void) {
	if (write(1, "ready\n", 6) != 6) return 1;
	for (;;) pause();
}
