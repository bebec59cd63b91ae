"""Roofline numbers: the FLOP one sample costs, and the FP32 FMA peak of this host.

Together with a measured throughput they give the achieved rate (`gflops`: FLOP per sample x
samples/s / 1e9) and the share of the peak it reaches (`pct_of_peak`); both are derived per result
row by yukti.vocabulary from the two facts the engine stores, `flop_per_sample` and `peak_gflops`.

Counting convention (`count_flop`), per sample, independent of the backend that runs the model:

- a multiply-add counts 2 FLOP: Gemm and MatMul 2*K per output element (2*K*N per row of a dense
  layer), Conv 2*(Cin/groups)*prod(kernel) per output element, ConvTranspose 2*(Cout/groups)*
  prod(kernel) per input element; a bias adds 1 per output element (Gemm's C, Conv's B). Gemm's
  alpha and beta scalings are not counted (exporters leave them at 1);
- every other arithmetic op counts 1 per element it produces, whatever it costs on a real core:
  Add, Mul, Relu, Sigmoid, Tanh, Exp, Erf, comparisons, Where, ... (a transcendental counts 1);
  variadic Sum/Max/Min count 1 per extra input, Mean one more;
- Softmax and LogSoftmax count 5 per element (max, subtract, exp, sum, divide: each 1);
  BatchNormalization 2 (its inference form: scale, shift); Layer/Instance/Group normalization 5
  (mean, subtract, square and accumulate, scale by 1/sigma) plus 1 each for scale and bias;
- pooling counts 1 per window element per output (MaxPool, AveragePool), global pooling and
  reductions 1 per input element;
- data movement counts 0 (Reshape, Transpose, Concat, Slice, Gather, Cast, Pad, ...);
- ops outside these lists (Einsum, LSTM, ...) count 0 and are named in `FlopCount.uncounted`, so
  a total is a lower bound exactly when that tuple is not empty.

The graph is read through the cpp backend's IR (yukti.runners.cpp.ir), not plain ONNX shape
inference: the IR already gives every tensor's per-sample shape (it infers shapes at batch 1 and
2 and keeps what scales with the batch, so a batch axis is never counted as a feature), folds
everything computed from initializers alone (the shape arithmetic exporters write around a
Reshape is no per-sample work and is not counted), drops Identity and inference Dropout, and keeps
tf2onnx's merged batch-and-rows tensors per sample. It imports no compiler. The price: a model the
IR refuses (a non-float32 input, a dynamic dimension other than the batch) has no count.

Peak (`host_peak_gflops`): FMA units x vector lanes x 2 FLOP x GHz x threads, from

- lanes: the widest FP32 vector ISA in /proc/cpuinfo's flags: avx512f 16, avx2 with fma 8, other
  x86 4 (SSE); aarch64 (asimd, NEON) 4. SVE's length is not read (NEON's 4 is used);
- FMA units: 2 per core, the count of x86 server cores (Skylake-SP and later Xeons with two
  AVX-512 FMA ports, Zen) and of Neoverse N1/N2's two FP pipes. An assumption: some cores have one
  (Xeon Bronze/Silver Skylake-SP, many client cores at 512 bits); set YUKTI_FMA_UNITS to override;
- clock: /sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq when the kernel exposes it: the
  highest clock the core may run at, so the peak stays an upper bound (the momentary `cpu MHz` of
  an idle core would understate it and give shares above 100%). Without cpufreq (virtual
  machines, containers) /proc/cpuinfo's `cpu MHz`, which a hypervisor reports as the nominal
  clock: the cores may turbo above it (a cloud Xeon of 2.6 GHz nominal runs FMAs at about 3.8),
  and then the peak is low and shares read high. YUKTI_CPU_GHZ overrides both. Heavy AVX-512 code
  may run below either clock;
- threads: the run's threads, at most the host's physical cores (hyperthreads share FMA units).
"""

from __future__ import annotations

import functools
import math
import os
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:  # pragma: no cover
    import onnx

    from yukti.model import Model
    from yukti.runners.cpp.ir import Graph, Node

# -- FLOP per sample ---------------------------------------------------------------------------

