"""Hypothesis over the steering math: any valid knobs give a valid code (finite, >= 0,
the L1 mass kept) whose fast-path scores equal the full decode and rank the same items;
any invalid knob is refused with the documented ValueError naming it."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.elsa import ELSA
from models.metrics import top_n
from models.sae import TopKSAE
from models.steering import (
    Knob,
    score_basis,
    steer,
    steer_values,
    steered_scores,
    user_scores,
)
from tests.models.test_steering import fast_scores

H, ITEMS, D, K = 24, 40, 6, 5
PROPERTY = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def model() -> tuple[ELSA, TopKSAE]:
    g = torch.Generator().manual_seed(3)
    elsa, sae = ELSA(ITEMS, D, g), TopKSAE(D, H, K, g).eval()
    with torch.no_grad():
        sae.b_dec.normal_(generator=g)
    return elsa, sae


strengths = st.floats(-1.0, 1.0, allow_nan=False)
knob = st.builds(Knob, st.lists(st.integers(0, H - 1), min_size=1, max_size=4,
                                unique=True).map(tuple), strengths)
knobs = st.lists(knob, max_size=6)
codes = st.lists(st.one_of(st.just(0.0), st.floats(0.0, 5.0)), min_size=H, max_size=H)


@PROPERTY
@given(values=codes, ks=knobs)
def test_any_valid_knobs_give_a_valid_code(values: list[float], ks: list[Knob]) -> None:
    z = torch.tensor(values, dtype=torch.float64)
    out = steer(z, ks).code
    assert torch.isfinite(out).all() and (out >= 0).all()
    mass, new_mass = float(z.sum()), float(out.sum())
    emptied = float(steer(z, [k for k in ks if k.strength < 0]).code.sum()) == 0.0
    if not emptied:
        assert new_mass == pytest.approx(mass, rel=1e-9, abs=1e-9)   # the mass is kept
    else:                          # all turned off: only the "more" push is left
        more = sum(k.strength for k in ks if k.strength > 0)
        assert new_mass == pytest.approx(mass * min(more, 1.0), rel=1e-9, abs=1e-9)
    keep, sparse = steer_values(mass, ks, {n: v for n, v in enumerate(values) if v > 0})
    assert all(v == pytest.approx(float(out[n]), rel=1e-9, abs=1e-9)
               for n, v in sparse.items())
    zero = [Knob(k.neurons, 0.0) for k in ks]
    assert torch.equal(steer(z, zero).code, z)                       # strength 0: as before


@PROPERTY
@given(history=st.lists(st.integers(0, ITEMS - 1), min_size=1, max_size=12, unique=True),
       ks=knobs)
def test_fast_scores_rank_like_the_full_decode(model: tuple[ELSA, TopKSAE],
                                               history: list[int], ks: list[Knob]) -> None:
    elsa, sae = model
    x = torch.zeros(1, ITEMS)
    x[0, history] = 1.0
    with torch.no_grad():
        c, mean, std = sae.encode(elsa.encode(x))
        user = user_scores(elsa, sae, score_basis(elsa, sae), c[0], mean, std)
        fast = fast_scores(elsa, sae, user, ks)
        full = elsa.decode(sae.decode(steer(c[0], ks).code[None], mean, std))[0]
    assert torch.isfinite(fast).all()
    assert torch.allclose(fast, full, atol=1e-4)
    n = 10
    ranked = top_n(fast[None], n, x)[0].tolist()
    assert len(set(ranked)) == n and not set(ranked) & set(history)
    # the fast ranking is the full one up to near-ties
    full_ranked = top_n(full[None], n, x)[0].tolist()
    gap = (full[ranked] - full[full_ranked]).abs().max()
    assert float(gap) < 1e-3


bad_knobs = st.one_of(
    st.builds(Knob, st.just((1,)), st.floats(1.0, 1e9, exclude_min=True)),
    st.builds(Knob, st.just((1,)), st.floats(-1e9, -1.0, exclude_max=True)),
    st.builds(Knob, st.just((1,)), st.just(math.nan)),
    st.builds(Knob, st.just(()), strengths),
    st.builds(Knob, st.integers(H, 10**6).map(lambda n: (n,)), strengths),
    st.builds(Knob, st.integers(-10**6, -1).map(lambda n: (n,)), strengths),
    st.builds(Knob, st.integers(0, H - 1).map(lambda n: (n, n)), strengths),
)


@PROPERTY
@given(good=knobs, bad=bad_knobs, where=st.integers(0, 6))
def test_any_invalid_knob_is_refused_naming_it(model: tuple[ELSA, TopKSAE], good: list[Knob],
                                                bad: Knob, where: int) -> None:
    elsa, sae = model
    ks = [*good[:where], bad, *good[where:]]
    j = min(where, len(good))
    with pytest.raises(ValueError, match=rf"^knob {j}: "):
        steer(torch.rand(H), ks)
    user = user_scores(elsa, sae, score_basis(elsa, sae), torch.rand(H), torch.tensor(0.0),
                       torch.tensor(1.0))
    with pytest.raises(ValueError, match=rf"^knob {j}: "):
        steered_scores(user, ks, torch.zeros(len(ks), ITEMS),
                       lambda n: torch.zeros(ITEMS))
