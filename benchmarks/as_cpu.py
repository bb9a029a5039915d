"""Run a command as if this x86 CPU were an older class: AVX2 only, or AVX-512 without VNNI.

INT8 agreement and speed depend on the CPU's 8-bit dot product (docs/benchmarks.md), and the
libraries pick their kernels with CPUID, so a CPU with AVX512-VNNI cannot say how an AVX2-only
one would do unless those features are hidden from CPUID, the way a hypervisor's CPU model
hides them from a VM. benchmarks/cpumask/cpumask.c does that for one process tree through
Linux's CPUID faulting; this script builds it (once, with the system C compiler, cached by the
source's hash) and runs the command under it. The kernels that then run are the older class's
own code paths, on this CPU's cores: saturation is reproduced exactly, speed ratios are those of
that code on this microarchitecture, which is not the older CPU's, so say which in what you record.

Usage:
    python benchmarks/as_cpu.py avx2 -- python benchmarks/bench_int8.py --reps 9
    python benchmarks/as_cpu.py avx512bw -- froster-edge info
    python benchmarks/as_cpu.py --check        # can this machine do it? (exit 0 yes, 2 no, with why)
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from froster_edge.io import atomic_path

SOURCE = Path(__file__).resolve().parent / "cpumask" / "cpumask.c"
CLASSES = ("avx2", "avx512bw")
# glibc picks its string functions before the library loads; its own tunable hides AVX-512 from those
GLIBC_HIDE = {"avx2": "-AVX512F,-AVX512CD,-AVX512BW,-AVX512DQ,-AVX512VL,-AVX512ER,-AVX512PF", "avx512bw": ""}


def unavailable() -> str | None:
    """Why the features cannot be hidden here, or None when they can."""
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        return f"needs Linux on x86_64 (this is {platform.system()} {platform.machine()})"
    try:
        flags = next((line.split(":", 1)[1].split() for line in open("/proc/cpuinfo") if line.startswith("flags")), [])
    except OSError as e:
        return f"cannot read /proc/cpuinfo ({e})"
    if "cpuid_fault" not in flags:
        return "this CPU or hypervisor offers no CPUID faulting (no cpuid_fault in /proc/cpuinfo)"
    if not (shutil.which(os.environ.get("CC", "cc"))):
        return "no C compiler (cc) to build benchmarks/cpumask/cpumask.c"
    return None


def library() -> Path:
    """The built shim, compiled once per source version into the user's cache."""
    source = SOURCE.read_bytes()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "froster-edge"
    built = cache / f"cpumask-{hashlib.sha256(source).hexdigest()[:16]}.so"
    if not built.is_file():
        with atomic_path(built) as tmp:
            cc = os.environ.get("CC", "cc")
            r = subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(tmp), str(SOURCE), "-ldl"],
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise SystemExit(f"as_cpu: {cc} could not build {SOURCE.name}: {r.stderr.strip().splitlines()[-1:]}")
    return built


def environment(cpu_class: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """`base` (default: this process's environment) with the shim preloaded for `cpu_class`."""
    env = dict(os.environ if base is None else base)
    env["LD_PRELOAD"] = " ".join(filter(None, [str(library()), env.get("LD_PRELOAD", "")]))
    env["CPUMASK"] = cpu_class
    if GLIBC_HIDE[cpu_class]:
        tunable = f"glibc.cpu.hwcaps={GLIBC_HIDE[cpu_class]}"
        env["GLIBC_TUNABLES"] = ":".join(filter(None, [env.get("GLIBC_TUNABLES", ""), tunable]))
    return env


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("cpu_class", nargs="?", choices=CLASSES)
    p.add_argument("command", nargs=argparse.REMAINDER, help="the command (after --) to run as that CPU class")
    p.add_argument("--check", action="store_true", help="only say whether this machine can hide the features")
    a = p.parse_args()
    why = unavailable()
    if a.check:
        print(why or "as_cpu: CPUID faulting available; avx2 and avx512bw can be imitated here")
        raise SystemExit(2 if why else 0)
    command = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not a.cpu_class or not command:
        p.error("give a CPU class and a command, e.g. as_cpu.py avx2 -- froster-edge info")
    if why:
        raise SystemExit(f"as_cpu: cannot imitate {a.cpu_class} here: {why}")
    env = environment(a.cpu_class)
    sys.stdout.flush()
    try:
        os.execvpe(command[0], command, env)
    except OSError as e:
        raise SystemExit(f"as_cpu: cannot run {command[0]}: {e.strerror}") from None


if __name__ == "__main__":
    main()
