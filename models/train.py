"""Trainers, kept apart from the models: the device and a torch.Generator are passed in,
nothing is seeded globally, and every epoch yields a dict[str, float] for the history.

Early stopping watches validation nDCG@20 and restores the best state (method.md §2).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from models.baselines import EASE
from models.config import ELSAConfig, MultVAEConfig, SAEConfig, TrainConfig
from models.data.interactions import HeldOut
from models.elsa import ELSA
from models.losses import (
    cosine_loss,
    gaussian_kl,
    l1_sparsity,
    l2_loss,
    multinomial_nll,
    normalized_mse,
)
from models.metrics import recall_ndcg_at_k, top_n
from models.multvae import MultVAE
from models.recommender import Recommender
from models.sae import BasicSAE, SparseAutoencoder, TopKSAE

log = logging.getLogger(__name__)

History = list[dict[str, float]]


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> CUDA when present, else CPU; 'cuda' without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ValueError(f"device must be auto, cpu or cuda, got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} asked for, but torch sees no CUDA GPU")
    return torch.device(name)


def child_generator(parent: torch.Generator, device: torch.device) -> torch.Generator:
    """A generator on `device` seeded from `parent`: device-side randomness stays
    reproducible from the one CPU generator the caller passed in."""
    seed = int(torch.randint(0, 2**62, (1,), generator=parent).item())
    return torch.Generator(device=device).manual_seed(seed)


def dense_rows(matrix: sp.csr_matrix, rows: np.ndarray, device: torch.device) -> torch.Tensor:
    """matrix[rows] as a dense float32 tensor on `device`: [len(rows), items]."""
    return torch.from_numpy(matrix[rows].toarray().astype(np.float32, copy=False)).to(device)


def sparse_rows(matrix: sp.csr_matrix, rows: np.ndarray, device: torch.device
                ) -> torch.Tensor:
    """matrix[rows] as a sparse COO float32 tensor on `device`: [len(rows), items]."""
    coo = matrix[rows].tocoo()
    return torch.sparse_coo_tensor(
        torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64)),
        torch.from_numpy(coo.data.astype(np.float32, copy=False)), coo.shape,
        device=device, check_invariants=False)


def minibatches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[np.ndarray]:
    """Shuffled index batches covering 0..n-1 once."""
    perm = torch.randperm(n, generator=generator).numpy()
    for start in range(0, n, batch_size):
        yield perm[start : start + batch_size]


@torch.no_grad()
def rank(model: Callable[[torch.Tensor], torch.Tensor], inputs: sp.csr_matrix,
         device: torch.device, n: int = 20, batch_size: int = 1024) -> np.ndarray:
    """Top-n item indices per row of `inputs`, inputs masked: [users, n]."""
    out = []
    for start in range(0, inputs.shape[0], batch_size):
        x = dense_rows(inputs, np.arange(start, min(start + batch_size, inputs.shape[0])),
                       device)
        out.append(top_n(model(x), n, exclude=x > 0).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, n), dtype=np.int64)


def evaluate_heldout(model: Callable[[torch.Tensor], torch.Tensor], heldout: HeldOut,
                     device: torch.device, k: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Per-user Recall@k and nDCG@k of `model` on fold-in users."""
    return recall_ndcg_at_k(rank(model, heldout.input, device, k), heldout.target, k)


@dataclass
class EarlyStopping:
    """Keeps a copy of the best state; `update` returns True when patience ran out. An
    epoch is better only when its metric beats the best by more than `min_delta`."""

    patience: int
    min_delta: float = 0.0
    best: float = float("-inf")
    best_epoch: int = -1
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)
    _bad: int = 0

    def __post_init__(self) -> None:
        if self.patience < 1:
            raise ValueError(f"early-stopping patience must be >= 1, got {self.patience}")
        if not 0.0 <= self.min_delta < float("inf"):
            raise ValueError(f"early-stopping min_delta must be a number >= 0, got "
                             f"{self.min_delta}")

    def update(self, metric: float, epoch: int, module: torch.nn.Module) -> bool:
        if metric > self.best + self.min_delta:
            self.best, self.best_epoch, self._bad = metric, epoch, 0
            self.best_state = copy.deepcopy(module.state_dict())
            return False
        self._bad += 1
        return self._bad >= self.patience

    def restore(self, module: torch.nn.Module) -> None:
        if self.best_state:
            module.load_state_dict(self.best_state)


