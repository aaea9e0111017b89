"""A python-backend stand-in for Triton's onnxruntime backend: runs `model.onnx` of its version
folder with onnxruntime, same inputs and outputs. `kfp-yolo serve local` and the tests use it
because the Triton of the nvidia-pytriton wheel has only the python backend; on KServe's Triton
image the published `<name>-onnx` model runs on the real onnxruntime backend instead.
"""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils  # only inside Triton's python backend stub


class TritonPythonModel:
    """One onnxruntime session per model instance; each call runs the gathered batch at once."""

    def initialize(self, args: dict) -> None:
        import onnxruntime as ort

        config = json.loads(args["model_config"])
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        options = ort.SessionOptions()
        # Triton runs several models in one process tree; each takes a share of the CPUs.
        options.intra_op_num_threads = int(
            config.get("parameters", {}).get("threads", {}).get("string_value", "0") or 0)
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o["name"] for o in config["output"]]

    def execute(self, requests: list) -> list:
        arrays = [[pb_utils.get_input_tensor_by_name(r, n).as_numpy() for n in self.inputs]
                  for r in requests]
        sizes = [a[0].shape[0] for a in arrays]
        feed = {n: np.concatenate([a[i] for a in arrays]) for i, n in enumerate(self.inputs)}
        results = self.session.run(self.outputs, feed)
        responses, start = [], 0
        for size in sizes:
            responses.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor(n, np.ascontiguousarray(r[start:start + size]))
                 for n, r in zip(self.outputs, results, strict=True)]))
            start += size
        return responses
