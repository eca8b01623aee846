"""Train the fraud model, export it to ONNX, check parity, write the repository.

    python -m training.train [--repository model_repository] [--rows 200000]

Nothing is written unless the ONNX model's probabilities equal XGBoost's
``predict_proba`` to 1e-5 on held-out rows.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import xgboost as xgb
from onnxmltools.convert import convert_xgboost
from onnxmltools.convert.common.data_types import FloatTensorType
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
)

from training.data import N_FEATURES, make_transactions
from training.parity import check_parity
from training.repository import write_model

INPUT_NAME = "input"
PARITY_ATOL = 1e-5


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument(
        "--holdout",
        type=Path,
        default=Path("data/holdout.npz"),
        help="where the held-out rows are saved for tests and load tests",
    )
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--fraud-rate", type=float, default=0.003)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--trees", type=int, default=400, help="upper bound")
    parser.add_argument("--instances", type=int, default=1)
    parser.add_argument("--intra-op-threads", type=int, default=1)
    parser.add_argument(
        "--version", type=int, default=None, help="default: one above the newest"
    )
    return parser.parse_args()


def f1_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The score cut-off with the best F1 on the given rows."""
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(thresholds[int(np.argmax(f1[:-1]))])


def main() -> None:
    args = parse_args()
    started = time.perf_counter()

    # data: 70 % train, 15 % validation (early stopping, threshold), 15 % held out
    features, labels = make_transactions(args.rows, args.fraud_rate, args.seed)
    n_train, n_valid = int(0.70 * args.rows), int(0.15 * args.rows)
    x_train, y_train = features[:n_train], labels[:n_train]
    x_valid = features[n_train : n_train + n_valid]
    y_valid = labels[n_train : n_train + n_valid]
    x_test, y_test = features[n_train + n_valid :], labels[n_train + n_valid :]
    print(f"data: {args.rows} rows, {labels.mean():.2%} fraud, {N_FEATURES} features")

    # train: find the best round count, then refit with exactly that many trees so
    # the exported booster holds no trees past the best iteration
    params = dict(max_depth=4, learning_rate=0.1, n_jobs=2, random_state=args.seed)
    probe = xgb.XGBClassifier(
        n_estimators=args.trees, early_stopping_rounds=30, eval_metric="aucpr", **params
    )
    probe.fit(x_train, y_train, eval_set=[(x_valid, y_valid)], verbose=False)
    model = xgb.XGBClassifier(n_estimators=probe.best_iteration + 1, **params)
    model.fit(x_train, y_train)
    threshold = f1_threshold(y_valid, model.predict_proba(x_valid)[:, 1])

    # evaluate on rows the model and the threshold never saw
    test_scores = model.predict_proba(x_test)[:, 1]
    roc_auc = roc_auc_score(y_test, test_scores)
    pr_auc = average_precision_score(y_test, test_scores)
    print(
        f"trees: {model.n_estimators}, threshold (best validation F1) {threshold:.4f}"
    )
    print(f"held-out ROC-AUC {roc_auc:.4f}  PR-AUC {pr_auc:.4f}  ({len(y_test)} rows)")

    # export and gate
    onnx_model = convert_xgboost(
        model, initial_types=[(INPUT_NAME, FloatTensorType([None, N_FEATURES]))]
    )
    onnx_bytes = onnx_model.SerializeToString()
    worst = check_parity(onnx_bytes, test_scores, x_test, atol=PARITY_ATOL)
    print(f"parity: ONNX equals predict_proba within {worst:.2g} on {len(x_test)} rows")

    # write
    onnx_path = write_model(
        args.repository,
        onnx_bytes,
        input_name=INPUT_NAME,
        n_features=N_FEATURES,
        threshold=threshold,
        version=args.version,
        instances=args.instances,
        intra_op_threads=args.intra_op_threads,
        metadata={
            "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "rows": args.rows,
            "seed": args.seed,
            "trees": int(model.n_estimators),
            "heldout_roc_auc": round(float(roc_auc), 5),
            "heldout_pr_auc": round(float(pr_auc), 5),
        },
    )
    args.holdout.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.holdout, features=x_test, labels=y_test, scores=test_scores)
    print(
        f"wrote {onnx_path} and {args.holdout} in {time.perf_counter() - started:.1f} s"
    )


if __name__ == "__main__":
    main()