def sphere_step(module: ELSA | SparseAutoencoder, opt: torch.optim.Optimizer,
                loss: torch.Tensor) -> None:
    """One optimiser step for weights kept on the unit sphere row by row (ELSA's A, the
    SAE's decoder): backward, tangent projection of the gradient, step, renormalise."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    module.project_grad_()
    opt.step()
    module.normalize_()


def _val_ndcg(model: torch.nn.Module, val: HeldOut, device: torch.device) -> float:
    model.eval()
    _, ndcg = evaluate_heldout(model, val, device)
    return float(np.nanmean(ndcg))


def top_matrix(model: Callable[[torch.Tensor], torch.Tensor], inputs: sp.csr_matrix,
               device: torch.device, k: int = 20) -> sp.csr_matrix:
    """[users, items] binary: each row's top-k items by `model` (inputs masked)."""
    ranked = rank(model, inputs, device, k)
    rows = np.repeat(np.arange(ranked.shape[0]), ranked.shape[1])
    return sp.csr_matrix((np.ones(ranked.size, dtype=np.float32), (rows, ranked.ravel())),
                         shape=inputs.shape)


def fidelity(ranked: np.ndarray, reference: sp.csr_matrix) -> float:
    """Knobs: how well a ranking keeps a reference one: mean nDCG@k of `ranked` ([users, k],
    a model's top k by `rank`) with the reference's top k (`top_matrix`, same users) as
    the relevant items; 1 when they agree."""
    _, ndcg = recall_ndcg_at_k(ranked, reference, ranked.shape[1])
    return float(np.nanmean(ndcg))


