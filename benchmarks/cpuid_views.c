/* Another CPU's answers to cpuid, for one process: an LD_PRELOAD library for
 * benchmarks/cpuid_views.py.
 *
 * Linux's CPUID faulting (arch_prctl ARCH_SET_CPUID, 0; the "cpuid_fault" CPU flag) makes every
 * cpuid instruction of the process, and of the threads and children it starts, raise SIGSEGV.
 * The handler executes the real cpuid, rewrites the answer as the environment says, and steps
 * over the instruction, so every library that reads the CPU itself (Eigen, oneDNN's Xbyak,
 * TensorFlow, libgcc) sees the other CPU's vendor, caches and instruction sets. What the
 * hardware computes does not change: an instruction's results stay this CPU's.
 *
 * Environment (all optional):
 *   CPUID_VENDOR_AMD=1          vendor AuthenticAMD, caches in AMD's leaves (0x80000005/6, 0x8000001D)
 *   CPUID_L1, CPUID_L2, CPUID_L3   data cache sizes in bytes (Intel's leaf 4, or AMD's leaves)
 *   CPUID_CLEAR_7B/7C/7D/71A     feature bits to clear in leaf 7 (EBX, ECX, EDX; sub-leaf 1 EAX)
 *   CPUID_TRACE=FILE             append "library offset leaf sub-leaf" for every cpuid executed
 *
 * Other code's SIGSEGV handlers are not installed while this one runs (TensorFlow installs one
 * for stack traces), so a real segmentation fault ends the process as without handler.
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

typedef int (*sigaction_fn)(int, const struct sigaction *, struct sigaction *);
static int trace_fd = -1;

static int real_sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
    static sigaction_fn real;
    if (!real) real = (sigaction_fn)dlsym(RTLD_NEXT, "sigaction");
    return real(sig, act, old);
}

int sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
    if (sig == SIGSEGV && act) {
        if (old) memset(old, 0, sizeof *old);
        return 0;
    }
    return real_sigaction(sig, act, old);
}

static unsigned long setting(const char *name, unsigned long fallback) {
    const char *v = getenv(name);
    return v ? strtoul(v, 0, 0) : fallback;
}

static void real_cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
    syscall(SYS_arch_prctl, ARCH_SET_CPUID, 1);
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
    syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0);
}

/* Intel's deterministic cache leaf: ways, partitions and line size kept, sets to the size. */
static void intel_cache(uint32_t r[4]) {
    uint32_t type = r[0] & 0x1f, level = (r[0] >> 5) & 7;
    const char *name = type == 1 && level == 1 ? "CPUID_L1" : type == 3 && level == 2 ? "CPUID_L2"
                     : type == 3 && level == 3 ? "CPUID_L3" : 0;
    if (!name || !getenv(name)) return;
    uint32_t ways = (r[1] >> 22) + 1, parts = ((r[1] >> 12) & 0x3ff) + 1, line = (r[1] & 0xfff) + 1;
    r[2] = (uint32_t)(setting(name, 0) / (ways * parts * line)) - 1;
}

/* An AMD EPYC's answers: its vendor and its cache leaves (8 ways, 16 for L3, 64-byte lines). */
static void amd(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
    unsigned long l1 = setting("CPUID_L1", 32 << 10), l2 = setting("CPUID_L2", 512 << 10),
                  l3 = setting("CPUID_L3", 32UL << 20);
    if (leaf == 0) { memcpy(&r[1], "Auth", 4); memcpy(&r[3], "enti", 4); memcpy(&r[2], "cAMD", 4); }
    if (leaf == 0x80000000 && r[0] < 0x8000001d) r[0] = 0x8000001d;
    if (leaf == 0x80000005) r[2] = (uint32_t)((l1 >> 10) << 24) | (8 << 16) | 64;
    if (leaf == 0x80000006) {
        r[2] = (uint32_t)((l2 >> 10) << 16) | (6 << 12) | 64;
        r[3] = (uint32_t)((l3 >> 19) << 18) | (9 << 12) | 64;
    }
    if (leaf == 4) r[0] = r[1] = r[2] = r[3] = 0;  /* Intel's cache leaf is reserved on AMD */
    if (leaf == 0x8000001d) {
        unsigned long size = sub == 0 ? l1 : sub == 1 ? 32 << 10 : sub == 2 ? l2 : sub == 3 ? l3 : 0;
        if (!size) { r[0] = r[1] = r[2] = r[3] = 0; return; }
        uint32_t ways = sub == 3 ? 16 : 8, type = sub == 0 ? 1 : sub == 1 ? 2 : 3;
        uint32_t level = sub <= 1 ? 1 : sub, sharing = sub == 3 ? 15 : 0;
        r[0] = type | (level << 5) | (1 << 8) | (sharing << 14);
        r[1] = ((ways - 1) << 22) | 63;
        r[2] = (uint32_t)(size / (ways * 64)) - 1;
        r[3] = 0;
    }
}

static void rewrite(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
    if (getenv("CPUID_VENDOR_AMD")) amd(leaf, sub, r);
    else if (leaf == 4) intel_cache(r);
    if (leaf == 7 && sub == 0) {
        r[1] &= ~setting("CPUID_CLEAR_7B", 0);
        r[2] &= ~setting("CPUID_CLEAR_7C", 0);
        r[3] &= ~setting("CPUID_CLEAR_7D", 0);
    }
    if (leaf == 7 && sub == 1) r[0] &= ~setting("CPUID_CLEAR_71A", 0);
}

static void on_segv(int sig, siginfo_t *info, void *context) {
    greg_t *reg = ((ucontext_t *)context)->uc_mcontext.gregs;
    const unsigned char *ip = (const unsigned char *)reg[REG_RIP];
    (void)sig; (void)info;
    if (ip[0] != 0x0f || ip[1] != 0xa2) {  /* a real fault: die of it */
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        real_sigaction(SIGSEGV, &dfl, 0);
        return;
    }
    uint32_t leaf = (uint32_t)reg[REG_RAX], sub = (uint32_t)reg[REG_RCX], r[4];
    real_cpuid(leaf, sub, r);
    rewrite(leaf, sub, r);
    if (trace_fd >= 0) {
        Dl_info where;
        char line[640];
        int n = dladdr(ip, &where) && where.dli_fname
            ? snprintf(line, sizeof line, "%s 0x%lx 0x%x %u\n", where.dli_fname,
                       (unsigned long)(ip - (const unsigned char *)where.dli_fbase), leaf, sub)
            : snprintf(line, sizeof line, "? 0x%lx 0x%x %u\n", (unsigned long)ip, leaf, sub);
        if (n > 0) (void)!write(trace_fd, line, (size_t)n);
    }
    reg[REG_RAX] = r[0]; reg[REG_RBX] = r[1]; reg[REG_RCX] = r[2]; reg[REG_RDX] = r[3];
    reg[REG_RIP] += 2;
}

__attribute__((constructor)) static void start(void) {
    const char *trace = getenv("CPUID_TRACE");
    if (trace) trace_fd = open(trace, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    struct sigaction act;
    memset(&act, 0, sizeof act);
    act.sa_sigaction = on_segv;
    act.sa_flags = SA_SIGINFO | SA_NODEFER;
    real_sigaction(SIGSEGV, &act, 0);
    if (syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) != 0) {
        fprintf(stderr, "cpuid_views: this CPU or kernel has no CPUID faulting (arch_prctl "
                "ARCH_SET_CPUID): %m\n");
        _exit(97);
    }
}
