"""The serving engine's "why": the parts it names for each item are the largest terms of
the item's steered score, checked against a brute-force decomposition of `steer`'s code,
with the item-score rows held as one table and computed per neuron; a batch of knob
changes answers each as it would alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from app.engine import Engine, Job, Part, UserState
from models.bundle import load_bundle
from models.steering import Knob, knob_row, latent_rows, steer

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")   # no NaN or inf arithmetic


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


def knob_sets(state: UserState, h: int) -> list[list[Knob]]:
    """No knob, "more of" a neuron the user lacks, "less of" one they have, several
    mixed, knobs at zero, everything turned off."""
    own = sorted(state.scores.active)
    other = next(n for n in range(h) if n not in state.scores.active)
    return [[], [Knob((other,), 0.4)], [Knob((own[0],), -0.6)],
            [Knob((other, own[-1]), 0.3), Knob((own[0],), -0.5), Knob((own[1],), 0.2)],
            [Knob((other,), 0.0), Knob((own[0],), 0.0)], [Knob(tuple(own), -1.0)]]


@pytest.mark.parametrize("host", [True, False], ids=["numpy", "torch"])
def test_why_names_the_largest_parts_of_each_steered_score(engine: Engine, host: bool,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    monkeypatch.setattr(engine, "host", host)
    checked = 0
    states = [engine.user(u) for u in range(6)] + [engine.profile([3, 5, 8, 13])]
    for state in states:
        for knobs in knob_sets(state, engine.sae.h):
            ranked = engine.recommend(state, knobs, 10)
            expected = brute_force_why(engine, state, knobs, ranked.items)
            for row, want in enumerate(expected):
                got = ranked.why.reasons(row)
                assert [p for p, _ in got] == [p for p, _ in want]
                assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-4)
                checked += len(got)
    assert checked > 100


@pytest.mark.parametrize("host", [True, False], ids=["numpy", "torch"])
def test_a_batch_answers_each_job_as_it_would_alone(engine: Engine, host: bool,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """recommend_many (the API's warm requests of one event-loop round) gives every job
    the very bits `recommend` gives it alone: users and profiles, knobs or none, several
    n, a profile with nothing left to rank, the same user twice, tied parts; and a batch
    whose jobs all have the same shape (no padding) too."""
    monkeypatch.setattr(engine, "host", host)
    states = [engine.user(u) for u in range(4)] + [engine.profile([3, 5, 8, 13]),
                                                   engine.profile(range(engine.n_items))]
    jobs = [Job(s, knobs, n) for s in states[:-1] for knobs, n in zip(
        knob_sets(s, engine.sae.h), [20, 10, 20, 1, 20, 100], strict=True)]
    jobs += [Job(states[-1], [Knob((0,), 0.5)], 20), Job(states[0], [Knob((7,), 0.9)], 20),
             # two knobs on one neuron tie in every item's why; a partner with eight
             # knobs pads the batch's parts well past the tied job's
             Job(states[1], [Knob((10,), 0.3), Knob((10,), 0.3)], 20),
             Job(states[2], [Knob((n,), 0.05) for n in range(20, 28)], 20)]
    alone = [engine.recommend(*job) for job in jobs]
    batched = engine.recommend_many(jobs[::-1])[::-1]
    assert len(batched) == len(jobs)
    for a, b in zip(alone, batched, strict=True):
        for field in ("items", "scores", "rank_before", "unsteered"):
            assert np.array_equal(getattr(a, field), getattr(b, field)), field
        assert a.why.parts == b.why.parts
        assert a.why.order.shape == b.why.order.shape == a.why.values.shape
        # what an answer shows: the parts with a positive contribution (ties among the
        # rest, e.g. every neuron turned off, contribute nothing and may come in any order)
        assert [a.why.reasons(r) for r in range(len(a.items))] == \
            [b.why.reasons(r) for r in range(len(b.items))]
    assert sum(len(r.items) for r in batched) > 500
    assert sum(len(r.why.reasons(i)) for r in batched for i in range(len(r.items))) > 500
    tied = batched[-2].why.reasons(0)
    assert tied[0][1] == tied[1][1] and {p.ref for p, _ in tied[:2]} == {0, 1}
    assert not batched[0].items.flags.writeable          # views of the batch's arrays
    same = [Job(s, [Knob((9,), 0.3), Knob((11, 12), -0.4)], 20) for s in states[:-1]]
    assert len({len(s.scores.active) for s in states[:-1]}) == 1     # no padding needed
    for a, b in zip([engine.recommend(*job) for job in same], engine.recommend_many(same),
                    strict=True):
        assert np.array_equal(a.items, b.items) and np.array_equal(a.scores, b.scores)
        assert np.array_equal(a.why.order, b.why.order)
        assert np.array_equal(a.why.values, b.why.values)


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
        torch.testing.assert_close(state.unsteered[ranked.unsteered.copy()], want)
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