_ZERO = frozenset({
    "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Concat", "Split", "Slice", "Gather", "GatherElements",
    "GatherND", "Cast", "CastLike", "Identity", "Dropout", "Pad", "Expand", "Tile", "Shape", "Size", "Constant",
    "ConstantOfShape", "DepthToSpace", "SpaceToDepth", "ScatterND", "ScatterElements", "ReverseSequence", "Compress",
    "Range", "OneHot", "Resize", "Upsample", "EyeLike", "Optional", "OptionalGetElement", "SplitToSequence",
})
_PER_OUTPUT = frozenset({
    "Add", "Sub", "Mul", "Div", "Pow", "Mod", "PRelu", "Relu", "LeakyRelu", "Sigmoid", "HardSigmoid", "Tanh", "Exp",
    "Log", "Sqrt", "Reciprocal", "Neg", "Abs", "Erf", "Elu", "Selu", "Celu", "Softplus", "Softsign", "HardSwish",
    "Gelu", "Mish", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "Clip",
    "Sign", "Floor", "Ceil", "Round", "ThresholdedRelu", "Shrink", "Equal", "Less", "Greater", "LessOrEqual",
    "GreaterOrEqual", "Not", "And", "Or", "Xor", "Where", "IsNaN", "IsInf", "Hardmax", "BitShift",
})
_VARIADIC = frozenset({"Sum", "Max", "Min", "Mean"})
_PER_INPUT = frozenset({
    "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool", "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin",
    "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "ArgMax", "ArgMin",
})
_WINDOWED = frozenset({"MaxPool", "AveragePool", "LpPool"})
_NORMALIZATIONS = frozenset({"LayerNormalization", "InstanceNormalization", "GroupNormalization"})
SOFTMAX_FLOP_PER_ELEMENT = 5  # max, subtract, exp, sum, divide
NORMALIZATION_FLOP_PER_ELEMENT = 5  # mean, subtract, square and accumulate (2), scale by 1/sigma
BATCHNORM_FLOP_PER_ELEMENT = 2  # inference form: one scale, one shift


@dataclass(frozen=True)
class FlopCount:
    """FLOP of one sample: `total` = `multiply_add` (Gemm, MatMul, Conv: 2 per multiply-add) +
    `other` (biases, activations, pooling, ...); `by_op` per op type; `uncounted`: op types present
    that the convention does not count (empty: the total is complete)."""

    total: int
    multiply_add: int
    other: int
    by_op: dict[str, int] = field(default_factory=dict)
    uncounted: tuple[str, ...] = ()


def count_flop(model: "Model | onnx.ModelProto") -> FlopCount:
    """The FLOP one sample costs (see the module's convention), from a yukti Model with an ONNX form
    or an onnx.ModelProto. UnsupportedModelError when the cpp IR cannot read the graph,
    ModelLoadError when a Model has no ONNX form."""
    from yukti.runners.cpp import ir

    proto = model if _is_proto(model) else model.onnx  # type: ignore[union-attr]
    graph = ir.from_onnx(proto)
    multiply_add = other = 0
    by_op: dict[str, int] = {}
    uncounted: set[str] = set()
    for node in graph.nodes:
        counted = _node_flop(graph, node)
        if counted is None:
            uncounted.add(node.op)
            continue
        mad, rest = counted
        multiply_add += mad
        other += rest
        by_op[node.op] = by_op.get(node.op, 0) + mad + rest
    return FlopCount(multiply_add + other, multiply_add, other, by_op, tuple(sorted(uncounted)))


def flop_per_sample(model: "Model | onnx.ModelProto") -> int:
    """FLOP one sample costs, multiply-adds as 2 (the module's convention; `count_flop` splits it)."""
    return count_flop(model).total


def _is_proto(model: Any) -> bool:
    import onnx

    return isinstance(model, onnx.ModelProto)


def _size(shape: tuple[int, ...]) -> int:
    return math.prod(int(d) for d in shape)


