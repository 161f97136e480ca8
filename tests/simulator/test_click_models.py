"""Click models: sampled clicks match their closed-form probabilities; calibration on OBD."""
from __future__ import annotations

import numpy as np
import pytest

from simulator.calibration import calibrate_obd
from simulator.click_models import Cascade, Choice, DependentClick, PositionBased

K, N = 4, 200_000
ATTRACTION = np.tile([0.3, 0.5, 0.2, 0.6], (N, 1))
EXAM = np.array([1.0, 0.7, 0.5, 0.3])
MODELS = [PositionBased(EXAM), Cascade(), DependentClick(0.4), Choice(EXAM, 1.5)]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
def test_sampled_clicks_match_closed_form(model):
    rng = np.random.default_rng(0)
    clicks = model.sample(ATTRACTION, rng.random((N, K)), rng.random((N, K)))
    p = model.click_probabilities(ATTRACTION[:1])[0]
    se = np.sqrt(p * (1 - p) / N)
    assert np.all(np.abs(clicks.mean(axis=0) - p) < 4 * se + 1e-9)
    any_p = model.p_any_click(ATTRACTION[:1])[0]
    assert abs(clicks.any(axis=1).mean() - any_p) < 4 * np.sqrt(any_p * (1 - any_p) / N)


def test_closed_forms():
    a = ATTRACTION[:1]
    np.testing.assert_allclose(PositionBased(EXAM).click_probabilities(a)[0], EXAM * a[0])
    first = [0.3, 0.7 * 0.5, 0.7 * 0.5 * 0.2, 0.7 * 0.5 * 0.8 * 0.6]  # cascade first-click law
    np.testing.assert_allclose(Cascade().click_probabilities(a)[0], first)
    np.testing.assert_allclose(DependentClick(1.0).click_probabilities(a)[0], a[0])  # always goes on
    np.testing.assert_allclose(DependentClick(0.0).click_probabilities(a)[0], first)  # = cascade
    lone = Choice(np.ones(1), 1.0).click_probabilities(np.array([[0.3]]))
    np.testing.assert_allclose(lone, [[0.3]])  # odds weights: a lone item keeps its attraction


def test_cascade_clicks_at_most_once():
    rng = np.random.default_rng(1)
    clicks = Cascade().sample(ATTRACTION[:1000], rng.random((1000, K)), rng.random((1000, K)))
    assert clicks.sum(axis=1).max() == 1


@pytest.mark.network
def test_obd_calibration_within_sampling_error():
    cal = calibrate_obd()
    assert 0.002 < cal.base_ctr < 0.006  # the sample's CTR is about 0.4 %
    assert np.all(np.diff(cal.examination) <= 0) and cal.examination[0] == 1.0
    z = np.abs(cal.fitted_ctr() - cal.observed_ctr) / cal.standard_error()
    assert np.all(z < 2.0), z
    assert len(cal.examination_for(10)) == 10 and np.all(np.diff(cal.examination_for(10)) <= 0)
