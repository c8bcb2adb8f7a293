// mapfile.c: mmap a whole file read-only, with optional read-ahead and pinning.
#include "base/mapfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"

static const uint8_t empty_file[1];

rill_status mapped_file_open(mapped_file *mf, const char *path, int flags) {
    memset(mf, 0, sizeof *mf);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return rill_fail(errno == ENOENT ? RILL_ENOTFOUND : RILL_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return rill_fail(RILL_EIO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return rill_fail(RILL_EIO, "%s: not a regular file", path);
    }
    mf->size = (size_t)st.st_size;
    if (mf->size == 0) {
        mf->data = empty_file;
    } else {
        void *p = mmap(NULL, mf->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            return rill_fail(RILL_EIO, "%s: cannot map %zu bytes: %s", path, mf->size, strerror(e));
        }
        mf->data = p;
        if (flags & MAP_FILE_WILLNEED) madvise(p, mf->size, MADV_WILLNEED);
        if (flags & MAP_FILE_PIN) {
            if (mlock(p, mf->size) == 0) {
                mf->pinned = true;
            } else {
                struct rlimit rl = {0};
                getrlimit(RLIMIT_MEMLOCK, &rl);
                log_warn("%s: cannot pin %zu bytes in memory (%s; memlock limit %llu bytes); "
                         "going on unpinned", path, mf->size, strerror(errno), (unsigned long long)rl.rlim_cur);
            }
        }
    }
    close(fd);
    mf->path = strdup(path);
    return RILL_OK;
}

void mapped_file_close(mapped_file *mf) {
    if (mf->data && mf->data != empty_file) {
        if (mf->pinned) munlock((void *)mf->data, mf->size);
        munmap((void *)mf->data, mf->size);
    }
    free(mf->path);
    memset(mf, 0, sizeof *mf);
}
