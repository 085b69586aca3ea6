"""The serving engine's "why": the parts it names for each item are the largest terms of
the item's steered score, checked against a brute-force decomposition of `steer`'s code,
on the numpy (CPU) path and the torch (device) path, with the item-score rows held as
one table and computed per neuron."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from app.engine import Engine, Part, UserState
from models.bundle import load_bundle
from models.steering import Knob, knob_row, latent_rows, steer


def lazy_engine(bundle_dir: Path) -> Engine:
    """An engine whose row budget holds 8 rows: no R table, rows computed per neuron."""
    b = load_bundle(bundle_dir, torch.device("cpu"))
    return Engine(b, torch.device("cpu"), row_cache_bytes=8 * 4 * b.elsa.n_items)


@pytest.fixture(scope="module", params=["table", "lazy"])
def engine(bundle_dir: Path, request: pytest.FixtureRequest) -> Engine:
    """With R = W_dec A^T held whole (it fits the default budget) and without it."""
    if request.param == "lazy":
        e = lazy_engine(bundle_dir)
        assert e.row_table is None
        return e
    e = Engine(load_bundle(bundle_dir, torch.device("cpu")), torch.device("cpu"))
    assert e.row_table is not None
    return e


def test_the_row_table_holds_the_rows_computed_per_neuron(bundle_dir: Path) -> None:
    table = Engine(load_bundle(bundle_dir, torch.device("cpu")), torch.device("cpu"))
    lazy = lazy_engine(bundle_dir)
    neurons = [0, 5, table.sae.h - 1, 5]
    assert table.rows(neurons).shape == (4, table.n_items)
    torch.testing.assert_close(table.rows(neurons), lazy.rows(neurons))
    for n in neurons:
        torch.testing.assert_close(table.row(n), lazy.row(n))
    torch.testing.assert_close(table.knob_row((1, 2, 3)), lazy.knob_row((1, 2, 3)))
    assert not table.row(0).requires_grad and not lazy.rows([1, 2]).requires_grad


def brute_force_why(engine: Engine, state: UserState, knobs: list[Knob], items: np.ndarray
                    ) -> list[list[tuple[Part, float]]]:
    """Every part of each item's steered score, from the full steered code: own neuron n
    contributes std * (z'_n - push_n) * R[n, i], a "more of" knob std * mass * a / norm *
    its mean row at i; the three largest positive ones per item."""
    s = state.scores
    items = np.array(items)                         # a writable copy for torch indexing
    steered = steer(s.code, knobs).code
    norm = max(sum(k.strength for k in knobs if k.strength > 0), 1.0)
    push = torch.zeros_like(steered)
    for k in knobs:
        if k.strength > 0:
            for n in k.neurons:
                push[n] += s.mass * k.strength / norm / len(k.neurons)
    rows = latent_rows(engine.elsa, engine.sae, torch.arange(engine.sae.h))
    terms: list[tuple[Part, np.ndarray]] = [
        (Part("neuron", n), (s.std * max(float(steered[n] - push[n]), 0.0)
                             * rows[n, items]).numpy()) for n in sorted(s.active)]
    terms += [(Part("knob", j), (s.std * s.mass * k.strength / norm
                                 * knob_row(rows[list(k.neurons)])[items]).numpy())
              for j, k in enumerate(knobs) if k.strength > 0]
    out = []
    for i in range(len(items)):
        ranked = sorted(((p, float(v[i])) for p, v in terms), key=lambda pv: -pv[1])[:3]
        out.append([(p, v) for p, v in ranked if v > 0])
    return out


@pytest.mark.parametrize("host", [True, False], ids=["numpy", "torch"])
def test_why_names_the_largest_parts_of_each_steered_score(engine: Engine, host: bool,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    monkeypatch.setattr(engine, "host_why", host)
    checked = 0
    states = [engine.user(u) for u in range(6)] + [engine.profile([3, 5, 8, 13])]
    for state in states:
        own = sorted(state.scores.active)
        other = next(n for n in range(engine.sae.h) if n not in state.scores.active)
        for knobs in ([], [Knob((other,), 0.4)], [Knob((own[0],), -0.6)],
                      [Knob((other, own[-1]), 0.3), Knob((own[0],), -0.5),
                       Knob((own[1],), 0.2)],
                      [Knob((other,), 0.0), Knob((own[0],), 0.0)],
                      [Knob(tuple(own), -1.0)]):
            ranked = engine.recommend(state, knobs, 10)
            expected = brute_force_why(engine, state, knobs, ranked.items)
            for row, want in enumerate(expected):
                got = ranked.why.reasons(row)
                assert [p for p, _ in got] == [p for p, _ in want]
                assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-4)
                checked += len(got)
    assert checked > 100


def test_nothing_left_to_rank_has_no_why(engine: Engine) -> None:
    everything = engine.profile(list(range(engine.n_items)))
    for knobs in ([], [Knob((0,), 0.5)]):
        ranked = engine.recommend(everything, knobs, 20)
        assert len(ranked.items) == len(ranked.unsteered) == len(ranked.rank_before) == 0
        assert ranked.why.order.shape[0] == 0


def test_the_unsteered_list_is_kept_once_per_user_whatever_n(engine: Engine) -> None:
    """Any n from 1 to 100 answers from one kept list (a client cannot grow a user's cache
    by asking for every n); each n's unsteered list is the top n of the scores, and
    rank_before points into it."""
    state = engine.profile([2, 4, 6, 8, 10])
    ten = engine.recommend(state, [Knob((0,), 0.5)], 10).unsteered.copy()
    for n in (1, 7, 20, 55, 100):
        ranked = engine.recommend(state, [Knob((0,), 0.5)], n)
        scores = state.unsteered.clone()
        scores[list(state.inputs)] = float("-inf")
        want = torch.topk(scores, n).values
        torch.testing.assert_close(state.unsteered[ranked.unsteered], want)
        assert list(ranked.unsteered[:min(n, 10)]) == list(ten[:min(n, 10)])
        for r, (i, before) in enumerate(zip(ranked.items, ranked.rank_before, strict=True)):
            assert before == (list(ranked.unsteered).index(i) if i in ranked.unsteered
                              else -1), (n, r)
        plain = engine.recommend(state, [], n)
        assert list(plain.items) == list(ranked.unsteered)
        assert list(plain.rank_before) == list(range(n))
    kept = [k for k in state._cache if k.startswith("top")]
    assert kept == ["top"]
    assert not ranked.unsteered.flags.writeable
