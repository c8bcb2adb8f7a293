// tokenizer_load.c: tokenizer_load: picks the loader from the path (a folder with tokenizer.json,
// a tokenizer.json file, or a .gguf file).
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "io/gguf.h"
#include "tokenizer/tokenizer_internal.h"

rill_status tokenizer_load(const char *path, tokenizer **out) {
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb)) return rill_fail(RILL_ENOTFOUND, "%s: no such file or folder", path);
    char buf[4096];
    if (S_ISDIR(sb.st_mode)) {
        snprintf(buf, sizeof buf, "%s/tokenizer.json", path);
        return tokenizer_load_json_file(buf, path, out);
    }
    size_t n = strlen(path);
    if (n >= 5 && !strcmp(path + n - 5, ".gguf")) {
        gguf_file *f;
        rill_status st = gguf_open(path, &f);
        if (st) return st;
        st = tokenizer_load_gguf(f, path, out);
        gguf_close(f);
        return st;
    }
    // A tokenizer.json: its configs are looked up in the same folder.
    snprintf(buf, sizeof buf, "%s", path);
    char *slash = strrchr(buf, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(buf, sizeof buf, ".");
    return tokenizer_load_json_file(path, buf, out);
}
