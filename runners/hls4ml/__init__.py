"""`hls4ml`: bit-accurate C++ emulation of the FPGA firmware hls4ml generates (L1 trigger style).

The model's original Keras model, original torch module, or ONNX form (cleaned by qonnx first)
becomes an hls4ml project whose C++ emulation library (g++ only, no HLS tools) is compiled into
the shared artifact cache and called through ctypes. Outputs are fixed point on purpose: they
approximate the float network, and the engine's fidelity columns say what that costs.

One module per job, like runners/cpp:
- `frontend.py`: the interface one source (keras.py, torch.py, onnx.py) implements, and the one
  place that picks the source;
- `config.py`: what the options may hold (the checks `runner.py` declares), and the hls4ml
  configuration built from them;
- `build.py`: ModelGraph -> project with a batched entry point -> library in the artifact cache
  (`softmax.py` retunes hls4ml's softmax tables on the way);
- `diagnose.py`: the self-check against the float model, and the layer trace naming where a
  failing emulation departs;
- `runner.py`: `HLS4MLRunner`, the Runner contract around the loaded library.
"""
