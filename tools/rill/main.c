// main.c: the rill program: dispatches to one subcommand per file (cli.h).
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "rill.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} subcommand;

static const subcommand subcommands[] = {
    {"generate", cmd_generate, "generate --model PATH --prompt TEXT [--max-tokens N] [--temp T] ...   generate text"},
    {"inspect", cmd_inspect, "inspect PATH [--json]   describe a GGUF file, a safetensors file or a model folder"},
    {"chat-template", cmd_chat_template,
     "chat-template --model PATH --messages FILE.json [--add-generation-prompt] [--var k=v]   render a prompt"},
    {"chat", cmd_chat,
     "chat --model PATH [--system-prompt TEXT] [--max-tokens N] [--temp T] ...   a REPL that keeps its cache"},
    {"tokenize", cmd_tokenize,
     "tokenize --model PATH (--text T | --file F) [--no-special]   print token ids; --decode 1,2,3 prints text"},
    {"cache-prompt", cmd_cache_prompt,
     "cache-prompt --model PATH --prompt TEXT|- --prompt-cache-file F [--kv-bits B] [--max-kv-size N]   save a prompt "
     "cache"},
    {"synth", cmd_synth, "synth --preset NAME --bits B --out DIR   write a model folder with random weights"},
    {"estimate", cmd_estimate,
     "estimate --model PATH [--context N] [--batch B] [--kv-bits 4|8] [--lora-rank R] [--json] ...   memory budget of "
     "a run"},
    {"bench", cmd_bench,
     "bench --model PATH [-p 512] [-g 128] [-n 5] [--threads N] [--json] [--profile]   prompt and generation speed"},
};

static void usage(FILE *out) {
    fprintf(out, "usage: rill <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++)
        fprintf(out, "  %s\n", subcommands[i].help);
    fprintf(out, "  version                 print the version\n");
}

int cli_fail_input(void) {
    fprintf(stderr, "rill: %s\n", rill_last_error());
    return CLI_BAD_INPUT;
}

int cli_fail_usage(const char *usage_line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("rill: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nusage: rill %s\n", usage_line);
    return CLI_BAD_USAGE;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return CLI_BAD_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("rill %s\n", RILL_VERSION);
        return CLI_OK;
    }
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return CLI_OK;
    }
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++)
        if (!strcmp(cmd, subcommands[i].name)) return subcommands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "rill: unknown command '%s'\n", cmd);
    usage(stderr);
    return CLI_BAD_USAGE;
}
