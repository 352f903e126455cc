/* Timestamps of the unit split's steps, for `python -m bench.step_trace`:
   where a step's time goes on each thread (its product, its gate pass, its
   copies, its wait at the meeting) and how much of a call is outside the
   step loop. Compiled in only when the kernels are built with FASTRNN_TRACE=1
   (setup.py); otherwise every mark is an empty inline function and the
   kernels are the same code.

   Each of the first FASTRNN_TRACE_THREADS threads of a team fills its own
   rows: one row of FASTRNN_TRACE_POINTS time stamps per step (the step's
   start, its last product done, its last gate pass done, its arrival at the
   end-of-step meeting, its departure; a cell of two products, the
   reset-before GRU, counts its first gate pass and the meeting over r ⊙
   h_{t-1} in the product), read from the time-stamp counter on
   x86 (a mark costs a few nanoseconds; the caller converts ticks with a rate
   it measures) and CLOCK_MONOTONIC nanoseconds elsewhere. Rows past
   FASTRNN_TRACE_STEPS are dropped until the trace is read and cleared.
   One trace per kernel build loaded; not safe for concurrent calls from
   several Python threads (a tool for one measured call at a time). */
#ifndef FASTRNN_TRACE_H
#define FASTRNN_TRACE_H
#include "_openmp.h"           /* fastrnn_now_ns */

#ifndef FASTRNN_TRACE
#define FASTRNN_TRACE 0
#endif
#define FASTRNN_TRACE_THREADS 2
#define FASTRNN_TRACE_STEPS 65536
#define FASTRNN_TRACE_POINTS 5

static inline long long fastrnn_trace_clock(void) {
#if defined(__x86_64__) || defined(__i386__)
    return (long long) __builtin_ia32_rdtsc();
#else
    return fastrnn_now_ns();
#endif
}

#if FASTRNN_TRACE
static long long fastrnn_trace_t[FASTRNN_TRACE_THREADS][FASTRNN_TRACE_STEPS][FASTRNN_TRACE_POINTS];
static int fastrnn_trace_rows[FASTRNN_TRACE_THREADS];

/* thread tid's time stamp `point` of its current step; the last point ends
   the row. The first stamps every point but the last, so that a mark the
   step skips (a thread with no units has no product) reads as no time. */
static inline void fastrnn_trace_mark(int tid, int point) {
    if (tid >= FASTRNN_TRACE_THREADS) return;
    const int row = fastrnn_trace_rows[tid];
    if (row >= FASTRNN_TRACE_STEPS) return;
    const long long now = fastrnn_trace_clock();
    for (int p = point; p < (point == 0 ? FASTRNN_TRACE_POINTS - 1 : point + 1); p++)
        fastrnn_trace_t[tid][row][p] = now;
    if (point == FASTRNN_TRACE_POINTS - 1) fastrnn_trace_rows[tid] = row + 1;
}

/* rows thread tid has filled; its stamps at fastrnn_trace_stamps(tid) */
static inline int fastrnn_trace_count(int tid) { return fastrnn_trace_rows[tid]; }
static inline const long long *fastrnn_trace_stamps(int tid) { return &fastrnn_trace_t[tid][0][0]; }
static inline void fastrnn_trace_clear(void) {
    for (int t = 0; t < FASTRNN_TRACE_THREADS; t++) fastrnn_trace_rows[t] = 0;
}
#else
static inline void fastrnn_trace_mark(int tid, int point) { (void) tid; (void) point; }
static inline int fastrnn_trace_count(int tid) { (void) tid; return 0; }
static inline const long long *fastrnn_trace_stamps(int tid) { (void) tid; return 0; }
static inline void fastrnn_trace_clear(void) {}
#endif
#endif
