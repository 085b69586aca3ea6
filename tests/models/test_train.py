"""Trainers: quality on planted concepts, early stopping restores the best state, seeded
determinism, TopK sparsity after training, and the SAE's training vectors."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import models.train
from models.baselines import EASE, Popularity
from models.config import ELSAConfig, MultVAEConfig, SAEConfig, TrainConfig
from models.data.interactions import HeldOut, Interactions, Split, holdout_split
from models.elsa import ELSA
from models.metrics import top_n
from models.multvae import MultVAE
from models.recommender import Recommender
from models.sae import SparseAutoencoder, TopKSAE, standardize
from models.train import (
    EarlyStopping,
    History,
    SAEVectorSource,
    _fit,
    _init_directions,
    elsa_teacher,
    embed_rows,
    evaluate_heldout,
    fidelity,
    make_sae,
    minibatches,
    rank,
    resolve_device,
    sae_training_vectors,
    score_metric,
    select_ease,
    subsample_histories,
    top_matrix,
    train_elsa,
    train_multvae,
    train_sae,
    untrained_sae,
)

# Tiny and fast: a second or so on two cores. lr is high so that a few epochs suffice and
# the validation curve peaks before max_epochs (early stopping has something to restore).
ELSA_CFG = ELSAConfig(d=32, lr=3e-2, batch_size=32, max_epochs=15, patience=3)
SAE_CFG = SAEConfig(h=64, k=8, lr=1e-2, batch_size=64, max_epochs=4, patience=3,
                    refine_steps=20, refine_candidates=16)
VAE_CFG = MultVAEConfig(d=16, lr=2e-2, batch_size=64, max_epochs=4, patience=3,
                        beta_step=1e-3, beta_cap=0.2)
CPU = torch.device("cpu")


def ndcg(model: Callable[[torch.Tensor], torch.Tensor], heldout: HeldOut,
         device: torch.device) -> float:
    return float(np.nanmean(evaluate_heldout(model, heldout, device)[1]))


@pytest.fixture(scope="module")
def split(interactions: Interactions) -> Split:
    return holdout_split(interactions, seed=0)


@pytest.fixture(scope="module")
def trained_elsa(split: Split, torch_device: torch.device) -> tuple[ELSA, list[dict[str, float]]]:
    gen = torch.Generator().manual_seed(1234)
    return train_elsa(split.train, split.val, ELSA_CFG, torch_device, gen, progress=False)


@pytest.fixture(scope="module")
def sae_run(split: Split, trained_elsa: tuple[ELSA, list[dict[str, float]]],
            torch_device: torch.device) -> tuple[SparseAutoencoder, list[dict[str, float]]]:
    gen = torch.Generator().manual_seed(99)
    sae, history = train_sae(trained_elsa[0], split.train, split.val, SAE_CFG, torch_device,
                             gen, progress=False)
    assert 1 <= len(history) <= SAE_CFG.max_epochs
    return sae, history


@pytest.fixture(scope="module")
def trained_sae(sae_run: tuple[SparseAutoencoder, list[dict[str, float]]]
                ) -> SparseAutoencoder:
    return sae_run[0]


def test_fidelity_is_one_for_the_reference_and_less_for_another_ranking(
        split: Split, trained_elsa: tuple[ELSA, list[dict[str, float]]],
        torch_device: torch.device) -> None:
    elsa = trained_elsa[0]
    inputs = split.val.input
    reference = top_matrix(elsa, inputs, torch_device)
    assert reference.shape == inputs.shape
    assert (np.diff(reference.indptr) == 20).all()
    assert reference.multiply(inputs).nnz == 0                   # inputs are never ranked
    assert fidelity(rank(elsa, inputs, torch_device), reference) == pytest.approx(1.0)
    pop = Popularity(split.train).scores
    assert 0.0 < fidelity(rank(pop, inputs, torch_device), reference) < 0.9


def test_sae_stops_early_on_fidelity_and_restores_its_best(
        split: Split, trained_elsa: tuple[ELSA, list[dict[str, float]]],
        sae_run: tuple[SparseAutoencoder, list[dict[str, float]]],
        torch_device: torch.device) -> None:
    """The SAE is chosen by how well the nested model keeps ELSA's top 20 for the
    validation users; their held-out nDCG@20 is recorded beside it."""
    elsa = trained_elsa[0]
    sae, history = sae_run
    assert all({"val_fidelity@20", "val_ndcg@20"} <= set(h) for h in history)
    best = history[int(np.argmax([h["val_fidelity@20"] for h in history]))]
    reference = top_matrix(elsa, split.val.input, torch_device)
    nested = Recommender(elsa, sae)
    assert fidelity(rank(nested, split.val.input, torch_device), reference) == pytest.approx(
        best["val_fidelity@20"], abs=1e-9)
    assert ndcg(nested, split.val, torch_device) == pytest.approx(best["val_ndcg@20"],
                                                                  abs=1e-9)


def _fit_scripted(curves: dict[str, list[float]], select: str, patience: int,
                  keep: str | None = None) -> tuple[History, float]:
    """_fit over a module whose weight is the epoch number, validated by `curves` (one
    value per epoch each): -> the history and the epoch the restored weight says."""
    module = torch.nn.Linear(1, 1, bias=False)

    def run_epoch(epoch: int) -> float:
        with torch.no_grad():
            module.weight.fill_(float(epoch))
        return 0.0

    epoch = {"now": -1}

    def validate() -> dict[str, float]:
        epoch["now"] += 1
        return {name: values[epoch["now"]] for name, values in curves.items()}

    max_epochs = len(next(iter(curves.values())))
    history = _fit("t", module, module, validate, select, max_epochs, patience, run_epoch,
                   False, keep=keep)
    return history, module.weight.item()


def test_fit_restores_the_epoch_its_selected_metric_liked_best() -> None:
    """_fit keeps the state of the epoch where `select` peaked, not where another
    recorded metric did (the SAE records held-out nDCG@20 beside its fidelity)."""
    fid, held_out = [0.1, 0.4, 0.3, 0.2, 0.2], [0.9, 0.1, 0.1, 0.1, 0.1]
    history, kept = _fit_scripted({"fid": fid, "other": held_out}, "fid", 3)
    assert [h["fid"] for h in history] == fid and [h["other"] for h in history] == held_out
    assert kept == 1.0                                  # fidelity's best epoch, not 0


def test_fit_keeps_the_epoch_where_keep_peaked_and_stops_on_select() -> None:
    """With `keep`, _fit still stops when `select` has not improved for `patience` epochs,
    but restores the epoch where `keep` peaked (the SAE: fidelity as served, stopping on
    the plain fidelity)."""
    fid = [0.1, 0.5, 0.4, 0.3, 0.2, 0.9]          # select peaks at epoch 1, stops at 4
    served = [0.2, 0.3, 0.6, 0.1, 0.1, 0.9]       # keep peaks at epoch 2
    history, kept = _fit_scripted({"fid": fid, "served": served}, "fid", 3, keep="served")
    assert len(history) == 5                     # epochs 2-4 brought select no gain
    assert kept == 2.0                           # keep's best epoch, not select's (1)


def test_elsa_beats_popularity(split: Split, trained_elsa: tuple[ELSA, list[dict[str, float]]],
                               torch_device: torch.device) -> None:
    elsa, history = trained_elsa
    pop = ndcg(Popularity(split.train).scores, split.test, torch_device)
    assert ndcg(elsa, split.test, torch_device) > pop + 0.15
    assert all({"epoch", "loss", "val_ndcg@20"} <= set(h) for h in history)
    assert history[-1]["loss"] < history[0]["loss"]
    torch.testing.assert_close(elsa.A.norm(dim=1), torch.ones(elsa.n_items,
                                                               device=torch_device))


def test_early_stopping_restores_the_best_state(
        split: Split, trained_elsa: tuple[ELSA, list[dict[str, float]]],
        torch_device: torch.device) -> None:
    elsa, history = trained_elsa
    curve = [h["val_ndcg@20"] for h in history]
    best = int(np.argmax(curve))
    assert best < len(curve) - 1, "the run must end past its best epoch for this test"
    assert len(curve) < ELSA_CFG.max_epochs                    # it stopped early
    assert len(curve) - 1 - best == ELSA_CFG.patience
    assert ndcg(elsa, split.val, torch_device) == pytest.approx(max(curve), abs=1e-9)
    assert not elsa.training


def test_elsa_training_is_deterministic(split: Split, torch_device: torch.device) -> None:
    cfg = ELSAConfig(d=16, lr=1e-2, batch_size=64, max_epochs=2, patience=5,
                     input_dropout=0.5)

    def weights(seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return train_elsa(split.train, split.val, cfg, torch_device, gen, progress=False)[0].A

    a, b, c = weights(5), weights(5), weights(6)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_sae_codes_have_at_most_k_active(split: Split,
                                         trained_elsa: tuple[ELSA, list[dict[str, float]]],
                                         trained_sae: SparseAutoencoder,
                                         torch_device: torch.device) -> None:
    elsa = trained_elsa[0]
    u = embed_rows(elsa, split.test.input, torch_device)
    assert isinstance(trained_sae, TopKSAE) and not trained_sae.training
    assert trained_sae.refine_steps == SAE_CFG.refine_steps
    code = trained_sae.encode(u).code
    assert code.shape == (len(split.test.users), SAE_CFG.h)
    assert ((code > 0).sum(dim=-1) <= SAE_CFG.k).all()
    assert not torch.equal(code, trained_sae.train().encode(u).code)   # eval mode refits
    trained_sae.eval()
    assert (code >= 0).all()
    torch.testing.assert_close(trained_sae.W_dec.norm(dim=1),
                               torch.ones(SAE_CFG.h, device=torch_device))
    # the backbone's weights are untouched by SAE training (fixture trained both), and
    # the nested model still recommends far above popularity
    pop = ndcg(Popularity(split.train).scores, split.test, torch_device)
    assert ndcg(Recommender(elsa, trained_sae), split.test, torch_device) > pop + 0.1


def test_multvae_trains_and_is_deterministic(split: Split,
                                             torch_device: torch.device) -> None:
    def run(seed: int) -> tuple[torch.nn.Module, list[dict[str, float]]]:
        gen = torch.Generator().manual_seed(seed)
        return train_multvae(split.train, split.val, VAE_CFG, torch_device, gen,
                             progress=False)

    (a, hist), (b, _) = run(3), run(3)
    assert not a.training
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    pop = ndcg(Popularity(split.train).scores, split.test, torch_device)
    assert ndcg(Recommender(a), split.test, torch_device) > pop
    assert ndcg(Recommender(a), split.val, torch_device) == pytest.approx(
        max(h["val_ndcg@20"] for h in hist), abs=1e-9)


def test_subsample_histories_are_subsets_of_their_rows() -> None:
    rng = np.random.default_rng(0)
    dense = rng.random((7, 30)) < 0.4
    dense[3] = False                                            # an empty row is skipped
    matrix = sp.csr_matrix(dense.astype(np.float32))
    subs = subsample_histories(matrix, per_row=5, keep_min=0.2,
                               rng=np.random.default_rng(1))
    assert subs.shape == (6 * 5, 30)
    sources = [u for u in range(7) if u != 3 for _ in range(5)]
    for r, u in enumerate(sources):
        row = set(subs[r].indices.tolist())
        assert row and row <= set(np.flatnonzero(dense[u]).tolist())
    assert set(subs.data.tolist()) == {1.0}
    assert subs.nnz < 5 * matrix.nnz                            # something was dropped


def test_subsample_shares_and_partners_follow_their_distributions() -> None:
    """Kept share ~ U[keep_min, 1) (mean .6 for keep_min .2); with mix .5 a sub-sample
    joins geometric(.5) - 1 partners (one on average), each a uniformly random row."""
    blocks = sp.csr_matrix((np.kron(np.eye(6), np.ones((1, 50))) > 0).astype(np.float32))
    plain = subsample_histories(blocks, per_row=300, keep_min=0.2,
                                rng=np.random.default_rng(3))
    assert 0.57 < plain.getnnz(axis=1).mean() / 50 < 0.63
    mixed = subsample_histories(blocks, per_row=300, keep_min=0.2,
                                rng=np.random.default_rng(4), mix=0.5)
    touched = np.array([len(set((mixed[r].indices // 50).tolist()))
                        for r in range(mixed.shape[0])])
    # 1 + E[distinct other blocks among K partners] = 1 + 5 (1 - E[(5/6)^K]) = 1 + 5/7
    # (a partner may be the row itself, or repeat another); measured 1.738
    assert 1.64 < touched.mean() < 1.79
    with pytest.raises(ValueError, match="mix must be in"):
        subsample_histories(blocks, per_row=1, keep_min=0.2, rng=np.random.default_rng(0),
                            mix=1.0)


def test_mixed_subsamples_join_other_users() -> None:
    """With mix, a sub-sample may add items of other users, but always keeps part of its
    own row; with mix 0.75 most sub-samples reach beyond their own user."""
    rng = np.random.default_rng(0)
    eye_blocks = np.kron(np.eye(6), np.ones((1, 10))) > 0         # disjoint histories
    matrix = sp.csr_matrix(eye_blocks.astype(np.float32))
    subs = subsample_histories(matrix, per_row=20, keep_min=0.2, rng=rng, mix=0.75)
    beyond = 0
    for r in range(subs.shape[0]):
        u = r // 20
        own = set(range(10 * u, 10 * u + 10))
        items = set(subs[r].indices.tolist())
        assert items & own
        beyond += bool(items - own)
    assert beyond > 0.5 * subs.shape[0]


def test_elsa_loss_on_pre_relu_scores_trains_differently(split: Split) -> None:
    """relu_in_loss=False changes the objective (§2 vs the Knobs small-data choice), and
    still trains a model far above popularity."""
    runs = {flag: train_elsa(split.train, split.val,
                             dataclasses.replace(ELSA_CFG, relu_in_loss=flag), CPU,
                             torch.Generator().manual_seed(5), progress=False)[0]
            for flag in (True, False)}
    assert not torch.equal(runs[True].A, runs[False].A)
    pop = ndcg(Popularity(split.train).scores, split.test, CPU)
    assert ndcg(runs[False], split.test, CPU) > pop + 0.1


def _top20(scores: torch.Tensor, x: torch.Tensor) -> list[set[int]]:
    return [set(r.tolist()) for r in top_n(scores, 20, exclude=x > 0)]


def test_elsa_taught_by_ease_ranks_like_ease(split: Split) -> None:
    """teacher="ease": ELSA learns the EASE fit's ranking function; for users it never saw
    its scores follow EASE's more closely, and its top-20 lists overlap EASE's more, than
    those of the ELSA trained on the histories; it stays far above popularity."""
    teacher = select_ease(split.train, split.val, (10.0, 50.0), CPU)
    cfg = dataclasses.replace(ELSA_CFG, max_epochs=30)
    plain, _ = train_elsa(split.train, split.val, cfg, CPU, torch.Generator().manual_seed(5),
                          progress=False)
    taught, _ = train_elsa(split.train, split.val, dataclasses.replace(cfg, teacher="ease"),
                           CPU, torch.Generator().manual_seed(5), progress=False,
                           teacher=teacher)
    x = torch.from_numpy(split.test.input.toarray())
    ease_top = _top20(teacher.scores(x), x)

    def overlap(model: ELSA) -> float:
        with torch.no_grad():
            return float(np.mean([len(a & b) / 20 for a, b in
                                  zip(_top20(model(x), x), ease_top, strict=True)]))

    def correlation(model: ELSA) -> float:
        """Mean per-user Pearson correlation with EASE's scores of the items not held."""
        with torch.no_grad():
            s, t = model.logits(x), teacher.scores(x)
        return float(np.mean([np.corrcoef(s[u][x[u] == 0], t[u][x[u] == 0])[0, 1]
                              for u in range(len(x))]))

    # measured (seeded): correlation .92 vs .84, top-20 overlap .80 vs .75
    assert correlation(taught) > 0.9 and correlation(taught) > correlation(plain) + 0.05
    assert overlap(taught) > overlap(plain)
    pop = ndcg(Popularity(split.train).scores, split.test, CPU)
    assert ndcg(taught, split.test, CPU) > pop + 0.1