def _fit(name: str, module: torch.nn.Module, scorer: torch.nn.Module,
         validate: Callable[[], dict[str, float]], select: str, max_epochs: int,
         patience: int, run_epoch: Callable[[int], float], progress: bool,
         min_delta: float = 0.0, keep: str | None = None) -> History:
    """The shared epoch loop: train one epoch, validate (`validate` in eval mode; its
    `select` entry decides when to stop, a gain of more than `min_delta` counting),
    stop early, restore the best state: the epoch where `keep` peaked (`select` when
    None) among those trained."""
    stopper = EarlyStopping(patience, min_delta)
    kept = stopper if keep is None or keep == select else EarlyStopping(max_epochs + 1)
    history: History = []
    bar = tqdm(range(max_epochs), desc=f"train {name}", disable=not progress, leave=False)
    for epoch in bar:
        module.train()
        loss = run_epoch(epoch)
        scorer.eval()
        metrics = validate()
        history.append({"epoch": float(epoch), "loss": loss, **metrics})
        bar.set_postfix({"loss": f"{loss:.4f}", **{k: f"{v:.4f}" for k, v in metrics.items()}})
        log.debug("%s epoch %d: loss %.4f %s", name, epoch, loss,
                  " ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        if kept is not stopper:
            kept.update(metrics[keep or select], epoch, module)
        if stopper.update(metrics[select], epoch, module):
            break
    kept.restore(module)
    scorer.eval()
    log.info("%s: best %s %.4f at epoch %d of %d%s", name, select, stopper.best,
             stopper.best_epoch, len(history), "" if kept is stopper else
             f"; kept epoch {kept.best_epoch} ({keep} {kept.best:.4f})")
    return history


def _fit_on_ndcg(name: str, module: torch.nn.Module, scorer: torch.nn.Module, val: HeldOut,
                 device: torch.device, max_epochs: int, patience: int,
                 run_epoch: Callable[[int], float], progress: bool) -> History:
    """`_fit` stopping early on the validation users' nDCG@20 (the backbones, §2-§3)."""
    return _fit(name, module, scorer, lambda: {"val_ndcg@20": _val_ndcg(scorer, val, device)},
                "val_ndcg@20", max_epochs, patience, run_epoch, progress)


def select_ease(train: sp.csr_matrix, val: HeldOut, l2s: tuple[float, ...],
                device: torch.device) -> EASE:
    """EASE with the ridge strength that scores best on the validation users."""
    best: tuple[float, EASE] | None = None
    for l2 in l2s:
        model = EASE(train, l2)
        ndcg = float(np.nanmean(evaluate_heldout(model.scores, val, device)[1]))
        log.info("EASE lambda=%g: validation nDCG@20 %.4f", l2, ndcg)
        if best is None or ndcg > best[0]:
            best = (ndcg, model)
    if best is None:
        raise ValueError("select_ease needs at least one ridge strength")
    return best[1]


TEACHER_MAX_ITEMS = 50_000
"""The EASE teacher holds an items x items matrix: 10 GB of float32 at 50,000 items."""


def elsa_teacher(train: sp.csr_matrix, val: HeldOut, cfg: TrainConfig,
                 device: torch.device, ease: EASE | None = None) -> EASE | None:
    """The teacher `train_elsa` needs under `cfg.elsa` (None when it needs none): `ease`
    if the caller already fitted it on these users, else EASE on the same training users,
    ridge chosen on the validation users from `cfg.ease_l2`. The catalogue's size is
    checked before any items x items matrix is built."""
    _check_teacher(cfg.elsa.teacher, train.shape[1])
    if cfg.elsa.teacher == "none":
        return None
    return ease if ease is not None else select_ease(train, val, cfg.ease_l2, device)


def _check_teacher(teacher: str, n_items: int) -> None:
    if teacher not in ("none", "ease"):
        raise ValueError(f"ELSAConfig.teacher must be 'none' or 'ease', got {teacher!r}")
    if teacher == "ease" and n_items > TEACHER_MAX_ITEMS:
        raise ValueError(f"the EASE teacher needs an items x items matrix; {n_items:,} items "
                         f"is over {TEACHER_MAX_ITEMS:,}: train this dataset with teacher "
                         "'none'")


def train_elsa(train: sp.csr_matrix, val: HeldOut, cfg: ELSAConfig, device: torch.device,
               generator: torch.Generator, progress: bool = True,
               teacher: EASE | None = None) -> tuple[ELSA, History]:
    """Adam (betas 0.9, 0.99) on the normalised MSE; after each backward the gradient is
    projected onto the sphere's tangent space and rows are renormalised (§2).

    With `cfg.teacher == "ease"` (Knobs' small-data default) the target of a training user
    is not the history x but the scores x B of `teacher`, an EASE fitted on the same
    training users (see `elsa_teacher`), compared with ELSA's scores before the ReLU,
    x A A^T - x: ELSA learns EASE's ranking function within its own form (unit-norm rows,
    one low-rank A). Nothing but the training users reaches either model."""
    _check_teacher(cfg.teacher, train.shape[1])
    if cfg.teacher == "ease":
        if teacher is None:
            raise ValueError("ELSAConfig.teacher is 'ease': pass the EASE teacher "
                             "(models.train.elsa_teacher)")
        if teacher.B.shape[0] != train.shape[1]:
            raise ValueError(f"the EASE teacher scores {teacher.B.shape[0]} items, the "
                             f"training matrix has {train.shape[1]}")
    elif teacher is not None:
        raise ValueError("a teacher was passed but ELSAConfig.teacher is 'none'")
    model = ELSA(train.shape[1], cfg.d, generator).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99), fused=True)
    dev_gen = child_generator(generator, device)
    # Without input dropout every epoch sees the same inputs: the teacher's scores of the
    # training users are computed once (where they fit in 200 MB); otherwise B goes to the
    # device and scores each batch's (dropped-out) input.
    fixed: torch.Tensor | None = None
    b: torch.Tensor | None = None
    if teacher is not None:
        if cfg.input_dropout == 0 and train.shape[0] * train.shape[1] <= 5e7:
            fixed = torch.from_numpy(np.asarray(train @ teacher.B.numpy(), dtype=np.float32))
        else:
            b = teacher.B.to(device)

    def epoch(number: int) -> float:
        total, count = 0.0, 0
        for idx in minibatches(train.shape[0], cfg.batch_size, generator):
            x = dense_rows(train, idx, device)
            x_in = x
            if cfg.input_dropout > 0:
                keep = torch.rand(x.shape, generator=dev_gen, device=device) >= cfg.input_dropout
                x_in = x * keep
            if fixed is not None:
                loss = normalized_mse(model.logits(x_in), fixed[idx].to(device))
            elif b is not None:
                with torch.no_grad():   # a history holds few items: x B as sparse x dense
                    target = (torch.sparse.mm(sparse_rows(train, idx, device), b)
                              if cfg.input_dropout == 0 else x_in @ b)
                loss = normalized_mse(model.logits(x_in), target)
            else:
                # a history holds few items: encode it as sparse x dense (a third faster
                # at goodbooks-10k's size; the same sums in another order)
                logits = (model.decode(model.encode(sparse_rows(train, idx, device))) - x
                          if cfg.input_dropout == 0 else model.logits(x_in))
                out = torch.relu(logits) if cfg.relu_in_loss else logits
                loss = normalized_mse(out, x)
            sphere_step(model, opt, loss)
            total, count = total + loss.item() * len(idx), count + len(idx)
        return total / max(count, 1)

    history = _fit_on_ndcg("elsa", model, model, val, device, cfg.max_epochs, cfg.patience,
                           epoch, progress)
    return model, history


