/* cpumask: run a process as if its x86 CPU lacked AVX-512, VNNI and AMX (or only VNNI and later).

Why: ONNX Runtime's MLAS, oneDNN, NumPy and every other library choose their kernels with the
CPUID instruction, so INT8 figures for an AVX2-only CPU (where u8 x s8 pairs saturate int16)
cannot be taken on a newer one without hiding those features from CPUID, as a hypervisor's CPU
model does for a whole VM. This library does it for one process tree, with Linux's CPUID
faulting (arch_prctl ARCH_SET_CPUID): every CPUID traps, the SIGSEGV handler below runs the real
instruction with faulting briefly off, clears the hidden feature bits and steps over it.
/proc/cpuinfo opened through libc shows the same flags minus the hidden ones.

Loaded with LD_PRELOAD and CPUMASK=avx2 or CPUMASK=avx512bw (benchmarks/as_cpu.py sets both);
without CPUMASK it does nothing. Where CPUID faulting is unavailable it exits with status 2
rather than letting a process run unmasked under a masked label. What it cannot hide: the
ifunc choices ld.so makes before it loads (glibc's memcpy: as_cpu.py masks those with
GLIBC_TUNABLES), and code that tests XCR0 alone without reading CPUID. */
#define _GNU_SOURCE
#include <cpuid.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define ARCH_SET_CPUID 0x1012
enum { EAX, EBX, ECX, EDX };

/* One CPUID feature bit, its /proc/cpuinfo name, and whether the avx512bw class keeps it
   (AVX-512 F/DQ/CD/BW/VL without VNNI: Skylake-SP). The avx2 class keeps none of them. */
struct feature { unsigned leaf, subleaf, reg, bit; const char *flag; int in_avx512bw; };
static const struct feature HIDDEN[] = {
    {7, 0, EBX, 16, "avx512f", 1},          {7, 0, EBX, 17, "avx512dq", 1},
    {7, 0, EBX, 21, "avx512ifma", 0},       {7, 0, EBX, 26, "avx512pf", 0},
    {7, 0, EBX, 27, "avx512er", 0},         {7, 0, EBX, 28, "avx512cd", 1},
    {7, 0, EBX, 30, "avx512bw", 1},         {7, 0, EBX, 31, "avx512vl", 1},
    {7, 0, ECX, 1, "avx512vbmi", 0},        {7, 0, ECX, 6, "avx512_vbmi2", 0},
    {7, 0, ECX, 11, "avx512_vnni", 0},      {7, 0, ECX, 12, "avx512_bitalg", 0},
    {7, 0, ECX, 14, "avx512_vpopcntdq", 0}, {7, 0, EDX, 2, "avx512_4vnniw", 0},
    {7, 0, EDX, 3, "avx512_4fmaps", 0},     {7, 0, EDX, 8, "avx512_vp2intersect", 0},
    {7, 0, EDX, 22, "amx_bf16", 0},         {7, 0, EDX, 23, "avx512_fp16", 0},
    {7, 0, EDX, 24, "amx_tile", 0},         {7, 0, EDX, 25, "amx_int8", 0},
    {7, 1, EAX, 4, "avx_vnni", 0},          {7, 1, EAX, 5, "avx512_bf16", 0},
    {7, 1, EAX, 21, "amx_fp16", 0},         {7, 1, EAX, 23, "avx_ifma", 0},
    {7, 1, EDX, 4, "avx_vnni_int8", 0},     {7, 1, EDX, 5, "avx_ne_convert", 0},
    {7, 1, EDX, 19, "avx10", 0},
};
#define N_HIDDEN (sizeof HIDDEN / sizeof HIDDEN[0])

static int keep_avx512bw = -1; /* -1: no mask active */
static struct sigaction chained; /* the SIGSEGV handler the process itself installed, if any */
static int (*real_sigaction)(int, const struct sigaction *, struct sigaction *);

static int hidden(const struct feature *f) { return !(keep_avx512bw && f->in_avx512bw); }

static void on_segv(int sig, siginfo_t *info, void *context) {
    ucontext_t *uc = context;
    greg_t *g = uc->uc_mcontext.gregs;
    const unsigned char *ip = (const unsigned char *)g[REG_RIP];
    if (ip[0] == 0x0F && ip[1] == 0xA2) {
        unsigned leaf = (unsigned)g[REG_RAX], subleaf = (unsigned)g[REG_RCX], r[4];
        syscall(SYS_arch_prctl, ARCH_SET_CPUID, 1);
        __cpuid_count(leaf, subleaf, r[EAX], r[EBX], r[ECX], r[EDX]);
        syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0);
        for (size_t i = 0; i < N_HIDDEN; i++)
            if (HIDDEN[i].leaf == leaf && HIDDEN[i].subleaf == subleaf && hidden(&HIDDEN[i]))
                r[HIDDEN[i].reg] &= ~(1u << HIDDEN[i].bit);
        g[REG_RAX] = r[EAX], g[REG_RBX] = r[EBX], g[REG_RCX] = r[ECX], g[REG_RDX] = r[EDX];
        g[REG_RIP] += 2;
        return;
    }
    if (chained.sa_flags & SA_SIGINFO) {
        chained.sa_sigaction(sig, info, context);
    } else if (chained.sa_handler != SIG_DFL && chained.sa_handler != SIG_IGN) {
        chained.sa_handler(sig);
    } else { /* a real fault: die of it once we return and it happens again */
        struct sigaction dfl = {.sa_handler = SIG_DFL};
        real_sigaction(SIGSEGV, &dfl, NULL);
    }
}

