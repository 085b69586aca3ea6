"""The steering protocol's parts (method.md §6): target concepts, segments, the best point."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from models.data.interactions import HeldOut
from models.steer_eval import best_point, segment_targets, target_concepts


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