def train_elsa_for(train: sp.csr_matrix, val: HeldOut, cfg: TrainConfig,
                   device: torch.device, generator: torch.Generator,
                   progress: bool = True, ease: EASE | None = None) -> tuple[ELSA, History]:
    """`train_elsa` under `cfg.elsa`, with the teacher it asks for (`ease` when given, else
    fitted first)."""
    teacher = elsa_teacher(train, val, cfg, device, ease)
    return train_elsa(train, val, cfg.elsa, device, generator, progress, teacher=teacher)


def train_multvae(train: sp.csr_matrix, val: HeldOut, cfg: MultVAEConfig,
                  device: torch.device, generator: torch.Generator,
                  progress: bool = True) -> tuple[MultVAE, History]:
    """Multinomial NLL + beta KL with beta annealed per step up to its cap (§3)."""
    torch_seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(torch_seed)  # nn.Linear init and dropout draw from the global rng
        model = MultVAE(train.shape[1], cfg.d, cfg.dropout).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=True)
    dev_gen = child_generator(generator, device)
    state = {"beta": 0.0}

    def epoch(number: int) -> float:
        total, count = 0.0, 0
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator).item()))
            for idx in minibatches(train.shape[0], cfg.batch_size, generator):
                batch = sparse_rows(train, idx, device)    # the encoder reads it sparse,
                x = batch.to_dense()                       # the loss dense
                out = model(batch, generator=dev_gen)
                loss = multinomial_nll(out.logits, x) + state["beta"] * gaussian_kl(
                    out.mu, out.logvar)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                state["beta"] = min(cfg.beta_cap, state["beta"] + cfg.beta_step)
                total, count = total + loss.item() * len(idx), count + len(idx)
        return total / max(count, 1)

    history = _fit_on_ndcg("multvae", model, Recommender(model), val, device,
                           cfg.max_epochs, cfg.patience, epoch, progress)
    return model, history


@torch.no_grad()
def embed_rows(backbone: ELSA | MultVAE, matrix: sp.csr_matrix, device: torch.device,
               batch_size: int = 1024) -> torch.Tensor:
    """Backbone embeddings of every row of `matrix`: [rows, d] on `device`, batch_size rows
    at a time. The batches stay sparse: both backbones' first layers are products with
    the history (x A; MultVAE's normalised x times its first weight), computed on the
    stored entries only."""
    backbone.eval()
    out = [backbone.encode(sparse_rows(matrix, np.arange(s, min(s + batch_size,
                                                                matrix.shape[0])), device))
           for s in range(0, matrix.shape[0], batch_size)]
    return torch.cat(out) if out else torch.zeros(0, backbone.d, device=device)


def subsample_histories(matrix: sp.csr_matrix, per_row: int, keep_min: float,
                        rng: np.random.Generator, mix: float = 0.0) -> sp.csr_matrix:
    """`per_row` random sub-samples of every non-empty row, each keeping a share of the
    row's items drawn from U[keep_min, 1) (at least one item). With probability `mix` a
    sub-sample is joined with a sub-sample of another random row, then again with
    probability `mix`, and so on (mix / (1 - mix) partners on average), so the vectors
    are not all near one of the few training users. Returns [rows * per_row, items] CSR,
    row r a sub-sample of non-empty row r // per_row. Vectorised: no Python loop per row."""
    if not 0.0 <= mix < 1.0:
        raise ValueError(f"mix must be in [0, 1), got {mix}")
    indptr, indices = matrix.indptr, matrix.indices
    lengths = np.diff(indptr)
    nonempty = np.flatnonzero(lengths > 0)
    n_out = len(nonempty) * per_row
    # each output row draws from its own row, then from geometric(1 - mix) - 1 partners
    partners = rng.geometric(1.0 - mix, size=n_out) - 1 if mix > 0 else np.zeros(n_out, int)
    out_row = np.concatenate([np.arange(n_out), np.repeat(np.arange(n_out), partners)])
    source = np.concatenate([np.repeat(nonempty, per_row),
                             rng.choice(nonempty, size=int(partners.sum()))])
    share = rng.uniform(keep_min, 1.0, size=len(source))          # one share per draw
    n_items = lengths[source]
    draw = np.repeat(np.arange(len(source)), n_items)
    offset = np.arange(len(draw)) - np.repeat(np.cumsum(n_items) - n_items, n_items)
    item = indices[indptr[source][draw] + offset]
    keep = rng.random(len(draw)) < share[draw]
    # a draw that kept nothing keeps one of its items at random
    empty = np.flatnonzero(np.bincount(draw[keep], minlength=len(source)) == 0)
    forced = indices[indptr[source[empty]] + rng.integers(0, n_items[empty])]
    rows = np.concatenate([out_row[draw[keep]], out_row[empty]])
    cols = np.concatenate([item[keep], forced])
    out = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)),
                        shape=(n_out, matrix.shape[1]))
    out.data[:] = 1.0                            # an item drawn twice (own + partner) is 1
    out.sort_indices()
    return out


