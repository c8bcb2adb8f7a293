// main.c: the rill program: dispatches to one subcommand per file.
#include <stdio.h>
#include <string.h>

#include "rill.h"

static void usage(FILE *out) {
    fprintf(out, "usage: rill <command> [options]\n\ncommands:\n"
                 "  inspect PATH [--json]   describe a GGUF file, a safetensors file or a model folder\n"
                 "  version                 print the version\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("rill %s\n", RILL_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "rill: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
