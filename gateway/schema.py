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
MAX_BATCH_ROWS = 256  # Triton's max_batch_size for the model
FLOAT32_MAX = float(np.finfo(np.float32).max)
# Numbers at or beyond this round to infinity in float32 (halfway between the
# largest float32 and 2**128); anything inside is a finite float32 once rounded.
FLOAT32_LIMIT = 3.4028235677973366e38

Feature = Annotated[float, msgspec.Meta(gt=-FLOAT32_LIMIT, lt=FLOAT32_LIMIT)]
Row = Annotated[
    list[Feature], msgspec.Meta(min_length=N_FEATURES, max_length=N_FEATURES)
]


class PredictRequest(msgspec.Struct):
    features: Row


class BatchRequest(msgspec.Struct):
    instances: Annotated[
        list[Row], msgspec.Meta(min_length=1, max_length=MAX_BATCH_ROWS)
    ]


class Prediction(msgspec.Struct):
    fraud_score: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
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
    return np.array(
        [_decode(_predict_decoder, body, "features").features], dtype=np.float32
    )


def decode_batch(body: bytes, max_rows: int) -> np.ndarray:
    """A ``/predict/batch`` body as float32 rows of shape ``[N, 30]``."""
    instances = _decode(_batch_decoder, body, "instances").instances
    if len(instances) > max_rows:
        raise InvalidField(
            f"instances holds {len(instances)} rows; at most {max_rows} are allowed",
            field="instances",
        )
    return np.array(instances, dtype=np.float32)


def _decode(decoder: msgspec.json.Decoder, body: bytes, field: str):
    try:
        # msgspec does not check the UTF-8 of fields it skips; strict JSON must
        # be UTF-8 throughout (costs ~0.2 µs on a /predict body)
        body.decode("utf-8")
        return decoder.decode(body)
    except UnicodeDecodeError as exc:
        raise MalformedJson(f"the body is not valid UTF-8: {exc.reason}") from exc
    except RecursionError as exc:
        raise MalformedJson("the body nests deeper than the parser allows") from exc
    except msgspec.MsgspecError as exc:
        try:
            error = _explain(body, exc, field)
        except RecursionError:
            error = MalformedJson("the body nests deeper than the parser allows")
        raise error from exc


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

    if (
        message.startswith("Number out of range")
        or "float` <" in message
        or ("float` >" in message)
    ):
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
        return InvalidField(_wrong_length(path, message, got), path)
    return InvalidField(
        f"{path} is {_describe(got)}; expected {_expected_at(path)}", path
    )


def _wrong_length(path: str, message: str, got) -> str:
    if path == "instances":
        if ">=" in message:
            return f"instances is empty; expected 1 to {MAX_BATCH_ROWS} rows"
        return f"instances holds more than {MAX_BATCH_ROWS} rows"
    # with a duplicated key the body holds another value than the one rejected
    too_few = ">=" in message
    count = len(got) if isinstance(got, list) else N_FEATURES
    if count == N_FEATURES or (count < N_FEATURES) != too_few:
        count = f"{'fewer' if too_few else 'more'} than {N_FEATURES}"
    return f"{path} holds {count} values; expected exactly {N_FEATURES} numbers"


def _explain_malformed(body: bytes, exc: msgspec.DecodeError, field: str):
    # The stdlib parser accepts the NaN and Infinity literals that strict JSON
    # forbids; if it can read the body, the problem is a non-finite number.
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
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
