// cli.h: the subcommands of the rill program, one file each, and the conventions they share:
// exit 0 on success, 1 for bad input (the message from rill_last_error), 2 for bad usage.
#pragma once
#include <stdbool.h>
#include <stdio.h>

#include "generate/generate.h"

enum { CLI_OK = 0, CLI_BAD_INPUT = 1, CLI_BAD_USAGE = 2 };

int cmd_inspect(int argc, char **argv); // argv[0] == "inspect"
int cmd_synth(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_chat_template(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_estimate(int argc, char **argv);

// Prints "rill: <rill_last_error()>" to stderr and returns CLI_BAD_INPUT.
int cli_fail_input(void);
// Prints "rill: <message>" and the command's usage line to stderr, returns CLI_BAD_USAGE.
int cli_fail_usage(const char *usage, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// The generation flags of generate and chat (gen_flags.c).
enum { CLI_MAX_EXTRA_EOS = 16 };
typedef struct {
    generate_params p; // max_tokens 100, the CLI's default
    int threads;       // 0: one per core
    const char *device;
    int32_t extra_eos[CLI_MAX_EXTRA_EOS]; // [n_extra_eos]
    int n_extra_eos;
    int max_kv_size; // --max-kv-size: 0, or every layer a RotatingKVCache of this size (make_prompt_cache)
    bool wired;      // --wired: pin the weights (mlock)
} cli_gen_opts;
void cli_gen_opts_init(cli_gen_opts *o);
// Parses argv[*i] when it is a generation flag (*matched), advancing *i past its value; returns
// CLI_OK, or CLI_BAD_USAGE (message printed) for a missing or out-of-range value.
int cli_gen_flag(cli_gen_opts *o, int argc, char **argv, int *i, const char *usage, bool *matched);
// CLI_BAD_USAGE when an --extra-eos-token lies outside the vocabulary.
// --wired: pins m's weights (model_wire), printing a warning when the memlock limit forbids it and,
// with verbose, what was pinned. Only on the CPU device (elsewhere the weights are device memory).
void cli_wire_model(const rill_model *m, const char *device, bool verbose);
int cli_gen_check_vocab(const cli_gen_opts *o, int vocab, const char *usage);
bool cli_parse_long(const char *s, long lo, long hi, long *out);
bool cli_parse_double(const char *s, double lo, double hi, double *out);
// All of f (a prompt given as "-": stdin) as a NUL-terminated string to free(), or NULL when out of memory.
char *cli_read_all(FILE *f);

// Caches (cache_cli.c). The cache of a run: loaded from cache_file (checked against the model: its
// path in the file's "model" metadata, the layer shapes, and kv_bits / kv_group_size for a quantized
// cache, as mlx-lm checks them) or, without one, make_prompt_cache with max_kv_size (0: none).
#include "model/model.h"
rill_status cli_make_cache(rill_model *m, rill_stream *s, const char *model_path, const char *cache_file,
                           int64_t max_kv_size, int kv_bits, int kv_group_size, rill_cache **out);
int cmd_cache_prompt(int argc, char **argv);
