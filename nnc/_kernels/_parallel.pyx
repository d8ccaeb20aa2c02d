"""The thread policy's state, its per-piece decision and the job runner, in C so nogil kernels
can ask.

Why here: every parallel piece of nnc work -- a per-sample / per-plane / per-element pass of a
kernel, or a BLAS product issued by ``_blas._gemm`` -- asks ``_par_begin(cap, kind, work)`` how
many threads it may use, and the passes run their jobs through ``_par_run``.  The answer must be
cheap (a compare below the threshold, ~50 ns above it), must not need the GIL (the compiled
whole-epoch MLP loop asks between batches) and must be one answer for the whole process, so the
state lives once, in this module, and the other kernels reach it through the functions declared
in _parallel.pxd.  The decisions and the measurements behind every number below are written at
the top of nnc/_threads.py (the Python face of this module).

State (C globals):

* ``thresholds[kind]``: below it a piece runs on the calling thread (never wakes a second one);
* ``hw``: the CPUs nnc may use (affinity set, cgroup quota; set from Python at import), and the
  CPU ids of the affinity set (the governor reads only their lines of /proc/stat);
* ``local_cap`` (thread-local): the calling thread's ``nnc.set_config(n_threads=...)``;
* ``inflight``: parallel pieces running now in this process; a new piece gets budget / inflight
  threads, so eight threads predicting at once do not start sixteen workers on two cores;
* ``forked``: set in a forked child (pthread_atfork): everything runs serially there (GNU
  OpenMP's pool does not survive fork(); a forked worker of a process pool must not add threads);
* the governor, which closes a window of >= 0.1 s whenever a thread asks for threads after one
  (one thread at a time, nothing runs in the background) and measures two things:
  - other processes' CPU use: busy jiffies of our CPUs in /proc/stat (steal included) minus this
    process's CPU time; the budget drops at once when they use more than ``slack`` CPUs of ours
    and rises again after two quiet windows;
  - how far apart two of our threads are: a 256-exchange ping-pong of one cache line between the
    caller and a pool worker (~15 us); on VMs whose vCPUs the host sometimes places on distant
    cores the exchange takes ~165 ns instead of ~30-55 ns, and every synchronised 2-thread piece
    then loses (see nnc/_threads.py), so above ``far_ns`` the budget is 1 until two probes are
    back below ``near_ns``.
  With no window in the last second it starts again from 1 thread.  Linux only (/proc/stat):
  elsewhere the governor is unavailable and the budget is the static one.
* the job runner: ``_par_run`` runs a piece's jobs on OpenBLAS's own thread pool when SciPy's
  BLAS lends it (``gotoblas_pthread``: nnc's passes and the BLAS products then share one set of
  workers), else on an OpenMP team; each job runs under the caller's floating-point control word.
"""
from libc.limits cimport INT_MAX

from nnc._kernels._openmp cimport NNC_HAVE_OPENMP

