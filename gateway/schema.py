"""Request and response shapes, and the decoding that validates them.

The fast path is one msgspec decode straight into typed structs. Only when that
fails do we look at the body again, to tell the caller which field was wrong and
how, in words.
"""

import json
import math
import re
from typing import Annotated

import msgspec
import numpy as np

from gateway.errors import InvalidField, MalformedJson

N_FEATURES = 30
FLOAT32_MAX = float(np.finfo(np.float32).max)

Row = Annotated[list[float], msgspec.Meta(min_length=N_FEATURES, max_length=N_FEATURES)]


class PredictRequest(msgspec.Struct):
    features: Row


class BatchRequest(msgspec.Struct):
    instances: Annotated[list[Row], msgspec.Meta(min_length=1)]


class Prediction(msgspec.Struct):
    fraud_score: float
    is_fraud: bool
    inference_time_ms: float
    model_version: str


class BatchPrediction(msgspec.Struct):
    predictions: list[Prediction]
    model_version: str


_predict_decoder = msgspec.json.Decoder(PredictRequest)
_batch_decoder = msgspec.json.Decoder(BatchRequest)
_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")


def decode_predict(body: bytes) -> np.ndarray:
    """A ``/predict`` body as a float32 row of shape ``[1, 30]``."""
    try:
        features = _predict_decoder.decode(body).features
    except msgspec.MsgspecError as exc:
        raise _explain(body, exc, "features") from exc
    return _to_rows([features], "features")


def decode_batch(body: bytes, max_rows: int) -> np.ndarray:
    """A ``/predict/batch`` body as float32 rows of shape ``[N, 30]``."""
    try:
        instances = _batch_decoder.decode(body).instances
    except msgspec.MsgspecError as exc:
        raise _explain(body, exc, "instances") from exc
    if len(instances) > max_rows:
        raise InvalidField(
            f"instances holds {len(instances)} rows; at most {max_rows} are allowed",
            field="instances",
        )
    return _to_rows(instances, "instances")


def _to_rows(rows: list[list[float]], field: str) -> np.ndarray:
    array = np.array(rows, dtype=np.float64)
    if not np.isfinite(array).all() or np.abs(array).max() > FLOAT32_MAX:
        row, col = np.argwhere(~(np.abs(array) <= FLOAT32_MAX))[0]
        where = f"features[{col}]" if field == "features" else f"{field}[{row}][{col}]"
        raise InvalidField(
            f"{where} is {array[row, col]!r}; expected a finite number within "
            f"±{FLOAT32_MAX:.4g} (float32)",
            field=where,
        )
    return array.astype(np.float32)


def _explain(body: bytes, exc: msgspec.MsgspecError, field: str) -> Exception:
    """Turn a failed typed decode into an error that names the field."""
    if not isinstance(exc, msgspec.ValidationError):
        return _explain_malformed(body, exc, field)

    message = str(exc)
    match = _PATH.search(message)
    path = match["path"].lstrip(".") if match else None
    if message.startswith("Object missing required field"):
        return InvalidField(f"{field} is missing; expected {_expected(field)}", field)
    if path is None:
        return InvalidField(
            f"the body must be a JSON object with {field}: {_expected(field)}", "body"
        )

    if message.startswith("Number out of range"):
        return InvalidField(
            f"{path} is out of range; expected a finite number within "
            f"±{FLOAT32_MAX:.4g} (float32)",
            path,
        )
    try:
        got = _value_at(body, path)
    except msgspec.DecodeError as decode_error:  # e.g. invalid UTF-8 elsewhere
        return _explain_malformed(body, decode_error, field)
    if "length" in message:
        count = len(got) if isinstance(got, list) else "?"
        return InvalidField(
            f"{path} holds {count} values; expected exactly {N_FEATURES} numbers"
            if path != "instances"
            else f"{path} is empty; expected at least one row of {N_FEATURES} numbers",
            path,
        )
    return InvalidField(
        f"{path} is {_describe(got)}; expected {_expected_at(path)}", path
    )


def _explain_malformed(body: bytes, exc: msgspec.DecodeError, field: str):
    # The stdlib parser accepts the NaN and Infinity literals that strict JSON
    # forbids; if it can read the body, the problem is a non-finite number.
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return MalformedJson(f"the body is not valid JSON: {exc}")
    for path, value in _walk(parsed, ""):
        if isinstance(value, float) and not math.isfinite(value):
            path = path.lstrip(".")
            return InvalidField(
                f"{path} is {value!r}; expected a finite number", path or field
            )
    return MalformedJson(f"the body is not valid JSON: {exc}")


def _walk(value, path: str):
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, f"{path}[{index}]")


def _value_at(body: bytes, path: str):
    value = msgspec.json.decode(body)
    for key in re.findall(r"[^.\[\]]+", path):
        value = value[int(key)] if isinstance(value, list) else value[key]
    return value


def _describe(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string {value[:20]!r}"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return "an object"
    return repr(value)


def _expected(field: str) -> str:
    if field == "instances":
        return f"a list of rows, each a list of {N_FEATURES} numbers"
    return f"a list of {N_FEATURES} numbers"


def _expected_at(path: str) -> str:
    if path.count("[") == 0:
        return _expected(path)
    if path.startswith("instances") and path.count("[") == 1:
        return f"a list of {N_FEATURES} numbers"
    return "a number"
