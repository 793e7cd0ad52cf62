/* Writes argv[1] bytes to stdout and argv[2] bytes to stderr, interleaved in
 * 64 KiB chunks. Byte i of stdout is (i * 31 + 7) % 251, of stderr
 * (i * 17 + 3) % 241, so the reader can check content and order. */
#include <stdlib.h>
#include <unistd.h>
static int put(int fd, size_t *done, size_t total, unsigned mul, unsigned add, unsigned mod) {
	static unsigned char buf[65536];
	size_t n = total - *done < sizeof buf ? total - *done : sizeof buf;
	for (size_t i = 0; i < n; i++) buf[i] = (unsigned char)(((*done + i) * mul + add) % mod);
	for (size_t off = 0; off < n;) {
		ssize_t w = write(fd, buf + off, n - off);
		if (w <= 0) return -1;
		off += (size_t)w;
	}
	*done += n;
	return 0;
}
int main(int argc, char **argv) {
	size_t out = argc > 1 ? strtoul(argv[1], 0, 0) : 0;
	size_t err = argc > 2 ? strtoul(argv[2], 0, 0) : 0;
	size_t o = 0, e = 0;
	while (o < out || e < err) {
		if (o < out && put(1, &o, out, 31, 7, 251)) return 1;
		/* Keep stderr proportional to stdout. */
		while (e < err && (out == 0 || e * out <= o * err))
			if (put(2, &e, err, 17, 3, 241)) return 1;
	}
	return 0;
}
