/* When the unit split runs as a team and when on the calling thread alone.

   The unit-split kernels meet at a barrier every step, so they progress only
   while every thread of the team is on a core at the same time. Another
   thread pool in the process can take a core away for milliseconds: ONNX
   Runtime's workers spin for tens of milliseconds after each of its calls,
   and the scheduler then gives fastrnn's second thread that core in slices,
   every step waiting for it (`python -m bench.coexist`); a process keeping
   a core busy does the same to either thread, and while one thread is off
   its core the others wait. A team call that made no progress (the sum of
   its threads' waits over team size - 1) for more than 40% of its time,
   and at least 50 us (a partner woken after idle takes tens of microseconds
   to arrive, which says nothing of the next call), ran slower than one
   thread would have: with its lost time taken out it would have been
   1 - 0.4 = 0.6 of that, and one thread takes 1.6-2.1 times as long as two
   on the unit split's calls. After such a late call the
   next calls run on the calling thread alone (no team to wait for), then
   one call tries the team again: the stretch alone doubles while the tries
   keep coming late (1, 2, 4, ... 256 calls, at most a second) and halves
   with every healthy team call (no progress for at most 25% of it; a call
   between the two leaves the stretch as it is). In a loop of fastrnn calls
   alone a late call is rare (bench.coexist counts them: a few in a thousand
   on the 2-vCPU VMs this was measured on) and costs one call on one
   thread.

   The state is the process's (shared by every Python thread; relaxed atomics:
   a lost update only moves a heuristic), one per kernel build loaded. */
#ifndef FASTRNN_TEAM_H
#define FASTRNN_TEAM_H
#include "_openmp.h"           /* fastrnn_now_ns */

#define FASTRNN_TEAM_MAX_STRETCH 256

#define FASTRNN_TEAM_MAX_SOLO_NS 1000000000LL
#define FASTRNN_TEAM_MIN_LATE_NS 50000LL

static int fastrnn_team_solo_left = 0;       /* calls left to run alone */
static long long fastrnn_team_solo_until = 0; /* ... or until then (now_ns) */
static int fastrnn_team_stretch = 1;         /* the next stretch alone */
/* calls counted since the last reset, for tests and bench.coexist:
   [0] team calls, [1] of them late, [2] calls run alone by this policy */
static long long fastrnn_team_counts[3] = {0, 0, 0};

/* the team size for a unit-split call that asks for nthreads */
static inline int fastrnn_team_size(int nthreads) {
    if (nthreads < 2)
        return nthreads;
    int left = __atomic_load_n(&fastrnn_team_solo_left, __ATOMIC_RELAXED);
    if (left <= 0)
        return nthreads;
    if (fastrnn_now_ns() > __atomic_load_n(&fastrnn_team_solo_until, __ATOMIC_RELAXED)) {
        __atomic_store_n(&fastrnn_team_solo_left, 0, __ATOMIC_RELAXED);
        return nthreads;
    }
    __atomic_store_n(&fastrnn_team_solo_left, left - 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&fastrnn_team_counts[2], 1, __ATOMIC_RELAXED);
    return 1;
}

/* after a call of team size nthreads that took total_ns, of which waited_ns
   without progress (its threads' waits over nthreads - 1) */
static inline void fastrnn_team_report(int nthreads, long long waited_ns, long long total_ns) {
    if (nthreads < 2)
        return;
    int stretch = __atomic_load_n(&fastrnn_team_stretch, __ATOMIC_RELAXED);
    __atomic_add_fetch(&fastrnn_team_counts[0], 1, __ATOMIC_RELAXED);
    if (4 * waited_ns <= total_ns || waited_ns <= FASTRNN_TEAM_MIN_LATE_NS) {
        __atomic_store_n(&fastrnn_team_stretch, stretch > 1 ? stretch / 2 : 1,
                         __ATOMIC_RELAXED);                  /* healthy */
        return;
    }
    if (5 * waited_ns <= 2 * total_ns)
        return;                                              /* no better alone: no news */
    __atomic_add_fetch(&fastrnn_team_counts[1], 1, __ATOMIC_RELAXED);
    __atomic_store_n(&fastrnn_team_solo_until, fastrnn_now_ns() + FASTRNN_TEAM_MAX_SOLO_NS,
                     __ATOMIC_RELAXED);
    __atomic_store_n(&fastrnn_team_solo_left, stretch, __ATOMIC_RELAXED);
    __atomic_store_n(&fastrnn_team_stretch,
                     stretch < FASTRNN_TEAM_MAX_STRETCH ? 2 * stretch : stretch,
                     __ATOMIC_RELAXED);
}

/* back to the first state (tests) */
static inline void fastrnn_team_reset(void) {
    __atomic_store_n(&fastrnn_team_solo_left, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&fastrnn_team_stretch, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < 3; i++)
        __atomic_store_n(&fastrnn_team_counts[i], 0, __ATOMIC_RELAXED);
}

/* one of the counts (0 team calls, 1 late team calls, 2 calls alone) */
static inline long long fastrnn_team_count(int which) {
    return __atomic_load_n(&fastrnn_team_counts[which], __ATOMIC_RELAXED);
}
#endif
