"""A Python-based Triton backend named ``onnxruntime``.

The ``nvidia-pytriton`` wheel's Triton carries only the Python backend, so this
file stands in for Triton's C++ ONNX Runtime backend on hosts without it. Triton
loads it for every model whose config says ``backend: "onnxruntime"``; where the
C++ backend exists (the stock container), that one wins and this file is unused.

Thread settings come from the model's ``parameters`` (the keys the C++ backend
reads), so one ``config.pbtxt`` serves both.
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


def _parameter(config: dict, key: str, default: str) -> str:
    return config.get("parameters", {}).get(key, {}).get("string_value", default)


def _session_options(config: dict) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(_parameter(config, "intra_op_thread_count", "1"))
    options.inter_op_num_threads = int(_parameter(config, "inter_op_thread_count", "1"))
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        filename = config.get("default_model_filename") or "model.onnx"
        path = os.path.join(args["model_repository"], args["model_version"], filename)
        if not os.path.exists(path):
            raise pb_utils.TritonModelException(
                f"model {config['name']!r} version {args['model_version']}: "
                f"{path} does not exist"
            )

        self.session = ort.InferenceSession(
            path,
            sess_options=_session_options(config),
            providers=["CPUExecutionProvider"],
        )
        self.input_name = config["input"][0]["name"]
        session_outputs = {o.name for o in self.session.get_outputs()}
        self.outputs = [o["name"] for o in config["output"]]
        missing = [name for name in self.outputs if name not in session_outputs]
        if missing:
            raise pb_utils.TritonModelException(
                f"model {config['name']!r}: config declares outputs {missing} that "
                f"{filename} does not produce (it has {sorted(session_outputs)})"
            )

    def execute(self, requests: list) -> list:
        # dynamic batching hands over several requests, each with its own rows:
        # run them as one batch, then give each request back its own slice
        batches = [
            pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy()
            for r in requests
        ]
        results = self.session.run(
            self.outputs, {self.input_name: np.concatenate(batches)}
        )

        responses, start = [], 0
        for batch in batches:
            stop = start + len(batch)
            tensors = [
                pb_utils.Tensor(name, np.ascontiguousarray(result[start:stop]))
                for name, result in zip(self.outputs, results, strict=True)
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start = stop
        return responses
