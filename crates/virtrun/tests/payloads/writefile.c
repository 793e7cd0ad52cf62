/* Prints its working directory, then writes argv[2] and a newline to the
 * file argv[1]. */
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv) {
	char cwd[4096];
	if (argc != 3 || !getcwd(cwd, sizeof cwd)) return 2;
	printf("%s\n", cwd);
	FILE *f = fopen(argv[1], "w");
	if (!f || fprintf(f, "%s\n", argv[2]) < 0 || fclose(f) != 0) {
		perror(argv[1]);
		return 1;
	}
	return 0;
}
