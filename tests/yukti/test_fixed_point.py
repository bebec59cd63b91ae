"""yukti.fixed_point: the one parser of precision strings, and its numpy quantizer."""

from __future__ import annotations

import numpy as np
import pytest

from yukti.fixed_point import FixedType, PrecisionError, precision_grid


@pytest.mark.parametrize("text, expected", [
    ("ap_fixed<16,6>", FixedType(16, 6)),
    ("fixed<16, 6>", FixedType(16, 6)),
    ("ap_ufixed<8,0>", FixedType(8, 0, False)),
    ("ap_fixed<10,4,AP_RND,AP_SAT>", FixedType(10, 4, True, "RND", "SAT")),
    ("ap_fixed<10,4,RND_CONV,SAT_SYM,0>", FixedType(10, 4, True, "RND_CONV", "SAT_SYM")),
    ("ap_int<8>", FixedType(8, 8)),
    ("ap_uint<3>", FixedType(3, 3, False)),
    ("ap_fixed<12,-2>", FixedType(12, -2)),
])
def test_parses_what_hls4ml_writes(text, expected):
    assert FixedType.parse(text) == expected
    assert FixedType.parse(str(expected)) == expected  # its own text reads back


@pytest.mark.parametrize("text, says", [
    ("ap_fixed<4,8>", "exceed the width"),
    ("ap_fixed<70,6>", "outside 1..64"),
    ("ap_fixed<0,0>", "outside 1..64"),
    ("fixed16", "does not parse"),
    ("ap_fixed<16,6,AP_FOO>", "rounding mode"),
    ("ap_fixed<16,6,AP_RND,AP_BAR>", "overflow mode"),
    ("ap_fixed<16,six>", "must be integers"),
    ("ap_fixed<16,6,AP_RND,AP_SAT,3>", "saturation bits"),
])
def test_refuses_with_what_is_accepted(text, says):
    with pytest.raises(PrecisionError, match=says) as info:
        FixedType.parse(text)
    assert isinstance(info.value, ValueError)


def test_ranges():
    t = FixedType(8, 3)
    assert (t.lowest, t.highest, t.step) == (-4.0, 4.0 - 2 ** -5, 2 ** -5)
    u = FixedType(8, 3, False)
    assert (u.lowest, u.highest) == (0.0, 8.0 - 2 ** -5)


def _brute(t: FixedType, value: float) -> float:
    """The representable value a careful human picks: rounding among the grid, then overflow."""
    from fractions import Fraction

    exact = Fraction(value) * 2 ** t.fractional
    floor = exact.numerator // exact.denominator
    rem = exact - floor
    half = Fraction(1, 2)
    up = {"TRN": False, "TRN_ZERO": exact < 0 and rem != 0, "RND": rem >= half, "RND_ZERO": rem > half or (rem == half and exact < 0),
          "RND_MIN_INF": rem > half, "RND_INF": rem > half or (rem == half and exact >= 0),
          "RND_CONV": rem > half or (rem == half and floor % 2 == 1)}[t.rounding]
    raw = floor + int(up)
    lo, hi = (-(2 ** (t.width - 1)), 2 ** (t.width - 1) - 1) if t.signed else (0, 2 ** t.width - 1)
    if t.overflow == "SAT_SYM" and t.signed:
        lo = -hi
    if not lo <= raw <= hi:
        if t.overflow == "WRAP":
            base = lo if t.signed else 0
            raw = (raw - base) % 2 ** t.width + base
        elif t.overflow == "SAT_ZERO":
            raw = 0
        else:
            raw = min(max(raw, lo), hi)
    return raw / 2 ** t.fractional


@pytest.mark.parametrize("rounding", ["TRN", "TRN_ZERO", "RND", "RND_ZERO", "RND_MIN_INF", "RND_INF", "RND_CONV"])
@pytest.mark.parametrize("overflow", ["WRAP", "SAT", "SAT_ZERO", "SAT_SYM"])
def test_quantize_agrees_with_exact_arithmetic(rounding, overflow):
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.normal(0, 8, 500), np.arange(-80, 80) / 8.0, [0.0, -0.0, 3.96875, -4.0]])
    for t in (FixedType(8, 3, True, rounding, overflow), FixedType(6, 2, False, rounding, overflow)):
        got = t.quantize(values)
        want = np.array([_brute(t, float(v)) for v in values])
        assert np.array_equal(got, want), (t, values[got != want][:5], got[got != want][:5], want[got != want][:5])


def test_grid_skips_integer_bits_above_width():
    grid = precision_grid(range(2, 5), range(1, 5))
    assert all(t.integer <= t.width for t in grid)
    assert FixedType(4, 4) in grid and (2, 3) not in {(t.width, t.integer) for t in grid} and len(grid) == 2 + 3 + 4