def test_elsa_teacher_is_checked(split: Split) -> None:
    teacher = EASE(split.train, 10.0)
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="pass the EASE teacher"):
        train_elsa(split.train, split.val, dataclasses.replace(ELSA_CFG, teacher="ease"), CPU,
                   gen, progress=False)
    with pytest.raises(ValueError, match="teacher is 'none'"):
        train_elsa(split.train, split.val, ELSA_CFG, CPU, gen, progress=False,
                   teacher=teacher)
    with pytest.raises(ValueError, match="scores 5 items"):
        train_elsa(split.train, split.val, dataclasses.replace(ELSA_CFG, teacher="ease"), CPU,
                   gen, progress=False, teacher=EASE(split.train[:, :5], 10.0))


def test_elsa_teacher_refuses_bad_settings_before_fitting(split: Split) -> None:
    odd = TrainConfig(elsa=dataclasses.replace(ELSA_CFG, teacher="EASE"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be 'none' or 'ease', got 'EASE'"):
        elsa_teacher(split.train, split.val, odd, CPU)
    wide = sp.csr_matrix((split.train.shape[0], 50_001), dtype=np.float32)
    cfg = TrainConfig(elsa=dataclasses.replace(ELSA_CFG, teacher="ease"))
    with pytest.raises(ValueError, match="50,001 items is over 50,000"):
        elsa_teacher(wide, split.val, cfg, CPU)              # before any 50k x 50k matrix


def test_elsa_taught_with_input_dropout_trains_on_the_device(
        split: Split, torch_device: torch.device) -> None:
    """With input dropout the teacher scores each batch's dropped-out input on the device."""
    teacher = EASE(split.train, 10.0)
    cfg = dataclasses.replace(ELSA_CFG, teacher="ease", input_dropout=0.2, max_epochs=5)
    elsa, history = train_elsa(split.train, split.val, cfg, torch_device,
                               torch.Generator().manual_seed(2), progress=False,
                               teacher=teacher)
    assert elsa.A.device.type == torch_device.type and len(history) >= 1
    pop = ndcg(Popularity(split.train).scores, split.test, torch_device)
    assert ndcg(elsa, split.test, torch_device) > pop + 0.1


def test_elsa_teacher_follows_the_config(split: Split) -> None:
    """elsa_teacher fits EASE only when the config asks for it, ridge from ease_l2."""
    none = TrainConfig(elsa=ELSA_CFG, ease_l2=(10.0,))
    assert elsa_teacher(split.train, split.val, none, CPU) is None
    ease_cfg = dataclasses.replace(none, elsa=dataclasses.replace(ELSA_CFG, teacher="ease"))
    teacher = elsa_teacher(split.train, split.val, ease_cfg, CPU)
    assert teacher is not None and teacher.l2 == 10.0
    # a fit the caller already has is the teacher itself, not a second fit
    assert elsa_teacher(split.train, split.val, ease_cfg, CPU, ease=teacher) is teacher
    assert elsa_teacher(split.train, split.val, none, CPU, ease=teacher) is None


def test_sae_training_vectors_count(split: Split,
                                    trained_elsa: tuple[ELSA, list[dict[str, float]]],
                                    torch_device: torch.device) -> None:
    elsa = trained_elsa[0]
    cfg = SAEConfig(subsamples_per_user=3, item_onehots=True)
    v = sae_training_vectors(elsa, split.train, cfg, torch_device,
                             torch.Generator().manual_seed(0))
    n_train, n_items = split.train.shape
    assert v.shape == (n_train + 3 * n_train + n_items, elsa.d)
    # the one-hot embeddings are the rows of A (method.md §4 Knobs augmentation)
    torch.testing.assert_close(v[-n_items:], elsa.A.detach())


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True)


@pytest.mark.parametrize("h", [48, 400])          # fewer latents than items, and more
def test_sae_decoder_starts_at_distinct_items(
        h: int, split: Split, trained_elsa: tuple[ELSA, list[dict[str, float]]],
        torch_device: torch.device, monkeypatch: pytest.MonkeyPatch) -> None:
    """init_dec 'items': as train_sae starts it (no epoch run), each decoder row is a
    different item's one-hot embedding, standardised, less the b_dec it starts with;
    past the catalogue the rows stay random."""
    elsa = trained_elsa[0]
    cfg = dataclasses.replace(SAE_CFG, h=h, item_onehots=True, init_b_dec=True,
                              init_dec="items")
    monkeypatch.setattr(models.train, "_fit", lambda *args, **kwargs: [])
    sae, _ = train_sae(elsa, split.train, split.val, cfg, torch_device,
                       torch.Generator().manual_seed(0), progress=False)
    source = SAEVectorSource(elsa, split.train, cfg, torch_device)
    assert source.onehots is not None
    b_dec = standardize(source.draw(torch.Generator().manual_seed(0))).u_std.mean(dim=0)
    torch.testing.assert_close(sae.b_dec.detach(), b_dec)          # b_dec, then the rows
    items = _unit(standardize(source.onehots).u_std - b_dec)
    best = (sae.W_dec.detach() @ items.T).max(dim=1)
    seeded = best.values > 1 - 1e-5
    n_items = split.train.shape[1]
    assert int(seeded.sum()) == min(h, n_items)
    assert len(set(best.indices[seeded].tolist())) == min(h, n_items)    # distinct items
    torch.testing.assert_close(sae.W_enc, sae.W_dec.T)
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(h, device=torch_device))


