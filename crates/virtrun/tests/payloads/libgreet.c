/* A shared library that is not libc: the resolver must find and pack it. */
#include <stdio.h>
void greet(const char *who) { printf("hello from %s\n", who); fflush(stdout); }
