"""Write a trained model into a Triton model repository."""

import json
import re
from pathlib import Path

MODEL_NAME = "fraud_xgb"

# Batches larger than this are split by the caller. 256 rows of 30 float32 is
# 30 KB, well inside one Python-backend shared-memory message.
MAX_BATCH_SIZE = 256

# Triton waits at most this long for more requests before running a batch. 100 µs
# is below the ~150 µs a batch-1 execute costs here, so it never doubles latency.
MAX_QUEUE_DELAY_US = 100

# No default_queue_policy (max_queue_size, queue timeout): with the Python backend
# on Triton 2.51 any such policy added ~500 ms to the p99 of every load measured
# (perf_analyzer at concurrency 1, wrk at 32), so the queue bound lives in the
# gateway instead (FRAUD_MAX_QUEUED_ROWS).

CONFIG_TEMPLATE = """\
name: "{name}"
backend: "onnxruntime"
max_batch_size: {max_batch_size}
version_policy: {version_policy}
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
# a new version runs these before Triton routes requests to it, so the first
# callers after a swap do not pay for a cold session
model_warmup [
  {{ name: "one_row" batch_size: 1
    inputs {{ key: "{input_name}" value: {{
      data_type: TYPE_FP32 dims: [ {n_features} ] random_data: true }} }} }},
  {{ name: "full_batch" batch_size: {max_batch_size}
    inputs {{ key: "{input_name}" value: {{
      data_type: TYPE_FP32 dims: [ {n_features} ] random_data: true }} }} }}
]
parameters {{ key: "intra_op_thread_count" value: {{ string_value: "{intra_op}" }} }}
parameters {{ key: "inter_op_thread_count" value: {{ string_value: "1" }} }}
parameters {{ key: "decision_threshold" value: {{ string_value: "{threshold:.6f}" }} }}
"""


def _pinned(version: int) -> str:
    return f"{{ specific {{ versions: [ {version} ] }} }}"


_POLICY = re.compile(r"^version_policy: .*$", re.MULTILINE)
_THRESHOLD = re.compile(r'(key: "decision_threshold" value: \{ string_value: ")[^"]*')


def disk_versions(model_dir: Path) -> list[int]:
    """Version numbers that have a model.onnx, oldest first."""
    return sorted(int(p.parent.name) for p in model_dir.glob("[0-9]*/model.onnx"))


def pin_version(model_dir: Path, version: int | None) -> float:
    """Make config.pbtxt serve ``version`` (None: the newest) with its threshold.

    The policy always names the version, so what serves changes only through
    this function: not when training adds a version, not when Triton restarts.
    Returns that version's threshold, read from its metadata.json.
    """
    versions = disk_versions(model_dir)
    chosen = version or versions[-1]
    metadata = model_dir / str(chosen) / "metadata.json"
    if chosen not in versions or not metadata.exists():
        raise ValueError(
            f"version {chosen} has no model.onnx and metadata.json in {model_dir}"
        )
    threshold = float(json.loads(metadata.read_text())["threshold"])

    config_path = model_dir / "config.pbtxt"
    config = _POLICY.sub(f"version_policy: {_pinned(chosen)}", config_path.read_text())
    config = _THRESHOLD.sub(rf"\g<1>{threshold:.6f}", config)
    tmp = config_path.with_suffix(".pbtxt.tmp")
    tmp.write_text(config)
    tmp.replace(config_path)
    return threshold


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
    metadata: dict | None = None,
) -> Path:
    """Write ``config.pbtxt``, ``<version>/model.onnx`` and ``<version>/metadata.json``.

    The version's own threshold stays in its metadata, so a rollback can serve
    an older version with the threshold it was trained with. Returns the ONNX path.
    """
    model_dir = repository / MODEL_NAME
    model_dir.mkdir(parents=True, exist_ok=True)
    version = version or next_version(model_dir)

    version_dir = model_dir / str(version)
    version_dir.mkdir(exist_ok=True)
    onnx_path = version_dir / "model.onnx"
    tmp = onnx_path.with_suffix(".onnx.tmp")
    tmp.write_bytes(onnx_bytes)
    tmp.replace(onnx_path)
    metadata = {**(metadata or {}), "version": version, "threshold": threshold}
    (version_dir / "metadata.json").write_text(json.dumps(metadata, indent=1) + "\n")

    # a new model serves its first version; a new version of a served model
    # only lands on disk, and the version policy and threshold in force stay
    config_path = model_dir / "config.pbtxt"
    served = config_path.read_text() if config_path.exists() else None
    config = CONFIG_TEMPLATE.format(
        name=MODEL_NAME,
        version_policy=_pinned(version),
        max_batch_size=MAX_BATCH_SIZE,
        input_name=input_name,
        n_features=n_features,
        instances=instances,
        queue_delay_us=MAX_QUEUE_DELAY_US,
        intra_op=intra_op_threads,
        threshold=threshold,
    )
    if served is not None and _POLICY.search(served) and _THRESHOLD.search(served):
        config = _POLICY.sub(_POLICY.search(served)[0], config)
        config = _THRESHOLD.sub(_THRESHOLD.search(served)[0], config)
    config_path.write_text(config)
    return onnx_path
