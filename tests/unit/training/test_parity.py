"""The export gate refuses an ONNX model that does not score like XGBoost."""

import numpy as np
import pytest
import xgboost as xgb
from onnxmltools.convert import convert_xgboost
from onnxmltools.convert.common.data_types import FloatTensorType

from training.data import make_transactions
from training.parity import ParityError, check_parity, onnx_fraud_scores
from training.repository import pin_version, write_model


@pytest.fixture(scope="module")
def data():
    features, labels = make_transactions(6_000, fraud_rate=0.05, seed=3)
    return features[:5_000], labels[:5_000], features[5_000:]


def fit(features, labels, seed: int) -> xgb.XGBClassifier:
    model = xgb.XGBClassifier(
        n_estimators=20, max_depth=3, random_state=seed, subsample=0.7, n_jobs=1
    )
    return model.fit(features, labels)


def export(model) -> bytes:
    types = [("input", FloatTensorType([None, 30]))]
    return convert_xgboost(model, initial_types=types).SerializeToString()


def test_matching_export_passes_the_gate(data):
    x_train, y_train, x_test = data
    model = fit(x_train, y_train, seed=1)

    worst = check_parity(export(model), model.predict_proba(x_test)[:, 1], x_test)

    assert worst <= 1e-5


def test_mismatched_model_fails_loudly(data):
    x_train, y_train, x_test = data
    model = fit(x_train, y_train, seed=1)
    other = fit(x_train, y_train[::-1].copy(), seed=2)

    with pytest.raises(ParityError, match="differs from XGBoost predict_proba"):
        check_parity(export(other), model.predict_proba(x_test)[:, 1], x_test)


def test_an_off_by_tiny_amount_still_fails(data):
    x_train, y_train, x_test = data
    model = fit(x_train, y_train, seed=1)
    expected = model.predict_proba(x_test)[:, 1] + 1e-4

    with pytest.raises(ParityError, match="was not written"):
        check_parity(export(model), expected, x_test)


def test_written_repository_holds_config_and_next_version(tmp_path, data):
    x_train, y_train, x_test = data
    onnx_bytes = export(fit(x_train, y_train, seed=1))

    first = write_model(
        tmp_path, onnx_bytes, input_name="input", n_features=30, threshold=0.25
    )
    second = write_model(
        tmp_path, onnx_bytes, input_name="input", n_features=30, threshold=0.25
    )

    assert first.parent.name == "1"
    assert second.parent.name == "2"
    # training adds version 2 on disk; version 1 keeps serving until pinned
    assert (
        "version_policy: { specific { versions: [ 1 ] } }"
        in (tmp_path / "fraud_xgb" / "config.pbtxt").read_text()
    )
    config = (tmp_path / "fraud_xgb" / "config.pbtxt").read_text()
    assert 'backend: "onnxruntime"' in config
    assert 'key: "decision_threshold" value: { string_value: "0.250000" }' in config
    assert "dynamic_batching" in config and "KIND_CPU" in config
    scores = onnx_fraud_scores(second.read_bytes(), x_test[:3])
    assert np.all((scores >= 0) & (scores <= 1))


def test_pinning_serves_the_chosen_version_with_its_threshold(tmp_path, data):
    x_train, y_train, _ = data
    onnx_bytes = export(fit(x_train, y_train, seed=1))
    for threshold in (0.25, 0.75):
        write_model(
            tmp_path, onnx_bytes, input_name="input", n_features=30, threshold=threshold
        )
    model = tmp_path / "fraud_xgb"

    newest = pin_version(model, None)
    config = (model / "config.pbtxt").read_text()

    assert newest == 0.75
    assert "specific { versions: [ 2 ] }" in config and '"0.750000"' in config
    assert pin_version(model, 1) == 0.25
    assert "specific { versions: [ 1 ] }" in (model / "config.pbtxt").read_text()
