"""Old home of the `hls4ml` backend, now the package runners/hls4ml/: kept so that an installed
entry point naming `runners.hls4ml_emu:HLS4MLRunner` (a wheel built before the move) and code
importing these names still work. New code imports from runners.hls4ml.*."""

from runners.hls4ml.diagnose import SELF_CHECK_SAMPLES, EmulationMismatchError
from runners.hls4ml.runner import MAX_KERNEL_WEIGHTS, HLS4MLRunner

__all__ = ["HLS4MLRunner", "EmulationMismatchError", "MAX_KERNEL_WEIGHTS", "SELF_CHECK_SAMPLES"]
