"""The target's vector ISA, as the compiler sees it for a `-march` (and any other -m target flags).

The generated C++ uses GCC/Clang vector extensions (portable: a compiler splits a vector wider than
the target's registers), but its blocking is only right for one width: accumulators must fill the
registers without spilling. So the width and the register count are read from the compiler that
will build the code, with the flags it will get: `c++ -march=M -dM -E -x c++ /dev/null` lists the
predefined macros (__AVX512F__, __AVX2__, __FMA__, __ARM_NEON, ...). march=None is the compiler's
default target (x86-64: SSE2 only).
"""

from __future__ import annotations

import functools
import subprocess
from dataclasses import dataclass, replace
from typing import Iterable

from yukti.toolchain import compiler_version, find_compiler


@dataclass(frozen=True)
class Isa:
    """What code generation needs to know about the target: `lanes` float32 per vector register,
    `vector_registers` architectural vector registers, and whether a fused multiply-add exists."""

    name: str
    lanes: int
    vector_registers: int
    fma: bool

    @property
    def vector_type(self) -> str:
        """The C++ vector type of the generated prelude (codegen.py) for this width."""
        return f"vf{self.lanes}"

    @property
    def load(self) -> str:
        """The prelude's unaligned load of one vector from a float pointer."""
        return f"load{self.lanes}"

    def describe(self) -> str:
        return f"{self.name} ({self.lanes} x float32 lanes, {self.vector_registers} vector registers{', FMA' if self.fma else ''})"


AVX512 = Isa("avx512", 16, 32, True)
AVX2 = Isa("avx2", 8, 16, True)
AVX = Isa("avx", 8, 16, False)  # Sandy/Ivy Bridge: 256-bit, no FMA
SSE2 = Isa("sse2", 4, 16, False)
NEON = Isa("neon", 4, 32, True)
GENERIC = Isa("generic", 4, 16, False)  # no SIMD the probe recognises: the compiler splits vf4 as it can
DEFAULT = AVX2  # what the generator assumed before it asked the compiler: used when no ISA is given


def from_macros(macros: Iterable[str]) -> Isa:
    """The ISA a set of predefined macro names implies (the widest vector extension wins)."""
    defined = set(macros)
    x86_64 = "__x86_64__" in defined
    if "__AVX512F__" in defined:
        # AVX-512F has FMA by definition; 32-bit x86 keeps only 8 vector registers
        return AVX512 if x86_64 else replace(AVX512, vector_registers=8)
    if "__AVX__" in defined:
        avx = AVX2 if "__AVX2__" in defined else AVX
        return replace(avx, fma="__FMA__" in defined, vector_registers=16 if x86_64 else 8)
    if "__ARM_NEON" in defined or "__ARM_NEON__" in defined:
        # AArch64 has 32 128-bit registers (v0-v31); 32-bit ARM has 16 (q0-q15)
        aarch64 = "__aarch64__" in defined
        return replace(NEON, vector_registers=32 if aarch64 else 16,
                       fma=aarch64 or "__ARM_FEATURE_FMA" in defined)
    if "__SSE2__" in defined:
        return SSE2 if x86_64 else replace(SSE2, vector_registers=8)
    return GENERIC


def target_flags(flags: Iterable[str]) -> tuple[str, ...]:
    """The flags of a build that can change the target ISA (-m...: -mavx512f, -mno-avx2, -mcpu=...)."""
    return tuple(f for f in flags if f.startswith("-m"))


def detect(march: str | None = "native", flags: Iterable[str] = (), *, compiler: str | None = None) -> Isa:
    """The vector ISA `compiler` (default: the one the cpp backend builds with) targets with
    `-march=<march>` and `flags` (only -m flags count; see `target_flags`). Cached per compiler,
    its version, march and flags. A probe that fails (no compiler, a flag it rejects) answers
    DEFAULT: the build with the same flags then fails and reports the compiler's own message."""
    cxx = compiler or find_compiler()
    if cxx is None:
        return DEFAULT
    return _probe(cxx, compiler_version(cxx), march or None, target_flags(flags))


@functools.lru_cache(maxsize=64)
def _probe(cxx: str, version: str, march: str | None, flags: tuple[str, ...]) -> Isa:  # noqa: ARG001 - version: cache key
    command = [cxx, *([f"-march={march}"] if march else []), *flags, "-dM", "-E", "-x", "c++", "/dev/null"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError):
        return DEFAULT
    if done.returncode != 0:
        return DEFAULT
    names = (line.split()[1] for line in done.stdout.splitlines() if line.startswith("#define ") and len(line.split()) > 1)
    return from_macros(names)


# Cephes' expf, shared by the scalar and the vector fast_exp of the prelude: the clamp that keeps
# 2^n a normal float, log2(e), ln 2 split in two (the high part exact in float) and the polynomial
# of exp(r) - 1 - r over r^2, highest power first. EXP_ROUNDER (1.5 * 2^23) rounds to an integer by
# addition: x * log2(e) + EXP_ROUNDER holds round(x * log2(e)) in its low mantissa bits, so the
# integer is read from the bits (EXP_ROUNDER_BITS less), one FMA instead of floor's convert, compare
# and convert back; reading bits, not subtracting EXP_ROUNDER, also survives -ffast-math's algebra.
EXP_LOW, EXP_HIGH = "-87.3365448f", "88.3762626f"
LOG2E, LN2_HIGH, LN2_LOW_NEGATED = "1.44269504f", "0.693359375f", "2.12194440e-4f"
EXP_ROUNDER, EXP_ROUNDER_BITS = "12582912.0f", "0x4b400000"
EXP_POLYNOMIAL = ("1.9875691500e-4f", "1.3981999507e-3f", "8.3334519073e-3f", "4.1665795894e-2f", "1.6666665459e-1f",
                  "5.0000001201e-1f")