def test_sae_decoder_starts_at_training_vectors(
        split: Split, trained_elsa: tuple[ELSA, list[dict[str, float]]],
        torch_device: torch.device) -> None:
    """init_dec 'vectors': each decoder row starts at a different training vector (the
    draw replayed: the pool holds equal vectors, so rows are matched by index)."""
    elsa = trained_elsa[0]
    cfg = SAEConfig(h=48, k=4, subsamples_per_user=2, init_b_dec=True, init_dec="vectors")
    gen = torch.Generator().manual_seed(0)
    source = SAEVectorSource(elsa, split.train, cfg, torch_device)
    vectors = source.draw(gen)
    sae = make_sae(elsa.d, cfg, gen).to(torch_device)
    sae.init_decoder_bias_(vectors)
    replay = torch.Generator().set_state(gen.get_state())
    _init_directions(sae, cfg, source, vectors, gen)
    picked = torch.randperm(len(vectors), generator=replay)[:48]
    rows = torch.randperm(48, generator=replay)
    torch.testing.assert_close(
        sae.W_dec.detach()[rows.to(torch_device)],
        _unit(standardize(vectors[picked.to(torch_device)]).u_std - sae.b_dec.detach()))
    torch.testing.assert_close(sae.W_enc, sae.W_dec.T)


