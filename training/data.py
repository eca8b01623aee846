"""Seeded synthetic card transactions: 30 numeric features, rare and overlapping fraud.

The layout follows the public card-fraud data sets: ``amount``, ``hour`` and 28
anonymised components ``v1``..``v28``. Fraud is decided by a noisy latent score, so
the classes overlap and no model can separate them perfectly.
"""

import numpy as np

N_FEATURES = 30
FEATURE_NAMES = ["amount", "hour"] + [f"v{i}" for i in range(1, 29)]


def make_transactions(
    n_rows: int, fraud_rate: float = 0.003, seed: int = 7
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(features float32 [n_rows, 30], labels int8 [n_rows])``."""
    rng = np.random.default_rng(seed)

    # components: correlated Gaussians, like a PCA-transformed feature set
    mixing = rng.normal(scale=0.3, size=(28, 28)) + np.eye(28)
    components = rng.normal(size=(n_rows, 28)) @ mixing.T
    amount = rng.lognormal(mean=3.5, sigma=1.2, size=n_rows)
    hour = rng.integers(0, 24, size=n_rows).astype(np.float64)

    # latent risk: linear terms, an interaction, night-time and large amounts,
    # plus noise larger than the signal so the classes overlap
    weights = rng.normal(scale=0.5, size=28)
    risk = (
        components @ weights
        + 0.8 * components[:, 0] * components[:, 1]
        + 0.6 * np.log1p(amount)
        + 0.7 * ((hour < 6) | (hour > 22))
        + rng.normal(scale=6.0, size=n_rows)
    )
    cutoff = np.quantile(risk, 1.0 - fraud_rate)
    labels = (risk > cutoff).astype(np.int8)

    features = np.column_stack([amount, hour, components]).astype(np.float32)
    return features, labels
