"""fast_math=True compiles the network with -ffast-math but must not change floating point for the
rest of the process: GCC links crtfastmath.o into a -ffast-math link, whose constructor turns on
flush-to-zero and denormals-are-zero process-wide (numpy would then read subnormals as 0)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import yukti

pytestmark = pytest.mark.skipif(not yukti.registry.backend_info("cpp").available, reason="no C++ compiler")


def test_a_fast_math_runner_leaves_subnormals_alone(jet_dnn, tmp_path):
    # a fresh process: another test's library may already have switched this one
    script = textwrap.dedent("""
        import numpy as np, yukti
        assert np.spacing(np.float32(1e-38)) > 0, "flush-to-zero already on before loading"
        run = yukti.runner("cpp", yukti.zoo.get("jet_dnn"), fast_math=True)
        assert "-ffast-math" in run.info["flags"]
        print(float(np.spacing(np.float32(1e-38))), float(np.float32(1e-38) / np.float32(4.0)))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    spacing, quarter = map(float, done.stdout.split()[-2:])
    assert spacing > 0 and quarter > 0