def test_sae_decoder_start_is_checked() -> None:
    with pytest.raises(ValueError, match="init_dec must be one of 'random', 'items', "
                                         "'vectors', got 'kmeans'"):
        SAEConfig(init_dec="kmeans")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs item_onehots=True"):
        SAEConfig(init_dec="items")
    with pytest.raises(ValueError, match="needs item_onehots=True"):
        TrainConfig.from_dict({"sae": {"init_dec": "items"}})
    assert TrainConfig.from_dict({"sae": {}}).sae.init_dec == "random"   # older bundles


def test_sae_trained_from_items_differs_and_is_deterministic(
        split: Split, trained_elsa: tuple[ELSA, list[dict[str, float]]]) -> None:
    elsa = copy.deepcopy(trained_elsa[0]).cpu()           # bit for bit: the CPU
    cfg = dataclasses.replace(SAE_CFG, item_onehots=True, init_b_dec=True, max_epochs=2)
    runs = [train_sae(elsa, split.train, split.val, c, CPU,
                      torch.Generator().manual_seed(7), progress=False)[0]
            for c in (cfg, dataclasses.replace(cfg, init_dec="items"),
                      dataclasses.replace(cfg, init_dec="items"))]
    assert not torch.equal(runs[0].W_dec, runs[1].W_dec)
    assert torch.equal(runs[1].W_dec, runs[2].W_dec)


