// synth.c: `rill synth --preset NAME|--config FILE --bits B --out DIR`: write a model folder with
// real shapes and random weights (src/model/synth.c), for speed runs where real weights can't go.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/mapfile.h"
#include "cli.h"
#include "model/synth.h"

static const char *USAGE =
    "synth (--preset NAME | --config FILE) --bits 4|8|16 --out DIR [--group-size G] [--seed S] [--list]";

static int list_presets(void) {
    for (const char *const *n = synth_preset_names(); *n; n++) printf("%s\n", *n);
    return CLI_OK;
}

int cmd_synth(int argc, char **argv) {
    const char *preset = NULL, *config_path = NULL, *out = NULL;
    synth_options opt = {.bits = 0, .group_size = 64, .seed = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--list")) return list_presets();
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: rill %s\n", USAGE);
            return CLI_OK;
        }
        if (!v) return cli_fail_usage(USAGE, "'%s' needs a value", a);
        char *end = NULL;
        if (!strcmp(a, "--preset")) preset = v;
        else if (!strcmp(a, "--config")) config_path = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--bits")) opt.bits = (int)strtol(v, &end, 10);
        else if (!strcmp(a, "--group-size")) opt.group_size = (int)strtol(v, &end, 10);
        else if (!strcmp(a, "--seed")) opt.seed = strtoull(v, &end, 10);
        else return cli_fail_usage(USAGE, "unknown option '%s'", a);
        if (end && *end) return cli_fail_usage(USAGE, "'%s %s': not a number", a, v);
        i++;
    }
    if (!preset == !config_path) return cli_fail_usage(USAGE, "give exactly one of --preset and --config");
    if (!out) return cli_fail_usage(USAGE, "no --out DIR given");
    if (opt.bits != 4 && opt.bits != 8 && opt.bits != 16) return cli_fail_usage(USAGE, "--bits must be 4, 8 or 16");
    if (opt.group_size != 32 && opt.group_size != 64 && opt.group_size != 128)
        return cli_fail_usage(USAGE, "--group-size must be 32, 64 or 128");
    if (preset) {
        const char *json = synth_preset_config(preset);
        if (!json) return cli_fail_usage(USAGE, "unknown preset '%s' (rill synth --list names them)", preset);
        return synth_write_folder(json, preset, &opt, out) == RILL_OK ? CLI_OK : cli_fail_input();
    }
    mapped_file mf;
    if (mapped_file_open(&mf, config_path, 0) != RILL_OK) return cli_fail_input();
    char *json = rill_malloc(mf.size + 1);
    if (!json) {
        mapped_file_close(&mf);
        return cli_fail_input();
    }
    memcpy(json, mf.data, mf.size);
    json[mf.size] = '\0';
    mapped_file_close(&mf);
    rill_status st = synth_write_folder(json, config_path, &opt, out);
    rill_free(json);
    return st == RILL_OK ? CLI_OK : cli_fail_input();
}
