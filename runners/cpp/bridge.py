"""A tiny CPython extension that calls a generated `infer` (or `infer_threads`) with array buffers.

ctypes costs about 7 us per call here (a ctypes object per array pointer plus argument
conversion), several times the network itself at batch 1. This bridge takes the function address
and the arrays, reads their buffers through the buffer protocol and calls straight through, and
releases the GIL for large batches. It is compiled once per Python and compiler into the artifact
cache; when it cannot be built (no Python headers), the runner falls back to ctypes.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import sysconfig
from types import ModuleType

BRIDGE_SOURCE = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

typedef int64_t (*infer_fn)(const float* const*, float* const*, int64_t);
typedef int64_t (*infer_threads_fn)(const float* const*, float* const*, int64_t, int64_t);
/* Tensors whose buffer views and pointers live on the stack; more (column input passes one array
   per feature) take one heap block, so there is no limit and the common call allocates nothing. */
#define STACK_TENSORS 16
#define GIL_RELEASE_BATCH 64

/* call(address, inputs_tuple, outputs_tuple, batch[, threads]) -> int64 returned by the function:
   infer(in, out, batch), or with threads infer_threads(in, out, batch, threads) */
static PyObject* bridge_call(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 4 && nargs != 5) { PyErr_SetString(PyExc_TypeError, "call(address, inputs, outputs, batch[, threads])"); return NULL; }
  void* fn = PyLong_AsVoidPtr(args[0]);
  long long batch = PyLong_AsLongLong(args[3]);
  long long threads = nargs == 5 ? PyLong_AsLongLong(args[4]) : 0;
  if (PyErr_Occurred()) return NULL;
  if (fn == NULL || batch < 0) { PyErr_SetString(PyExc_ValueError, "call needs a function address and a batch >= 0"); return NULL; }
  if (nargs == 5 && threads < 1) { PyErr_SetString(PyExc_ValueError, "threads must be >= 1"); return NULL; }
  PyObject* ins = args[1];
  PyObject* outs = args[2];
  if (!PyTuple_Check(ins) || !PyTuple_Check(outs)) { PyErr_SetString(PyExc_TypeError, "inputs and outputs must be tuples"); return NULL; }
  const Py_ssize_t n_in = PyTuple_GET_SIZE(ins), n_out = PyTuple_GET_SIZE(outs), n = n_in + n_out;
  Py_buffer stack_views[STACK_TENSORS];
  const float* stack_in[STACK_TENSORS];
  float* stack_out[STACK_TENSORS];
  Py_buffer* views = stack_views;
  const float** in_ptrs = stack_in;
  float** out_ptrs = stack_out;
  void* heap = NULL;
  if (n > STACK_TENSORS) {
    heap = PyMem_Malloc((size_t)n * (sizeof(Py_buffer) + sizeof(void*)));
    if (heap == NULL) return PyErr_NoMemory();
    views = (Py_buffer*)heap;
    in_ptrs = (const float**)(views + n);
    out_ptrs = (float**)(in_ptrs + n_in);
  }
  PyObject* result = NULL;
  Py_ssize_t taken = 0;
  for (; taken < n; ++taken) {
    const bool is_in = taken < n_in;
    PyObject* obj = is_in ? PyTuple_GET_ITEM(ins, taken) : PyTuple_GET_ITEM(outs, taken - n_in);
    if (PyObject_GetBuffer(obj, &views[taken], PyBUF_C_CONTIGUOUS | (is_in ? 0 : PyBUF_WRITABLE)) != 0) goto done;
    if (is_in) in_ptrs[taken] = (const float*)views[taken].buf; else out_ptrs[taken - n_in] = (float*)views[taken].buf;
  }
  {
    int64_t rc;
    if (batch >= GIL_RELEASE_BATCH) {
      Py_BEGIN_ALLOW_THREADS
      rc = nargs == 5 ? ((infer_threads_fn)fn)(in_ptrs, out_ptrs, (int64_t)batch, (int64_t)threads)
                      : ((infer_fn)fn)(in_ptrs, out_ptrs, (int64_t)batch);
      Py_END_ALLOW_THREADS
    } else {
      rc = nargs == 5 ? ((infer_threads_fn)fn)(in_ptrs, out_ptrs, (int64_t)batch, (int64_t)threads)
                      : ((infer_fn)fn)(in_ptrs, out_ptrs, (int64_t)batch);
    }
    result = PyLong_FromLongLong((long long)rc);
  }
done:
  for (Py_ssize_t i = 0; i < taken; ++i) PyBuffer_Release(&views[i]);
  PyMem_Free(heap);
  return result;
}

/* call1(address, input, output, batch, threads): call() for one input and one output, without the
   two tuples (the batch-1 hot path of a single-input network, where they cost a tenth of the call) */
static PyObject* bridge_call1(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 5) { PyErr_SetString(PyExc_TypeError, "call1(address, input, output, batch, threads)"); return NULL; }
  void* fn = PyLong_AsVoidPtr(args[0]);
  long long batch = PyLong_AsLongLong(args[3]);
  long long threads = PyLong_AsLongLong(args[4]);
  if (PyErr_Occurred()) return NULL;
  if (fn == NULL || batch < 0 || threads < 1) { PyErr_SetString(PyExc_ValueError, "call1 needs a function address, a batch >= 0 and threads >= 1"); return NULL; }
  Py_buffer in_view, out_view;
  if (PyObject_GetBuffer(args[1], &in_view, PyBUF_C_CONTIGUOUS) != 0) return NULL;
  if (PyObject_GetBuffer(args[2], &out_view, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) != 0) { PyBuffer_Release(&in_view); return NULL; }
  const float* in_ptrs[1] = {(const float*)in_view.buf};
  float* out_ptrs[1] = {(float*)out_view.buf};
  int64_t rc;
  if (batch >= GIL_RELEASE_BATCH) {
    Py_BEGIN_ALLOW_THREADS
    rc = ((infer_threads_fn)fn)(in_ptrs, out_ptrs, (int64_t)batch, (int64_t)threads);
    Py_END_ALLOW_THREADS
  } else {
    rc = ((infer_threads_fn)fn)(in_ptrs, out_ptrs, (int64_t)batch, (int64_t)threads);
  }
  PyBuffer_Release(&out_view);
  PyBuffer_Release(&in_view);
  return PyLong_FromLongLong((long long)rc);
}

static PyMethodDef methods[] = {
  {"call", (PyCFunction)(void (*)(void))bridge_call, METH_FASTCALL, "call(address, inputs, outputs, batch[, threads])"},
  {"call1", (PyCFunction)(void (*)(void))bridge_call1, METH_FASTCALL, "call1(address, input, output, batch, threads)"},
  {NULL, NULL, 0, NULL},
};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "yukti_bridge", NULL, -1, methods};
PyMODINIT_FUNC PyInit_yukti_bridge(void) { return PyModule_Create(&module); }
"""

_loaded: ModuleType | None = None
_error: str | None = None


def load() -> ModuleType | None:
    """The compiled bridge module, or None (with `error()` saying why) when it cannot be built."""
    global _loaded, _error
    if _loaded is not None or _error is not None:
        return _loaded
    from yukti.runners.cpp.compiler import CompileError, compile_library

    include = sysconfig.get_paths()["include"]
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    flags = ["-O2", "-std=c++17", "-fPIC", "-shared", f"-I{include}"]
    try:
        entry = compile_library("", BRIDGE_SOURCE, flags, model_hash=f"bridge-{sys.version}", library=f"yukti_bridge{suffix}")
        path = entry.path / f"yukti_bridge{suffix}"
        spec = importlib.util.spec_from_file_location("yukti_bridge", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _loaded = module
    except (CompileError, ImportError, OSError) as exc:
        _error = f"{type(exc).__name__}: {exc}"
    return _loaded


def error() -> str | None:
    return _error