def test_elsa_embeddings_by_sparse_chunks_equal_the_dense_product(
        split: Split, trained_elsa: tuple[ELSA, list[dict[str, float]]]) -> None:
    elsa = copy.deepcopy(trained_elsa[0]).cpu()               # the fixture stays put
    got = embed_rows(elsa, split.train, CPU, batch_size=7)    # several batches, a short last
    with torch.no_grad():
        want = torch.from_numpy(split.train.toarray()) @ elsa.A
    torch.testing.assert_close(got, want)
    assert embed_rows(elsa, split.train[:0], CPU).shape == (0, elsa.d)


def test_minibatches_cover_every_index_once() -> None:
    batches = list(minibatches(23, 5, torch.Generator().manual_seed(0)))
    assert [len(b) for b in batches] == [5, 5, 5, 5, 3]
    assert sorted(np.concatenate(batches).tolist()) == list(range(23))


def test_early_stopping_unit() -> None:
    module = torch.nn.Linear(2, 1)
    stop = EarlyStopping(patience=2)
    with torch.no_grad():
        module.weight.fill_(1.0)
    assert not stop.update(0.5, 0, module)
    with torch.no_grad():
        module.weight.fill_(2.0)
    assert not stop.update(0.4, 1, module)
    assert stop.update(0.3, 2, module)                          # second bad epoch
    stop.restore(module)
    assert torch.equal(module.weight, torch.ones(1, 2))
    assert (stop.best, stop.best_epoch) == (0.5, 0)


