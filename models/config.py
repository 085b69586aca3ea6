"""Typed training configuration, saved beside the weights so a bundle explains itself.

Defaults are chosen per dataset size by `defaults_for(n_users)`: small data was measured
on ml-latest-small (reports/quality.md says how), medium on goodbooks-10k
(reports/goodbooks-10k/defaults.md).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

RefineSolver = Literal["projected-gradient", "accelerated"]
"""How a TopK SAE's refit solves its least squares (SAEConfig.refine_solver)."""
REFINE_SOLVERS: tuple[str, ...] = get_args(RefineSolver)
DecoderStart = Literal["random", "items", "vectors"]
DECODER_STARTS: tuple[str, ...] = get_args(DecoderStart)


@dataclass(frozen=True)
class ELSAConfig:
    d: int = 1024
    """Embedding width (columns of A)."""
    lr: float = 3e-4
    """Adam learning rate; betas are the paper's (0.9, 0.99) (method.md §2)."""
    batch_size: int = 1024
    """Users per step."""
    max_epochs: int = 25
    """Upper bound on epochs (the paper: 25)."""
    patience: int = 10
    """Epochs without a better validation nDCG@20 before stopping; best state restored."""
    input_dropout: float = 0.0
    """Knobs: share of a history hidden from the encoder during training (denoising);
    the loss still asks for the whole history (with a teacher: for the teacher's scores of
    the input ELSA saw). 0 is the paper's plain ELSA."""
    teacher: Literal["none", "ease"] = "none"
    """Knobs (small data): "ease" trains A to reproduce the scores of an EASE fitted on the
    same training users (ridge from TrainConfig.ease_l2, chosen on the validation users)
    instead of the history itself; "none" is the paper's ELSA. Needs an items x items
    matrix, so it is for catalogues up to 50,000 items."""
    relu_in_loss: bool = True
    """True: the loss compares ReLU(x A A^T - x) with x (method.md §2). False: it compares
    the pre-ReLU scores, so negative scores of items the user lacks are pulled up to zero
    as well; rankings at inference are the same function of A (the small-data default
    before the teacher; reports/elsa_variants.md). With a teacher the loss always
    compares the scores before the ReLU, and this is ignored."""


@dataclass(frozen=True)
class SAEConfig:
    kind: Literal["topk", "basic"] = "topk"
    """TopK (k largest pre-activations) or Basic (ReLU + L1) (method.md §4)."""
    h: int = 8192
    """Number of latents (the knobs)."""
    k: int = 16
    """Active latents per vector for TopK."""
    l1: float = 3e-4
    """lambda of the L1 term (also applied to TopK, as in the paper)."""
    loss: Literal["cosine", "l2"] = "cosine"
    """Reconstruction loss: cosine suits ELSA, L2 suits MultVAE (§4)."""
    lr: float = 3e-4
    """Adam learning rate."""
    batch_size: int = 1024
    """Vectors per step."""
    max_epochs: int = 25
    """Upper bound on epochs over the (augmented) training vectors."""
    patience: int = 5
    """Epochs without a better validation fidelity of the nested model (models.train
    `fidelity`) before stopping; the best epoch's state is restored."""
    min_delta: float = 0.0
    """An epoch's validation fidelity is better only when it beats the best so far by
    more than this (0: any gain counts)."""
    subsamples_per_user: int = 0
    """Knobs augmentation: embeddings of this many random sub-samples of each training
    history are added to the training vectors (0: the users' full histories only)."""
    keep_min: float = 0.2
    """Each sub-sample keeps a share of the history drawn uniformly from [keep_min, 1)."""
    item_onehots: bool = False
    """Knobs augmentation: add every item's one-hot embedding (its row of A for ELSA)."""
    mix: float = 0.0
    """Knobs augmentation: chance that a sub-sample is joined with a sub-sample of another
    training user (new, plausible histories instead of near-copies of few users)."""
    resample: bool = False
    """Draw fresh sub-samples every epoch (a stream, not a fixed set)."""
    init_b_dec: bool = False
    """Start b_dec at the mean standardised training vector instead of zero."""
    init_dec: DecoderStart = "random"
    """Knobs: how the decoder rows start (the encoder starts as their transpose).
    "random": Kaiming-uniform directions. "items": each row the standardised one-hot
    embedding of a distinct random item, minus b_dec (needs item_onehots; random rows
    past the catalogue). "vectors": each row a random training vector, standardised,
    minus b_dec."""
    refine_steps: int = 0
    """Knobs (TopK only): at inference, refit the values of the k chosen latents by
    non-negative least squares with this many steps of `refine_solver` (0: the paper's
    plain encoder). Training is unchanged; early stopping judges the refit model."""
    refine_candidates: int = 0
    """Knobs (TopK, with refine_steps): the encoder proposes this many latents (its largest
    pre-activations), NNLS fits them, the k largest fits are kept and refitted.
    0: refit the encoder's own top k."""
    refine_metric: Literal["none", "top-items"] = "none"
    """Knobs (TopK over ELSA, with refine_steps): what the refit's least squares measure.
    "none": the error of the standardised embedding. "top-items": the error of the item
    scores it decodes to, each item weighted by how many training users have it in the
    backbone's own top 20 (models.train.score_metric): the scores a ranking reads. Set
    once training has ended; early stopping judges the plain refit, and the epoch kept is
    the one whose fidelity with the metric, as served, was best."""
    refine_solver: RefineSolver = "projected-gradient"
    """Knobs (with refine_steps): how the refit's non-negative least squares are solved
    (models.sae.TopKSAE.refit): plain projected-gradient steps, or the same steps
    accelerated (FISTA), which come far closer to the optimum in the same number of
    steps. The small-data default stays plain: the exact optimum kept
    no more of ELSA's ranking beyond noise and cost reconstruction cosine
    (reports/refit_solver.md)."""
    restarts: int = 1
    """Knobs: train this many SAEs from different seeds and keep the one whose nested
    model, as served (eval mode, refit metric set), best keeps the backbone's own top 20
    for the validation users (models.train `fidelity`). 1: one SAE, as the paper."""

    def __post_init__(self) -> None:
        if self.init_dec not in DECODER_STARTS:
            raise ValueError(f"init_dec must be one of {', '.join(map(repr, DECODER_STARTS))}"
                             f", got {self.init_dec!r}")
        if self.init_dec == "items" and not self.item_onehots:
            raise ValueError("init_dec 'items' starts the decoder at the item one-hots' "
                             "embeddings: it needs item_onehots=True")


