"""Every class of bad /predict input gets its status and a message naming the field.

The gateway runs in-process with a fake scorer standing in for Triton: these tests
are about the HTTP contract, not the model.
"""

import json

import numpy as np
import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.config import Settings

GOOD = [0.5] * 30


class FakeScorer:
    threshold = 0.5

    def __init__(self):
        self.rows = []

    async def score(self, rows: np.ndarray):
        self.rows.append(rows)
        return rows[:, 0].astype(np.float64), "7"


@pytest.fixture
def client():
    app = create_app(Settings(triton_url="127.0.0.1:9"))
    with TestClient(app) as test_client:
        gateway = app.state.gateway
        fake = FakeScorer()
        gateway.scorer.thresholds["7"] = fake.threshold
        gateway.coalescer._score_batch = fake.score
        test_client.fake = fake
        yield test_client


def post(client, body, content_type="application/json", path="/predict"):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post(path, content=data, headers={"content-type": content_type})


def features_with(index: int, literal: str) -> str:
    values = [json.dumps(v) for v in GOOD]
    values[index] = literal
    return '{"features": [' + ", ".join(values) + "]}"


CASES = [
    # (name, body, content type, status, field)
    ("29 features", {"features": GOOD[:29]}, None, 422, "features"),
    ("31 features", {"features": [*GOOD, 1.0]}, None, 422, "features"),
    ("empty list", {"features": []}, None, 422, "features"),
    ("string value", features_with(4, '"abc"'), None, 422, "features[4]"),
    ("numeric string", features_with(0, '"1.5"'), None, 422, "features[0]"),
    ("nested list", features_with(2, "[1, 2]"), None, 422, "features[2]"),
    ("bool value", features_with(7, "true"), None, 422, "features[7]"),
    ("null value", features_with(29, "null"), None, 422, "features[29]"),
    ("NaN literal", features_with(3, "NaN"), None, 422, "features[3]"),
    ("Infinity literal", features_with(5, "Infinity"), None, 422, "features[5]"),
    ("-Infinity literal", features_with(6, "-Infinity"), None, 422, "features[6]"),
    ("beyond float64", features_with(1, "1e400"), None, 422, "features[1]"),
    ("beyond float32", features_with(9, "1e39"), None, 422, "features[9]"),
    ("features not a list", {"features": 5}, None, 422, "features"),
    ("features an object", {"features": {"a": 1}}, None, 422, "features"),
    ("missing field", {"feature": GOOD}, None, 422, "features"),
    ("empty object", {}, None, 422, "features"),
    ("not an object", [GOOD], None, 422, "body"),
    ("a bare number", "42", None, 422, "body"),
    ("malformed JSON", '{"features": [1, 2', None, 400, None),
    ("empty body", b"", None, 400, None),
    ("not JSON at all", "features=1,2,3", None, 400, None),
    ("invalid UTF-8", b'{"features": ["\xff"]}', None, 400, None),
    ("wrong content type", {"features": GOOD}, "text/plain", 415, "content-type"),
    (
        "form content type",
        {"features": GOOD},
        "application/x-www-form-urlencoded",
        415,
        "content-type",
    ),
    ("no content type", {"features": GOOD}, "", 415, "content-type"),
]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "field"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_bad_input_gets_its_status_and_names_the_field(
    client, body, content_type, status, field
):
    answer = post(
        client, body, "application/json" if content_type is None else content_type
    )

    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["message"]
    assert error.get("field") == field
    if field is not None:
        assert field.split("[")[0] in error["message"]
    assert "Traceback" not in answer.text
    assert client.fake.rows == [], "a bad row must never be scored"


def test_good_row_is_scored_with_threshold_and_version(client):
    answer = post(client, {"features": [0.75, *GOOD[1:]]})

    assert answer.status_code == 200
    body = answer.json()
    assert body["fraud_score"] == pytest.approx(0.75)
    assert body["is_fraud"] is True
    assert body["model_version"] == "7"
    assert body["inference_time_ms"] >= 0


def test_integers_are_accepted_as_numbers(client):
    answer = post(client, {"features": [0] * 30})

    assert answer.status_code == 200
    assert answer.json()["is_fraud"] is False


def test_content_type_with_charset_is_accepted(client):
    answer = post(client, {"features": GOOD}, "application/json; charset=utf-8")

    assert answer.status_code == 200


def test_body_over_the_limit_is_413(client):
    answer = post(client, {"features": GOOD, "pad": "x" * 1_100_000})

    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "body_too_large"


def test_message_says_what_was_expected(client):
    answer = post(client, {"features": GOOD[:29]})

    assert answer.json()["error"]["message"] == (
        "features holds 29 values; expected exactly 30 numbers"
    )


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"instances": []}, 422, "instances"),
        ({"instances": [GOOD, GOOD[:3]]}, 422, "instances[1]"),
        ({"instances": [GOOD, [*GOOD[:29], "x"]]}, 422, "instances[1][29]"),
        ({"instances": [GOOD] * 257}, 422, "instances"),
        ({"features": GOOD}, 422, "instances"),
    ],
    ids=["empty", "short row", "string in row", "too many rows", "wrong field"],
)
def test_bad_batch_names_the_row_and_column(client, body, status, field):
    answer = post(client, body, path="/predict/batch")

    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["field"] == field


def test_batch_returns_one_result_per_row(client):
    rows = [[i / 10, *GOOD[1:]] for i in range(10)]

    answer = post(client, {"instances": rows}, path="/predict/batch")

    assert answer.status_code == 200
    scores = [p["fraud_score"] for p in answer.json()["predictions"]]
    assert scores == pytest.approx([i / 10 for i in range(10)])


def test_unknown_path_and_method_are_json_errors(client):
    assert client.get("/nope").json()["error"]["code"] == "not_found"
    answer = client.get("/predict")
    assert answer.status_code == 405
    assert answer.json()["error"]["code"] == "method_not_allowed"


def test_health_and_openapi(client):
    assert client.get("/health").json() == {"status": "healthy"}
    document = client.get("/openapi.json").json()
    assert set(document["paths"]) >= {"/predict", "/predict/batch", "/health", "/ready"}
    assert "PredictRequest" in document["components"]["schemas"]


def test_compressed_body_is_415_not_misread(client):
    answer = client.post(
        "/predict",
        content=json.dumps({"features": GOOD}),
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )

    assert answer.status_code == 415
    assert answer.json()["error"]["field"] == "content-encoding"


def test_float32_max_as_printed_is_accepted(client):
    answer = post(client, features_with(0, "3.4028235e38"))

    assert answer.status_code == 200


def test_deep_nesting_is_a_client_error_not_a_crash(client):
    answer = post(client, '{"features": ' + "[" * 10_000 + "]" * 10_000 + "}")

    assert answer.status_code in {400, 422}
    assert answer.json()["error"]["code"] in {"malformed_json", "invalid_field"}


def test_invalid_utf8_in_an_ignored_field_is_400(client):
    body = b'{"features": ' + json.dumps(GOOD).encode() + b', "note": "\xff"}'

    assert post(client, body).status_code == 400
