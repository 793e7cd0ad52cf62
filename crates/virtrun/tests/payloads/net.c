#define _GNU_SOURCE
/* The guest's network: its interfaces (sorted), its resolver, and with
 * ADDRESS PORT a request to a server there, whose answer it prints. */
#include <arpa/inet.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int by_name(const struct dirent **a, const struct dirent **b) {
	return strcmp((*a)->d_name, (*b)->d_name);
}

int main(int argc, char **argv) {
	struct dirent **names;
	int n = scandir("/sys/class/net", &names, NULL, by_name);
	printf("interfaces:");
	for (int i = 0; i < n; i++)
		if (names[i]->d_name[0] != '.')
			printf(" %s", names[i]->d_name);
	printf("\n");
	FILE *resolv = fopen("/etc/resolv.conf", "r");
	char line[256] = "";
	printf("resolv.conf: %s", resolv && fgets(line, sizeof line, resolv) ? line : "none\n");
	if (argc < 3)
		return 0;
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
	inet_pton(AF_INET, argv[1], &to.sin_addr);
	int s = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(s, (struct sockaddr *)&to, sizeof to) != 0) {
		perror("connect");
		return 1;
	}
	const char *request = "ping from the guest\n";
	write(s, request, strlen(request));
	shutdown(s, SHUT_WR);
	char answer[256];
	ssize_t got = read(s, answer, sizeof answer - 1);
	if (got < 0) {
		perror("read");
		return 1;
	}
	answer[got] = 0;
	printf("answer: %s", answer);
	return 0;
}