cdef extern from *:
    """
    #include <math.h>
    #include <string.h>
    #include <time.h>
    #if defined(__linux__)
    #include <fcntl.h>
    #include <unistd.h>
    #endif
    #if !defined(_WIN32)
    #include <pthread.h>
    #endif
    #ifdef _OPENMP
    #include <omp.h>
    #define NNC_PAR_OMP_MAX() omp_get_max_threads()
    #define NNC_HAVE_PAR_RUNNER 1
    #else
    #define NNC_PAR_OMP_MAX() 1
    #define NNC_HAVE_PAR_RUNNER 0
    #endif

    #define NNC_N_WORK 5
    #define NNC_MAX_CPUS 8192
    #define NNC_MAX_JOBS 64

    static double nnc_thresholds[NNC_N_WORK] = {
        /* see nnc/_threads.py, "Thresholds", for the measurements */
        2097152.0, /* WORK_GEMM: m n k */
        32768.0,   /* WORK_IM2COL: elements written */
        65536.0,   /* WORK_POOL: input elements */
        65536.0,   /* WORK_ELEMENTWISE: elements */
        65536.0    /* WORK_OPTIM: parameters */
    };
    static int nnc_hw = 1;              /* CPUs nnc may use */
    static int nnc_ncpu = 1;            /* CPUs in the affinity set (lines of /proc/stat read) */
    static unsigned char nnc_cpu_mask[NNC_MAX_CPUS / 8];
    static int nnc_forked = 0;
    static long nnc_inflight = 0;
    static NNC_TLS int nnc_local_cap = 0;    /* 0: no per-thread cap */

    static double nnc_monotonic(void) {
    #if defined(_WIN32)
        return 0.0;
    #else
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
    #endif
    }

    /* ---- running one piece's jobs: on the BLAS's thread pool when it lends one, else OpenMP */
    typedef void (*nnc_job_fn)(void*);
    typedef int (*nnc_pool_run_t)(int, void*, void*, int);
    static nnc_pool_run_t nnc_pool_run = NULL;   /* OpenBLAS gotoblas_pthread */
    static int* nnc_pool_size = NULL;            /* OpenBLAS blas_num_threads */
    static int nnc_pool_on = 1;

    #if defined(__SSE2__) || defined(_M_X64) || (defined(_M_IX86_FP) && _M_IX86_FP >= 2)
    #include <xmmintrin.h>
    #define NNC_GETCSR() _mm_getcsr()
    #define NNC_SETCSR(v) _mm_setcsr(v)
    #else
    #define NNC_GETCSR() 0u
    #define NNC_SETCSR(v) ((void)(v))
    #endif

    /* every job runs with the caller's floating-point control word (flush-to-zero in the
       compiled MLP epoch), so a piece gives the same numbers on any number of threads */
    typedef struct { nnc_job_fn fn; void* job; unsigned int csr; } nnc_tramp_t;

    static void nnc_tramp(void* p) {
        nnc_tramp_t* t = (nnc_tramp_t*)p;
        unsigned int old = NNC_GETCSR();
        if (old != t->csr) NNC_SETCSR(t->csr);
        t->fn(t->job);
        if (old != t->csr) NNC_SETCSR(old);
    }

    static int nnc_pool_usable(int nt) {
        return nnc_pool_on && nnc_pool_run != NULL && nnc_pool_size != NULL
               && *nnc_pool_size >= nt;
    }

    static void nnc_par_run(int nt, nnc_job_fn fn, void* jobs, size_t stride) {
        nnc_tramp_t tr[NNC_MAX_JOBS];
        unsigned int csr;
        int i;
        if (nt <= 1) {
            fn(jobs);
            return;
        }
        if (nt > NNC_MAX_JOBS) nt = NNC_MAX_JOBS;
        csr = NNC_GETCSR();
        for (i = 0; i < nt; i++) {
            tr[i].fn = fn;
            tr[i].job = (char*)jobs + (size_t)i * stride;
            tr[i].csr = csr;
        }
        if (nnc_pool_usable(nt)) {
            nnc_pool_run(nt, (void*)nnc_tramp, (void*)tr, (int)sizeof(nnc_tramp_t));
            return;
        }
    #ifdef _OPENMP
        #pragma omp parallel for num_threads(nt) schedule(static)
        for (i = 0; i < nt; i++) nnc_tramp(&tr[i]);
    #else
        for (i = 0; i < nt; i++) fn((char*)jobs + (size_t)i * stride);
    #endif
    }

    /* ---- how far apart two of our threads are: one cache line passed back and forth */
    typedef struct {
        long ctr;
        long n;
        int abort;
        double deadline;
        double t_start, t_end;
    } nnc_pp_shared_t;
    typedef struct { nnc_pp_shared_t* s; long me; } nnc_pp_job_t;

    static void nnc_pp_job(void* p) {
        nnc_pp_job_t* j = (nnc_pp_job_t*)p;
        nnc_pp_shared_t* s = j->s;
        long i;
        unsigned int spins = 0;
        for (i = j->me; i < s->n; i += 2) {
            while (NNC_LOAD_ACQ(&s->ctr) != i) {
                if (s->abort) return;
                if ((++spins & 4095u) == 0 && nnc_monotonic() > s->deadline) {
                    s->abort = 1;   /* the other thread did not run: no answer */
                    return;
                }
                NNC_RELAX();
            }
            if (j->me == 0 && i == 2) s->t_start = nnc_monotonic();  /* both awake */
            NNC_STORE_REL(&s->ctr, i + 1);
        }
        if (j->me == 0) s->t_end = nnc_monotonic();
    }

    /* ns per one-way hand-over of a cache line between the caller and a worker (256
       hand-overs), or -1 when the worker did not answer within 2 ms */
    static double nnc_probe_latency(void) {
        nnc_pp_shared_t s;
        nnc_pp_job_t jobs[2];
        s.ctr = 0;
        s.n = 258;
        s.abort = 0;
        s.t_start = 0.0;
        s.t_end = 0.0;
        s.deadline = nnc_monotonic() + 0.002;
        jobs[0].s = &s;
        jobs[0].me = 0;
        jobs[1].s = &s;
        jobs[1].me = 1;
        nnc_par_run(2, nnc_pp_job, jobs, sizeof(nnc_pp_job_t));
        if (s.abort || s.t_end <= s.t_start) return -1.0;
        return 1e9 * (s.t_end - s.t_start) / (double)(s.n - 3);
    }

    /* ---- the governor */
    typedef struct {
        double t_last;     /* monotonic seconds of the last sample (0: none) */
        double busy_last;  /* busy seconds of our CPUs at that time */
        double own_last;   /* this process's CPU seconds at that time */
        double others;     /* other processes' use over the last window, in CPUs (-1: unknown) */
        double lat;        /* last cache-line hand-over time, ns (-1: not measured) */
        int load_budget;   /* threads the load allows (>= 1) */
        int far;           /* 1: our cores were measured far apart */
        int budget;        /* threads allowed (>= 1) */
        int up;            /* consecutive windows that asked for more threads */
        long windows;      /* windows measured */
        /* while far: a trial of 4 windows (serial, parallel, serial, parallel) compares the
           work done per second both ways every few seconds; in between, the winner runs */
        int far_par;       /* the current window runs on the budget's threads (while far) */
        int far_choice;    /* the last trial's winner: 1 parallel, 0 serial */
        int trial;         /* the trial window running now (1..4), 0: none */
        int trial_n[2];
        double trial_rate[2];
        double next_trial; /* monotonic seconds of the next trial */
        double trial_gap;  /* seconds from this trial to the next */
        double work_last;  /* the work counter when the window opened */
        double rate;       /* work per second in the last window */
    } nnc_gov_t;

    static double nnc_gov_window = 0.1;   /* seconds */
    static double nnc_gov_stale = 1.0;    /* older samples start a new measurement */
    static double nnc_gov_slack = 0.25;   /* CPUs of others' use tolerated */
    static double nnc_gov_far_ns = 100.0; /* hand-over time above which cores count as far */
    static double nnc_gov_near_ns = 80.0; /* ... and below which they count as near again */
    static int nnc_gov_up = 2;            /* quiet windows before the load budget rises */
    static int nnc_gov_on = 1;            /* 0: governor switched off (tests, benchmarks) */
    static int nnc_gov_probe_on = 1;      /* 0: no topology probe */
    static int nnc_gov_available = 0;     /* 1: /proc/stat readable */
    static int nnc_gov_trial_windows = 4; /* serial, parallel, serial, parallel */
    static double nnc_gov_trial_every = 5.0;   /* seconds between trials while far ... */
    static double nnc_gov_trial_max = 40.0;    /* ... doubling up to this while serial wins */
    static double nnc_gov_first_trial = 2.0;   /* far: serial this long before the first trial */
    static double nnc_gov_trial_margin = 0.1;  /* parallel must do this much more work */
    static long nnc_gov_lock = 0;
    static nnc_gov_t nnc_gov;
    /* the work every candidate piece brings, weighted by its serial cost (ns per unit at one
       thread: GEMM 0.021 per multiply-add, im2col 0.4, pooling 0.5, element-wise 0.35, optimizer
       0.6 per element): a training loop's mix is steady, so work per second compares windows */
    static double nnc_work_ns[NNC_N_WORK] = {0.021, 0.4, 0.5, 0.35, 0.6};
    static double nnc_work_done = 0.0;   /* racy sums between threads are fine for a rate */
    static double nnc_clk_tck = 100.0;

    /* the load half of a window: busy / own CPU seconds now */
    static void nnc_gov_update(nnc_gov_t* g, double now, double busy, double own, int ncpu,
                               int hw) {
        if (g->t_last > 0.0 && now > g->t_last && now - g->t_last <= nnc_gov_stale) {
            double dt = now - g->t_last;
            double others = ((busy - g->busy_last) - (own - g->own_last)) / dt;
            int target;
            if (!(others > 0.0)) others = 0.0;
            target = (int)floor((double)ncpu - others + nnc_gov_slack);
            if (target > hw) target = hw;
            if (target < 1) target = 1;
            g->windows++;
            if (g->others < 0.0) {
                /* the first window after a start or a pause: no history to be careful about */
                g->load_budget = target;
                g->up = 0;
            } else if (target < g->load_budget) {
                g->load_budget = target;
                g->up = 0;
            } else if (target > g->load_budget) {
                if (++g->up >= nnc_gov_up) {
                    g->load_budget = target;
                    g->up = 0;
                }
            } else {
                g->up = 0;
            }
            g->others = others;
        } else {
            /* no usable window: remember this sample and stay on one thread until measured;
               the cores may have moved too */
            g->load_budget = 1;
            g->up = 0;
            g->others = -1.0;
            g->far = 1;
            g->far_par = 0;
            g->far_choice = 0;
            g->trial = 0;
            g->next_trial = -1.0;
            g->lat = -1.0;
        }
        g->budget = (g->far && !g->far_par) ? 1 : g->load_budget;
        g->t_last = now;
        g->busy_last = busy;
        g->own_last = own;
    }

    /* the topology half: lat = ns per hand-over, < 0 when the probe got no answer; rate = work
       per second of the window that just closed (it ran with far_par) */
    static void nnc_gov_topology(nnc_gov_t* g, double now, double lat, double rate) {
        int was_far = g->far;
        g->lat = lat;
        g->rate = rate;
        if (lat < 0.0 || lat > nnc_gov_far_ns) g->far = 1;
        else if (lat < nnc_gov_near_ns) g->far = 0;     /* in between: keep the last verdict */
        if (!g->far) {
            g->trial = 0;
            g->next_trial = -1.0;        /* far again: serial, a first trial after a while */
            g->trial_gap = 0.0;
            g->far_par = 0;
        } else {
            if (was_far && g->trial > 0) {
                g->trial_rate[g->far_par] += rate;
                g->trial_n[g->far_par]++;
                if (g->trial >= nnc_gov_trial_windows) {
                    double ser = g->trial_n[0] ? g->trial_rate[0] / g->trial_n[0] : 0.0;
                    double par = g->trial_n[1] ? g->trial_rate[1] / g->trial_n[1] : 0.0;
                    g->far_choice = par > ser * (1.0 + nnc_gov_trial_margin);
                    /* serial won clearly: try again later and later (each trial's parallel
                       windows cost what they lose); otherwise every trial_every seconds */
                    if (!g->far_choice && par < ser * (1.0 - nnc_gov_trial_margin))
                        g->trial_gap = g->trial_gap < nnc_gov_trial_every ? nnc_gov_trial_every
                                       : (2.0 * g->trial_gap > nnc_gov_trial_max
                                          ? nnc_gov_trial_max : 2.0 * g->trial_gap);
                    else
                        g->trial_gap = nnc_gov_trial_every;
                    g->trial = 0;
                    g->next_trial = now + g->trial_gap;
                } else {
                    g->trial++;
                }
            } else if (g->trial == 0 && g->next_trial < 0.0) {
                g->far_choice = 0;
                g->next_trial = now + nnc_gov_first_trial;
            } else if (g->trial == 0 && now >= g->next_trial) {
                g->trial = 1;
                g->trial_n[0] = g->trial_n[1] = 0;
                g->trial_rate[0] = g->trial_rate[1] = 0.0;
            } else if (!was_far) {
                g->trial = 0;
            }
            g->far_par = g->trial > 0 ? ((g->trial - 1) & 1) : g->far_choice;
        }
        g->budget = (g->far && !g->far_par) ? 1 : g->load_budget;
    }

    #if defined(__linux__)
    static char nnc_stat_buf[1 << 16];

    /* CPU seconds of this process (all threads) */
    static double nnc_own_cpu(void) {
        struct timespec ts;
        if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0) return -1.0;
        return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
    }

    /* busy seconds (user nice system irq softirq steal) summed over the CPUs of the mask */
    static int nnc_read_busy(double* out) {
        int fd = open("/proc/stat", O_RDONLY | O_CLOEXEC);
        ssize_t got, n = 0;
        char* p;
        char* end;
        unsigned long long total = 0;
        int any = 0;
        if (fd < 0) return -1;
        while (n < (ssize_t)sizeof(nnc_stat_buf) - 1) {
            got = read(fd, nnc_stat_buf + n, sizeof(nnc_stat_buf) - 1 - n);
            if (got <= 0) break;
            n += got;
        }
        close(fd);
        if (n <= 0) return -1;
        nnc_stat_buf[n] = 0;
        p = nnc_stat_buf;
        end = nnc_stat_buf + n;
        while (p < end && p[0] == 'c' && p[1] == 'p' && p[2] == 'u') {
            char* eol = memchr(p, '\\n', (size_t)(end - p));
            if (eol == NULL) break;   /* a truncated line: ignore it */
            if (p[3] >= '0' && p[3] <= '9') {
                char* q;
                long id = strtol(p + 3, &q, 10);
                if (id >= 0 && id < NNC_MAX_CPUS && (nnc_cpu_mask[id >> 3] >> (id & 7)) & 1) {
                    unsigned long long v[8] = {0, 0, 0, 0, 0, 0, 0, 0};
                    int i;
                    for (i = 0; i < 8 && q < eol; i++) v[i] = strtoull(q, &q, 10);
                    /* user nice system idle iowait irq softirq steal (guest is in user) */
                    total += v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
                    any = 1;
                }
            }
            p = eol + 1;
        }
        if (!any) return -1;
        *out = (double)total / nnc_clk_tck;
        return 0;
    }
    #endif

    static void nnc_gov_init(nnc_gov_t* g) {
        memset(g, 0, sizeof(*g));
        g->next_trial = -1.0;
        g->others = -1.0;
        g->lat = -1.0;
        g->load_budget = 1;
        g->far = 1;
        g->budget = 1;
    }

    /* the governor's budget now; closes a window when one is due (one thread at a time) */
    static int nnc_gov_budget(void) {
    #if defined(__linux__)
        double now, busy, own, lat, work, rate, prev;
        if (!nnc_gov_on || !nnc_gov_available) return nnc_hw;
        now = nnc_monotonic();
        if (now - nnc_gov.t_last < nnc_gov_window) return nnc_gov.budget;
        if (!NNC_TRYLOCK(&nnc_gov_lock)) return nnc_gov.budget;
        now = nnc_monotonic();
        prev = nnc_gov.t_last;
        if (now - nnc_gov.t_last >= nnc_gov_window) {
            own = nnc_own_cpu();
            if (own < 0.0 || nnc_read_busy(&busy) != 0) {
                nnc_gov_available = 0;    /* /proc unreadable: no governor from now on */
            } else {
                nnc_gov_update(&nnc_gov, now, busy, own, nnc_ncpu, nnc_hw);
                /* probe the cores only when the load leaves them to us (a busy core would
                   hold the hand-over for a time slice) and no piece is using them */
                work = nnc_work_done;
                rate = (work - nnc_gov.work_last) / (now - prev);
                nnc_gov.work_last = work;
                if (!nnc_gov_probe_on) {
                    nnc_gov.far = 0;
                    nnc_gov.budget = nnc_gov.load_budget;
                } else if (nnc_gov.load_budget >= 2 && nnc_inflight == 0
                           && (NNC_HAVE_PAR_RUNNER || nnc_pool_usable(2))) {
                    lat = nnc_probe_latency();
                    nnc_gov_topology(&nnc_gov, now, lat, rate);
                }
            }
        }
        NNC_UNLOCK(&nnc_gov_lock);
        return nnc_gov_available ? nnc_gov.budget : nnc_hw;
    #else
        return nnc_hw;
    #endif
    }

    /* ---- the decision */
    static int nnc_budget(int cap, int use_omp) {
        int b, o, g;
        if (nnc_forked) return 1;
        b = nnc_hw;
        if (cap < b) b = cap;
        if (nnc_local_cap > 0 && nnc_local_cap < b) b = nnc_local_cap;
        if (use_omp) {
            o = NNC_PAR_OMP_MAX();
            if (o < b) b = o;
        }
        if (b <= 1) return 1;
        g = nnc_gov_budget();
        if (g < b) b = g;
        if (b > NNC_MAX_JOBS) b = NNC_MAX_JOBS;
        return b < 1 ? 1 : b;
    }

    static int nnc_par_begin(int cap, int kind, double work) {
        int b, nt;
        long k;
        if (cap <= 1 || kind < 0 || kind >= NNC_N_WORK || !(work >= nnc_thresholds[kind]))
            return 1;
        nnc_work_done += work * nnc_work_ns[kind];
        b = nnc_budget(cap, kind != 0);
        if (b <= 1) return 1;
        k = NNC_ADD(&nnc_inflight, 1);
        nt = (int)(b / (k > 0 ? k : 1));
        if (nt <= 1) {
            NNC_ADD(&nnc_inflight, -1);
            return 1;
        }
        return nt;
    }

    static void nnc_par_end(int nt) {
        if (nt > 1) NNC_ADD(&nnc_inflight, -1);
    }

    #if !defined(_WIN32)
    static void nnc_parallel_atfork_child(void) {
        nnc_forked = 1;
        nnc_inflight = 0;
        nnc_gov_lock = 0;
    }
    #endif

    static int nnc_parallel_init(void) {
    #if defined(__linux__)
        long tck = sysconf(_SC_CLK_TCK);
        double busy;
        if (tck > 0) nnc_clk_tck = (double)tck;
    #endif
    #if !defined(_WIN32)
        if (pthread_atfork(NULL, NULL, nnc_parallel_atfork_child) != 0) return -1;
    #endif
        nnc_gov_init(&nnc_gov);
    #if defined(__linux__)
        memset(nnc_cpu_mask, 0, sizeof(nnc_cpu_mask));
        nnc_cpu_mask[0] = 1;
        nnc_gov_available = (nnc_own_cpu() >= 0.0 && nnc_read_busy(&busy) == 0);
    #endif
        return 0;
    }
    """
    int NNC_MAX_CPUS
    double nnc_thresholds[5]
    int nnc_hw, nnc_ncpu, nnc_forked
    long nnc_inflight
    unsigned char nnc_cpu_mask[1024]
    int nnc_local_cap
    ctypedef struct nnc_gov_t:
        double t_last
        double busy_last
        double own_last
        double others
        double lat
        int load_budget
        int far
        int budget
        int up
        long windows
        int far_par
        int far_choice
        int trial
        double next_trial
        double rate
    double nnc_gov_window, nnc_gov_stale, nnc_gov_slack, nnc_gov_far_ns, nnc_gov_near_ns
    int nnc_gov_up, nnc_gov_on, nnc_gov_probe_on, nnc_gov_available
    nnc_gov_t nnc_gov
    void nnc_gov_update(nnc_gov_t* g, double now, double busy, double own, int ncpu,
                        int hw) noexcept nogil
    void nnc_gov_topology(nnc_gov_t* g, double now, double lat, double rate) noexcept nogil
    void nnc_gov_init(nnc_gov_t* g) noexcept nogil
    double nnc_monotonic() noexcept nogil
    double nnc_probe_latency() noexcept nogil
    int nnc_gov_budget() noexcept nogil
    int nnc_budget(int cap, int use_omp) noexcept nogil
    int nnc_par_begin(int cap, int kind, double work) noexcept nogil
    void nnc_par_end(int nt) noexcept nogil
    int nnc_parallel_init() noexcept nogil
    ctypedef void (*nnc_job_fn)(void*) noexcept nogil
    ctypedef int (*nnc_pool_run_t)(int, void*, void*, int) noexcept nogil
    nnc_pool_run_t nnc_pool_run
    int* nnc_pool_size
    int nnc_pool_on
    int nnc_pool_usable(int nt) noexcept nogil
    void nnc_par_run(int nt, nnc_job_fn fn, void* jobs, size_t stride) noexcept nogil
    unsigned int NNC_GETCSR() noexcept nogil
    void NNC_SETCSR(unsigned int v) noexcept nogil

