"""Every answer a load generator gets is checked; wrong ones become failures."""

import pytest

from loadtest.checks import check_batch, check_kserve, check_prediction


def prediction(score=0.25, **changes) -> dict:
    answer = {
        "fraud_score": score,
        "is_fraud": False,
        "inference_time_ms": 1.5,
        "model_version": "1",
    }
    answer.update(changes)
    return answer


def test_a_right_prediction_passes():
    assert check_prediction(prediction(0.25), 0.25) is None


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ([], "not a JSON object"),
        ({"fraud_score": 0.25}, "lacks"),
        (prediction(is_fraud="no"), "is_fraud is not a boolean"),
        (prediction(model_version=1), "model_version is not a string"),
        (prediction(score="0.25"), "expected a number"),
        (prediction(score=True), "expected a number"),
        (prediction(score=1.5), "outside [0, 1]"),
        (prediction(score=0.75), "differs from the held-out score"),
    ],
)
def test_a_wrong_prediction_names_what_is_wrong(answer, reason):
    assert reason in check_prediction(answer, 0.25)


def test_a_batch_needs_one_right_prediction_per_row():
    expected = [0.1, 0.9]
    right = {"predictions": [prediction(0.1), prediction(0.9)], "model_version": "1"}

    assert check_batch(right, expected) is None
    assert "one per row" in check_batch({"predictions": [prediction(0.1)]}, expected)
    swapped = {"predictions": [prediction(0.9), prediction(0.1)]}
    assert "differs" in check_batch(swapped, expected)


def kserve(data, shape=None) -> dict:
    output = {"name": "probabilities", "datatype": "FP32", "data": data}
    output["shape"] = shape or [len(data) // 2, 2]
    label = {"name": "label", "datatype": "INT64", "shape": [1, 1], "data": [0]}
    return {"model_name": "fraud_xgb", "outputs": [label, output]}


def test_a_right_kserve_answer_passes_flat_or_nested():
    assert check_kserve(kserve([0.75, 0.25]), [0.25]) is None
    assert check_kserve(kserve([[0.75, 0.25]], shape=[1, 2]), [0.25]) is None


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ({"error": "model not ready"}, "no probabilities output"),
        (kserve([0.75, 0.25], shape=[2, 2]), "shape [rows, 2]"),
        (kserve([0.75], shape=[1, 2]), "two values per row"),
        (kserve([0.25, 0.75]), "differs from the held-out score"),
        (kserve([0.5, 0.25]), "do not add up to 1"),
    ],
)
def test_a_wrong_kserve_answer_names_what_is_wrong(answer, reason):
    assert reason in check_kserve(answer, [0.25])
