/* Dynamically linked against libgreet (found through RUNPATH $ORIGIN on the
 * host): greets argv[2] (or "greet"), then runs argv[1] alone if given, else
 * exits with 42. */
#include <unistd.h>
void greet(const char *who);
int main(int argc, char **argv) {
	greet(argc > 2 ? argv[2] : "greet");
	if (argc > 1) {
		char *child[] = {argv[1], 0};
		execv(argv[1], child);
		return 127;
	}
	return 42;
}