def test_early_stopping_counts_only_gains_above_min_delta() -> None:
    """Gains of at most min_delta are not better epochs: their state is not kept and they
    use up patience."""
    module = torch.nn.Linear(2, 1)
    stop = EarlyStopping(patience=2, min_delta=0.01)
    with torch.no_grad():
        module.weight.fill_(1.0)
    assert not stop.update(0.90, 0, module)
    with torch.no_grad():
        module.weight.fill_(2.0)
    assert not stop.update(0.905, 1, module)                    # +0.005: not better
    assert stop.update(0.909, 2, module)                        # second epoch without
    stop.restore(module)
    assert torch.equal(module.weight, torch.ones(1, 2))
    assert (stop.best, stop.best_epoch) == (0.90, 0)
    again = EarlyStopping(patience=2, min_delta=0.01)
    assert not again.update(0.90, 0, module)
    assert not again.update(0.95, 1, module)                    # +0.05: better
    assert again.best_epoch == 1


@pytest.mark.parametrize(("patience", "min_delta", "field"),
                         [(0, 0.0, "patience"), (3, -0.001, "min_delta"),
                          (3, float("nan"), "min_delta")])
def test_early_stopping_rejects_bad_settings(patience: int, min_delta: float,
                                            field: str) -> None:
    with pytest.raises(ValueError, match=field):
        EarlyStopping(patience, min_delta)


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="tpu"):
        resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_resolve_device_cuda_without_gpu_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="CUDA"):
        resolve_device("cuda")


