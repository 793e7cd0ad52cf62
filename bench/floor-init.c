/* The floor: the least a guest init can do. Writes one line to the console
 * and reboots (QEMU runs with -no-reboot, so it exits). */
#include <sys/reboot.h>
#include <unistd.h>
int main(void) {
	write(1, "floor\n", 6);
	reboot(RB_AUTOBOOT);
	return 0;
}