def _node_flop(graph: "Graph", node: "Node") -> tuple[int, int] | None:
    """(multiply-add FLOP, other FLOP) of one node per sample; None for an op not counted."""
    op = node.op
    inputs = [graph.values[name] if name else None for name in node.inputs]
    out = graph.values[node.outputs[0]] if node.outputs and node.outputs[0] in graph.values else None
    out_size = out.size if out is not None else 0
    if op in _ZERO:
        return 0, 0
    if op == "Gemm":
        a, b = inputs[0], inputs[1]
        if b is not None and not b.batched and len(b.shape) == 2:
            k = b.shape[1] if node.attr("transB", 0) else b.shape[0]
        else:  # weights computed per sample (unusual): the contraction runs along A's rows
            k = a.shape[0] if node.attr("transA", 0) and len(a.shape) > 1 else a.shape[-1]
        has_bias = len(inputs) > 2 and inputs[2] is not None and float(node.attr("beta", 1.0)) != 0.0
        return 2 * int(k) * out_size, out_size if has_bias else 0
    if op == "MatMul":
        a = inputs[0]
        return 2 * int(a.shape[-1]) * out_size, 0
    if op == "Conv":
        weights = inputs[1]
        has_bias = len(inputs) > 2 and inputs[2] is not None
        # W is (Cout, Cin/groups, *kernel): each output element sums Cin/groups x kernel products
        return 2 * _size(weights.shape[1:]) * out_size, out_size if has_bias else 0
    if op == "ConvTranspose":
        x, weights = inputs[0], inputs[1]
        has_bias = len(inputs) > 2 and inputs[2] is not None
        # W is (Cin, Cout/groups, *kernel): each input element scatters that many products
        return 2 * _size(weights.shape[1:]) * x.size, out_size if has_bias else 0
    if op in _PER_OUTPUT:
        return 0, out_size
    if op in _VARIADIC:
        present = sum(1 for value in inputs if value is not None)
        return 0, out_size * (max(present - 1, 0) + (1 if op == "Mean" else 0))
    if op in ("Softmax", "LogSoftmax"):
        return 0, SOFTMAX_FLOP_PER_ELEMENT * out_size
    if op == "BatchNormalization":
        return 0, BATCHNORM_FLOP_PER_ELEMENT * out_size
    if op in _NORMALIZATIONS:
        affine = sum(1 for value in inputs[1:3] if value is not None)
        return 0, (NORMALIZATION_FLOP_PER_ELEMENT + affine) * out_size
    if op in _PER_INPUT:
        return 0, inputs[0].size
    if op in _WINDOWED:
        return 0, _size(tuple(node.attr("kernel_shape", ()))) * out_size
    return None


# -- the host's FP32 FMA peak ------------------------------------------------------------------

CPUINFO = Path("/proc/cpuinfo")
MAX_FREQ = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
DEFAULT_FMA_UNITS = 2
FMA_UNITS_ENV = "YUKTI_FMA_UNITS"
CPU_GHZ_ENV = "YUKTI_CPU_GHZ"


@dataclass(frozen=True)
class Peak:
    """A host's FP32 FMA peak and the parts it is the product of:
    `fma_units` x `lanes` x 2 FLOP x `ghz` x `threads` = `gflops` (None when the clock is unknown;
    `note` says why)."""

    gflops: float | None
    isa: str
    lanes: int
    fma_units: int
    ghz: float | None
    clock_source: str
    threads: int
    fma_units_source: str = "assumed"
    note: str = ""

    @property
    def flop_per_cycle(self) -> int:
        """FP32 FLOP per cycle of one core: FMA units x lanes x 2."""
        return self.fma_units * self.lanes * 2

    def arithmetic(self) -> str:
        """The product written out, for a README or a closing note."""
        threads = f"{self.threads} thread{'s' if self.threads != 1 else ''}"
        parts = (f"{self.fma_units} FMA units ({self.fma_units_source}) x {self.lanes} lanes ({self.isa}) x 2 FLOP"
                 f" = {self.flop_per_cycle} FLOP/cycle")
        if self.gflops is None or self.ghz is None:
            return f"{parts}; clock unknown ({self.note or 'no clock found'}): no peak"
        product = f"{parts} x {self.ghz:.3g} GHz ({self.clock_source}) x {threads} = {self.gflops:.4g} GFLOP/s"
        return f"{product}; {self.note}" if self.note else product