class SAEVectorSource:
    """The SAE's training set: embeddings of the training users, plus (Knobs augmentation)
    embeddings of random sub-samples of their histories and of every item's one-hot.

    The users' and items' embeddings never change, so they are computed once; `draw`
    adds a fresh set of sub-samples each time it is called."""

    def __init__(self, backbone: ELSA | MultVAE, train: sp.csr_matrix, cfg: SAEConfig,
                 device: torch.device) -> None:
        self.backbone, self.train, self.cfg, self.device = backbone, train, cfg, device
        self.users = embed_rows(backbone, train, device)
        self.onehots = (embed_rows(backbone, sp.identity(train.shape[1], dtype=np.float32,
                                                         format="csr"), device)
                        if cfg.item_onehots else None)

    def draw(self, generator: torch.Generator) -> torch.Tensor:
        """[vectors, d]: users, then sub-samples (if any), then item one-hots (if any)."""
        parts = [self.users]
        if self.cfg.subsamples_per_user > 0:
            seed = int(torch.randint(0, 2**62, (1,), generator=generator))
            subs = subsample_histories(self.train, self.cfg.subsamples_per_user,
                                       self.cfg.keep_min, np.random.default_rng(seed),
                                       self.cfg.mix)
            parts.append(embed_rows(self.backbone, subs, self.device))
        if self.onehots is not None:
            parts.append(self.onehots)
        return torch.cat(parts)


def sae_training_vectors(backbone: ELSA | MultVAE, train: sp.csr_matrix, cfg: SAEConfig,
                         device: torch.device, generator: torch.Generator) -> torch.Tensor:
    """One draw of the SAE's training set (see SAEVectorSource)."""
    return SAEVectorSource(backbone, train, cfg, device).draw(generator)


def make_sae(d: int, cfg: SAEConfig, generator: torch.Generator) -> SparseAutoencoder:
    if cfg.refine_metric not in ("none", "top-items"):
        raise ValueError(f"refine_metric must be 'none' or 'top-items', got {cfg.refine_metric!r}")
    if cfg.kind == "topk":
        if cfg.refine_metric != "none" and cfg.refine_steps == 0:
            raise ValueError("refine_metric measures the refit: it needs refine_steps > 0")
        return TopKSAE(d, cfg.h, cfg.k, generator, refine_steps=cfg.refine_steps,
                       refine_candidates=cfg.refine_candidates, refine_solver=cfg.refine_solver)
    if cfg.kind == "basic":
        if (cfg.refine_steps or cfg.refine_candidates or cfg.refine_metric != "none"
                or cfg.refine_solver != "projected-gradient"):
            raise ValueError("refine_steps, refine_candidates, refine_metric and refine_solver "
                             "apply to the TopK SAE only (a Basic SAE's support is not fixed); "
                             "leave them at their defaults for 'basic'")
        return BasicSAE(d, cfg.h, generator)
    raise ValueError(f"SAE kind must be 'topk' or 'basic', got {cfg.kind!r}")


