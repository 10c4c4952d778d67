/* A wall clock set off by a number of seconds, for tests of a host whose clock is wrong.
 * Loaded with LD_PRELOAD; the offset is read from the file $NEXTBEST_TEST_CLOCK_OFFSET_FILE
 * (seconds, may be negative) at most once a second, so a test can move it while the process
 * runs. Only the wall clock moves: CLOCK_MONOTONIC is left alone, as on a host whose time
 * is set wrong. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

static long long offset = 0;
static time_t read_at = 0;
static int (*real_clock_gettime)(clockid_t, struct timespec *) = 0;

static void refresh(time_t now) {
    if (read_at != 0 && now - read_at < 1) return;
    read_at = now;
    const char *path = getenv("NEXTBEST_TEST_CLOCK_OFFSET_FILE");
    if (!path) return;
    FILE *f = fopen(path, "r");
    if (!f) return;
    long long v;
    if (fscanf(f, "%lld", &v) == 1) offset = v;
    fclose(f);
}

int clock_gettime(clockid_t clock, struct timespec *ts) {
    if (!real_clock_gettime) real_clock_gettime = dlsym(RTLD_NEXT, "clock_gettime");
    int r = real_clock_gettime(clock, ts);
    if (r == 0 && (clock == CLOCK_REALTIME || clock == CLOCK_REALTIME_COARSE)) {
        refresh(ts->tv_sec);
        ts->tv_sec += offset;
    }
    return r;
}

int gettimeofday(struct timeval *tv, void *tz) {
    (void)tz;
    struct timespec ts;
    int r = clock_gettime(CLOCK_REALTIME, &ts);
    if (r == 0 && tv) {
        tv->tv_sec = ts.tv_sec;
        tv->tv_usec = ts.tv_nsec / 1000;
    }
    return r;
}
