/* Writes argv[1] lines of argv[2] bytes each (the last one a newline); line k
 * is made of the byte 'A' + k % 26. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
	size_t count = argc > 1 ? strtoul(argv[1], 0, 0) : 0;
	size_t len = argc > 2 ? strtoul(argv[2], 0, 0) : 1;
	char *line = malloc(len);
	if (!line || len == 0) return 1;
	for (size_t k = 0; k < count; k++) {
		memset(line, 'A' + (int)(k % 26), len - 1);
		line[len - 1] = '\n';
		for (size_t off = 0; off < len;) {
			ssize_t w = write(1, line + off, len - off);
			if (w <= 0) return 1;
			off += (size_t)w;
		}
	}
	return 0;
}
