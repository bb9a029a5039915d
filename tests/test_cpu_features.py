"""CPU 8-bit dot-product detection on recorded /proc/cpuinfo text, the variants it leads to, and run's warning."""

from __future__ import annotations

import pytest

from froster_edge.calibration.cpu_features import CpuFeatures, detect, gated_elsewhere, parse_cpuinfo
from froster_edge.calibration.variants import VARIANTS, candidates, variant
from froster_edge.errors import ConfigError

# flag lines as the Linux kernel prints them (trimmed of unrelated leading/trailing flags only where noted)
AVX2_ONLY = """processor	: 0
vendor_id	: AuthenticAMD
model name	: AMD EPYC
flags		: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology nonstop_tsc cpuid extd_apicid tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand hypervisor lahf_lm cmp_legacy cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw topoext ssbd ibrs ibpb stibp vmmcall fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms invpcid rdseed adx smap clflushopt clwb sha_ni xsaveopt xsavec xgetbv1 xsaves clzero xsaveerptr wbnoinvd arat umip pku ospke vaes vpclmulqdq rdpid fsrm
bugs		: sysret_ss_attrs spectre_v1 spectre_v2 spec_store_bypass srso

processor	: 1
flags		: fpu avx2
"""
# Intel Cascade Lake (Xeon Platinum 8259CL): AVX-512 with VNNI
CASCADE_LAKE = """model name	: Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz
flags		: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ss ht syscall nx pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology nonstop_tsc cpuid aperfmperf tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand hypervisor lahf_lm abm 3dnowprefetch invpcid_single pti fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms invpcid mpx avx512f avx512dq rdseed adx smap clflushopt clwb avx512cd avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves ida arat pku ospke avx512_vnni
"""
# Skylake-SP: AVX-512BW without VNNI, the same saturation as AVX2
SKYLAKE_SP = """model name	: Intel(R) Xeon(R) Platinum 8175M CPU @ 2.50GHz
flags		: fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 avx512f avx512dq avx512cd avx512bw avx512vl xsaveopt
"""
# Alder Lake desktop: AVX-VNNI (VEX-encoded), no AVX-512
ALDER_LAKE = """model name	: 12th Gen Intel(R) Core(TM) i7-12700
flags		: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush dts acpi mmx fxsr sse sse2 ss ht tm pbe syscall nx pdpe1gb rdtscp lm constant_tsc art arch_perfmon pebs bts rep_good nopl xtopology nonstop_tsc cpuid aperfmperf tsc_known_freq pni pclmulqdq dtes64 monitor ds_cpl vmx smx est tm2 ssse3 sdbg fma cx16 xtpr pdcm sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand lahf_lm abm 3dnowprefetch cpuid_fault epb ssbd ibrs ibpb stibp ibrs_enhanced tpr_shadow flexpriority ept vpid ept_ad fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms invpcid rdseed adx smap clflushopt clwb intel_pt sha_ni xsaveopt xsavec xgetbv1 xsaves split_lock_detect avx_vnni dtherm ida arat pln pts hwp hwp_notify hwp_act_window hwp_epp hwp_pkg_req hfi umip pku ospke waitpkg gfni vaes vpclmulqdq rdpid movdiri movdir64b fsrm md_clear serialize pconfig arch_lbr ibt flush_l1d arch_capabilities
"""
# Sapphire Rapids: AMX int8 beside AVX512-VNNI
SAPPHIRE_RAPIDS = """model name	: Intel(R) Xeon(R) Platinum 8488C
flags		: fpu avx2 avx512f avx512bw avx512_vnni avx_vnni avx512_bf16 amx_bf16 avx512_fp16 amx_tile amx_int8
"""
# Graviton2 (Neoverse N1): ARMv8.2 with the dot-product extension
ARM_DOTPROD = """processor	: 0
BogoMIPS	: 243.75
Features	: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs
CPU implementer	: 0x41
CPU architecture: 8
CPU part	: 0xd0c
"""
# Raspberry Pi 4 (Cortex-A72): ARMv8.0, no dot product
ARM_NO_DOTPROD = """processor	: 0
BogoMIPS	: 108.00
Features	: fp asimd evtstrm crc32 cpuid
CPU implementer	: 0x41
CPU part	: 0xd08
Hardware	: BCM2835
Model		: Raspberry Pi 4 Model B Rev 1.4
"""
# Graviton3 (Neoverse V1): dot product and int8 matrix multiply
ARM_I8MM = """Features	: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc dcpop sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs paca pacg dcpodp svei8mm svebf16 i8mm bf16 dgh rng
"""