def _estrin(r: str, r2: str, r4: str) -> str:
    """EXP_POLYNOMIAL at `r` in Estrin's form (pairs, then powers): 3 multiply-adds deep instead of
    Horner's 6, which a softmax at batch 1 waits for."""
    c = EXP_POLYNOMIAL
    return f"({r} * {c[0]} + {c[1]}) * {r4} + (({r} * {c[2]} + {c[3]}) * {r2} + ({r} * {c[4]} + {c[5]}))"


def vector_prelude(isa: Isa) -> str:
    """The C++ lines that define the generated code's vector type and its load, and fast_exp, for `isa`."""
    t, n = isa.vector_type, isa.lanes
    return f"""// A vector of {n} floats (GCC/Clang vector extension), the width of the target ({isa.name}):
// explicit accumulators stay in registers.
typedef float {t} __attribute__((vector_size({4 * n})));
inline {t} {isa.load}(const float* p) {{
  {t} v;
  std::memcpy(&v, p, sizeof v);
  return v;
}}

// exp(x) without a libm call (a call per value keeps a loop scalar, and costs more than the
// dense layers of a small net at batch 1): Cephes' expf range reduction and degree-6 polynomial,
// within 2 ulp of std::exp; the clamp keeps 2^n a normal float (results saturate near 1.2e-38
// and 2.4e38). Used where the argument is bounded in practice (softmax after the peak shift,
// sigmoid); the Exp operator keeps std::exp for its infinities.
inline float fast_exp(float x) {{
  x = std::min(std::max(x, {EXP_LOW}), {EXP_HIGH});
  const float f = x * {LOG2E} + {EXP_ROUNDER};
  int32_t n;
  std::memcpy(&n, &f, sizeof n);
  n -= {EXP_ROUNDER_BITS};
  const float k = static_cast<float>(n);
  const float r = (x - k * {LN2_HIGH}) + k * {LN2_LOW_NEGATED};
  const float r2 = r * r, r4 = r2 * r2;
  const float p = ({_estrin("r", "r2", "r4")}) * r2 + (r + 1.0f);
  const uint32_t bits = static_cast<uint32_t>(n + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}}

// fast_exp on a whole vector, step for step.
typedef int32_t vi{n} __attribute__((vector_size({4 * n})));
typedef uint32_t vu{n} __attribute__((vector_size({4 * n})));
inline {t} fast_exp(const {t} v) {{
  const {t} lo = {t}{{}} + {EXP_LOW}, hi = {t}{{}} + {EXP_HIGH};
  {t} x = v < lo ? lo : v;
  x = x > hi ? hi : x;
  const {t} f = x * {LOG2E} + {EXP_ROUNDER};
  vi{n} whole;
  std::memcpy(&whole, &f, sizeof whole);
  whole -= {EXP_ROUNDER_BITS};
  const {t} k = __builtin_convertvector(whole, {t});
  const {t} r = (x - k * {LN2_HIGH}) + k * {LN2_LOW_NEGATED};
  const {t} r2 = r * r, r4 = r2 * r2;
  const {t} p = ({_estrin("r", "r2", "r4")}) * r2 + (r + 1.0f);
  const vu{n} bits = (vu{n})(whole + 127) << 23;
  {t} scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}}

// y[i] = fast_exp(y[i]) for i < count: whole vectors, then the rest as one partial vector (no
// value-by-value tail: at batch 1 a softmax row is shorter than a vector).
inline void fast_exp_span(float* y, int64_t count) {{
  int64_t i = 0;
  for (; i + {n} <= count; i += {n}) {{
    const {t} e = fast_exp({isa.load}(y + i));
    std::memcpy(y + i, &e, sizeof e);
  }}
  if (i < count) {{
    alignas({4 * n}) float rest[{n}] = {{}};
    for (int64_t j = 0; j < count - i; ++j) rest[j] = y[i + j];
    const {t} e = fast_exp({isa.load}(rest));
    std::memcpy(rest, &e, sizeof e);
    for (int64_t j = 0; j < count - i; ++j) y[i + j] = rest[j];
  }}
}}

// The index of each lane, to keep the first lanes of a vector (a partial last vector of a row).
const vi{n} kLaneIndex = {{{", ".join(str(i) for i in range(n))}}};

// Softmax of one row in place, its peak subtracted first: what a softmax fused into the layer
// before it (ops/softmax.py register_softmax) falls back to when the row's exps leave the range it
// can take without the shift; the same steps as the softmax pass (ops/softmax.py).
inline void softmax_in_place(float* y, int64_t n) {{
  float peak = y[0];
  for (int64_t j = 1; j < n; ++j) peak = std::max(peak, y[j]);
  float total = 0.0f;
  for (int64_t j = 0; j < n; ++j) {{
    y[j] = fast_exp(y[j] - peak);
    total += y[j];
  }}
  const float scale = 1.0f / total;
  for (int64_t j = 0; j < n; ++j) y[j] *= scale;
}}"""
