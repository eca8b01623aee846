"""Held-out rows for load generators: a fixed mix of fraud and normal transactions.

Both perf_analyzer (``loadtest/bench.py``) and Locust (``loadtest/locustfile.py``)
draw their inputs from here, so every figure is measured on real rows the model
never trained on, with the same share of fraud.

Standard library only: the Locust container image has no numpy, so the ``.npz``
that training writes (a zip of ``.npy`` arrays) is read by hand.
"""

import ast
import os
import random
import struct
import sys
import zipfile
from array import array
from dataclasses import dataclass
from pathlib import Path

HOLDOUT = Path(
    os.environ.get(
        "FRAUD_HOLDOUT", Path(__file__).resolve().parent.parent / "data/holdout.npz"
    )
)

# .npy dtypes training writes, as array typecodes (all little-endian here)
TYPECODES = {"<f4": "f", "<f8": "d", "|i1": "b", "<i8": "q", "<i4": "i"}


@dataclass(frozen=True)
class HeldOutMix:
    rows: list[list[float]]  # [n][30] features
    labels: list[int]  # 1 = fraud
    scores: list[float]  # P(fraud) the exported model gave at training time


def read_npy(raw: bytes) -> tuple[tuple[int, ...], array]:
    """Shape and flat values of one ``.npy`` array (format versions 1 to 3)."""
    if raw[:6] != b"\x93NUMPY":
        raise ValueError("not an .npy array: the magic bytes are missing")
    major = raw[6]
    size_format, start = ("<H", 10) if major == 1 else ("<I", 12)
    (header_len,) = struct.unpack(size_format, raw[8:start])
    header = ast.literal_eval(raw[start : start + header_len].decode("latin1"))
    if header["descr"] not in TYPECODES or header["fortran_order"]:
        raise ValueError(
            f"array dtype {header['descr']!r} (fortran_order "
            f"{header['fortran_order']}); expected C order, one of {list(TYPECODES)}"
        )
    values = array(TYPECODES[header["descr"]])
    values.frombytes(raw[start + header_len :])
    if sys.byteorder != "little":
        values.byteswap()
    return tuple(header["shape"]), values


def read_holdout(path: Path = HOLDOUT) -> dict[str, tuple[tuple[int, ...], array]]:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; run `make train` first")
    with zipfile.ZipFile(path) as archive:
        return {
            name.removesuffix(".npy"): read_npy(archive.read(name))
            for name in archive.namelist()
        }


def held_out_mix(
    count: int = 2000, fraud_share: float = 0.1, seed: int = 7, path: Path = HOLDOUT
) -> HeldOutMix:
    """``count`` held-out rows, ``fraud_share`` of them fraud, in shuffled order.

    The held-out split is about 0.3 % fraud; at that rate a short run would send
    few or no high-score rows, so fraud rows repeat when the share asks for more
    than there are.
    """
    if not 0.0 <= fraud_share <= 1.0:
        raise ValueError(f"fraud_share is {fraud_share}; expected a value in [0, 1]")
    arrays = read_holdout(path)
    (n, width), features = arrays["features"]
    labels, scores = arrays["labels"][1], arrays["scores"][1]
    fraud = [i for i in range(n) if labels[i] == 1]
    normal = [i for i in range(n) if labels[i] != 1]

    rng = random.Random(seed)
    n_fraud = round(count * fraud_share) if fraud else 0
    picked = _draw(rng, fraud, n_fraud) + _draw(rng, normal, count - n_fraud)
    rng.shuffle(picked)
    return HeldOutMix(
        rows=[features[i * width : (i + 1) * width].tolist() for i in picked],
        labels=[int(labels[i]) for i in picked],
        scores=[float(scores[i]) for i in picked],
    )


def _draw(rng: random.Random, pool: list[int], count: int) -> list[int]:
    if count <= len(pool):
        return rng.sample(pool, count)
    return [rng.choice(pool) for _ in range(count)]
