// safetensors_set.c: the safetensors files that together hold one model. A folder with
// model.safetensors.index.json (weight_map: tensor name -> shard file), a folder of *.safetensors
// files, or one file. Each shard is opened once; the set's tensors are sorted by name so that
// safetensors_set_find is a binary search. Shard names from an index must be plain file names.
#include "io/safetensors.h"

#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/alloc.h"

#define INDEX_NAME "model.safetensors.index.json"

typedef struct {
    const safetensors_tensor *t;
    const safetensors_file *f;
} owned_tensor;

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

static int cmp_owned(const void *a, const void *b) {
    return strcmp(((const owned_tensor *)a)->t->name, ((const owned_tensor *)b)->t->name);
}

// Opens dir/name[i] for each i into s->files (allocated here, in the given order).
static rill_status open_files(safetensors_set *s, const char *dir, const char *const *names, size_t n,
                              const char *context) {
    s->files = calloc(n + 1, sizeof *s->files);
    if (!s->files) return rill_fail(RILL_ENOMEM, "%s: out of memory", dir);
    for (size_t i = 0; i < n; i++) {
        char *p = NULL;
        if (asprintf(&p, "%s/%s", dir, names[i]) < 0) return rill_fail(RILL_ENOMEM, "%s: out of memory", dir);
        rill_status st = safetensors_open(p, &s->files[i]);
        free(p);
        if (st != RILL_OK) {
            if (context) rill_error_prefix("%s: shard '%s'", context, names[i]);
            return st;
        }
        s->n_files++;
    }
    return RILL_OK;
}

// Takes `all` (n entries), sorts it by name, rejects a name held twice and fills s->tensors/owners.
static rill_status finish(safetensors_set *s, owned_tensor *all, size_t n, const char *path) {
    qsort(all, n, sizeof *all, cmp_owned);
    for (size_t i = 1; i < n; i++)
        if (!strcmp(all[i - 1].t->name, all[i].t->name)) {
            rill_status st = rill_fail(RILL_EFORMAT, "%s: tensor '%s' is in both %s and %s", path, all[i].t->name,
                                       all[i - 1].f->map.path, all[i].f->map.path);
            rill_free(all);
            return st;
        }
    s->tensors = rill_calloc(n + 1, sizeof *s->tensors);
    s->owners = rill_calloc(n + 1, sizeof *s->owners);
    if (!s->tensors || !s->owners) {
        rill_free(all);
        return rill_fail(RILL_ENOMEM, "%s: no memory for %zu tensors", path, n);
    }
    for (size_t i = 0; i < n; i++) {
        s->tensors[i] = all[i].t;
        s->owners[i] = all[i].f;
    }
    s->n_tensors = n;
    rill_free(all);
    return RILL_OK;
}

// Every tensor of every file in the set.
static rill_status collect_all(safetensors_set *s, const char *path) {
    size_t n = 0, k = 0;
    for (size_t i = 0; i < s->n_files; i++)
        n += s->files[i]->n_tensors;
    owned_tensor *all = rill_calloc(n + 1, sizeof *all);
    if (!all) return rill_fail(RILL_ENOMEM, "%s: no memory for %zu tensors", path, n);
    for (size_t i = 0; i < s->n_files; i++)
        for (size_t j = 0; j < s->files[i]->n_tensors; j++)
            all[k++] = (owned_tensor){&s->files[i]->tensors[j], s->files[i]};
    return finish(s, all, n, path);
}

static rill_status open_single(safetensors_set *s, const char *path) {
    s->files = calloc(1, sizeof *s->files);
    if (!s->files) return rill_fail(RILL_ENOMEM, "%s: out of memory", path);
    rill_status st = safetensors_open(path, &s->files[0]);
    if (st != RILL_OK) return st;
    s->n_files = 1;
    return collect_all(s, path);
}

// The sorted names of the *.safetensors regular files in dir (free each, then the array).
static rill_status list_folder(const char *dir, char ***out, size_t *n_out) {
    DIR *d = opendir(dir);
    if (!d) return rill_fail(RILL_ENOTFOUND, "%s: cannot open the folder", dir);
    char **names = NULL;
    size_t n = 0, cap = 0;
    rill_status st = RILL_OK;
    struct dirent *e;
    while (st == RILL_OK && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || !ends_with(e->d_name, ".safetensors")) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            char **grown = realloc(names, cap * sizeof *names);
            if (!grown)
                st = rill_fail(RILL_ENOMEM, "%s: out of memory", dir);
            else
                names = grown;
        }
        if (st == RILL_OK && !(names[n++] = strdup(e->d_name))) st = rill_fail(RILL_ENOMEM, "%s: out of memory", dir);
    }
    closedir(d);
    if (st == RILL_OK && n) qsort(names, n, sizeof *names, cmp_str);
    *out = names;
    *n_out = n;
    return st;
}

static rill_status open_folder(safetensors_set *s, const char *dir) {
    char **names = NULL;
    size_t n = 0;
    rill_status st = list_folder(dir, &names, &n);
    if (st == RILL_OK && n == 0)
        st = rill_fail(RILL_ENOTFOUND, "%s: no %s and no *.safetensors file in the folder", dir, INDEX_NAME);
    if (st == RILL_OK) st = open_files(s, dir, (const char *const *)names, n, NULL);
    if (st == RILL_OK) st = collect_all(s, dir);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return st;
}

