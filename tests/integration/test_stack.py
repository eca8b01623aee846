"""The real native stack: Triton (Python-based onnxruntime backend), gateway, nginx."""

import asyncio

import httpx2 as httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http

from tests.conftest import MODEL_DIR
from training.parity import onnx_fraud_scores

pytestmark = pytest.mark.stack


def parity_rows(holdout: dict, count: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Held-out rows with every kind represented: half fraud, half normal."""
    fraud = np.flatnonzero(holdout["labels"] == 1)[: count // 2]
    normal = np.flatnonzero(holdout["labels"] == 0)[: count - len(fraud)]
    index = np.concatenate([fraud, normal])
    return holdout["features"][index], holdout["scores"][index]


def served_version(stack) -> str:
    answer = httpx.get(f"{stack.nginx}/v2/models/fraud_xgb")
    return max(answer.json()["versions"], key=int)


def local_scores(stack, features: np.ndarray) -> np.ndarray:
    onnx = (MODEL_DIR / served_version(stack) / "model.onnx").read_bytes()
    return onnx_fraud_scores(onnx, features)


def test_predict_through_nginx_equals_onnx_and_xgboost(stack, holdout):
    features, xgboost_scores = parity_rows(holdout)
    onnx_scores = local_scores(stack, features)
    threshold = float(
        httpx.get(f"{stack.nginx}/v2/models/fraud_xgb/config").json()["parameters"][
            "decision_threshold"
        ]["string_value"]
    )

    with httpx.Client(base_url=stack.nginx) as client:
        answers = [
            client.post("/predict", json={"features": row.tolist()}).json()
            for row in features
        ]

    served = np.array([a["fraud_score"] for a in answers])
    assert len(served) >= 20 and (holdout["labels"] == 1).any()
    np.testing.assert_allclose(served, onnx_scores, atol=1e-5)
    np.testing.assert_allclose(served, xgboost_scores, atol=1e-5)
    assert [a["is_fraud"] for a in answers] == list(served >= threshold)
    assert {a["model_version"] for a in answers} == {served_version(stack)}
    assert all(a["inference_time_ms"] > 0 for a in answers)


def test_predict_batch_through_nginx_scores_every_row(stack, holdout):
    features, xgboost_scores = parity_rows(holdout, count=30)

    answer = httpx.post(
        f"{stack.nginx}/predict/batch", json={"instances": features.tolist()}
    )

    assert answer.status_code == 200
    served = [p["fraud_score"] for p in answer.json()["predictions"]]
    np.testing.assert_allclose(served, xgboost_scores, atol=1e-5)


@pytest.mark.parametrize("through", ["triton", "nginx"])
def test_kserve_v2_http(stack, holdout, through):
    url = stack.triton_http if through == "triton" else stack.nginx.split("//")[1]
    features, _ = parity_rows(holdout, count=8)
    client = triton_http.InferenceServerClient(url)

    metadata = client.get_model_metadata("fraud_xgb")
    request = triton_http.InferInput("input", list(features.shape), "FP32")
    request.set_data_from_numpy(features)
    result = client.infer("fraud_xgb", [request])

    assert metadata["inputs"][0]["shape"] == [-1, 30]
    probabilities = result.as_numpy("probabilities")
    np.testing.assert_allclose(
        probabilities[:, 1], local_scores(stack, features), atol=1e-5
    )
    client.close()


def test_kserve_v2_grpc(stack, holdout):
    features, _ = parity_rows(holdout, count=8)
    client = triton_grpc.InferenceServerClient(stack.triton_grpc)

    request = triton_grpc.InferInput("input", list(features.shape), "FP32")
    request.set_data_from_numpy(features)
    result = client.infer("fraud_xgb", [request])

    assert client.is_model_ready("fraud_xgb")
    np.testing.assert_allclose(
        result.as_numpy("probabilities")[:, 1],
        local_scores(stack, features),
        atol=1e-5,
    )
    client.close()


def test_ready_and_health(stack):
    ready = httpx.get(f"{stack.nginx}/ready")
    first = httpx.get(f"{stack.nginx}/health")
    second = httpx.get(f"{stack.nginx}/health")

    assert ready.status_code == 200
    assert first.json() == second.json() == {"status": "healthy"}
    assert second.headers["x-cache-status"] == "HIT"


@pytest.mark.parametrize(
    "path",
    [
        "/v2/repository/index",
        "/v2/repository/models/fraud_xgb/unload",
        "/v2/models/fraud_xgb/stats",
        "/v2/logging",
    ],
)
def test_repository_control_and_admin_paths_are_refused_through_nginx(stack, path):
    answer = httpx.post(f"{stack.nginx}{path}", content=b"{}")

    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "forbidden"
    assert httpx.get(f"{stack.nginx}/ready").status_code == 200


def test_bad_input_through_nginx_is_422_naming_the_field(stack):
    answer = httpx.post(f"{stack.nginx}/predict", json={"features": [1.0] * 29})

    assert answer.status_code == 422
    assert answer.json()["error"]["field"] == "features"


def test_body_over_nginx_limit_is_413_json(stack):
    answer = httpx.post(
        f"{stack.nginx}/predict",
        content=b"[" + b"1," * 600_000 + b"1]",
        headers={"content-type": "application/json"},
    )

    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "body_too_large"


def test_burst_over_the_rate_limit_is_429_not_503(stack_factory):
    limited = stack_factory(nginx_rate="5r/s", nginx_burst="5")
    body = {"features": [0.1] * 30}

    async def burst():
        async with httpx.AsyncClient(base_url=limited.nginx) as client:
            answers = await asyncio.gather(
                *(client.post("/predict", json=body) for _ in range(60))
            )
        return answers

    answers = asyncio.run(burst())

    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {200, 429}, statuses
    assert statuses.count(429) >= 40
    rejected = next(a for a in answers if a.status_code == 429)
    assert rejected.headers["retry-after"] == "1"
    assert rejected.json()["error"]["code"] == "rate_limited"


def triton_counts(stack) -> tuple[int, int]:
    """Rows Triton has scored and requests it has answered, so far."""
    url = f"http://{stack.triton_http}/v2/models/fraud_xgb/stats"
    stats = httpx.get(url).json()["model_stats"]
    rows = sum(s["inference_count"] for s in stats)
    requests = sum(s["inference_stats"]["success"]["count"] for s in stats)
    return rows, requests


def test_500_concurrent_distinct_rows_each_get_their_own_score(stack, holdout):
    features = holdout["features"][:500]
    expected = local_scores(stack, features)
    limits = httpx.Limits(max_connections=500, max_keepalive_connections=500)

    async def all_at_once():
        async with httpx.AsyncClient(
            base_url=stack.nginx, limits=limits, timeout=30
        ) as client:
            return await asyncio.gather(
                *(
                    client.post("/predict", json={"features": row.tolist()})
                    for row in features
                )
            )

    before = triton_counts(stack)
    answers = asyncio.run(all_at_once())
    after = triton_counts(stack)

    assert [a.status_code for a in answers] == [200] * len(features)
    rows, requests = (after[0] - before[0], after[1] - before[1])
    assert rows == len(features) and requests < rows, "rows were not coalesced"
    served = np.array([a.json()["fraud_score"] for a in answers])
    np.testing.assert_allclose(served, expected, atol=1e-5)
    assert len(np.unique(expected)) > 400, "rows must be distinct to show no mix-up"