def untrained_sae(backbone: ELSA | MultVAE, train: sp.csr_matrix, cfg: SAEConfig,
                  device: torch.device, generator: torch.Generator) -> SparseAutoencoder:
    """The control the concept reports compare with: an SAE of `cfg`'s shape, never
    trained, with b_dec at the mean standardised embedding of the training users (where
    `cfg.init_b_dec`) and the refit metric `train_sae` would give it; in eval mode. Its
    decoder starts random whatever `cfg.init_dec` says: the control is the SAE's shape
    without anything learnt from the data."""
    sae = make_sae(backbone.d, cfg, generator).to(device)
    if cfg.init_b_dec:
        sae.init_decoder_bias_(embed_rows(backbone, train, device))
    _serve_with(sae, _refit_metric(backbone, train, cfg, device))
    return sae.eval()


def _refit_metric(backbone: ELSA | MultVAE, train: sp.csr_matrix, cfg: SAEConfig,
                  device: torch.device) -> torch.Tensor | None:
    """The refit metric `cfg` asks for (`score_metric`), None if it asks for none."""
    if cfg.refine_metric != "top-items":
        return None
    if not isinstance(backbone, ELSA) or cfg.kind != "topk":
        raise ValueError("refine_metric 'top-items' weighs ELSA's item scores, which are "
                         "linear in the embedding; use 'none' for MultVAE")
    return score_metric(backbone, train, device)


def _serve_with(sae: SparseAutoencoder, metric: torch.Tensor | None) -> None:
    """Set the refit metric of a TopK SAE (None: none; other SAEs have no refit)."""
    if isinstance(sae, TopKSAE):
        sae.set_refine_metric(metric)
    elif metric is not None:
        raise ValueError("a refit metric needs the TopK SAE")


TOP_ITEMS_PRIOR = 0.1
"""score_metric: weight of an item that no training user has in ELSA's top 20, against 1
per user who has it there."""


@torch.no_grad()
def score_metric(elsa: ELSA, train: sp.csr_matrix, device: torch.device, k: int = 20,
                 prior: float = TOP_ITEMS_PRIOR) -> torch.Tensor:
    """Knobs: the refit metric "top-items" (SAEConfig.refine_metric), M = A^T diag(w) A
    scaled to a mean diagonal of 1, where w_i = the number of training users whose top k
    by ELSA alone (their inputs masked) holds item i, plus `prior`. An embedding error r
    then costs sum_i w_i (r . a_i)^2: the errors of the item scores that rankings reach,
    not of the embedding's every direction alike. -> [d, d] on `device`."""
    tops = top_matrix(Recommender(elsa), train, device, k)
    w = torch.from_numpy(np.asarray(tops.sum(axis=0), dtype=np.float32).ravel()).to(device)
    a = elsa.A.detach()
    metric = (a.T * (w + prior)) @ a
    metric = (metric + metric.T) / 2
    return metric / metric.diagonal().mean().clamp_min(1e-12)


def train_sae(backbone: ELSA | MultVAE, train: sp.csr_matrix, val: HeldOut, cfg: SAEConfig,
              device: torch.device, generator: torch.Generator,
              progress: bool = True) -> tuple[SparseAutoencoder, History]:
    """Train an SAE on the frozen backbone's embeddings (§4): reconstruction loss (cosine
    or L2) + lambda * L1 of the code; unit decoder rows kept by projection and
    renormalisation. Early stopping on the nested recommender's fidelity to the backbone
    (`fidelity`) for the validation users; the history also records their nDCG@20.

    Knobs: each epoch is also validated as served (eval mode, refit metric set), and the
    epoch kept is the one with the best fidelity that way (`_fit`'s `keep`), while early
    stopping still watches the plain refit. With `cfg.restarts` > 1, that many SAEs are
    trained, the first from `generator` (as with one), the others from seeds drawn from
    it, and the one whose nested model as served has the best validation fidelity is
    returned with its history (README "Results on ml-latest-small")."""
    if cfg.restarts < 1:
        raise ValueError(f"restarts must be at least 1, got {cfg.restarts}")
    reference = top_matrix(Recommender(backbone), val.input, device)
    metric = _refit_metric(backbone, train, cfg, device)  # the same for every restart
    best: tuple[float, SparseAutoencoder, History] | None = None
    for restart in range(cfg.restarts):
        gen = generator if restart == 0 else torch.Generator(generator.device).manual_seed(
            int(torch.randint(2**62, (1,), generator=generator)))
        sae, history = _train_one_sae(backbone, train, val, cfg, device, gen, reference,
                                      metric, progress)
        _serve_with(sae, metric)
        if cfg.restarts == 1:
            return sae, history
        sae.eval()
        served = fidelity(rank(Recommender(backbone, sae), val.input, device), reference)
        log.info("SAE restart %d of %d: validation fidelity as served %.4f", restart + 1,
                 cfg.restarts, served)
        if best is None or served > best[0]:
            best = (served, sae, history)
    assert best is not None
    return best[1], best[2]


