"""The generated code's exp (runners/cpp/isa.py vector_prelude: fast_exp, scalar and vector, and
fast_exp_span, which softmax uses): within 2 ulp of exp over float32's range, vector and scalar
bit-identical, saturating instead of overflowing, NaN kept; for every target this machine runs."""

from __future__ import annotations

import ctypes
import subprocess

import numpy as np
import pytest

import yukti
from yukti.runners.cpp import isa
from yukti.toolchain import find_compiler

pytestmark = pytest.mark.skipif(not yukti.registry.backend_info("cpp").available, reason="no C++ compiler")

HARNESS = """
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
{prelude}
extern "C" void exp_each(float* y, int64_t n) {{ for (int64_t i = 0; i < n; ++i) y[i] = fast_exp(y[i]); }}
extern "C" void exp_span(float* y, int64_t n) {{ fast_exp_span(y, n); }}
"""


def _library(tmp_path, march: str | None) -> ctypes.CDLL:
    target = isa.detect(march)
    (tmp_path / "exp.cpp").write_text(HARNESS.format(prelude=isa.vector_prelude(target)))
    flags = [f"-march={march}"] if march else []
    subprocess.run([find_compiler(), "-O2", "-std=c++17", "-fPIC", "-shared", "-fno-math-errno", *flags, "exp.cpp", "-o", "exp.so"],
                   cwd=tmp_path, check=True, capture_output=True)
    library = ctypes.CDLL(str(tmp_path / "exp.so"))
    for name in ("exp_each", "exp_span"):
        getattr(library, name).argtypes = [ctypes.c_void_p, ctypes.c_int64]
    return library


def _apply(function, values: np.ndarray) -> np.ndarray:
    y = np.ascontiguousarray(values, np.float32).copy()
    function(y.ctypes.data, len(y))
    return y


@pytest.mark.parametrize("march", ["native", None], ids=["native", "compiler-default"])
def test_fast_exp_is_within_2_ulp_and_the_vector_form_agrees_bit_for_bit(tmp_path, march):
    library = _library(tmp_path, march)
    x = np.linspace(-87.0, 88.0, 400_003, dtype=np.float32)
    exact = np.exp(x.astype(np.float64))
    for function in (library.exp_each, library.exp_span):
        got = _apply(function, x)
        # one float32 ulp of the exact value, in float64: np.spacing on float32 reads 0 near the
        # bottom of the range when a library loaded into this process (one built with
        # -ffast-math) turned on flush-to-zero
        ulp = np.ldexp(1.0, np.frexp(exact)[1] - 24)
        assert np.max(np.abs(got - exact) / ulp) <= 2.0
    # every length: whole vectors plus each possible partial one (a softmax row of 5 at batch 1)
    for n in range(1, 3 * isa.detect(march).lanes + 2):
        part = x[1000:1000 + n]
        assert np.array_equal(_apply(library.exp_span, part).view(np.uint32), _apply(library.exp_each, part).view(np.uint32)), n


@pytest.mark.parametrize("march", ["native", None], ids=["native", "compiler-default"])
def test_fast_exp_saturates_and_keeps_nan(tmp_path, march):
    library = _library(tmp_path, march)
    edge = np.array([-np.inf, -1000.0, 0.0, 1000.0, np.inf, np.nan, 1.0], np.float32)
    for function in (library.exp_each, library.exp_span):
        got = _apply(function, edge)
        # the smallest normal float, or 0 where flush-to-zero is on (see above)
        assert 0.0 <= got[0] <= np.finfo(np.float32).tiny and 0.0 <= got[1] <= np.finfo(np.float32).tiny
        assert got[2] == 1.0
        assert np.isfinite(got[3]) and got[3] > 1e38 and np.isfinite(got[4]) and got[4] > 1e38
        assert np.isnan(got[5])
        assert abs(got[6] - np.e) <= np.spacing(np.float32(np.e))