if nnc_parallel_init() != 0:
    raise ImportError("nnc._kernels._parallel: pthread_atfork failed")

WORK_KINDS = ("gemm", "im2col", "pool", "elementwise", "optim")
MAX_THREADS = MAX_JOBS       # the most threads one piece is split into


cdef int _par_begin(int cap, int kind, double work) noexcept nogil:
    return nnc_par_begin(cap, kind, work)


cdef void _par_end(int n_threads) noexcept nogil:
    nnc_par_end(n_threads)


cdef void _par_run(int n_threads, job_fn fn, void* jobs, size_t stride) noexcept nogil:
    nnc_par_run(n_threads, <nnc_job_fn>fn, jobs, stride)


# ---------------------------------------------------------------- Python face (nnc._threads, tests)

def _kind(kind):
    if isinstance(kind, str):
        if kind not in WORK_KINDS:
            raise ValueError(f"unknown kind of work {kind!r}; choose from {WORK_KINDS}")
        return WORK_KINDS.index(kind)
    kind = int(kind)
    if not 0 <= kind < N_WORK_KINDS:
        raise ValueError(f"unknown kind of work {kind}")
    return kind


def threads_for(kind, double work, int cap=INT_MAX):
    """Threads a piece of `work` of `kind` ('gemm', 'im2col', 'pool', 'elementwise', 'optim')
    would get from this thread now (the decision _par_begin makes; nothing stays registered)."""
    cdef int k = _kind(kind)
    cdef int nt
    with nogil:
        nt = nnc_par_begin(cap, k, work)
        nnc_par_end(nt)
    return nt


