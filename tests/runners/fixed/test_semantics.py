"""yfx (runners/fixed/runtime.py) against Xilinx's ap_fixed headers, which hls4ml ships: every
rounding mode x every overflow mode, signed and unsigned, from doubles and from wider fixed-point
values, including the infinities hls4ml's 1/x table meets. A mismatch prints the first few cases."""

from __future__ import annotations

import itertools
import subprocess
from pathlib import Path

import pytest

from yukti.runners.fixed.runtime import HEADER, OVERFLOW, ROUNDING
from yukti.toolchain import find_compiler

hls4ml = pytest.importorskip("hls4ml")
AP_TYPES = Path(hls4ml.__file__).parent / "templates" / "vivado" / "ap_types"

# (W, I, signed) targets: narrow, negative-integer-bit, unsigned, wide
TARGETS = [(8, 3, True), (6, 6, True), (10, 2, False), (16, 6, True), (12, -2, True), (24, 12, False), (40, 20, True)]
SOURCE = (34, 14)  # the wider fixed-point value cast from: ap_fixed<34,14>, enough to overflow every target


def _program() -> str:
    cases = []
    for (w, i, s), q, o in itertools.product(TARGETS, ROUNDING, OVERFLOW):
        ap = f"ap_{'' if s else 'u'}fixed<{w},{i},AP_{q},AP_{o}>"
        ours = f"{w},{w - i},{'true' if s else 'false'},yfx::{q},yfx::{o}"
        cases.append(f"""
    for (int k = 0; k < N; k++) {{
        double d = doubles[k];
        {ap} a = d;
        long long theirs = a.range({w - 1}, 0).to_int64();  // the raw bit pattern
        long long mine = yfx::from_double<{ours}>(d);
        long long mine_bits = mine & (({w} >= 64) ? -1LL : ((1LL << {w}) - 1));
        if (theirs != mine_bits) {{ if (bad++ < 20) printf("double %s %.17g: ap %lld yfx %lld\\n", "{ap}", d, theirs, mine_bits); }}
        ap_fixed<{SOURCE[0]},{SOURCE[1]}> src = d;  // truncated, wrapped: any {SOURCE} value
        long long raw = src.range({SOURCE[0] - 1}, 0).to_int64();
        raw = (raw << {64 - SOURCE[0]}) >> {64 - SOURCE[0]};
        {ap} b = src;
        long long theirs2 = b.range({w - 1}, 0).to_int64();
        long long mine2 = yfx::requant<{SOURCE[0] - SOURCE[1]},{ours},long long>(raw);
        long long mine2_bits = mine2 & (({w} >= 64) ? -1LL : ((1LL << {w}) - 1));
        if (theirs2 != mine2_bits) {{ if (bad++ < 20) printf("fixed %s raw %lld: ap %lld yfx %lld\\n", "{ap}", raw, theirs2, mine2_bits); }}
    }}""")
    return f"""
#include <cstdio>
#include <random>
#include "ap_fixed.h"
{HEADER}
int main() {{
    const int N = 4000;
    static double doubles[N];
    std::mt19937_64 rng(7);
    std::uniform_real_distribution<double> wide(-1.0e6, 1.0e6);
    std::uniform_int_distribution<int> grid(-4096, 4096);
    for (int k = 0; k < N; k++) {{
        switch (k % 5) {{
            case 0: doubles[k] = wide(rng); break;
            case 1: doubles[k] = grid(rng) / 64.0; break;              // exact ties at every shift
            case 2: doubles[k] = grid(rng) / 1024.0 + grid(rng) * 4.0; break;
            case 3: doubles[k] = std::ldexp(wide(rng), -20); break;
            default: doubles[k] = grid(rng) / 8.0; break;
        }}
    }}
    doubles[0] = 1.0 / 0.0; doubles[1] = -1.0 / 0.0; doubles[2] = 0.0; doubles[3] = -0.0;
    int bad = 0;
{''.join(cases)}
    printf("mismatches %d\\n", bad);
    return bad != 0;
}}
"""


@pytest.mark.slow
def test_conversions_match_ap_fixed(tmp_path: Path) -> None:
    cxx = find_compiler()
    if cxx is None:
        pytest.skip("no C++ compiler")
    (tmp_path / "oracle.cpp").write_text(_program())
    build = subprocess.run([cxx, "-std=c++17", "-O1", f"-I{AP_TYPES}", "oracle.cpp", "-o", "oracle"], cwd=tmp_path,
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-3000:]
    run = subprocess.run(["./oracle"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-4000:]
    assert "mismatches 0" in run.stdout