def _init_directions(sae: SparseAutoencoder, cfg: SAEConfig, source: SAEVectorSource,
                     vectors: torch.Tensor, generator: torch.Generator) -> None:
    """Start the decoder rows as `cfg.init_dec` asks (SAEConfig.init_dec, which SAEConfig
    checks: "items" comes with item one-hots)."""
    if cfg.init_dec == "random":
        return
    pool = source.onehots if cfg.init_dec == "items" else vectors
    assert pool is not None
    n = min(sae.h, pool.shape[0])

    def draw(size: int) -> torch.Tensor:       # n of range(size), on the generator's device
        perm = torch.randperm(size, generator=generator, device=generator.device)
        return perm[:n].to(pool.device)

    picked = draw(pool.shape[0])
    sae.init_directions_(draw(sae.h), pool[picked])


def _train_one_sae(backbone: ELSA | MultVAE, train: sp.csr_matrix, val: HeldOut,
                   cfg: SAEConfig, device: torch.device, generator: torch.Generator,
                   reference: sp.csr_matrix, metric: torch.Tensor | None, progress: bool
                   ) -> tuple[SparseAutoencoder, History]:
    """One SAE of `train_sae`, returned without the refit metric; `reference`: the
    backbone's top 20 for the validation users; `metric`: the refit metric it will be
    served with (None: none)."""
    source = SAEVectorSource(backbone, train, cfg, device)
    vectors = source.draw(generator)
    sae = make_sae(vectors.shape[1], cfg, generator).to(device)
    if cfg.init_b_dec:
        sae.init_decoder_bias_(vectors)
    _init_directions(sae, cfg, source, vectors, generator)
    opt = torch.optim.Adam(sae.parameters(), lr=cfg.lr, fused=True)
    recon_loss = cosine_loss if cfg.loss == "cosine" else l2_loss
    log.info("SAE: %d training vectors of width %d", vectors.shape[0], vectors.shape[1])

    def epoch(number: int) -> float:
        nonlocal vectors
        total, count = 0.0, 0
        if cfg.resample and number > 0:
            vectors = source.draw(generator)
        for idx in minibatches(vectors.shape[0], cfg.batch_size, generator):
            u = vectors[torch.from_numpy(idx).to(device)]
            out = sae(u)
            loss = recon_loss(out.reconstruction, u) + cfg.l1 * l1_sparsity(out.code)
            sphere_step(sae, opt, loss)
            total, count = total + loss.item() * len(idx), count + len(idx)
        return total / max(count, 1)

    nested = Recommender(backbone, sae)
    # Knobs: early stopping on how well the nested model keeps the backbone's own top 20
    # for the validation users (its job; `reference`), not on their held-out items: ~60
    # users' held-out nDCG@20 wanders by more than an epoch changes, and stopped
    # ml-latest-small's SAE at a chance peak in its first epochs (README "Choices for
    # small data")

    def validate() -> dict[str, float]:
        ranked = rank(nested, val.input, device)
        _, ndcg = recall_ndcg_at_k(ranked, val.target)
        plain = served = fidelity(ranked, reference)
        if metric is not None:               # as served: the refit measured by the metric
            _serve_with(sae, metric)
            try:
                served = fidelity(rank(nested, val.input, device), reference)
            finally:
                _serve_with(sae, None)
        return {"val_fidelity@20": plain, "val_ndcg@20": float(np.nanmean(ndcg)),
                "val_fidelity_served@20": served}

    # Knobs: the refit metric is set after training (by train_sae). Early stopping judges
    # the plain refit: fidelity through the score-weighted refit levels off within a few
    # epochs, and stopping on it left the SAE undertrained (README "Choices for small
    # data"). The state kept is the epoch whose fidelity *as served* was best among those
    # trained: on ml-latest-small it kept more of ELSA's test nDCG@20 and Recall@20 than
    # the epoch the plain fidelity picks (README "Results on ml-latest-small")
    history = _fit("sae", sae, nested, validate, "val_fidelity@20", cfg.max_epochs,
                   cfg.patience, epoch, progress, cfg.min_delta,
                   keep=None if metric is None else "val_fidelity_served@20")
    return sae, history