def begin_piece(kind, double work, int cap=INT_MAX):
    """_par_begin from Python (tests): the piece stays registered until end_piece(result)."""
    cdef int k = _kind(kind)
    cdef int nt
    with nogil:
        nt = nnc_par_begin(cap, k, work)
    return nt


def end_piece(int n_threads):
    """_par_end from Python (tests)."""
    nnc_par_end(n_threads)


def budget(int cap=INT_MAX, bint openmp=True):
    """Threads this thread may use now for a piece above the thresholds: min(cap, the thread's
    config cap, omp_get_max_threads() (openmp=True), CPUs, governor); 1 in a forked child."""
    cdef int b
    with nogil:
        b = nnc_budget(cap, openmp)
    return b


def thresholds():
    """{kind: threshold} (see nnc/_threads.py for the units and measurements)."""
    return {name: nnc_thresholds[i] for i, name in enumerate(WORK_KINDS)}


def set_threshold(kind, double value):
    """Change one threshold (tests and benchmarks only); returns the old value."""
    cdef int k = _kind(kind)
    if not value >= 0:
        raise ValueError(f"threshold must be >= 0, got {value}")
    old = nnc_thresholds[k]
    nnc_thresholds[k] = value
    return old


def set_cpus(int hw, cpu_ids):
    """The CPUs nnc may use: hw threads at most, the governor reads the lines of cpu_ids."""
    global nnc_hw, nnc_ncpu
    cdef int c, n = 0
    ids = sorted({int(c) for c in cpu_ids if 0 <= int(c) < NNC_MAX_CPUS})
    if hw < 1:
        raise ValueError(f"hw must be >= 1, got {hw}")
    for i in range(sizeof(nnc_cpu_mask)):
        nnc_cpu_mask[i] = 0
    for c in ids:
        nnc_cpu_mask[c >> 3] |= <unsigned char>(1 << (c & 7))
        n += 1
    if n == 0:            # unknown affinity: count the first hw CPUs
        for c in range(min(hw, NNC_MAX_CPUS)):
            nnc_cpu_mask[c >> 3] |= <unsigned char>(1 << (c & 7))
        n = min(hw, NNC_MAX_CPUS)
    nnc_ncpu = n
    nnc_hw = min(hw, n)