/* Handlers the process installs for SIGSEGV (Python's faulthandler) are chained behind ours. */
int sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
    if (!real_sigaction) real_sigaction = dlsym(RTLD_NEXT, "sigaction");
    if (sig != SIGSEGV || keep_avx512bw < 0) return real_sigaction(sig, act, old);
    if (old) *old = chained;
    if (act) chained = *act;
    return 0;
}

static int hidden_flag(const char *word, size_t n) {
    for (size_t i = 0; i < N_HIDDEN; i++)
        if (hidden(&HIDDEN[i]) && strlen(HIDDEN[i].flag) == n && !memcmp(HIDDEN[i].flag, word, n)) return 1;
    return 0;
}

/* /proc/cpuinfo with the hidden words removed from its "flags" lines, as an unlinked memfd. */
static int masked_cpuinfo(int oflags) {
    int src = (int)syscall(SYS_openat, AT_FDCWD, "/proc/cpuinfo", O_RDONLY | O_CLOEXEC);
    if (src < 0) return -1;
    size_t size = 0, cap = 1 << 16;
    char *text = malloc(cap);
    ssize_t got;
    while (text && (got = read(src, text + size, cap - size)) > 0)
        if ((size += (size_t)got) == cap) text = realloc(text, cap *= 2);
    close(src);
    int fd = text ? memfd_create("cpuinfo", (oflags & O_CLOEXEC) ? MFD_CLOEXEC : 0) : -1;
    for (size_t at = 0; fd >= 0 && at < size;) {
        char *line = text + at, *end = memchr(line, '\n', size - at);
        size_t len = end ? (size_t)(end - line) + 1 : size - at;
        at += len;
        if (strncmp(line, "flags", 5) != 0) {
            if (write(fd, line, len) != (ssize_t)len) break;
            continue;
        }
        char *colon = memchr(line, ':', len);
        size_t head = colon ? (size_t)(colon - line) + 1 : len;
        if (write(fd, line, head) < 0) break;
        for (size_t i = head; i < len;) {
            size_t j = i;
            while (j < len && line[j] != ' ' && line[j] != '\n') j++;
            if (j > i && !hidden_flag(line + i, j - i) && (write(fd, " ", 1) < 0 || write(fd, line + i, j - i) < 0)) break;
            i = j + 1;
        }
        if (write(fd, "\n", 1) < 0) break;
    }
    free(text);
    if (fd >= 0) lseek(fd, 0, SEEK_SET);
    return fd;
}

static int is_cpuinfo(const char *path) { return path && strcmp(path, "/proc/cpuinfo") == 0; }

#define OPEN_MODE(flags, mode) \
    mode_t mode = 0;           \
    if ((flags) & (O_CREAT | O_TMPFILE)) { va_list ap; va_start(ap, flags); mode = va_arg(ap, mode_t); va_end(ap); }

int open(const char *path, int flags, ...) {
    OPEN_MODE(flags, mode);
    if (keep_avx512bw >= 0 && is_cpuinfo(path)) return masked_cpuinfo(flags);
    return (int)syscall(SYS_openat, AT_FDCWD, path, flags, mode);
}
int open64(const char *path, int flags, ...) {
    OPEN_MODE(flags, mode);
    if (keep_avx512bw >= 0 && is_cpuinfo(path)) return masked_cpuinfo(flags);
    return (int)syscall(SYS_openat, AT_FDCWD, path, flags, mode);
}
int openat(int dir, const char *path, int flags, ...) {
    OPEN_MODE(flags, mode);
    if (keep_avx512bw >= 0 && is_cpuinfo(path)) return masked_cpuinfo(flags);
    return (int)syscall(SYS_openat, dir, path, flags, mode);
}
int openat64(int dir, const char *path, int flags, ...) {
    OPEN_MODE(flags, mode);
    if (keep_avx512bw >= 0 && is_cpuinfo(path)) return masked_cpuinfo(flags);
    return (int)syscall(SYS_openat, dir, path, flags, mode);
}
FILE *fopen(const char *path, const char *how) {
    static FILE *(*real)(const char *, const char *);
    if (keep_avx512bw >= 0 && is_cpuinfo(path)) {
        int fd = masked_cpuinfo(O_CLOEXEC);
        return fd < 0 ? NULL : fdopen(fd, "r");
    }
    if (!real) real = dlsym(RTLD_NEXT, "fopen");
    return real(path, how);
}
FILE *fopen64(const char *path, const char *how) { return fopen(path, how); }

__attribute__((constructor)) static void start(void) {
    const char *mask = getenv("CPUMASK");
    if (!mask || !*mask) return;
    if (strcmp(mask, "avx2") && strcmp(mask, "avx512bw")) {
        fprintf(stderr, "cpumask: CPUMASK=%s is not a class this library knows: avx2 or avx512bw\n", mask);
        _exit(2);
    }
    real_sigaction = dlsym(RTLD_NEXT, "sigaction");
    struct sigaction ours = {.sa_sigaction = on_segv, .sa_flags = SA_SIGINFO | SA_NODEFER};
    sigemptyset(&ours.sa_mask);
    if (real_sigaction(SIGSEGV, &ours, &chained) != 0 || syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) != 0) {
        fprintf(stderr, "cpumask: this kernel or CPU has no CPUID faulting (arch_prctl ARCH_SET_CPUID: %s), "
                        "so CPUMASK=%s cannot hide features here\n", strerror(errno), mask);
        _exit(2);
    }
    keep_avx512bw = strcmp(mask, "avx512bw") == 0;
}
