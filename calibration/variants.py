"""The INT8 variants `calibrate` can build, and which of them it tries on a given CPU.

A variant is the integer types of the quantized matmuls: activation type, weight type, whether
weights use 7 bits (`reduce_range`), and whether activation ranges are static (calibrated) or
dynamic (measured on every call), and (dynamic only) whether the attention products of two
activations are quantized too, both sides per call, u8 x u8 (`-attn`). All static variants share the activation ranges of one
calibration run (the cache in `int8.py` does not depend on them), so trying several costs a
quantization pass and a gate measurement each, never a recalibration; dynamic ones need no ranges.

Static vs dynamic on ONNX Runtime's CPU kernels (profiled, docs/benchmarks.md): a static
linear layer is built as a Gemm with quantized inputs, an int32 bias and a float output, which ORT
runs as one QGemm (integer GEMM, scales and bias in one kernel, fp32 out); a dynamic one is one
DynamicQuantizeMatMul (the same plus measuring and quantizing the activation range per call). On
AVX2 kernels the static 7-bit ones and the 7-bit dynamic ones trade places from run to run
(docs/benchmarks.md has the figures per CPU class); all stay candidates because the gate's
interleaved timing picks on the machine itself, and on a tiny model
the dynamic ones are far slower than fp32 (per-call range kernels cost more than small GEMMs
save). With trained weights the gate decides whether quantized attention products keep their
agreement.

Which to try follows from the CPU's 8-bit dot product (`cpu_features.py`):
- x86 with VNNI/AMX: products accumulate in int32, nothing saturates; uint8 activations with
  int8 weights use the fastest kernels (int8 activations run the same ones on x86).
- x86 without VNNI (AVX2, AVX-512 without VNNI): u8 x s8 pairs are summed into a saturating
  int16, so full 8-bit weights can flip decisions (measured: 75% agreement). Tried instead:
  7-bit weights (|w| <= 64, 255 x 64 x 2 < 32767: no pair overflows) with dynamic uint8 activations, or
  static uint8 or int8 ones, and uint8 weights (ONNX Runtime's u8 x u8 kernels widen to int16
  before multiplying: no saturation, full 8 bits).
- ARM: int8 activations with int8 weights (SDOT where the CPU has dot-product; widening
  multiplies otherwise), uint8 activations for comparison, and the dynamic full 8-bit one.
The gate measures each on held-out clips and keeps the fastest that agrees.

TensorRT parses only signed int8 Q/DQ: `s8s8` (and `s8s8-7bit`) built for it (`int8.py`,
`target="tensorrt"`) are plain QDQ models; the uint8 and dynamic ones are for ONNX Runtime's CPU
kernels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import ConfigError
from .cpu_features import CpuFeatures


@dataclass(frozen=True)
class Variant:
    name: str
    activation: str  # uint8 | int8
    weights: str  # int8 | uint8, per channel
    reduce_range: bool  # 7-bit weights
    dynamic: bool = False  # activation ranges measured per call (DynamicQuantizeMatMul), not calibrated
    attention: bool = False  # dynamic only: the attention products of two activations too (u8 x u8, per call)

    def to_dict(self) -> dict:
        return asdict(self)


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("u8s8", "uint8", "int8", False),
    Variant("u8s8-7bit", "uint8", "int8", True),
    Variant("s8s8", "int8", "int8", False),
    Variant("s8s8-7bit", "int8", "int8", True),
    Variant("u8u8", "uint8", "uint8", False),
    Variant("u8s8-dynamic", "uint8", "int8", False, dynamic=True),
    Variant("u8s8-dynamic-attn", "uint8", "int8", False, dynamic=True, attention=True),
    Variant("u8s8-7bit-dynamic", "uint8", "int8", True, dynamic=True),
    Variant("u8s8-7bit-dynamic-attn", "uint8", "int8", True, dynamic=True, attention=True),
)}


def variant(name: str) -> Variant:
    try:
        return VARIANTS[name]
    except KeyError:
        raise ConfigError(f"unknown INT8 variant {name!r}: choose from {', '.join(VARIANTS)}") from None


def candidates(cpu: CpuFeatures) -> tuple[list[Variant], str]:
    """The variants worth trying on `cpu`, in order of preference, and why (one sentence for the manifest)."""
    if cpu.family == "arm":
        names = ["s8s8", "u8s8", "u8s8-dynamic-attn"]
        why = (f"ARM ({cpu.dot_product}) accumulates 8-bit products without saturating: signed activations "
               "(its kernels' native type), unsigned and dynamic ones for comparison")
    elif cpu.saturates_u8s8 is False:
        names = ["u8s8", "s8s8", "u8s8-dynamic-attn"]
        why = (f"{cpu.dot_product} accumulates u8 x s8 products in int32 (no saturation): full 8-bit weights, "
               "static or dynamic activations")
    else:
        names = ["u8s8-7bit", "s8s8-7bit", "u8s8-7bit-dynamic", "u8s8-7bit-dynamic-attn", "u8u8"]
        known = "no VNNI" if cpu.saturates_u8s8 else "features unknown, assumed no VNNI"
        why = (f"{cpu.arch} {cpu.dot_product} ({known}) sums u8 x s8 pairs into a saturating int16: "
               "7-bit weights (dynamic or static activations), or uint8 weights (widened to int16 before the multiply), "
               "instead of full 8-bit u8 x s8")
    return [VARIANTS[n] for n in names], why
