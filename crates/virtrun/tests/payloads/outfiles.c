/* Writes go test's output files the way a test binary would, with content the
 * host can recompute (tests/harness.rs):
 * - for each argument -test.NAME=PATH (NAME a file flag), the file PATH with
 *   content(key = the argument's index in argv); -test.mutexprofile is left
 *   unwritten, as a test that never takes a mutex profile would;
 * - for -test.gocoverdir=DIR, the files DIR/part-J (J = 0..4) with
 *   content(key = 1000 + J); part-0 is empty.
 * content(key): size(key) bytes from a xorshift32 generator seeded with key.
 * Prints each argument it got on a line of its own. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static size_t size_of(uint32_t key) {
	if (key == 1000) return 0;
	return (size_t)((key * 37) % 11) * 100000 + key + 1;
}

static int write_content(const char *path, uint32_t key) {
	FILE *f = fopen(path, "wb");
	if (!f) {
		perror(path);
		return 1;
	}
	uint32_t x = key * 2654435761u + 1;
	size_t n = size_of(key);
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		putc((int)(x >> 24), f);
	}
	if (fclose(f) != 0) {
		perror(path);
		return 1;
	}
	return 0;
}

int main(int argc, char **argv) {
	static const char *files[] = {"coverprofile", "cpuprofile", "memprofile",
				      "blockprofile", "trace"};
	int failed = 0;
	for (int i = 1; i < argc; i++) {
		printf("%s\n", argv[i]);
		const char *eq = strchr(argv[i], '=');
		if (strncmp(argv[i], "-test.", 6) != 0 || !eq) continue;
		const char *name = argv[i] + 6;
		size_t len = (size_t)(eq - name);
		const char *path = eq + 1;
		if (len == strlen("gocoverdir") && !strncmp(name, "gocoverdir", len)) {
			char file[4096];
			for (uint32_t j = 0; j < 5; j++) {
				snprintf(file, sizeof file, "%s/part-%u", path, j);
				failed |= write_content(file, 1000 + j);
			}
			continue;
		}
		for (size_t k = 0; k < sizeof files / sizeof *files; k++) {
			if (len == strlen(files[k]) && !strncmp(name, files[k], len))
				failed |= write_content(path, (uint32_t)i);
		}
	}
	return failed;
}
