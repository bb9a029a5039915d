"""The INT8 variants `calibrate` can build, and which of them it tries on a given CPU.

A variant is the integer types of the quantized matmuls: activation and weight type, 7-bit weights
(`reduce_range`), static or dynamic activation ranges and (dynamic only) quantized attention
products (`-attn`). Static variants share one calibration's ranges. Which to try follows from the
CPU's dot product (cpu_features): x86 without VNNI gets 7-bit or uint8 weights (no int16
saturation), VNNI/AMX and ARM the full 8-bit forms. The gate picks among them on the machine
itself. TensorRT parses only signed int8 Q/DQ: `s8s8` and `s8s8-7bit` serve it.

See docs/calibration.md.
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