@dataclass(frozen=True)
class MultVAEConfig:
    d: int = 256
    """Latent width; the hidden layer has 3 d units (method.md §3)."""
    dropout: float = 0.5
    """Input dropout."""
    lr: float = 1e-3
    """Adam learning rate."""
    batch_size: int = 500
    """Users per step."""
    max_epochs: int = 25
    """Upper bound on epochs."""
    patience: int = 10
    """Early-stopping patience on validation nDCG@20."""
    beta_step: float = 1e-6
    """KL weight grows by this much per step..."""
    beta_cap: float = 1.0
    """...up to this cap."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything `knobs train` decides, one object."""

    elsa: ELSAConfig = field(default_factory=ELSAConfig)
    sae: SAEConfig = field(default_factory=SAEConfig)
    multvae: MultVAEConfig = field(default_factory=MultVAEConfig)
    ease_l2: tuple[float, ...] = (50.0, 100.0, 200.0, 500.0, 1000.0)
    """EASE ridge strengths tried; the best on validation is used."""
    seed: int = 0
    """Seeds the split, initialisation, batches and augmentation."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainConfig:
        """Inverse of `to_dict`; unknown keys are an error naming them."""
        def build(kind: type[Any], values: dict[str, Any], where: str) -> Any:
            names = {f.name for f in dataclasses.fields(kind)}
            unknown = set(values) - names
            if unknown:
                raise ValueError(f"unknown config key(s) in {where}: {sorted(unknown)}")
            return kind(**values)

        raw = dict(raw)
        parts = {
            "elsa": build(ELSAConfig, raw.pop("elsa", {}), "elsa"),
            "sae": build(SAEConfig, raw.pop("sae", {}), "sae"),
            "multvae": build(MultVAEConfig, raw.pop("multvae", {}), "multvae"),
        }
        if "ease_l2" in raw:
            raw["ease_l2"] = tuple(raw["ease_l2"])
        return build(cls, {**raw, **parts}, "config")


MEDIUM_USERS = 20_000
"""From this many users on, the SAE has enough users' vectors without sub-sampled
histories (goodbooks-10k: 28,971 users; reports/goodbooks-10k/defaults.md)."""
LARGE_USERS = 100_000
"""From this many users on, the paper's settings (ML-25M: 160,776 users)."""


def defaults_for(n_users: int, seed: int = 0) -> TrainConfig:
    """The paper's settings for large data (>= LARGE_USERS); for medium data (goodbooks-10k,
    29k users) the paper's ELSA width with shorter, faster training and a smaller SAE
    that still adds the item one-hots and refits the code; for small data (< 20k users)
    smaller models, ELSA taught by EASE, and the SAE augmentation that makes up for few
    users. Each tier is measured: reports/quality.md (small),
    reports/goodbooks-10k/defaults.md (medium)."""
    if n_users >= LARGE_USERS:
        return TrainConfig(seed=seed)
    if n_users >= MEDIUM_USERS:
        return TrainConfig(
            elsa=ELSAConfig(d=1024, lr=1e-3, batch_size=256, max_epochs=12, patience=3),
            sae=SAEConfig(h=4096, k=32, lr=1e-3, batch_size=256, max_epochs=8, patience=3,
                          min_delta=1e-3, item_onehots=True, init_b_dec=True,
                          init_dec="items", refine_steps=50, refine_candidates=64,
                          refine_metric="top-items"),
            multvae=MultVAEConfig(max_epochs=15, patience=3),
            ease_l2=(20.0, 50.0, 100.0, 200.0),
            seed=seed,
        )
    return TrainConfig(
        elsa=ELSAConfig(d=512, lr=1e-3, batch_size=64, max_epochs=60, patience=10,
                        teacher="ease"),
        sae=SAEConfig(h=4096, k=32, lr=1e-3, batch_size=256, max_epochs=20, patience=4,
                      min_delta=1e-3,
                      subsamples_per_user=32, mix=0.5, resample=True, item_onehots=True,
                      init_b_dec=True, init_dec="items", refine_steps=50,
                      refine_candidates=64, refine_metric="top-items", restarts=2),
        multvae=MultVAEConfig(d=256, batch_size=128, max_epochs=100, patience=15,
                              beta_step=1e-4, beta_cap=0.2),
        seed=seed,
    )