@pytest.mark.gpu
def test_elsa_trains_on_cuda(split: Split) -> None:
    cuda = torch.device("cuda")
    gen = torch.Generator().manual_seed(1234)
    elsa, _ = train_elsa(split.train, split.val, ELSA_CFG, cuda, gen, progress=False)
    assert elsa.A.device.type == "cuda"
    pop = ndcg(Popularity(split.train).scores, split.test, cuda)
    assert ndcg(elsa, split.test, cuda) > pop + 0.15


def test_basic_sae_refuses_refinement() -> None:
    with pytest.raises(ValueError, match="TopK SAE only"):
        make_sae(8, SAEConfig(kind="basic", h=16, refine_steps=5), torch.Generator())
    with pytest.raises(ValueError, match="TopK SAE only"):
        make_sae(8, SAEConfig(kind="basic", h=16, refine_solver="accelerated"),
                 torch.Generator())


@pytest.mark.parametrize("solver", ["projected-gradient", "accelerated"])
def test_make_sae_passes_the_refit_settings_on(solver: str) -> None:
    sae = make_sae(8, SAEConfig(h=16, k=4, refine_steps=5, refine_candidates=8,
                                refine_solver=solver), torch.Generator())  # type: ignore[arg-type]
    assert isinstance(sae, TopKSAE)
    assert (sae.refine_steps, sae.refine_candidates, sae.refine_solver) == (5, 8, solver)


def test_score_metric_is_the_gram_of_the_items_rankings_reach(
        split: Split, trained_elsa: tuple[ELSA, list[dict[str, float]]]) -> None:
    """M = A^T diag(w) A / mean diagonal, w_i = 0.1 + the number of training users with
    item i in ELSA's own top 20: symmetric, positive semi-definite, and an embedding
    error costs the weighted squared errors of the item scores it causes."""
    elsa = trained_elsa[0]
    metric = score_metric(elsa, split.train, CPU)
    tops = top_matrix(Recommender(elsa), split.train, CPU)
    w = torch.from_numpy(np.asarray(tops.sum(axis=0), dtype=np.float32).ravel())
    assert w.sum() == 20 * split.train.shape[0]
    a = elsa.A.detach()
    want = (a.T * (w + 0.1)) @ a
    torch.testing.assert_close(metric, want / want.diagonal().mean(), rtol=1e-4, atol=1e-5)
    assert torch.equal(metric, metric.T) and metric.shape == (elsa.d, elsa.d)
    assert torch.linalg.eigvalsh(metric.double()).min() > -1e-6
    # an embedding error r costs the weighted squared errors of the item scores r A^T
    r = torch.randn(elsa.d, generator=torch.Generator().manual_seed(0))
    scores = a @ r
    torch.testing.assert_close(r @ metric @ r, ((w + 0.1) * scores**2).sum()
                               / want.diagonal().mean(), rtol=1e-4, atol=1e-5)


def test_sae_with_the_top_items_metric(
        split: Split, trained_elsa: tuple[ELSA, list[dict[str, float]]]) -> None:
    """train_sae and untrained_sae give a TopK SAE the ELSA's score metric; a MultVAE,
    whose decoder is not linear, is refused."""
    elsa = trained_elsa[0]
    cfg = dataclasses.replace(SAE_CFG, refine_metric="top-items", max_epochs=1)
    sae, history = train_sae(elsa, split.train, split.val, cfg, CPU,
                             torch.Generator().manual_seed(3), progress=False)
    control = untrained_sae(elsa, split.train, cfg, CPU, torch.Generator().manual_seed(4))
    want = score_metric(elsa, split.train, CPU)
    for model in (sae, control):
        assert isinstance(model, TopKSAE) and model.refine_metric is not None
        torch.testing.assert_close(model.refine_metric, want)
    assert not control.training
    # the metric is set once training has ended: the same seed trains and stops the same
    plain, plain_history = train_sae(elsa, split.train, split.val,
                                     dataclasses.replace(cfg, refine_metric="none"), CPU,
                                     torch.Generator().manual_seed(3), progress=False)
    assert torch.equal(plain.W_dec, sae.W_dec)

    def without_served(h: list[dict[str, float]]) -> list[dict[str, float]]:
        return [{k: v for k, v in e.items() if k != "val_fidelity_served@20"} for e in h]

    assert without_served(plain_history) == without_served(history)
    # without a metric, as served is the plain refit; with one, it is measured beside it
    assert all(e["val_fidelity_served@20"] == e["val_fidelity@20"] for e in plain_history)
    assert all(e["val_fidelity_served@20"] != e["val_fidelity@20"] for e in history)
    with pytest.raises(ValueError, match="MultVAE"):
        train_sae(MultVAE(split.train.shape[1], 8), split.train, split.val, cfg, CPU,
                  torch.Generator().manual_seed(3), progress=False)


