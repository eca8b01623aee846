"""Checks on the service's answers, for load generators.

Each check returns why an answer is wrong, or None. They import nothing from
Locust (which monkey-patches the standard library on import), so tests can call
them directly.
"""

# the gateway answers JSON floats from Triton's float32; 1e-4 absorbs rounding
SCORE_TOLERANCE = 1e-4
PREDICTION_FIELDS = {"fraud_score", "is_fraud", "inference_time_ms", "model_version"}


def check_score(score, expected: float) -> str | None:
    if isinstance(score, bool) or not isinstance(score, (int, float)):
        return f"fraud score is {type(score).__name__}; expected a number"
    if not 0.0 <= score <= 1.0:
        return "fraud score outside [0, 1]"
    if abs(score - expected) > SCORE_TOLERANCE:
        return "fraud score differs from the held-out score for this row"
    return None


def check_prediction(answer, expected: float) -> str | None:
    if not isinstance(answer, dict):
        return "prediction is not a JSON object"
    missing = PREDICTION_FIELDS - answer.keys()
    if missing:
        return f"prediction lacks {sorted(missing)}"
    if not isinstance(answer["is_fraud"], bool):
        return "is_fraud is not a boolean"
    if not isinstance(answer["model_version"], str):
        return "model_version is not a string"
    return check_score(answer["fraud_score"], expected)


def check_batch(answer, expected: list[float]) -> str | None:
    predictions = answer.get("predictions") if isinstance(answer, dict) else None
    if not isinstance(predictions, list) or len(predictions) != len(expected):
        return "predictions missing or not one per row"
    for prediction, score in zip(predictions, expected, strict=True):
        if problem := check_prediction(prediction, score):
            return problem
    return None


def check_kserve(answer, expected: list[float]) -> str | None:
    outputs = answer.get("outputs") if isinstance(answer, dict) else None
    found = [o for o in outputs or [] if isinstance(o, dict)]
    found = [o for o in found if o.get("name") == "probabilities"]
    if not found:
        return "no probabilities output"
    data, shape = found[0].get("data"), found[0].get("shape")
    if shape != [len(expected), 2] or not isinstance(data, list):
        return "probabilities output does not have shape [rows, 2]"
    # Triton answers a flat list; accept nested rows too
    flat = (
        [v for row in data for v in row] if data and isinstance(data[0], list) else data
    )
    if len(flat) != 2 * len(expected):
        return "probabilities output does not have two values per row"
    for row, score in enumerate(expected):
        normal, fraud = flat[2 * row], flat[2 * row + 1]
        if problem := check_score(fraud, score):
            return problem
        if check_score(normal, 1.0 - score) or abs(normal + fraud - 1.0) > 1e-3:
            return "probabilities do not add up to 1"
    return None
