"""The export gate: an ONNX model is written only if it scores like XGBoost."""

import numpy as np
import onnxruntime as ort


class ParityError(RuntimeError):
    """The ONNX model's probabilities differ from XGBoost's own."""


def onnx_fraud_scores(onnx_bytes: bytes, features: np.ndarray) -> np.ndarray:
    """Score rows with ONNX Runtime; returns P(fraud) per row."""
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    _, probabilities = session.run(None, {input_name: features.astype(np.float32)})
    return np.asarray(probabilities)[:, 1]


def check_parity(
    onnx_bytes: bytes, expected: np.ndarray, features: np.ndarray, atol: float = 1e-5
) -> float:
    """Raise ParityError unless ONNX scores equal ``expected`` within ``atol``.

    Returns the largest absolute difference seen.
    """
    got = onnx_fraud_scores(onnx_bytes, features)
    diff = np.abs(got - expected)
    worst = int(np.argmax(diff))
    if diff[worst] > atol:
        raise ParityError(
            f"ONNX P(fraud) differs from XGBoost predict_proba by {diff[worst]:.3g} "
            f"on held-out row {worst} (onnx={got[worst]:.8f}, "
            f"xgboost={expected[worst]:.8f}); allowed is {atol:g}. "
            "The model was not written."
        )
    return float(diff[worst])