def cpus():
    """(hw, number of CPUs in the affinity set)."""
    return nnc_hw, nnc_ncpu


def set_local_cap(int n):
    """The calling thread's thread cap (0: none); nnc._config keeps it equal to the thread's
    config n_threads."""
    global nnc_local_cap
    nnc_local_cap = max(n, 0)


def local_cap():
    return nnc_local_cap


def forked():
    """True in a process forked from the one that imported nnc."""
    return bool(nnc_forked)


def inflight():
    """Parallel pieces running now in this process."""
    return nnc_inflight


def governor_state():
    """The governor: {'available', 'on', 'budget', 'load_budget', 'others', 'latency_ns', 'far',
    'age', 'windows', 'window', 'slack'}; 'others' is other processes' CPU use over the last
    window (None: not measured), 'latency_ns' the last cache-line hand-over time between two of
    our threads (None: not measured), 'age' the seconds since the last sample (None: none)."""
    cdef double now
    with nogil:
        nnc_gov_budget()            # close a due window, so the answer is current
    now = nnc_monotonic()
    active = nnc_gov_on and nnc_gov_available
    return {"available": bool(nnc_gov_available), "on": bool(nnc_gov_on),
            "budget": nnc_gov.budget if active else nnc_hw,
            "load_budget": nnc_gov.load_budget if active else nnc_hw,
            "others": nnc_gov.others if nnc_gov.others >= 0 else None,
            "latency_ns": nnc_gov.lat if nnc_gov.lat >= 0 else None,
            "far": bool(nnc_gov.far), "far_parallel": bool(nnc_gov.far and nnc_gov.far_par),
            "trial": nnc_gov.trial,
            "age": now - nnc_gov.t_last if nnc_gov.t_last > 0 else None,
            "windows": nnc_gov.windows, "window": nnc_gov_window, "slack": nnc_gov_slack,
            "far_ns": nnc_gov_far_ns, "near_ns": nnc_gov_near_ns}


