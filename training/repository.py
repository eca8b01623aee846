"""Write a trained model into a Triton model repository."""

from pathlib import Path

MODEL_NAME = "fraud_xgb"

# Batches larger than this are split by the caller. 256 rows of 30 float32 is
# 30 KB, well inside one Python-backend shared-memory message.
MAX_BATCH_SIZE = 256

# Triton waits at most this long for more requests before running a batch. 100 µs
# is below the ~150 µs a batch-1 execute costs here, so it never doubles latency.
MAX_QUEUE_DELAY_US = 100

CONFIG_TEMPLATE = """\
name: "{name}"
backend: "onnxruntime"
max_batch_size: {max_batch_size}
version_policy: {{ latest {{ num_versions: 1 }} }}
input [
  {{ name: "{input_name}" data_type: TYPE_FP32 dims: [ {n_features} ] }}
]
output [
  {{ name: "label" data_type: TYPE_INT64 dims: [ 1 ] reshape: {{ shape: [ ] }} }},
  {{ name: "probabilities" data_type: TYPE_FP32 dims: [ 2 ] }}
]
instance_group [ {{ count: {instances} kind: KIND_CPU }} ]
dynamic_batching {{
  max_queue_delay_microseconds: {queue_delay_us}
}}
parameters {{ key: "intra_op_thread_count" value: {{ string_value: "{intra_op}" }} }}
parameters {{ key: "inter_op_thread_count" value: {{ string_value: "1" }} }}
parameters {{ key: "decision_threshold" value: {{ string_value: "{threshold:.6f}" }} }}
"""


def next_version(model_dir: Path) -> int:
    """One above the highest numbered version folder, or 1 for a new model."""
    versions = [int(p.name) for p in model_dir.glob("*") if p.name.isdigit()]
    return max(versions, default=0) + 1


def write_model(
    repository: Path,
    onnx_bytes: bytes,
    *,
    input_name: str,
    n_features: int,
    threshold: float,
    version: int | None = None,
    instances: int = 1,
    intra_op_threads: int = 1,
) -> Path:
    """Write ``config.pbtxt`` and ``<version>/model.onnx``; returns the ONNX path."""
    model_dir = repository / MODEL_NAME
    model_dir.mkdir(parents=True, exist_ok=True)
    version = version or next_version(model_dir)

    version_dir = model_dir / str(version)
    version_dir.mkdir(exist_ok=True)
    onnx_path = version_dir / "model.onnx"
    tmp = onnx_path.with_suffix(".onnx.tmp")
    tmp.write_bytes(onnx_bytes)
    tmp.replace(onnx_path)

    config = CONFIG_TEMPLATE.format(
        name=MODEL_NAME,
        max_batch_size=MAX_BATCH_SIZE,
        input_name=input_name,
        n_features=n_features,
        instances=instances,
        queue_delay_us=MAX_QUEUE_DELAY_US,
        intra_op=intra_op_threads,
        threshold=threshold,
    )
    (model_dir / "config.pbtxt").write_text(config)
    return onnx_path
