// chat_template.c: `rill chat-template --model PATH --messages FILE.json [--tools FILE.json]
// [--add-generation-prompt] [--var k=v]... [--template-name NAME]`: prints the prompt that the
// model's chat template renders, exactly as transformers' apply_chat_template(tokenize=False).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base/alloc.h"
#include "base/status.h"
#include "cli.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/chat_template_source.h"

static const char *USAGE = "chat-template --model PATH --messages FILE.json [--tools FILE.json] "
                           "[--add-generation-prompt] [--var KEY=VALUE]... [--template-name NAME]";

// --var k=v: v is taken as JSON when it parses (true, 3, "x", [..]), else as a plain string.
static int add_var(json_t *vars, const char *kv) {
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv) return 0;
    char key[256];
    snprintf(key, sizeof key, "%.*s", (int)(eq - kv), kv);
    json_t *v = json_loads(eq + 1, JSON_DECODE_ANY, NULL);
    json_object_set_new(vars, key, v ? v : json_string(eq + 1));
    return 1;
}

static json_t *load_json_file(const char *path) {
    json_error_t err;
    json_t *j = json_load_file(path, JSON_DECODE_ANY, &err);
    if (!j) rill_fail(RILL_EFORMAT, "%s: line %d, column %d: %s", path, err.line, err.column, err.text);
    return j;
}

static int render(const chat_template_source *src, const json_t *messages, const json_t *tools, bool add_gen,
                  const json_t *vars) {
    if (!src->template_src) {
        fprintf(stderr, "rill: %s: the model has no chat template\n", src->origin ? src->origin : "model");
        return CLI_BAD_INPUT;
    }
    chat_template *t;
    if (chat_template_compile(src->template_src, strlen(src->template_src), &t) != RILL_OK) {
        rill_error_prefix("%s", src->origin);
        return cli_fail_input();
    }
    char *out;
    size_t len;
    rill_status st =
        chat_template_apply(t, messages, tools, add_gen, src->bos_token, src->eos_token, vars, &out, &len);
    chat_template_free(t);
    if (st != RILL_OK) return cli_fail_input();
    fwrite(out, 1, len, stdout);
    rill_free(out);
    return CLI_OK;
}

int cmd_chat_template(int argc, char **argv) {
    const char *model = NULL, *messages_path = NULL, *tools_path = NULL, *name = NULL;
    bool add_gen = false;
    json_t *vars = json_object();
    int rc = CLI_OK;
    for (int i = 1; i < argc && rc == CLI_OK; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--add-generation-prompt")) {
            add_gen = true;
            continue;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: rill %s\n", USAGE);
            json_decref(vars);
            return CLI_OK;
        }
        if (!v) {
            rc = cli_fail_usage(USAGE, "'%s' needs a value", a);
            break;
        }
        if (!strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--messages")) messages_path = v;
        else if (!strcmp(a, "--tools")) tools_path = v;
        else if (!strcmp(a, "--template-name")) name = v;
        else if (!strcmp(a, "--var")) {
            if (!add_var(vars, v)) rc = cli_fail_usage(USAGE, "--var '%s': expected KEY=VALUE", v);
        } else rc = cli_fail_usage(USAGE, "unknown option '%s'", a);
        i++;
    }
    if (rc == CLI_OK && (!model || !messages_path)) rc = cli_fail_usage(USAGE, "--model and --messages are required");
    json_t *doc = NULL, *tools_doc = NULL;
    chat_template_source src = {0};
    if (rc == CLI_OK && !(doc = load_json_file(messages_path))) rc = cli_fail_input();
    if (rc == CLI_OK && tools_path && !(tools_doc = load_json_file(tools_path))) rc = cli_fail_input();
    if (rc == CLI_OK) {
        // The messages file is a list of messages, or an object with "messages" (and "tools").
        const json_t *messages = json_is_object(doc) ? json_object_get(doc, "messages") : doc;
        const json_t *tools = tools_doc ? tools_doc : json_is_object(doc) ? json_object_get(doc, "tools") : NULL;
        if (!json_is_array(messages)) {
            fprintf(stderr, "rill: %s: expected a list of messages or an object with \"messages\"\n", messages_path);
            rc = CLI_BAD_INPUT;
        } else if (chat_template_source_load(model, name, &src) != RILL_OK) {
            rc = cli_fail_input();
        } else {
            rc = render(&src, messages, tools, add_gen, vars);
        }
    }
    chat_template_source_free(&src);
    json_decref(doc);
    json_decref(tools_doc);
    json_decref(vars);
    return rc;
}
