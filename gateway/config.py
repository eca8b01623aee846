"""Gateway settings, read once from ``FRAUD_*`` environment variables."""

import os
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Settings:
    # Triton's KServe v2 HTTP endpoint, host:port
    triton_url: str = "127.0.0.1:8000"
    model_name: str = "fraud_xgb"
    # rows per /predict/batch call; Triton's max_batch_size bounds a coalesced batch
    max_batch_rows: int = 256
    # bytes; nginx enforces the same cap in front
    max_body_bytes: int = 1_048_576
    # extra wait, in µs, for more rows before a coalesced batch leaves; 0 sends as
    # soon as the event loop has gathered what already arrived
    coalesce_window_us: int = 0
    # batches a worker keeps with Triton at once; rows arriving meanwhile gather
    # into the next batch (0: no bound)
    max_inflight: int = 2
    # KServe v2 binary tensor extension instead of JSON number lists
    binary_tensors: bool = True
    # seconds the gateway waits for Triton before answering 504; above the 1-2.5 s
    # that Triton's Python backend stalls a request while it loads a new version
    triton_timeout_s: float = 2.0
    # a batch still unanswered after this many ms is sent once more (one copy
    # out per worker at a time); normal answers take 1-10 ms
    hedge_after_ms: float = 250.0
    # consecutive failed batches (unreachable, timed out) that open the circuit,
    # and the seconds it stays open before one probe may go through
    breaker_failures: int = 3
    breaker_reset_s: float = 2.0
    # rows a worker holds (waiting or with Triton) before it sheds new ones with
    # 503; about 0.1 s of one worker's measured throughput
    max_queued_rows: int = 512
    # seconds a /ready answer is reused, so probes do not hammer Triton
    ready_cache_s: float = 0.5
    # HTTP connections kept open to Triton per gateway worker
    triton_connections: int = 8


def _convert(raw: str, kind: type, name: str):
    if kind is bool:
        if raw.lower() not in {"1", "0", "true", "false", "yes", "no"}:
            raise ValueError(f"environment variable {name}={raw!r} is not a boolean")
        return raw.lower() in {"1", "true", "yes"}
    try:
        return kind(raw)
    except ValueError as exc:
        raise ValueError(
            f"environment variable {name}={raw!r} is not a valid {kind.__name__}"
        ) from exc


def load_settings(environ: dict | None = None) -> Settings:
    """Settings from ``FRAUD_<FIELD>`` variables; unset ones keep their defaults."""
    environ = os.environ if environ is None else environ
    values = {}
    for field in fields(Settings):
        name = f"FRAUD_{field.name.upper()}"
        if name in environ:
            values[field.name] = _convert(environ[name], type(field.default), name)
    return Settings(**values)
