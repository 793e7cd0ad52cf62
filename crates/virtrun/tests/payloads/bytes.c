/* Writes every byte value 0..255 to stdout, and one line to stderr. */
#include <unistd.h>
int main(void) {
	unsigned char all[256];
	for (int i = 0; i < 256; i++) all[i] = (unsigned char)i;
	if (write(1, all, sizeof all) != sizeof all) return 1;
	if (write(2, "only on stderr\n", 15) != 15) return 1;
	return 0;
}
