// cli.h: the subcommands of the rill program, one file each, and the conventions they share:
// exit 0 on success, 1 for bad input (the message from rill_last_error), 2 for bad usage.
#pragma once

enum { CLI_OK = 0, CLI_BAD_INPUT = 1, CLI_BAD_USAGE = 2 };

int cmd_inspect(int argc, char **argv); // argv[0] == "inspect"
int cmd_synth(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_chat_template(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);

// Prints "rill: <rill_last_error()>" to stderr and returns CLI_BAD_INPUT.
int cli_fail_input(void);
// Prints "rill: <message>" and the command's usage line to stderr, returns CLI_BAD_USAGE.
int cli_fail_usage(const char *usage, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
