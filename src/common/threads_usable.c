#include "common/threads_usable.h"

#include <pthread.h>

/* Set in a forked child, before fork() returns there, while the child has
 * one thread; threads it starts later see it through pthread_create. It stays
 * set in the child's own children too, since they inherit a dead pool also. */
static int forked_after_load;

static void on_fork_child(void)
{
    forked_after_load = 1;
}

/* At load rather than at the first plan: a program that used OpenMP itself
 * (or through another library) before forking leaves the child the same
 * broken pool, whether or not eplb had planned yet. glibc drops the handler
 * when the library is unloaded. A failed registration (out of memory) leaves
 * threads on, as before this guard. */
__attribute__((constructor)) static void register_fork_handler(void)
{
    (void)pthread_atfork(NULL, NULL, on_fork_child);
}

int eplb_threads_usable(void)
{
    return !forked_after_load;
}
