"""How a runner's inputs become the arrays a backend is handed: exactly, or refused by name.

`Model.validate_inputs` decides the container (one array, a sequence, a dict by input name); this
module converts each value: numpy arrays and their subclasses, masked arrays (refused: the mask
has no meaning to a network), torch and TensorFlow tensors, nested lists of numbers, and any dtype
(converted when no value changes, else refused with the conversion to write). Inputs are untrusted:
nothing reaches native code before it has passed here.
"""

from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING, Any

import numpy as np

from yukti.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from yukti.model import TensorSpec


def _all_finite(array: np.ndarray) -> bool:
    flat = array.reshape(-1)
    # A dot product is NaN/inf if any element is; it is the cheapest reduction numpy offers
    # (2 us at batch 1 here against 5 us for isfinite().all()). Overflow of huge finite values
    # only sends us to the exact check.
    if math.isfinite(float(np.dot(flat, flat))):
        return True
    return bool(np.isfinite(flat).all())


def _non_finite_error(spec: TensorSpec, array: np.ndarray) -> InputError:
    """The InputError for a NaN/inf in `array` (a plain float ndarray), naming the first one."""
    bad = np.argwhere(~np.isfinite(array))
    where = f" ({array[tuple(bad[0])]}) at index {tuple(int(i) for i in bad[0])}" if len(bad) else ""
    return InputError(
        f"input {spec.describe()} holds a non-finite value{where}; "
        "expected finite numbers (pass check_finite=False to the runner to let NaN/inf through)"
    )


def _is_nested_numbers(value: list | tuple) -> bool:
    """True when a list/tuple reads as one array of numbers (`[[0.1, 0.2], [0.3, 0.4]]`) rather
    than as a sequence of inputs (`[x1, x2]`): every element is a number or a list/tuple itself."""
    return all(isinstance(item, (list, tuple, numbers.Number, np.bool_)) for item in value)


def _masked_error(spec: TensorSpec) -> InputError:
    # Refused, not filled: a network has no notion of "masked", and any fill value (0, the mean,
    # the data under the mask) is a modelling choice that only the caller can make.
    return InputError(
        f"input {spec.describe()} got a numpy masked array; a network cannot skip masked entries and Yukti "
        "does not guess what they should be. Fill them explicitly: x.filled(0.0) (or another value), or "
        "np.ma.getdata(x) to use the data under the mask as it is"
    )


def _to_numpy(value: Any, spec: TensorSpec) -> np.ndarray:
    """`value` as a plain numpy array of whatever dtype it holds (`_to_dtype` decides whether that
    converts); refuses what is no array at all."""
    if type(value) is np.ndarray:
        return value
    if isinstance(value, np.ma.MaskedArray):
        raise _masked_error(spec)
    if isinstance(value, np.ndarray):
        # np.matrix, np.memmap, user subclasses: their operators differ (np.matrix's dot broke the
        # finite check), so a plain view of the same memory is checked and run.
        return np.asarray(value)
    module = type(value).__module__
    if module.startswith("torch") and hasattr(value, "detach"):
        return _torch_to_numpy(value, spec)
    if module.startswith(("tensorflow", "keras")) and hasattr(value, "numpy"):
        try:
            return np.asarray(value.numpy())
        except Exception as exc:  # symbolic tensors, tensors on a device TensorFlow cannot copy from
            raise InputError(f"input {spec.describe()} got a {type(value).__name__} that does not convert to numpy: {exc}") from None
    if value is None:
        raise InputError(f"input {spec.describe()} expects an array; got None")
    if isinstance(value, (str, bytes, bytearray)):
        raise InputError(f"input {spec.describe()} expects a numeric array; got a {type(value).__name__} ({str(value)[:40]!r})")
    if isinstance(value, (list, tuple)):
        return _nested_to_numpy(value, spec)
    try:
        array = np.asarray(value)
    except Exception as exc:
        raise InputError(f"input {spec.describe()} expects an array; could not convert {type(value).__name__}: {exc}") from None
    if array.dtype == object:
        raise InputError(f"input {spec.describe()} expects a numeric array; got a {type(value).__name__}, which numpy reads as Python objects")
    return array