def set_governor(bint on):
    """Switch the governor on or off (off: the budget ignores other processes and where the
    cores are; tests and the benchmark's forced-thread runs only); returns the old setting."""
    global nnc_gov_on
    old = bool(nnc_gov_on)
    nnc_gov_on = on
    return old


def governor_reset():
    """Forget the measurements (the next window starts from 1 thread)."""
    nnc_gov_init(&nnc_gov)


def set_probe(bint on):
    """Measure how far apart the cores are (True, the default) or assume they are near (False:
    machines whose probe misleads); returns the old setting."""
    global nnc_gov_probe_on
    old = bool(nnc_gov_probe_on)
    nnc_gov_probe_on = on
    return old


def probe_latency():
    """One probe of the governor: ns per cache-line hand-over between this thread and a worker
    (None when the worker did not answer within 2 ms; needs two CPUs)."""
    cdef double lat
    if nnc_hw < 2:
        return None
    with nogil:
        lat = nnc_probe_latency()
    return lat if lat >= 0 else None


def governor_simulate(samples, int ncpu, int hw, bint probe=True):
    """Feed the governor's rules (the same C functions the live governor runs) with samples
    (t seconds, busy CPU-seconds of our CPUs, this process's CPU-seconds, hand-over ns of the
    probe or None when it got no answer[, work per second of the window]) and return (budget,
    others) after each.  As live, the probe's result is used only when the load leaves two or
    more CPUs (probe=False: as if the probe were switched off).  Unit tests check the rules
    this way, without timing anything."""
    cdef nnc_gov_t g
    nnc_gov_init(&g)
    out = []
    for sample in samples:
        t, busy, own, lat = sample[:4]
        rate = sample[4] if len(sample) > 4 else 0.0
        nnc_gov_update(&g, float(t), float(busy), float(own), ncpu, hw)
        if not probe:
            g.far = 0
            g.budget = g.load_budget
        elif g.load_budget >= 2:
            nnc_gov_topology(&g, float(t), -1.0 if lat is None else float(lat), float(rate))
        out.append((g.budget, g.others if g.others >= 0 else None))
    return out


