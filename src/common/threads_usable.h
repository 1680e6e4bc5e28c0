/* Whether the library's OpenMP parallel regions may start a team of threads.
 * libgomp's thread pool does not survive fork(): in a child forked after the
 * parent's first parallel region, the next region waits forever on pool
 * threads that exist only in the parent. */
#ifndef EPLB_COMMON_THREADS_USABLE_H
#define EPLB_COMMON_THREADS_USABLE_H

/* 1 in the process that loaded libeplb (and in any process it exec'd); 0 in
 * a process forked from it after the load, whose regions then run on the
 * calling thread (plans are the same whatever the thread count). Cheap: a
 * load of one flag, meant for the if clauses of the parallel regions. */
int eplb_threads_usable(void);

#endif