def _nested_to_numpy(value: list | tuple, spec: TensorSpec) -> np.ndarray:
    """A nested list of numbers as `np.asarray` reads it, its Python floats rounded to the input's
    float dtype (see `Model.validate_inputs`)."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as exc:  # ragged rows, too deep a nesting
        raise InputError(
            f"input {spec.describe()} got a nested list that is not one rectangular array of numbers "
            f"(rows of different lengths?): {exc}"
        ) from None
    if array.dtype.kind in "OUSV":
        raise InputError(
            f"input {spec.describe()} expects a nested list of numbers; got one holding non-numbers "
            f"(None, strings, mixed types or integers beyond 64 bits: numpy reads it as dtype {array.dtype})"
        )
    want = spec.dtype
    if array.dtype == np.float64 and want.kind == "f" and want.itemsize < array.dtype.itemsize:
        # A Python float is a decimal literal that binary floats of any width rarely hold exactly
        # ([[0.1] * 16]), so the exactness rule for arrays would refuse nearly every list.
        with np.errstate(over="ignore"):
            rounded = array.astype(want)
        overflow = np.argwhere(np.isfinite(array) & ~np.isfinite(rounded))
        if len(overflow):
            index = tuple(int(i) for i in overflow[0])
            raise InputError(f"input {spec.describe()} got {array[index]} at index {index}, outside the range of {want.name}")
        return rounded
    return array


def _torch_to_numpy(tensor: Any, spec: TensorSpec) -> np.ndarray:
    import torch

    try:
        tensor = tensor.detach()
        if tensor.layout != torch.strided:
            raise InputError(f"input {spec.describe()} got a {tensor.layout} torch tensor; pass a dense one (tensor.to_dense())")
        if tensor.is_quantized:
            raise InputError(f"input {spec.describe()} got a quantized torch tensor ({tensor.dtype}); pass tensor.dequantize()")
        if tensor.is_floating_point() and tensor.element_size() < 4 and tensor.dtype != torch.float16:
            # bfloat16 and the float8 types have no numpy dtype; float32 holds each of their values exactly
            tensor = tensor.to(torch.float32)
        return tensor.cpu().resolve_conj().resolve_neg().numpy()
    except InputError:
        raise
    except Exception as exc:  # a dtype numpy lacks, a meta tensor, a device without a copy to host
        raise InputError(
            f"input {spec.describe()} got a torch tensor of dtype {tensor.dtype} on {tensor.device} that does not "
            f"convert to numpy: {exc}"
        ) from None


def _is_numeric(dtype: np.dtype) -> bool:
    # ml_dtypes (bfloat16, float8_*, int4...) register their types as kind "V" (one float8 as "f")
    return dtype.kind in "biuf" or dtype.type.__module__ == "ml_dtypes"


def _why_not_numeric(dtype: np.dtype, want: np.dtype) -> str:
    kind = dtype.kind
    if kind == "c":
        return f"complex numbers have no {want.name} counterpart; pass x.real if the imaginary parts are not needed"
    if kind == "O":
        return f"dtype object holds arbitrary Python objects; if they are numbers, convert with x.astype(np.{want.name})"
    if kind in "US":
        return "strings are not numbers; parse them first"
    if kind == "M":
        return "datetime64 values are dates, not numbers; convert them, e.g. (x - x.min()) / np.timedelta64(1, 's')"
    if kind == "m":
        return "timedelta64 values carry a unit; convert them to numbers, e.g. x / np.timedelta64(1, 's')"
    if dtype.names:
        return ("a structured array holds named fields; pass one field (x['name']) or "
                "numpy.lib.recfunctions.structured_to_unstructured(x)")
    return "raw bytes (a void dtype) are not numbers"


def _to_dtype(array: np.ndarray, spec: TensorSpec) -> np.ndarray:
    want = spec.dtype
    if array.dtype == want:
        return array
    if not _is_numeric(array.dtype):
        raise InputError(
            f"input {spec.describe()} expects a numeric array of dtype {want.name}; got dtype {array.dtype}, which does not "
            f"convert: {_why_not_numeric(array.dtype, want)}"
        )
    if np.can_cast(array.dtype, want, casting="safe"):  # widening; byte order; bfloat16 -> float32
        return array.astype(want)
    try:
        # Exact narrowing (float64 values that are float32 numbers, small integers) changes nothing.
        with np.errstate(invalid="ignore", over="ignore"):  # thread-local, unlike warnings filters
            converted = array.astype(want)
            exact = np.array_equal(converted.astype(array.dtype), array, equal_nan=array.dtype.kind not in "biu")
    except (TypeError, ValueError):  # a cast ml_dtypes does not define
        exact = False
    if exact:
        return converted
    raise InputError(
        f"input {spec.describe()} expects dtype {want.name}; got {array.dtype} values that {want.name} cannot hold exactly. "
        f"Convert explicitly (x.astype(np.{want.name})) if the rounding is acceptable"
    )
