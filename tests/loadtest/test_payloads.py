"""Held-out rows for the load generators, read without numpy."""

import numpy as np
import pytest

from loadtest.payloads import HOLDOUT, held_out_mix, read_holdout


def test_npz_reader_returns_what_numpy_wrote(holdout):
    arrays = read_holdout(HOLDOUT)

    for name, expected in holdout.items():
        shape, values = arrays[name]
        assert shape == expected.shape
        np.testing.assert_array_equal(
            np.asarray(values, dtype=expected.dtype).reshape(shape), expected
        )


def test_mix_has_the_asked_share_of_fraud_rows(holdout):
    mix = held_out_mix(count=200, fraud_share=0.1)

    assert len(mix.rows) == len(mix.labels) == len(mix.scores) == 200
    assert sum(mix.labels) == 20
    assert all(len(row) == holdout["features"].shape[1] for row in mix.rows)


def test_mixed_rows_are_held_out_rows_with_their_recorded_scores(holdout):
    mix = held_out_mix(count=50, fraud_share=0.5)
    by_score = {float(s): i for i, s in enumerate(holdout["scores"])}

    for row, score, label in zip(mix.rows, mix.scores, mix.labels, strict=True):
        index = by_score[score]
        np.testing.assert_array_equal(np.float32(row), holdout["features"][index])
        assert label == holdout["labels"][index]


def test_same_seed_gives_the_same_rows(holdout):
    assert held_out_mix(count=30, seed=3) == held_out_mix(count=30, seed=3)
    assert held_out_mix(count=30, seed=3) != held_out_mix(count=30, seed=4)


@pytest.mark.parametrize("share", [-0.1, 1.5])
def test_fraud_share_outside_zero_to_one_is_rejected(share):
    with pytest.raises(ValueError, match="expected a value in"):
        held_out_mix(count=10, fraud_share=share)


def test_missing_holdout_says_to_train_first(tmp_path):
    with pytest.raises(FileNotFoundError, match="make train"):
        held_out_mix(path=tmp_path / "holdout.npz")
