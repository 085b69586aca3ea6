"""The steering protocol's parts (method.md §6): target concepts, segments, the best point;
and a whole run on one 80/10/10 split with tiny models."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from models import steer_eval
from models.config import ELSAConfig, SAEConfig, TrainConfig
from models.data.datasets import load_dataset
from models.data.interactions import HeldOut, holdout_split
from models.steer_eval import (
    best_point,
    run_steering_evaluation,
    segment_targets,
    target_concepts,
    write_markdown,
)

TINY = TrainConfig(elsa=ELSAConfig(d=16, lr=3e-2, batch_size=64, max_epochs=3, patience=2),
                   sae=SAEConfig(h=32, k=4, lr=1e-2, batch_size=128, max_epochs=2, patience=2),
                   seed=5)


def csr(rows: list[list[int]], n: int = 6) -> sp.csr_matrix:
    return sp.csr_matrix(np.array(rows, dtype=np.float32).reshape(-1, n))


CARRIES = sp.csr_matrix(np.array([
    [1, 1, 1, 0, 0, 0],       # concept 0: items 0-2
    [0, 0, 0, 1, 1, 0],       # concept 1: items 3-4
    [0, 0, 0, 0, 1, 1],       # concept 2: items 4-5
], dtype=bool))


def test_target_concept_maximises_targets_minus_inputs() -> None:
    held = HeldOut(users=np.arange(3),
                   input=csr([[1, 1, 0, 0, 0, 0], [1, 0, 0, 1, 0, 0], [1, 1, 1, 1, 1, 1]]),
                   target=csr([[0, 0, 1, 1, 1, 0], [0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 0, 0]]))
    got = target_concepts(held, CARRIES, np.random.default_rng(0))
    # user 0: concept 0 gains 1 - 2 < 0, concept 1 gains 2 - 0, concept 2 gains 1
    # user 1: concept 1 gains 1 - 1 = 0, concept 2 gains 2; user 2: nothing gains -> -1
    assert got.tolist() == [1, 2, -1]


def test_target_concept_ties_are_a_seeded_random_pick() -> None:
    held = HeldOut(users=np.arange(1), input=csr([[0, 0, 0, 0, 0, 0]]),
                   target=csr([[1, 0, 0, 1, 0, 0]]))
    picks = {int(target_concepts(held, CARRIES, np.random.default_rng(s))[0])
             for s in range(20)}
    assert picks == {0, 1}
    again = [int(target_concepts(held, CARRIES, np.random.default_rng(3))[0])
             for _ in range(3)]
    assert len(set(again)) == 1


def test_segment_is_the_concepts_items_minus_the_inputs() -> None:
    seg = segment_targets(np.array([0, 2]), CARRIES,
                          csr([[1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1]]))
    assert seg.toarray().tolist() == [[0, 1, 1, 0, 0, 0], [0, 0, 0, 0, 1, 0]]


def test_best_point_keeps_personal_and_maximises_segment() -> None:
    curve = [{"alpha": 0.0, "personal": 0.30, "segment": 0.10},
             {"alpha": 0.1, "personal": 0.30, "segment": 0.15},
             {"alpha": 0.2, "personal": 0.27, "segment": 0.22},
             {"alpha": 0.3, "personal": 0.26, "segment": 0.40}]
    b = best_point(curve)
    assert b is not None
    assert b["alpha"] == 0.2 and b["segment_ratio"] == pytest.approx(2.2)
    assert b["personal_kept"] == pytest.approx(0.9)
    assert best_point([curve[0], curve[3]]) is None


def test_holdout_steers_the_test_users_of_one_80_10_10_split(
        torch_device: torch.device, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = load_dataset("synthetic")
    data = ds.interactions
    held: list[np.ndarray] = []
    curves = steer_eval.steering_curves

    def spy(*args: Any, **kwargs: Any) -> steer_eval.FoldCurves:
        held.append(inspect.signature(curves).bind(*args, **kwargs).arguments["held"].users)
        return curves(*args, **kwargs)

    monkeypatch.setattr(steer_eval, "steering_curves", spy)
    report = run_steering_evaluation(data, ds.catalog, ds.tag_events, TINY, 2, torch_device,
                                     "synthetic", progress=False, alphas=(0.0, 0.3),
                                     splits="holdout")
    expected = holdout_split(data, TINY.seed).test.users
    assert len(held) == 2                               # the trained SAE and the control
    assert all(np.array_equal(users, expected) for users in held)
    p = report["protocol"]
    assert p["split"] == "holdout" and p["folds"] == 1
    assert p["test_users"] == len(expected) == round(0.1 * data.n_users)
    assert 0 < p["steered_users"] <= p["test_users"]
    assert len(report["fold_seconds"]) == 1
    md = write_markdown(report)
    assert (f"one 80/10/10 user split ({len(expected)} test users); "
            f"{p['steered_users']} test users with a target concept") in md
    assert "-fold" not in md and "mean over folds" not in md
