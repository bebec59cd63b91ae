"""Two exported models in one C++ program: each export is a CMake library named after its model with
its own namespace and symbols, so a framework links both into one executable and calls each through
its header (rows, columns, threads), and both agree with the reference backend."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import yukti

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")]

TOP = """cmake_minimum_required(VERSION 3.16)
project(two_networks LANGUAGES CXX)
set(CMAKE_CXX_STANDARD 17)
add_subdirectory(jet_dnn)
add_subdirectory(mdt_conv1d)
add_executable(both main.cpp)
target_link_libraries(both PRIVATE yukti::jet_dnn yukti::mdt_conv1d)
"""

# A framework's view: both headers in one translation unit, each network through its namespace.
MAIN = r"""
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "jet_dnn.hpp"
#include "mdt_conv1d.hpp"

namespace {
std::vector<float> read(const char* path, size_t n) {
  std::vector<float> data(n);
  std::FILE* f = std::fopen(path, "rb");
  if (!f || std::fread(data.data(), sizeof(float), n, f) != n) std::exit(4);
  std::fclose(f);
  return data;
}

void write(const char* path, const std::vector<float>& data) {
  std::FILE* f = std::fopen(path, "wb");
  if (!f || std::fwrite(data.data(), sizeof(float), data.size(), f) != data.size()) std::exit(5);
  std::fclose(f);
}
}  // namespace

// both JET.bin MDT.bin BATCH THREADS JET_OUT.bin JET_COLUMNS_OUT.bin MDT_OUT.bin
int main(int argc, char** argv) {
  if (argc != 8) return 2;
  const int64_t batch = std::atoll(argv[3]), threads = std::atoll(argv[4]);
  static_assert(yukti_jet_dnn::kNumInputs == 1 && yukti_mdt_conv1d::kNumInputs == 1, "one input each");
  static_assert(yukti_jet_dnn::kHasColumns && !yukti_mdt_conv1d::kHasColumns, "column input: jet_dnn only");

  const std::vector<float> jet = read(argv[1], batch * yukti_jet_dnn::kInputSizes[0]);
  std::vector<float> jet_out(batch * yukti_jet_dnn::kOutputSizes[0]);
  const float* jet_in[] = {jet.data()};
  float* jet_outs[] = {jet_out.data()};
  if (yukti_jet_dnn::infer_checked(jet_in, jet_outs, batch, threads) != 0) return 3;
  write(argv[5], jet_out);

  // the same samples as columns, one pointer per feature
  const int64_t features = yukti_jet_dnn::kColumns;
  std::vector<float> columns(batch * features);
  std::vector<const float*> column_ptrs;
  for (int64_t f = 0; f < features; ++f) {
    for (int64_t n = 0; n < batch; ++n) columns[f * batch + n] = jet[n * features + f];
    column_ptrs.push_back(columns.data() + f * batch);
  }
  std::vector<float> column_out(jet_out.size());
  float* column_outs[] = {column_out.data()};
  if (yukti_jet_dnn::infer_columns_checked(column_ptrs.data(), column_outs, batch, threads) != 0) return 3;
  write(argv[6], column_out);

  const std::vector<float> mdt = read(argv[2], batch * yukti_mdt_conv1d::kInputSizes[0]);
  std::vector<float> mdt_out(batch * yukti_mdt_conv1d::kOutputSizes[0]);
  const float* mdt_in[] = {mdt.data()};
  float* mdt_outs[] = {mdt_out.data()};
  if (yukti_mdt_conv1d::infer_checked(mdt_in, mdt_outs, batch, threads) != 0) return 3;
  write(argv[7], mdt_out);

  std::printf("%s %s %lld %lld\n", yukti_jet_dnn::input_name(0), yukti_mdt_conv1d::input_name(0),
              static_cast<long long>(yukti_jet_dnn::kTile), static_cast<long long>(yukti_mdt_conv1d::kTile));
  return 0;
}
"""


def _close(got: np.ndarray, expected: np.ndarray, atol: float) -> None:
    """Absolute agreement up to |1|, relative beyond (as the sanitizer test of the export)."""
    scale = np.maximum(np.abs(expected), 1)
    np.testing.assert_allclose(got / scale, expected / scale, atol=atol)


def test_two_exported_models_link_into_one_program_and_agree_with_the_reference(jet_dnn, mdt_conv1d, tmp_path):
    models = {"jet_dnn": jet_dnn, "mdt_conv1d": mdt_conv1d}
    for name, model in models.items():
        yukti.runner_class("cpp").export(model, tmp_path / name)
        assert not (tmp_path / name / "model.hpp").exists()  # each export's files carry its own name
    (tmp_path / "CMakeLists.txt").write_text(TOP)
    (tmp_path / "main.cpp").write_text(MAIN)
    configured = subprocess.run(["cmake", "-S", str(tmp_path), "-B", str(tmp_path / "build")], capture_output=True, text=True)
    assert configured.returncode == 0, configured.stdout + configured.stderr
    built = subprocess.run(["cmake", "--build", str(tmp_path / "build"), "-j", "2"], capture_output=True, text=True)
    assert built.returncode == 0, built.stdout + built.stderr
    program = tmp_path / "build" / "both"
    # a subproject builds its library only: the example programs are for an export built on its own
    assert not list((tmp_path / "build").rglob("*_example"))

    tiles = {name: yukti.runner("cpp", model).info["tile"] for name, model in models.items()}
    for batch, threads in ((97, 1), (5 * max(tiles.values()) + 3, 2)):
        x = {name: np.ascontiguousarray(np.resize(model.data.X, (batch, *model.data.X.shape[1:])), np.float32)
             for name, model in models.items()}
        for name in models:
            (tmp_path / f"{name}.bin").write_bytes(x[name].tobytes())
        outs = [tmp_path / f"{kind}.out" for kind in ("jet", "jet_columns", "mdt")]
        done = subprocess.run([str(program), str(tmp_path / "jet_dnn.bin"), str(tmp_path / "mdt_conv1d.bin"), str(batch),
                               str(threads), *map(str, outs)], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.split() == [jet_dnn.inputs[0].name, mdt_conv1d.inputs[0].name,
                                       str(tiles["jet_dnn"]), str(tiles["mdt_conv1d"])]
        jet, jet_columns, mdt = (np.frombuffer(p.read_bytes(), np.float32) for p in outs)
        expected_jet = yukti.runner("reference", jet_dnn)(x["jet_dnn"])
        expected_mdt = yukti.runner("reference", mdt_conv1d)(x["mdt_conv1d"])
        _close(jet.reshape(expected_jet.shape), expected_jet, 1e-5)
        np.testing.assert_array_equal(jet_columns, jet)  # columns are gathered into the same tiles
        _close(mdt.reshape(expected_mdt.shape), expected_mdt, 1e-4)
