#define _GNU_SOURCE
/* The device nodes of modules that a host has from boot: a TUN device made
 * through /dev/net/tun (which loads tun on demand), and the modes of
 * /dev/net/tun, /dev/fuse and /dev/loop-control. */
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

static void node(const char *path) {
	struct stat st;
	if (stat(path, &st) != 0) {
		printf("%s: missing\n", path);
		return;
	}
	printf("%s: %c %u:%u %o\n", path, S_ISCHR(st.st_mode) ? 'c' : '?', major(st.st_rdev),
	       minor(st.st_rdev), st.st_mode & 0777);
}

int main(void) {
	node("/dev/net/tun");
	node("/dev/fuse");
	node("/dev/loop-control");
	int fd = open("/dev/net/tun", O_RDWR);
	if (fd < 0) {
		perror("open /dev/net/tun");
		return 1;
	}
	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
	strncpy(ifr.ifr_name, "vrtun0", IFNAMSIZ);
	if (ioctl(fd, TUNSETIFF, &ifr) != 0) {
		perror("TUNSETIFF");
		return 1;
	}
	printf("tun: %s\n", ifr.ifr_name);
	return 0;
}
