"""Each frame's model time read from its own intensities (motion/frame_times.py): the
monotone cycle, the sub-grid minimum, and the shipped prior's own renderings read back."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nimosef_engine.losses.objective import SubjectTensors
from nimosef_engine.model.bundled import load_prior
from nimosef_engine.motion.frame_times import best_times, fit_frame_times, monotone_cycle


def test_monotone_cycle_advances_in_systole_and_returns_in_diastole():
    # ED at frame 2, ES at frame 6 of 10: frames 3-5 systole, 7-9, 0, 1 diastole
    place = np.array([0.3, 0.05, 0.4, 0.2, 0.1, 0.7, 0.9, 1.2, 0.6, 0.8])
    out = monotone_cycle(place, ed=2, es=6)
    assert out[2] == 0.0 and out[6] == 1.0
    order = [(2 + j) % 10 for j in range(10)]
    seq = out[order]
    assert np.all(np.diff(seq[:5]) >= -1e-12)  # ED .. ES non-decreasing
    assert np.all(np.diff(seq[4:]) <= 1e-12)  # ES .. the frame before ED non-increasing
    assert out.min() >= 0.0 and out.max() <= 1.0
    # values already in order are kept (least squares moves only the violators)
    assert out[1] == pytest.approx(0.05)


def test_monotone_cycle_keeps_the_landmarks_when_every_other_frame_disagrees():
    out = monotone_cycle(np.array([0.9, 0.9, 0.1, 0.1]), ed=0, es=2)
    assert out[0] == 0.0 and out[2] == 1.0
    assert out[1] == pytest.approx(0.9) and out[3] == pytest.approx(0.1)


def test_best_times_finds_the_minimum_between_grid_points():
    grid = np.linspace(0.0, 0.5, 21)
    truth = np.array([0.137, 0.0, 0.5, 0.26])
    costs = (grid[None] - truth[:, None]) ** 2 + 1.0
    np.testing.assert_allclose(best_times(costs, grid), truth, atol=1e-9)


def test_best_times_keeps_a_minimum_at_either_end_of_the_grid():
    grid = np.linspace(0.0, 1.0, 11)
    costs = np.stack([grid, -grid, (grid - 0.5) ** 2])  # linear at the ends: no parabola
    np.testing.assert_allclose(best_times(costs, grid), [0.0, 1.0, 0.5], atol=1e-12)


def _rendered_cine(times: list[float], n: int = 6000, seed: int = 0):
    """The shipped prior's mean heart rendered at ``times``: a cine whose frames' model times
    are known."""
    ckpt, net, _ = load_prior(None, "cpu")
    gen = torch.Generator().manual_seed(seed)
    coords = torch.rand((n, 3), generator=gen) * 1.6 - 0.8
    code = ckpt["code_mean"]
    with torch.no_grad():
        inten = torch.stack([net(coords, torch.full((n, 1), t), code, with_motion=False)
                             .intensity for t in times])
    st = SubjectTensors("rendered", coords, inten, torch.zeros(len(times)), None,
                        [None] * len(times), None, (n, 1, 1))
    return ckpt, net, st


def test_the_priors_own_renderings_are_read_back_at_their_times():
    ckpt, net, _ = load_prior(None, "cpu")
    es = float(ckpt["es_time_mean"])
    # ED, systole, ES, then a diastole that is not systole reversed: a quick return and a
    # long rest near ED
    truth = np.array([0.0, 0.3, 0.7, 1.0, 0.85, 0.3, 0.1, 0.05]) * es
    ckpt, net, st = _rendered_cine(list(truth))
    read = fit_frame_times(net, ckpt["code_mean"], None, st, ed=0, es=3, es_model_time=es)
    assert read.used
    np.testing.assert_allclose(read.times, truth, atol=0.04 * es)
    # the landmark model would have put frame 6 (a tenth of the way) at two thirds of ES
    assert read.times[6] < 0.2 * es


def test_frames_that_all_look_alike_keep_their_times():
    ckpt, net, _ = load_prior(None, "cpu")
    es = float(ckpt["es_time_mean"])
    ckpt, net, st = _rendered_cine([0.2 * es] * 4)
    st.frame_times.copy_(torch.tensor([0.0, 0.5, 1.0, 0.5]) * es)
    read = fit_frame_times(net, ckpt["code_mean"], None, st, ed=0, es=2, es_model_time=es)
    assert not read.used and abs(read.separation) < 0.05 * es
    np.testing.assert_allclose(read.times, st.frame_times.numpy())


def test_an_ed_es_pair_is_not_read_so_pair_results_are_unchanged():
    from nimosef_engine.pipeline.cycle_time import frame_time_reader

    ckpt, net, _ = load_prior(None, "cpu")
    assert frame_time_reader(net, ckpt, 0, 1, n_frames=2) is None
    assert frame_time_reader(net, ckpt, 0, None, n_frames=12) is None  # no ES to align on
    assert frame_time_reader(net, {**ckpt, "es_time_mean": None}, 0, 5, n_frames=12) is None
    assert frame_time_reader(net, ckpt, 0, 5, n_frames=12) is not None


def test_the_fit_is_retimed_halfway_keeps_its_ed_and_returns_the_best_restarts_times(
        monkeypatch):
    import nimosef_engine.losses.objective as objective
    from nimosef_engine.fitting.fit import FitConfig, fit_subject

    ckpt, net, _ = load_prior(None, "cpu")
    es = float(ckpt["es_time_mean"])
    # ED is frame 2, ES frame 1; the reading puts frame 0 at time 0 too
    ckpt, net, st = _rendered_cine([0.0, es, 0.0, 0.5 * es], n=800)
    st.frame_times.copy_(torch.tensor([0.8, 1.0, 0.0, 0.4]) * es)
    start = st.frame_times.clone()
    calls, eds = [], []
    step_points = objective.step_points

    def spy(st_, n_points, generator, use_labels, frame=None, ed=None):
        out = step_points(st_, n_points, generator, use_labels, frame, ed)
        eds.append(out[0])
        return out

    monkeypatch.setattr(objective, "step_points", spy)

    def retime(code, pose_m, st_now):
        np.testing.assert_allclose(st_now.frame_times.numpy(), start.numpy())  # each restart
        calls.append(len(calls))
        return np.array([0.0, 1.0, 0.0, 0.4 + 0.1 * len(calls)], np.float32) * es

    res = fit_subject(net, st, FitConfig(steps=6, n_points=200, restarts=2), ckpt["code_mean"],
                      retime_fn=retime)
    assert calls == [0, 1]
    assert eds == [2] * 12  # the ED of the starting times in every step, after the reading too
    assert res.frame_times[0] == 0.0 and res.frame_times[3] in (
        pytest.approx(0.5 * es), pytest.approx(0.6 * es))
    np.testing.assert_allclose(st.frame_times.numpy(), res.frame_times)

    def wrong_shape(code, pose_m, st_now):
        return np.zeros(2, np.float32)

    with pytest.raises(ValueError, match="shape"):
        fit_subject(net, st, FitConfig(steps=4, n_points=200), ckpt["code_mean"],
                    retime_fn=wrong_shape)