@pytest.mark.parametrize("text, arch, dot_product, saturates", [
    (AVX2_ONLY, "x86_64", "avx2", True),
    (SKYLAKE_SP, "x86_64", "avx512bw", True),
    (CASCADE_LAKE, "x86_64", "avx512_vnni", False),
    (ALDER_LAKE, "x86_64", "avx_vnni", False),
    (SAPPHIRE_RAPIDS, "x86_64", "amx_int8", False),
    (ARM_DOTPROD, "aarch64", "asimddp", False),
    (ARM_NO_DOTPROD, "aarch64", "asimd", False),
    (ARM_I8MM, "aarch64", "i8mm", False),
])
def test_dot_product_from_recorded_cpuinfo(text, arch, dot_product, saturates):
    found = parse_cpuinfo(text)  # the architecture from the text itself: a Features line is ARM
    assert found.arch == arch and found.source == "/proc/cpuinfo"
    assert found.dot_product == dot_product
    assert found.saturates_u8s8 is saturates
    assert found.to_dict()["dot_product"] == dot_product


def test_only_the_first_cpu_block_counts_and_unrelated_flags_are_dropped():
    found = parse_cpuinfo(AVX2_ONLY, "x86_64")
    assert found.flags == ("avx2",) and found.model == "AMD EPYC"
    # "avx512vnni" (no underscore) is the spelling some tools print: the same feature
    assert parse_cpuinfo("flags : avx2 avx512bw avx512vnni").dot_product == "avx512_vnni"
    # avx512_vnni_int8-like extensions are not VNNI for u8 x s8 and must not count as it
    assert parse_cpuinfo("flags : avx2 avx_vnni_int8").dot_product == "avx2"


def test_unreadable_cpuinfo_is_unknown_and_treated_as_saturating():
    found = parse_cpuinfo("processor : 0\n", "x86_64")
    assert found.dot_product == "unknown" and found.saturates_u8s8 is None
    names = [v.name for v in candidates(found)[0]]
    assert all(VARIANTS[n].reduce_range or VARIANTS[n].weights == "uint8" for n in names)


def test_detect_on_this_machine_agrees_with_its_own_cpuinfo(tmp_path):
    here = detect()
    assert here.dot_product != "unknown" or here.source == "none"
    fake = tmp_path / "cpuinfo"
    fake.write_text(CASCADE_LAKE)
    assert detect(fake).dot_product == "avx512_vnni"


def test_candidates_never_use_full_8bit_u8s8_where_it_saturates():
    for text in (AVX2_ONLY, SKYLAKE_SP):
        tried, why = candidates(parse_cpuinfo(text))
        assert "saturating" in why
        for v in tried:  # a u8 x s8 pair must fit int16: 255 * max|w| * 2 <= 32767
            if v.weights == "int8" and v.activation == "uint8":
                assert v.reduce_range and 255 * 64 * 2 <= 32767  # ORT's 7-bit weights span [-64, 64]
        # static and dynamic activation ranges are both tried (dynamic: fewer nodes; neither reliably faster)
        assert {v.dynamic for v in tried} == {True, False}
    for text in (CASCADE_LAKE, ALDER_LAKE, SAPPHIRE_RAPIDS):
        tried = candidates(parse_cpuinfo(text))[0]
        assert tried[0].name == "u8s8" and "u8s8-dynamic-attn" in [v.name for v in tried]
    for text in (ARM_DOTPROD, ARM_NO_DOTPROD):
        assert candidates(parse_cpuinfo(text))[0][0].activation == "int8"
    with pytest.raises(ConfigError, match="unknown INT8 variant"):
        variant("u4s4")


def test_run_warns_only_when_the_gate_ran_on_another_dot_product():
    vnni, avx2 = parse_cpuinfo(CASCADE_LAKE), parse_cpuinfo(AVX2_ONLY)
    assert gated_elsewhere(vnni.to_dict(), vnni) is None
    line = gated_elsewhere(vnni.to_dict(), avx2)
    assert line and "\n" not in line and "avx512_vnni" in line and "avx2" in line
    assert gated_elsewhere(None, avx2) and "did not record" in gated_elsewhere(None, avx2)
    arm = CpuFeatures("aarch64", ("asimd",), "/proc/cpuinfo")
    assert gated_elsewhere(parse_cpuinfo(ARM_DOTPROD).to_dict(), arm)
