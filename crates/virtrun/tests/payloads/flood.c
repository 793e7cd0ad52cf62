/* Writes one line of argv[1] bytes ('a'..'z' repeating) and a newline. */
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
	size_t n = argc > 1 ? strtoul(argv[1], 0, 0) : 0;
	static char buf[65536];
	for (size_t i = 0; i < sizeof buf; i++) buf[i] = 'a' + i % 26;
	while (n > 0) {
		size_t chunk = n < sizeof buf ? n : sizeof buf;
		ssize_t w = write(1, buf, chunk);
		if (w <= 0) return 1;
		n -= (size_t)w;
	}
	return write(1, "\n", 1) == 1 ? 0 : 1;
}