// A shard name from an index must name a file inside the folder.
static bool plain_file_name(const char *s) { return s[0] && !strchr(s, '/') && !strstr(s, ".."); }

// Checks the weight_map (an object of plain shard file names) and lists its distinct shards.
static rill_status index_shards(const char *index, const json_t *map, const char ***out, size_t *n_out) {
    if (!json_is_object(map))
        return rill_fail(RILL_EFORMAT, "%s: field 'weight_map' is missing or not an object", index);
    const char **names = malloc((json_object_size(map) + 1) * sizeof *names);
    if (!names) return rill_fail(RILL_ENOMEM, "%s: out of memory", index);
    size_t n = 0;
    const char *key;
    const json_t *val;
    json_object_foreach((json_t *)map, key, val) {
        if (!json_is_string(val) || !plain_file_name(json_string_value(val))) {
            free(names);
            return rill_fail(RILL_EFORMAT, "%s: weight_map['%s']: the shard is not a plain file name in the folder",
                             index, key);
        }
        names[n++] = json_string_value(val);
    }
    qsort(names, n, sizeof *names, cmp_str);
    size_t u = 0;
    for (size_t i = 0; i < n; i++)
        if (!u || strcmp(names[u - 1], names[i])) names[u++] = names[i];
    *out = names;
    *n_out = u;
    return RILL_OK;
}

// Binds every weight_map entry to its tensor in its shard (shards[i] is s->files[i]).
static rill_status bind_weight_map(safetensors_set *s, const char *index, const json_t *map, const char **shards) {
    owned_tensor *all = rill_calloc(json_object_size(map) + 1, sizeof *all);
    if (!all) return rill_fail(RILL_ENOMEM, "%s: out of memory", index);
    size_t n = 0;
    const char *key;
    const json_t *val;
    json_object_foreach((json_t *)map, key, val) {
        const char *shard = json_string_value(val);
        const char **hit = bsearch(&shard, shards, s->n_files, sizeof *shards, cmp_str);
        const safetensors_file *f = s->files[hit - shards];
        const safetensors_tensor *t = safetensors_find(f, key);
        if (!t) {
            rill_free(all);
            return rill_fail(RILL_EFORMAT, "%s: weight_map['%s']: the tensor is not in shard %s", index, key,
                             f->map.path);
        }
        all[n++] = (owned_tensor){t, f};
    }
    return finish(s, all, n, index);
}

static rill_status open_index(safetensors_set *s, const char *index, const char *dir) {
    json_error_t err;
    json_t *root = json_load_file(index, JSON_REJECT_DUPLICATES, &err);
    if (!root) return rill_fail(RILL_EFORMAT, "%s: line %d column %d: %s", index, err.line, err.column, err.text);
    const json_t *map = json_object_get(root, "weight_map");
    const char **shards = NULL;
    size_t n = 0;
    rill_status st = index_shards(index, map, &shards, &n);
    if (st == RILL_OK) st = open_files(s, dir, shards, n, index);
    if (st == RILL_OK) st = bind_weight_map(s, index, map, shards);
    free(shards);
    json_decref(root);
    return st;
}

static rill_status open_path(safetensors_set *s, const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) return rill_fail(RILL_ENOTFOUND, "%s: no such file or folder", path);
    if (!S_ISDIR(st.st_mode)) {
        if (!ends_with(path, ".json")) return open_single(s, path);
        char *dir = strdup(path), *slash = dir ? strrchr(dir, '/') : NULL;
        if (!dir) return rill_fail(RILL_ENOMEM, "%s: out of memory", path);
        if (slash) *slash = '\0';
        rill_status r = open_index(s, path, slash ? dir : ".");
        free(dir);
        return r;
    }
    char *index = NULL;
    if (asprintf(&index, "%s/%s", path, INDEX_NAME) < 0) return rill_fail(RILL_ENOMEM, "%s: out of memory", path);
    rill_status r = stat(index, &st) == 0 ? open_index(s, index, path) : open_folder(s, path);
    free(index);
    return r;
}

rill_status safetensors_set_open(const char *path, safetensors_set **out) {
    *out = NULL;
    safetensors_set *s = calloc(1, sizeof *s);
    if (!s) return rill_fail(RILL_ENOMEM, "%s: out of memory", path);
    rill_status st = open_path(s, path);
    if (st != RILL_OK) {
        safetensors_set_close(s);
        return st;
    }
    *out = s;
    return RILL_OK;
}

void safetensors_set_close(safetensors_set *s) {
    if (!s) return;
    for (size_t i = 0; i < s->n_files; i++)
        safetensors_close(s->files[i]);
    free(s->files);
    rill_free(s->tensors);
    rill_free(s->owners);
    free(s);
}

const safetensors_tensor *safetensors_set_find(const safetensors_set *s, const char *name) {
    return safetensors_lookup(s->tensors, s->n_tensors, name);
}
