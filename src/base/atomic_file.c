// atomic_file.c: temporary file + fsync + rename, so a crash never leaves a half-written file.
#include "base/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>
#include <unistd.h>

rill_status atomic_file_open(atomic_file *f, const char *path) {
    memset(f, 0, sizeof *f);
    size_t n = strlen(path);
    f->path = strdup(path);
    f->tmp_path = malloc(n + 16);
    if (!f->path || !f->tmp_path) {
        atomic_file_abort(f);
        return rill_fail(RILL_ENOMEM, "%s: out of memory", path);
    }
    snprintf(f->tmp_path, n + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(f->tmp_path);
    if (fd < 0) {
        rill_status st = rill_fail(RILL_EIO, "%s: cannot create a temporary file: %s", path, strerror(errno));
        free(f->tmp_path);
        f->tmp_path = NULL;
        atomic_file_abort(f);
        return st;
    }
    fchmod(fd, 0644);
    f->fp = fdopen(fd, "wb");
    if (!f->fp) {
        close(fd);
        atomic_file_abort(f);
        return rill_fail(RILL_EIO, "%s: fdopen failed", path);
    }
    return RILL_OK;
}

rill_status atomic_file_write(atomic_file *f, const void *data, size_t n) {
    if (f->st != RILL_OK) return f->st;
    if (n && fwrite(data, 1, n, f->fp) != n)
        f->st = rill_fail(RILL_EIO, "%s: write failed: %s", f->path, strerror(errno));
    return f->st;
}

static void fsync_parent(const char *path) {
    char *copy = strdup(path);
    if (!copy) return;
    int dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    free(copy);
}

rill_status atomic_file_commit(atomic_file *f) {
    rill_status st = f->st;
    if (st == RILL_OK && (fflush(f->fp) != 0 || fsync(fileno(f->fp)) != 0))
        st = rill_fail(RILL_EIO, "%s: flush failed: %s", f->path, strerror(errno));
    if (fclose(f->fp) != 0 && st == RILL_OK)
        st = rill_fail(RILL_EIO, "%s: close failed: %s", f->path, strerror(errno));
    f->fp = NULL;
    if (st == RILL_OK && rename(f->tmp_path, f->path) != 0)
        st = rill_fail(RILL_EIO, "%s: rename from %s failed: %s", f->path, f->tmp_path, strerror(errno));
    if (st == RILL_OK) {
        fsync_parent(f->path);
        free(f->tmp_path);
        f->tmp_path = NULL;
    }
    atomic_file_abort(f);
    return st;
}

void atomic_file_abort(atomic_file *f) {
    if (f->fp) fclose(f->fp);
    if (f->tmp_path) unlink(f->tmp_path);
    free(f->tmp_path);
    free(f->path);
    memset(f, 0, sizeof *f);
}

rill_status atomic_file_write_all(const char *path, const void *data, size_t n) {
    atomic_file f;
    rill_status st = atomic_file_open(&f, path);
    if (st != RILL_OK) return st;
    st = atomic_file_write(&f, data, n);
    if (st != RILL_OK) {
        atomic_file_abort(&f);
        return st;
    }
    return atomic_file_commit(&f);
}
