"""One exported model file run by its runtime: `session(name=array, ...) -> [array, ...]`.

Threads: each session uses as many threads as torch does in this process (`torch.get_num_threads()`, which
OMP_NUM_THREADS sets), so one setting governs every backend. On the shared 2-core development machine one
thread per process is the measured choice (two threads beside a busy core ran 5-35x slower).
OpenVINO runs in fp32 (`INFERENCE_PRECISION_HINT`): on CPUs with bf16 units it would otherwise pick bf16,
which moved pixels by up to 12/255 in the issue's probes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

# ONNX / OpenVINO element type names -> numpy dtypes, for casting inputs to what the model declares
_NUMPY_DTYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32,
                 "tensor(double)": np.float64, "tensor(float16)": np.float16,
                 "f32": np.float32, "i64": np.int64, "i32": np.int32, "f64": np.float64, "f16": np.float16}


class OnnxSession:
    """onnxruntime.InferenceSession on the CPU execution provider."""

    def __init__(self, path: Path, threads: int | None = None):
        import onnxruntime as ort  # a core dependency, imported only by a session that needs it (keeps imports light)

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_dtypes = {i.name: _NUMPY_DTYPES[i.type] for i in self.session.get_inputs()}

    def __call__(self, **inputs: np.ndarray) -> list[np.ndarray]:
        # np.asarray keeps a 0-d timestep 0-d (np.ascontiguousarray would make it (1,))
        feed = {name: np.asarray(value, self.input_dtypes[name], order="C") for name, value in inputs.items()}
        return self.session.run(None, feed)


class OpenVinoSession:
    """openvino.Core().compile_model on the CPU, fp32."""

    def __init__(self, path: Path, threads: int | None = None):
        import openvino as ov  # the optional `export` extra: imported only by a session that needs it

        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads or torch.get_num_threads(),
                  "PERFORMANCE_HINT": "LATENCY"}
        self.compiled = core.compile_model(str(path), "CPU", config)
        # a port has several names (OpenVINO adds its own): accept each
        self.input_dtypes = {name: _NUMPY_DTYPES[port.get_element_type().get_type_name()]
                             for port in self.compiled.inputs for name in port.get_names()}
        self.request = self.compiled.create_infer_request()

    def __call__(self, **inputs: np.ndarray) -> list[np.ndarray]:
        # np.asarray keeps a 0-d timestep 0-d (np.ascontiguousarray would make it (1,))
        feed = {name: np.asarray(value, self.input_dtypes[name], order="C") for name, value in inputs.items()}
        results = self.request.infer(feed)
        return [results[port].copy() for port in self.compiled.outputs]  # copy: the request reuses its buffers


SESSIONS = {"onnx": OnnxSession, "openvino": OpenVinoSession}
RUNTIME_MODULES = {"onnx": "onnxruntime", "openvino": "openvino"}  # backend -> the Python module it needs