def cpu_flags(cpuinfo: str) -> set[str]:
    """The ISA flags of the first CPU in /proc/cpuinfo text (x86 `flags`, ARM `Features`)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def vector_isa(flags: set[str], machine: str = "") -> tuple[str, int]:
    """(ISA name, FP32 lanes of its widest vector) from cpu flags and the machine name."""
    machine = machine.lower()
    if "avx512f" in flags:
        return "avx512f", 16
    if {"avx2", "fma"} <= flags:
        return "avx2+fma", 8
    if "asimd" in flags or "neon" in flags or machine in ("aarch64", "arm64") or machine.startswith("armv8"):
        return "neon", 4
    return "sse", 4  # x86-64's baseline (SSE2); also the answer for a machine we cannot identify


def cpuinfo_mhz(cpuinfo: str) -> float | None:
    """The first `cpu MHz` of /proc/cpuinfo text (x86 only; ARM kernels do not print one)."""
    match = re.search(r"^cpu MHz\s*:\s*([0-9.]+)", cpuinfo, flags=re.MULTILINE)
    return float(match.group(1)) if match and float(match.group(1)) > 0 else None


def _positive(value: str | None, kind: type) -> Any:
    try:
        number = kind(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def peak_from(cpuinfo: str, *, threads: int = 1, max_freq_khz: str | int | None = None, machine: str = "",
              cores: int | None = None, env: Mapping[str, str] | None = None) -> Peak:
    """The FP32 FMA peak from the text of /proc/cpuinfo and of cpufreq's cpuinfo_max_freq (kHz;
    None when the file is absent), the machine name (platform.machine()), the physical core count
    (None: unknown, no cap) and the environment (YUKTI_FMA_UNITS, YUKTI_CPU_GHZ). No file is read."""
    env = os.environ if env is None else env
    isa, lanes = vector_isa(cpu_flags(cpuinfo), machine)
    units = _positive(env.get(FMA_UNITS_ENV), int)
    units_source = FMA_UNITS_ENV if units else "assumed"
    units = units or DEFAULT_FMA_UNITS
    threads = max(int(threads), 1)
    if cores:
        threads = min(threads, int(cores))  # hyperthreads share a core's FMA units
    ghz, source = _positive(env.get(CPU_GHZ_ENV), float), CPU_GHZ_ENV
    if ghz is None:
        khz = _positive(max_freq_khz, int)
        ghz, source = (khz / 1e6, "cpuinfo_max_freq") if khz else (None, "")
    if ghz is None:
        mhz = cpuinfo_mhz(cpuinfo)
        ghz, source = (mhz / 1e3, "cpu MHz") if mhz else (None, "")
    if ghz is None:
        return Peak(None, isa, lanes, units, None, "", threads, units_source,
                    note=f"neither cpufreq's cpuinfo_max_freq nor /proc/cpuinfo's cpu MHz is readable; set {CPU_GHZ_ENV}")
    note = ""
    if source == "cpu MHz" and "hypervisor" in cpu_flags(cpuinfo):
        note = (f"a virtual machine's nominal clock: its cores may run faster, and shares of this peak then read "
                f"high; set {CPU_GHZ_ENV} to the clock they run at")
    return Peak(units * lanes * 2 * ghz * threads, isa, lanes, units, ghz, source, threads, units_source, note)


@functools.lru_cache(maxsize=1)
def _host_facts() -> tuple[str, str | None, str, int | None]:
    def read(path: Path) -> str | None:
        try:
            return path.read_text()
        except OSError:
            return None

    try:
        import psutil

        cores = psutil.cpu_count(logical=False)
    except Exception:  # noqa: BLE001 - psutil missing or unable to read the topology: no cap
        cores = None
    return read(CPUINFO) or "", read(MAX_FREQ), platform.machine(), cores


def host_peak_gflops(threads: int = 1) -> Peak:
    """This host's FP32 FMA peak at `threads` threads, with its parts (see the module docstring)."""
    cpuinfo, max_freq, machine, cores = _host_facts()
    return peak_from(cpuinfo, threads=threads, max_freq_khz=max_freq, machine=machine, cores=cores)
