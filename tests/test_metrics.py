"""Evaluation metrics against brute-force definitions."""

import numpy as np
import pytest

from facexray.train.metrics import average_precision, binary_metrics, equal_error_rate, log_loss, roc_auc


def _auc_pairs(y, s):
    pos, neg = s[y == 1], s[y == 0]
    diff = pos[:, None] - neg[None, :]
    return ((diff > 0) + 0.5 * (diff == 0)).mean()


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_pairwise_definition_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.random(200) + 0.3 * y, 1)          # rounding makes many ties
    assert roc_auc(y, s) == pytest.approx(_auc_pairs(y, s), abs=1e-12)


def test_average_precision_by_hand():
    # ranked: 0.9 (fake), 0.8 (real), 0.7 (fake), 0.1 (real): precision at the fakes 1 and 2/3
    assert average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision([1, 1, 0], [0.5, 0.5, 0.5]) == pytest.approx(2 / 3)


def test_eer_extremes_and_symmetric_case():
    assert equal_error_rate([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 0.0
    assert equal_error_rate([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 1.0
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(2000), np.ones(2000)]
    s = np.r_[rng.normal(0, 1, 2000), rng.normal(2, 1, 2000)]     # two unit Gaussians 2 apart: EER = Φ(-1)
    assert equal_error_rate(y, s) == pytest.approx(0.1587, abs=0.015)


def test_log_loss_and_summary():
    assert log_loss([1, 0], [0.5, 0.5]) == pytest.approx(np.log(2))
    m = binary_metrics([0, 1, 1], [0.2, 0.6, 0.4])
    assert m["n"] == 3 and m["n_fake"] == 2 and m["accuracy"] == pytest.approx(2 / 3)
    assert np.isnan(binary_metrics([1, 1], [0.2, 0.3])["auc"])
