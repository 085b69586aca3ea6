"""run_evaluation on tiny synthetic data with tiny models: the report's documented keys, the
paired CI, the markdown (K folds and one 80/10/10 split), and the config's round trip."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from models import evaluate
from models.config import (
    ELSAConfig,
    MultVAEConfig,
    SAEConfig,
    TrainConfig,
    defaults_for,
)
from models.data.interactions import Interactions, Split, holdout_split, positives_from_ratings
from models.data.synthetic import make_synthetic
from models.evaluate import MODEL_NAMES, PAIRS, run_evaluation, user_splits, write_markdown

TINY = TrainConfig(
    elsa=ELSAConfig(d=16, lr=3e-2, batch_size=64, max_epochs=3, patience=2),
    sae=SAEConfig(h=32, k=4, lr=1e-2, batch_size=128, max_epochs=2, patience=2,
                  subsamples_per_user=1, item_onehots=True),
    multvae=MultVAEConfig(d=8, lr=1e-2, batch_size=64, max_epochs=2, patience=2,
                          beta_step=1e-3, beta_cap=0.2),
    ease_l2=(10.0, 100.0),
    seed=3,
)


@pytest.fixture(scope="module")
def data() -> Interactions:
    syn = make_synthetic(n_users=80, n_items=50, n_concepts=4, seed=11)
    return positives_from_ratings(syn.ratings)


@pytest.fixture(scope="module")
def report(data: Interactions, torch_device: torch.device) -> dict[str, Any]:
    return run_evaluation(data, TINY, folds=2, device=torch_device, dataset="synthetic",
                          progress=False)


@pytest.fixture(scope="module")
def holdout(data: Interactions, torch_device: torch.device
            ) -> tuple[dict[str, Any], list[np.ndarray], list[int]]:
    """The report of `splits="holdout"`, the test users of each split it evaluated, and
    the number of users behind each paired bootstrap."""
    tested: list[np.ndarray] = []
    boot: list[int] = []
    fold, bootstrap = evaluate.evaluate_fold, evaluate.paired_bootstrap

    def spy_fold(split: Split, *args: Any, **kwargs: Any) -> evaluate.FoldResult:
        tested.append(split.test.users)
        return fold(split, *args, **kwargs)

    def spy_bootstrap(a: np.ndarray, b: np.ndarray, *args: Any) -> tuple[float, float, float]:
        boot.append(len(a))
        return bootstrap(a, b, *args)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(evaluate, "evaluate_fold", spy_fold)
        mp.setattr(evaluate, "paired_bootstrap", spy_bootstrap)
        rep = run_evaluation(data, TINY, folds=2, device=torch_device, dataset="synthetic",
                             progress=False, splits="holdout")
    return rep, tested, boot


def test_report_has_every_model_and_metric(report: dict[str, Any]) -> None:
    assert set(MODEL_NAMES) == {"popularity", "ease", "elsa", "elsa+sae", "multvae",
                                "multvae+sae"}
    for name in MODEL_NAMES:
        m = report["models"][name]
        for key in ("recall@20", "ndcg@20", "recall@20_se", "ndcg@20_se"):
            assert math.isfinite(m[key]), (name, key)
        assert 0.0 <= m["recall@20"] <= 1.0 and 0.0 <= m["ndcg@20"] <= 1.0
        assert len(m["ndcg@20_per_fold"]) == len(m["recall@20_per_fold"]) == 2
        # folds of equal size: the overall mean is the mean of the fold means
        assert m["ndcg@20"] == pytest.approx(np.mean(m["ndcg@20_per_fold"]), abs=1e-9)
    for name in ("elsa+sae", "multvae+sae"):
        m = report["models"][name]
        assert -1.0 <= m["cosine"] <= 1.0
        assert 0.0 < m["l0"] <= TINY.sae.k
        assert 0.0 <= m["dead_fraction"] <= 1.0
        assert len(m["l0_per_fold"]) == 2


def test_report_protocol(report: dict[str, Any]) -> None:
    p = report["protocol"]
    assert p["split"] == "folds" and p["folds"] == 2 and p["seed"] == 3
    assert p["test_users"] == p["users"]                     # every user tested once
    assert report["dataset"] == "synthetic"
    assert report["config"] == TINY.to_dict()
    assert len(report["ease_l2_per_fold"]) == 2
    assert set(report["ease_l2_per_fold"]) <= set(TINY.ease_l2)
    json.dumps(report)                                        # serialisable as is


def test_paired_differences_have_a_ci_around_the_mean(report: dict[str, Any]) -> None:
    assert set(report["paired"]) == {f"{a} - {b}" for a, b in PAIRS}
    diff, lo, hi = report["paired"]["elsa+sae - elsa"]["ndcg@20"]
    assert lo <= diff <= hi
    m = report["models"]
    assert diff == pytest.approx(m["elsa+sae"]["ndcg@20"] - m["elsa"]["ndcg@20"], abs=1e-9)
    for vals in report["paired"].values():
        for metric in ("recall@20", "ndcg@20"):
            d, lo, hi = vals[metric]
            assert lo <= d <= hi


def test_write_markdown_renders(report: dict[str, Any]) -> None:
    md = write_markdown(report)
    assert md.startswith("# Offline quality: synthetic")
    for name in MODEL_NAMES:
        assert f"| {name} |" in md
    for pair in report["paired"]:
        assert f"| {pair} |" in md
    assert f"{report['models']['elsa']['ndcg@20']:.4f}" in md
    m = report["models"]
    kept = 100 * m["elsa+sae"]["ndcg@20_per_fold"][1] / m["elsa"]["ndcg@20_per_fold"][1]
    assert "per fold, nDCG@20 / Recall@20: " in md and f"{kept:.1f}% / " in md
    assert "2-fold over users: every user is a test user once (80 in all)" in md


def test_holdout_tests_the_users_of_one_80_10_10_split(
        data: Interactions, holdout: tuple[dict[str, Any], list[np.ndarray], list[int]]
) -> None:
    report, tested, _ = holdout
    expected = holdout_split(data, TINY.seed).test.users
    assert len(tested) == 1 and np.array_equal(tested[0], expected)
    p = report["protocol"]
    assert p["split"] == "holdout" and p["folds"] == 1 and p["seed"] == TINY.seed
    assert p["test_users"] == len(expected) == round(0.1 * data.n_users)
    assert p["users"] == data.n_users
    assert len(report["ease_l2_per_fold"]) == 1
    for name in MODEL_NAMES:
        m = report["models"][name]
        assert len(m["ndcg@20_per_fold"]) == len(m["recall@20_per_fold"]) == 1
        assert m["ndcg@20"] == pytest.approx(m["ndcg@20_per_fold"][0], abs=1e-9)
    assert len(report["models"]["elsa+sae"]["l0_per_fold"]) == 1
    json.dumps(report)


def test_holdout_bootstraps_over_its_test_users(
        holdout: tuple[dict[str, Any], list[np.ndarray], list[int]]) -> None:
    report, tested, boot = holdout
    assert boot == [len(tested[0])] * (2 * len(PAIRS))        # recall and nDCG, each pair
    for vals in report["paired"].values():
        for metric in ("recall@20", "ndcg@20"):
            d, lo, hi = vals[metric]
            assert lo <= d <= hi


def test_holdout_markdown_names_the_split(
        holdout: tuple[dict[str, Any], list[np.ndarray], list[int]]) -> None:
    report, tested, _ = holdout
    md = write_markdown(report)
    assert f"one 80/10/10 user split ({len(tested[0])} test users); 20% of each" in md
    assert "-fold" not in md and "per fold" not in md and "s/fold" not in md
    for name in MODEL_NAMES:
        assert f"| {name} |" in md


def test_markdown_of_a_report_from_before_split_is_k_fold(report: dict[str, Any]) -> None:
    """reports/*.json written before protocol["split"] existed were all K-fold."""
    old = {**report, "protocol": {k: v for k, v in report["protocol"].items() if k != "split"}}
    assert write_markdown(old) == write_markdown(report)


def test_user_splits_rejects_an_unknown_kind(data: Interactions) -> None:
    with pytest.raises(ValueError, match="folds, holdout, got 'kfold'"):
        user_splits(data, "kfold", 2, seed=0)  # type: ignore[arg-type]


def test_train_config_round_trips() -> None:
    for cfg in (TINY, TrainConfig(), defaults_for(500, seed=4), defaults_for(50_000)):
        assert TrainConfig.from_dict(cfg.to_dict()) == cfg
        assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_train_config_rejects_unknown_keys() -> None:
    raw = TINY.to_dict()
    with pytest.raises(ValueError, match="bogus"):
        TrainConfig.from_dict({**raw, "bogus": 1})
    with pytest.raises(ValueError, match=r"sae.*widht"):
        TrainConfig.from_dict({**raw, "sae": {**raw["sae"], "widht": 3}})


def test_defaults_depend_on_dataset_size() -> None:
    small, medium, large = defaults_for(600), defaults_for(28_971), defaults_for(200_000)
    assert large == TrainConfig()
    # goodbooks-10k: no teacher and no sub-sampled histories, but item one-hots and the
    # refit, an SAE of h = 4096, k <= 32 (reports/goodbooks-10k/defaults.md)
    assert medium.elsa.teacher == "none" and medium.sae.subsamples_per_user == 0
    assert medium.sae.item_onehots and medium.sae.refine_steps > 0
    assert medium.sae.k <= 32 and medium.sae.h == 4096 and medium.elsa.d == 1024
    assert small.sae.subsamples_per_user > 0 and small.elsa.teacher == "ease"
    assert large.elsa.teacher == "none"            # the paper's ELSA where data is plenty


def test_machine_info_names_the_cpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Reports made on machines of different speeds must say which CPU they ran on: the
    model name from /proc/cpuinfo, else what `platform` knows."""
    from models import evaluate

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: X\nmodel name\t: Example CPU 9000\n"
                       "processor\t: 1\nmodel name\t: Example CPU 9000\n")
    assert evaluate.cpu_model(str(cpuinfo)) == "Example CPU 9000"
    assert evaluate.machine_info(torch.device("cpu"))["cpu"] == evaluate.cpu_model()
    monkeypatch.setattr(evaluate.platform, "processor", lambda: "")
    monkeypatch.setattr(evaluate.platform, "machine", lambda: "x86_64")
    cpuinfo.write_text("processor\t: 0\n")
    assert evaluate.cpu_model(str(cpuinfo)) == "x86_64"
    assert evaluate.cpu_model(str(tmp_path / "absent")) == "x86_64"