def test_sae_without_a_metric_keeps_the_early_stopping_epoch(
        split: Split, trained_elsa: tuple[ELSA, list[dict[str, float]]]) -> None:
    """With no refit metric, as served is the plain refit: the epoch kept is early
    stopping's, which counts a gain only above min_delta (not the plain argmax)."""
    elsa = trained_elsa[0]
    cfg = dataclasses.replace(SAE_CFG, max_epochs=5, patience=5, min_delta=0.5)
    sae, history = train_sae(elsa, split.train, split.val, cfg, CPU,
                             torch.Generator().manual_seed(3), progress=False)
    curve = [h["val_fidelity@20"] for h in history]
    assert max(curve) > curve[0]            # a later epoch was better, but not by 0.5
    reference = top_matrix(Recommender(elsa), split.val.input, CPU)
    kept = fidelity(rank(Recommender(elsa, sae.eval()), split.val.input, CPU), reference)
    assert kept == pytest.approx(curve[0])


def test_sae_restarts_keep_the_most_faithful_as_served(
        split: Split, trained_elsa: tuple[ELSA, list[dict[str, float]]]) -> None:
    """restarts = 3: the first SAE is the one restarts = 1 trains from the same generator;
    the one returned is, of the three, the one whose nested model as served (eval mode,
    metric set) best keeps ELSA's top 20 for the validation users."""
    elsa = trained_elsa[0]
    cfg = dataclasses.replace(SAE_CFG, refine_metric="top-items", max_epochs=6)
    reference = top_matrix(Recommender(elsa), split.val.input, CPU)

    def served(sae: SparseAutoencoder) -> float:
        return fidelity(rank(Recommender(elsa, sae.eval()), split.val.input, CPU), reference)

    one, one_history = train_sae(elsa, split.train, split.val, cfg, CPU,
                                 torch.Generator().manual_seed(5), progress=False)
    gen = torch.Generator().manual_seed(5)
    best, history = train_sae(elsa, split.train, split.val,
                              dataclasses.replace(cfg, restarts=3), CPU, gen, progress=False)
    # the restarts' seeds, as train_sae draws them after the first SAE
    again = torch.Generator().manual_seed(5)
    train_sae(elsa, split.train, split.val, cfg, CPU, again, progress=False)
    others = []
    for _ in range(2):
        seed = int(torch.randint(2**62, (1,), generator=again))
        others.append(train_sae(elsa, split.train, split.val, cfg, CPU,
                                torch.Generator().manual_seed(seed), progress=False))
    candidates = [(one, one_history), *others]
    scores = [served(s) for s, _ in candidates]
    assert len(set(scores)) > 1                         # the restarts differ
    chosen = int(np.argmax(scores))
    assert torch.equal(best.W_dec, candidates[chosen][0].W_dec)
    assert history == candidates[chosen][1]
    assert isinstance(best, TopKSAE) and best.refine_metric is not None
    assert served(best) == max(scores)
    # each SAE is its best epoch as served (early stopping watched the plain refit)
    for sae, hist in candidates:
        assert served(sae) == pytest.approx(max(h["val_fidelity_served@20"] for h in hist))
    assert any(int(np.argmax([h["val_fidelity_served@20"] for h in hist]))
               != int(np.argmax([h["val_fidelity@20"] for h in hist]))
               for _, hist in candidates)          # the two numbers picked differently
    with pytest.raises(ValueError, match="restarts must be at least 1"):
        train_sae(elsa, split.train, split.val, dataclasses.replace(cfg, restarts=0), CPU,
                  torch.Generator().manual_seed(5), progress=False)


@pytest.mark.parametrize(("cfg", "match"), [
    (SAEConfig(h=16, k=4, refine_metric="top-items"), "refine_steps > 0"),
    (SAEConfig(kind="basic", h=16, refine_metric="top-items"), "TopK SAE only"),
    (SAEConfig(h=16, k=4, refine_steps=5, refine_metric="mahalanobis"),  # type: ignore[arg-type]
     "'none' or 'top-items'"),
])
def test_refine_metric_settings_are_checked(cfg: SAEConfig, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_sae(8, cfg, torch.Generator())
