/* A malloc that fails on request, loaded with LD_PRELOAD into a program under
 * test (tests/test_faults.c runs the eplb tool through it).
 *
 * EPLB_TEST_FAIL_MALLOC=N makes the N-th heap allocation of the process
 * (counted from 1 over every thread and every allocating call: malloc,
 * calloc, realloc to a non-zero size, reallocarray and the aligned ones)
 * return NULL with errno ENOMEM; every other call goes to glibc. Functions
 * that allocate inside glibc (strdup, fopen, getline, ...) call malloc, so
 * they are counted too. When the failure is injected and
 * EPLB_TEST_FAIL_MALLOC_MARK names a file, that file is created, so the
 * caller can tell a run that reached the N-th allocation from one that
 * needed fewer.
 *
 * The replacement calls glibc's exported __libc_* entry points rather than
 * looking the next malloc up with dlsym, which itself allocates. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *ptr, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);

static unsigned long fail_at;      /* 0: never fail */
static const char *mark_path;
static int configured;
static unsigned long allocations;  /* updated atomically: OpenMP threads allocate too */

/* The environment is read on the first allocation, which happens while the
 * process is still single-threaded; getenv does not allocate. */
static void configure(void)
{
    if (__atomic_load_n(&configured, __ATOMIC_ACQUIRE))
        return;
    const char *text = getenv("EPLB_TEST_FAIL_MALLOC");
    unsigned long n = 0;
    for (; text && *text >= '0' && *text <= '9'; text++)
        n = n * 10 + (unsigned long)(*text - '0');
    fail_at = n;
    mark_path = getenv("EPLB_TEST_FAIL_MALLOC_MARK");
    __atomic_store_n(&configured, 1, __ATOMIC_RELEASE);
}

/* Counts one allocation; says whether this one must fail. */
static int must_fail(void)
{
    configure();
    unsigned long n = __atomic_add_fetch(&allocations, 1, __ATOMIC_RELAXED);
    if (fail_at == 0 || n != fail_at)
        return 0;
    if (mark_path && *mark_path) {
        int fd = open(mark_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd >= 0)
            close(fd);
    }
    errno = ENOMEM;
    return 1;
}

void *malloc(size_t size)
{
    return must_fail() ? NULL : __libc_malloc(size);
}

void *calloc(size_t count, size_t size)
{
    return must_fail() ? NULL : __libc_calloc(count, size);
}

void *realloc(void *ptr, size_t size)
{
    /* realloc(p, 0) frees: not an allocation that can fail. */
    if (ptr && size == 0)
        return __libc_realloc(ptr, size);
    return must_fail() ? NULL : __libc_realloc(ptr, size);
}

void *reallocarray(void *ptr, size_t count, size_t size)
{
    size_t bytes;
    if (__builtin_mul_overflow(count, size, &bytes)) {
        errno = ENOMEM;
        return NULL;
    }
    return realloc(ptr, bytes);
}

void *memalign(size_t alignment, size_t size)
{
    return must_fail() ? NULL : __libc_memalign(alignment, size);
}

void *aligned_alloc(size_t alignment, size_t size)
{
    return memalign(alignment, size);
}

int posix_memalign(void **out, size_t alignment, size_t size)
{
    if (alignment < sizeof(void *) || (alignment & (alignment - 1)) != 0)
        return EINVAL;
    void *p = memalign(alignment, size);
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}

void *valloc(size_t size)
{
    return memalign((size_t)sysconf(_SC_PAGESIZE), size);
}

void *pvalloc(size_t size)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    return memalign(page, (size + page - 1) / page * page);
}
