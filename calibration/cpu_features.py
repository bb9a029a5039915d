"""The CPU's 8-bit dot-product support, which decides whether INT8 matmuls saturate.

x86 without VNNI sums u8 x s8 pairs into a saturating int16 (`vpmaddubsw`), so full 8-bit weights
can lose agreement there; VNNI accumulates in int32 and ARM kernels widen, so only speed differs.
Detection reads /proc/cpuinfo (Linux), `sysctl` (macOS), else NumPy's dispatch table (which does not
know AVX-VNNI, AMX or I8MM). No torch.

See docs/calibration.md.
"""

from __future__ import annotations

import platform
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# canonical names (Linux's spelling) of the flags that decide the 8-bit kernels, and their aliases
_ALIASES = {
    "avx2": "avx2", "avx512bw": "avx512bw", "avx512_vnni": "avx512_vnni", "avx512vnni": "avx512_vnni",
    "avx_vnni": "avx_vnni", "avxvnni": "avx_vnni", "amx_int8": "amx_int8", "amxint8": "amx_int8",
    "asimddp": "asimddp", "dotprod": "asimddp", "feat_dotprod": "asimddp", "i8mm": "i8mm", "feat_i8mm": "i8mm",
    "asimd": "asimd", "neon": "asimd",
}
X86_VNNI = ("amx_int8", "avx512_vnni", "avx_vnni")  # int32-accumulating u8 x s8 dot products


@dataclass(frozen=True)
class CpuFeatures:
    """What this CPU offers for 8-bit matmuls; `dot_product` is the one word a manifest compares."""

    arch: str  # "x86_64", "aarch64" or what platform.machine() says
    flags: tuple[str, ...]  # the relevant flags found, canonical names, sorted
    source: str  # where they were read: "/proc/cpuinfo", "sysctl", "numpy" or "none"
    model: str = ""

    @property
    def family(self) -> str:
        a = self.arch.lower()
        if a in ("x86_64", "amd64", "i386", "i686", "x86"):
            return "x86"
        return "arm" if a.startswith(("aarch64", "arm")) else a

    @property
    def dot_product(self) -> str:
        """The best 8-bit dot product: amx_int8, avx512_vnni, avx_vnni, avx512bw, avx2 or none on x86;
        i8mm, asimddp or asimd on ARM; "unknown" when nothing could be read."""
        if self.source == "none":
            return "unknown"
        order = {"x86": (*X86_VNNI, "avx512bw", "avx2"), "arm": ("i8mm", "asimddp", "asimd")}.get(self.family, ())
        return next((f for f in order if f in self.flags), "none")

    @property
    def saturates_u8s8(self) -> bool | None:
        """Whether u8 x s8 products are summed pairwise into int16 (x86 without VNNI); None: unknown."""
        if self.dot_product == "unknown":
            return None
        return self.family == "x86" and not any(f in self.flags for f in X86_VNNI)

    def describe(self) -> str:
        """One phrase for logs and benchmark tables, e.g. "x86_64 avx2 (no VNNI: u8 x s8 pairs saturate int16)"."""
        sat = self.saturates_u8s8
        note = {True: " (no VNNI: u8 x s8 pairs saturate int16)", False: "", None: " (features unknown)"}[sat]
        return f"{self.arch} {self.dot_product}{note}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "flags": list(self.flags), "dot_product": self.dot_product,
                "saturates_u8s8": self.saturates_u8s8}


def _canonical(words) -> tuple[str, ...]:
    return tuple(sorted({_ALIASES[w] for w in (w.strip().lower() for w in words) if w in _ALIASES}))


def parse_cpuinfo(text: str, arch: str | None = None) -> CpuFeatures:
    """Features from /proc/cpuinfo text: the first `flags` (x86) or `Features` (ARM) line.

    `arch` defaults to what the text says (a `Features` line means ARM) when not given.
    """
    model, words, is_arm = "", None, False
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features") and words is None:
            words, is_arm = value.split(), key == "features"
    if arch is None:
        arch = "aarch64" if is_arm else "x86_64"
    if words is None:
        return CpuFeatures(arch, (), "none", model)
    return CpuFeatures(arch, _canonical(words), "/proc/cpuinfo", model)


def _sysctl(arch: str) -> CpuFeatures | None:
    """macOS: hw.optional.arm.FEAT_* = 1 on Apple silicon, machdep.cpu.*features words on Intel."""
    try:
        out = subprocess.run(["sysctl", "-a"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    words, model = [], ""
    for line in out.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key.startswith("hw.optional.arm.FEAT_") and value == "1":
            words.append(key.rsplit(".", 1)[1])
        elif key.startswith("hw.optional.") and key.endswith("neon") and value == "1":
            words.append("neon")
        elif key in ("machdep.cpu.features", "machdep.cpu.leaf7_features"):
            words += value.split()
        elif key == "machdep.cpu.brand_string":
            model = value
    return CpuFeatures(arch, _canonical(words), "sysctl", model) if out else None


def _numpy(arch: str) -> CpuFeatures | None:
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as table
    except ImportError:
        return None
    names = {"AVX2": "avx2", "AVX512BW": "avx512bw", "AVX512VNNI": "avx512_vnni", "ASIMDDP": "asimddp", "ASIMD": "asimd"}
    return CpuFeatures(arch, tuple(sorted(v for k, v in names.items() if table.get(k))), "numpy")


def detect(cpuinfo: Path = Path("/proc/cpuinfo")) -> CpuFeatures:
    """This machine's features: /proc/cpuinfo, else sysctl (macOS), else NumPy's table, else unknown."""
    arch = platform.machine() or "unknown"
    if cpuinfo.is_file():
        try:
            found = parse_cpuinfo(cpuinfo.read_text(errors="replace"), arch)
        except OSError:
            found = None
        if found is not None and found.source != "none":
            return found
    if platform.system() == "Darwin":
        found = _sysctl(arch)
        if found is not None:
            return found
    return _numpy(arch) or CpuFeatures(arch, (), "none")


def gated_elsewhere(recorded: dict[str, Any] | None, here: CpuFeatures) -> str | None:
    """One warning line when an INT8 model was gated on a CPU with another 8-bit dot product than `here`."""
    if recorded and recorded.get("dot_product") == here.dot_product:
        return None
    where = (f"a CPU with {recorded.get('arch', '?')} {recorded.get('dot_product', '?')} 8-bit dot products" if recorded
             else "a CPU it did not record")
    return (f"warning: the INT8 model was gated on {where}; this one is {here.describe()}, so its agreement with "
            "fp32 was not measured here: run froster-edge calibrate on this machine to gate it here")
