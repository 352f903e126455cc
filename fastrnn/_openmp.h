/* OpenMP for fastrnn's kernels, with serial stand-ins when the build has no
   OpenMP, and the spin barrier the unit-split kernels meet at (declared to
   Cython in _openmp.pxd). */
#ifndef FASTRNN_OPENMP_H
#define FASTRNN_OPENMP_H
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#define FASTRNN_HAVE_OPENMP 1
/* wait for every thread of the enclosing parallel region */
#define fastrnn_barrier() _Pragma("omp barrier")
#else
#define FASTRNN_HAVE_OPENMP 0
static int omp_get_max_threads(void) { return 1; }
static int omp_get_thread_num(void) { return 0; }
static int omp_get_num_threads(void) { return 1; }
static int omp_get_num_procs(void) { return 1; }
#define fastrnn_barrier()
#endif

/* A barrier for the threads of one parallel region (one per kernel call,
   so concurrent calls from several Python threads do not share it): each
   thread owns a cache line holding the number of times it has arrived; it
   arrives by storing its next count there (release) and waits until every
   other thread's count has reached it (acquire). The unit-split kernels meet
   once or twice per recurrence step, so the barrier's cost is paid per step:
   against a shared counter and a flag flipped by the last thread to arrive,
   a waiting thread here reads the line of the thread it waits for as soon
   as that thread stores to it, one transfer between cores instead of the
   counter's and then the flag's (`python -m bench.limits` times it beside
   the OpenMP barrier). A team has at most FASTRNN_BARRIER_SLOTS threads.
   After 2048 pauses (8 when there are more threads than processors) a
   waiting thread yields its CPU, so an oversubscribed team still makes
   progress. */

#if defined(__unix__) || defined(__APPLE__)
#include <sched.h>
#define fastrnn_yield() sched_yield()
#else
#define fastrnn_yield()
#endif
#if defined(__x86_64__) || defined(__i386__)
#define fastrnn_pause() __builtin_ia32_pause()
#else
#define fastrnn_pause()
#endif
#define FASTRNN_BARRIER_SLOTS 64
typedef struct {
    struct {
        int arrived;    /* times this thread has arrived */
        char pad[60];
    } slot[FASTRNN_BARRIER_SLOTS] __attribute__((aligned(64)));
    int spins;          /* pauses before a waiting thread yields its CPU */
} fastrnn_spin_barrier;

/* the processors this process may run on, asked once: GNU OpenMP's
   omp_get_num_procs asks the kernel for the affinity mask on every call (a
   system call per unit-split call otherwise). An affinity changed later is not
   seen: the count only sets how soon a waiting thread yields. Relaxed atomics:
   two threads asking first both store the same answer. */
static int fastrnn_procs = 0;

static inline int fastrnn_num_procs(void) {
    int n = __atomic_load_n(&fastrnn_procs, __ATOMIC_RELAXED);
    if (n <= 0) {
        n = omp_get_num_procs();
        __atomic_store_n(&fastrnn_procs, n, __ATOMIC_RELAXED);
    }
    return n;
}

/* for a team of nthreads (at most FASTRNN_BARRIER_SLOTS); with more threads
   than processors a waiting thread yields almost at once (the thread it
   waits for needs the CPU) */
static inline void fastrnn_spin_init(fastrnn_spin_barrier *b, int nthreads) {
    if (nthreads > FASTRNN_BARRIER_SLOTS) nthreads = FASTRNN_BARRIER_SLOTS;
    for (int t = 0; t < nthreads; t++) b->slot[t].arrived = 0;
    b->spins = nthreads <= fastrnn_num_procs() ? 2048 : 8;
}

/* monotonic nanoseconds (the vDSO clock: ~20 ns, read only by a thread that
   waits long) */
static inline long long fastrnn_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long) ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* every one of the nthreads threads (tid its number in the team) calls this
   with its own count of arrivals (starting at 0, kept between calls).
   waited: NULL, or where to add the nanoseconds this thread waited past its
   first 64 pauses (a partner late by more than noise; the clock is not read
   for shorter waits). A thread can be at most one arrival ahead of another
   (it waits for the other at each), so the counts are compared as a
   difference, which wraps around safely. */
static inline void fastrnn_spin_wait_timed(fastrnn_spin_barrier *b, int nthreads, int tid,
                                           int *arrivals, long long *waited) {
    const unsigned mine = (unsigned) *arrivals + 1u;
    *arrivals = (int) mine;
    __atomic_store_n(&b->slot[tid].arrived, (int) mine, __ATOMIC_RELEASE);
    int spins = 0, pauses = 0;
    long long start = 0;
    for (int t = 0; t < nthreads; t++) {
        if (t == tid) continue;
        while ((int) ((unsigned) __atomic_load_n(&b->slot[t].arrived, __ATOMIC_ACQUIRE)
                      - mine) < 0) {
            fastrnn_pause();
            if (pauses < 64 && ++pauses == 64 && waited != NULL)
                start = fastrnn_now_ns();
            if (++spins >= b->spins) {
                fastrnn_yield();
                spins = 0;
            }
        }
    }
    if (start != 0)
        *waited += fastrnn_now_ns() - start;
}

static inline void fastrnn_spin_wait(fastrnn_spin_barrier *b, int nthreads, int tid,
                                     int *arrivals) {
    fastrnn_spin_wait_timed(b, nthreads, tid, arrivals, NULL);
}
#endif
