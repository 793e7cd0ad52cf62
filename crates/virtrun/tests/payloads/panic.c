/* Crashes the guest kernel through sysrq. */
#include <fcntl.h>
#include <unistd.h>
int main(void) {
	int fd = open("/proc/sysrq-trigger", O_WRONLY);
	if (fd < 0) return 3;
	write(fd, "c", 1);
	return 4;
}