def set_pool(size_t run_addr, size_t size_addr):
    """Lend nnc the BLAS's thread pool for its parallel loops: OpenBLAS's
    ``int gotoblas_pthread(int n, void* fn, void* args, int stride)`` and the address of its
    ``int blas_num_threads`` (pool size).  0, 0 takes it back (loops then run on OpenMP)."""
    global nnc_pool_run, nnc_pool_size
    if (run_addr == 0) != (size_addr == 0):
        raise ValueError("set_pool: give both addresses or neither")
    nnc_pool_run = NULL
    nnc_pool_size = <int*>size_addr
    nnc_pool_run = <nnc_pool_run_t>run_addr


def pool():
    """Where a piece's jobs run: 'blas pool' (OpenBLAS's threads), 'openmp' or 'serial'."""
    if nnc_pool_usable(2):
        return "blas pool"
    return "openmp" if NNC_HAVE_OPENMP else "serial"


def set_pool_enabled(bint on):
    """Use the BLAS's pool when lent (True) or OpenMP (False; tests); returns the old setting."""
    global nnc_pool_on
    old = bool(nnc_pool_on)
    nnc_pool_on = on
    return old


cdef struct _TestJob:
    long* out
    Py_ssize_t lo, hi


cdef void _test_job(void* p) noexcept nogil:
    cdef _TestJob* j = <_TestJob*>p
    cdef Py_ssize_t i
    for i in range(j.lo, j.hi):
        j.out[2 * i] += 1                      # how many times item i was done
        j.out[2 * i + 1] = NNC_GETCSR()        # the control word it was done under


def run_test_jobs(int n_threads, long[::1] out_, unsigned int csr=0):
    """Run n = len(out_) // 2 items as n_threads static jobs through _par_run (with the
    floating-point control word csr when it is not 0, restored afterwards): tests check that
    every item ran once under the caller's control word."""
    cdef _TestJob jobs[MAX_JOBS]
    cdef Py_ssize_t n = out_.shape[0] // 2
    cdef int t
    cdef unsigned int old = NNC_GETCSR()
    if not 1 <= n_threads <= MAX_JOBS:
        raise ValueError(f"n_threads must be in [1, {MAX_JOBS}]")
    for t in range(n_threads):
        jobs[t].out = &out_[0]
        jobs[t].lo = _chunk_lo(n, n_threads, t)
        jobs[t].hi = _chunk_lo(n, n_threads, t + 1)
    with nogil:
        if csr:
            NNC_SETCSR(csr)
        _par_run(n_threads, _test_job, jobs, sizeof(_TestJob))
        NNC_SETCSR(old)
