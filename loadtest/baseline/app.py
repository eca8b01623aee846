"""The design this project replaced, kept only to be measured against.

FastAPI under gunicorn with uvicorn workers, scoring ``model.onnx`` in-process with
ONNX Runtime (one intra-op thread per worker, workers = cores, as gunicorn's and
ONNX Runtime's docs advise for CPU-bound work), same ``/predict`` contract:

    FRAUD_BASELINE_MODEL=model_repository/fraud_xgb/1/model.onnx \\
    gunicorn loadtest.baseline.app:app -k uvicorn_worker.UvicornWorker -w 2 \\
        -b 127.0.0.1:8095
"""

import os
import re
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI
from pydantic import BaseModel, Field


def _model_path() -> Path:
    configured = os.environ.get("FRAUD_BASELINE_MODEL")
    if configured:
        return Path(configured)
    model = Path("model_repository/fraud_xgb")
    newest = max(
        (p for p in model.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)
    )
    return newest / "model.onnx"


def _threshold(model: Path) -> float:
    config = (model.parent.parent / "config.pbtxt").read_text()
    match = re.search(
        r'"decision_threshold" value: \{ string_value: "([0-9.]+)"', config
    )
    return float(match[1])


MODEL = _model_path()
THRESHOLD = _threshold(MODEL)
VERSION = MODEL.parent.name

options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
session = ort.InferenceSession(str(MODEL), options, providers=["CPUExecutionProvider"])
INPUT = session.get_inputs()[0].name


class Transaction(BaseModel):
    features: Annotated[list[float], Field(min_length=30, max_length=30)]


class Prediction(BaseModel):
    fraud_score: float
    is_fraud: bool
    inference_time_ms: float
    model_version: str


app = FastAPI(title="baseline: in-process ONNX Runtime")


@app.post("/predict", response_model=Prediction)
async def predict(transaction: Transaction) -> Prediction:
    started = time.perf_counter()
    row = np.asarray([transaction.features], dtype=np.float32)
    _, probabilities = session.run(None, {INPUT: row})
    score = float(probabilities[0][1])
    return Prediction(
        fraud_score=score,
        is_fraud=score >= THRESHOLD,
        inference_time_ms=(time.perf_counter() - started) * 1e3,
        model_version=VERSION,
    )


@app.get("/health")
def health() -> dict:
    return {"status": "healthy"}


@app.get("/ready")
def ready() -> dict:
    return {"status": "ready"}
