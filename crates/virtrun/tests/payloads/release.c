/* Prints the kernel's release; fails (exit 7) on a generic Debian kernel
 * (one whose release ends in -amd64 without -cloud-), passes elsewhere: a
 * payload that fails on one kernel of a matrix only. */
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>

int main(void) {
	struct utsname u;
	if (uname(&u) != 0)
		return 2;
	printf("release %s\n", u.release);
	size_t n = strlen(u.release);
	int generic = n > 6 && strcmp(u.release + n - 6, "-amd64") == 0 && !strstr(u.release, "-cloud-");
	return generic ? 7 : 0;
}
