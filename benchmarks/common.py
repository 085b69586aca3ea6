"""What the benchmarks share: the K-fold command line and set-up, report writing, and a
server to measure."""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch

from models.bundle import Bundle, load_bundle
from models.concepts import ConceptVocabulary, build_vocabulary
from models.config import SAEConfig, TrainConfig, defaults_for
from models.data.datasets import Dataset, load_dataset
from models.data.interactions import Interactions, Split, kfold_splits
from models.elsa import ELSA
from models.evaluate import SAEStats, machine_info, sae_stats
from models.metrics import paired_bootstrap
from models.pipeline import MIN_CONCEPT_ITEMS
from models.recommender import Recommender
from models.sae import SparseAutoencoder, TopKSAE
from models.train import (
    evaluate_heldout,
    resolve_device,
    train_elsa_for,
    train_sae,
    untrained_sae,
)

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class FoldBenchmark:
    """args: the parsed command line; device, data and the shipped defaults for them;
    seeds: the SAE seeds asked for (--seeds; [] where the benchmark takes none)."""

    args: argparse.Namespace
    device: torch.device
    data: Interactions
    cfg: TrainConfig
    seeds: list[int]


def fold_benchmark(description: str | None, out: str, seeds: str | None = None,
                   needs_metric: bool = False) -> FoldBenchmark:
    """Parse --dataset, --folds, --device, --out (default reports/OUT) and, where `seeds`
    gives their default, --seeds (SAE seeds per fold); set up logging, load the dataset
    and its default training config. `needs_metric`: stop with a usage error unless the
    shipped SAE refits with a metric."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--dataset", default="ml-latest-small")
    parser.add_argument("--folds", type=int, default=5)
    if seeds is not None:
        parser.add_argument("--seeds", default=seeds, help="SAE seeds per fold")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=REPO / "reports" / out)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    data = load_dataset(args.dataset, hetrec_metadata=False).interactions
    cfg = defaults_for(data.n_users)
    if needs_metric and cfg.sae.refine_metric != "top-items":
        parser.error(f"the shipped SAE for {args.dataset} does not refit with a metric")
    return FoldBenchmark(args, resolve_device(args.device), data, cfg,
                         [int(s) for s in args.seeds.split(",")] if seeds is not None else [])


@dataclass
class ElsaFold:
    """One fold of a benchmark: its split, the generator seeded for it, the ELSA trained
    on it with the shipped defaults, and that ELSA's per-user test recall / nDCG@20."""

    index: int
    split: Split
    generator: torch.Generator
    elsa: ELSA
    recall: np.ndarray
    ndcg: np.ndarray


def elsa_folds(data: Interactions, cfg: TrainConfig, folds: int, device: torch.device
               ) -> Iterator[ElsaFold]:
    """K folds over users (seeded by cfg.seed), each with its ELSA (seed cfg.seed + fold),
    as the benchmarks that compare things on one ELSA per fold need them."""
    for f, split in enumerate(kfold_splits(data, folds, cfg.seed)):
        gen = torch.Generator().manual_seed(cfg.seed + f)
        elsa, _ = train_elsa_for(split.train, split.val, cfg, device, gen, progress=False)
        r, n = evaluate_heldout(elsa, split.test, device)
        yield ElsaFold(f, split, gen, elsa, r, n)


@dataclass
class SAERun:
    """An SAE trained on a fold's ELSA: it, its per-user test recall / nDCG@20 nested in
    the ELSA, its reconstruction statistics and training seconds."""

    sae: SparseAutoencoder
    recall: np.ndarray
    ndcg: np.ndarray
    stats: SAEStats
    seconds: float


def sae_on_fold(fold: ElsaFold, cfg: SAEConfig, seed: int, device: torch.device) -> SAERun:
    """Train an SAE with `cfg` (generator seeded with `seed`) on the fold's ELSA and
    measure it on the fold's test users."""
    started = time.perf_counter()
    sae, _ = train_sae(fold.elsa, fold.split.train, fold.split.val, cfg, device,
                       torch.Generator().manual_seed(seed), progress=False)
    seconds = time.perf_counter() - started
    r, n = evaluate_heldout(Recommender(fold.elsa, sae), fold.split.test, device)
    return SAERun(sae, r, n, sae_stats(fold.elsa, sae, fold.split, device), seconds)


def sae_row(ndcg: list[np.ndarray], recall: list[np.ndarray], base_ndcg: np.ndarray,
            base_recall: np.ndarray, stats: list[SAEStats], rng: np.random.Generator
            ) -> dict[str, Any]:
    """One nested SAE over all folds, as the SAE benchmarks report it: nDCG@20 and
    Recall@20, the share of ELSA's each keeps, the paired per-user nDCG@20 difference to
    ELSA [diff, 95% CI], and the mean reconstruction cosine, L0 and dead share."""
    nd, rc = np.concatenate(ndcg), np.concatenate(recall)
    return {"ndcg@20": float(np.nanmean(nd)), "recall@20": float(np.nanmean(rc)),
            "ndcg_kept": float(np.nanmean(nd) / np.nanmean(base_ndcg)),
            "recall_kept": float(np.nanmean(rc) / np.nanmean(base_recall)),
            "paired_ndcg": list(paired_bootstrap(nd, base_ndcg, rng)),
            "cosine": float(np.mean([s.cosine for s in stats])),
            "l0": float(np.mean([s.l0 for s in stats])),
            "dead_fraction": float(np.mean([s.dead_fraction for s in stats]))}


def measure_served(fold: ElsaFold, sae: SparseAutoencoder, device: torch.device
                   ) -> tuple[np.ndarray, np.ndarray, SAEStats, dict[str, float]]:
    """The SAE, as it is set now, nested in the fold's ELSA: per-user test recall and
    nDCG@20, its reconstruction statistics, and the per-SAE row the benchmarks that
    serve one SAE several ways report (shares of ELSA's kept, cosine)."""
    r, n = evaluate_heldout(Recommender(fold.elsa, sae), fold.split.test, device)
    st = sae_stats(fold.elsa, sae, fold.split, device)
    return r, n, st, {"ndcg_kept": float(np.nanmean(n) / np.nanmean(fold.ndcg)),
                      "recall_kept": float(np.nanmean(r) / np.nanmean(fold.recall)),
                      "cosine": st.cosine}


@dataclass
class ServedGrid:
    """What `serve_grid` measured, per way of serving (and "elsa" for the backbone, one
    entry per SAE): per-user test nDCG@20 and Recall@20 arrays, SAE statistics; per_sae:
    {"fold", "seed", "epochs", way: `measure_served`'s row (+ `extra`'s)} per SAE."""

    ndcg: dict[str, list[np.ndarray]]
    recall: dict[str, list[np.ndarray]]
    stats: dict[str, list[SAEStats]]
    per_sae: list[dict[str, Any]]
    seconds: float


ServeWays = dict[str, Callable[[TopKSAE], None]]
"""Ways to serve one trained SAE: name -> a function that sets the SAE up that way."""


def serve_grid(bench: FoldBenchmark, sae_cfg: SAEConfig, ways: Callable[[ElsaFold], ServeWays],
               extra: Callable[[ElsaFold, TopKSAE], dict[str, float]] | None = None
               ) -> ServedGrid:
    """Per fold (one ELSA) and SAE seed, one TopK SAE trained with `sae_cfg` (generator
    seeded 100 x seed + fold), then served each of `ways(fold)` in turn and measured on
    the fold's test users (`measure_served`, plus `extra(fold, sae)` in each row): the
    ways differ only in how the same SAE is served."""
    names = None
    grid = ServedGrid({}, {}, {}, [], 0.0)
    started = time.perf_counter()
    for fold in elsa_folds(bench.data, bench.cfg, bench.args.folds, bench.device):
        fold_ways = ways(fold)
        if names is None:
            names = list(fold_ways)
            grid.ndcg = {n: [] for n in ["elsa", *names]}
            grid.recall = {n: [] for n in ["elsa", *names]}
            grid.stats = {n: [] for n in names}
        for seed in bench.seeds:
            sae, history = train_sae(fold.elsa, fold.split.train, fold.split.val, sae_cfg,
                                     bench.device,
                                     torch.Generator().manual_seed(100 * seed + fold.index),
                                     progress=False)
            if not isinstance(sae, TopKSAE):
                raise TypeError("the SAEs served several ways are TopK")
            grid.recall["elsa"].append(fold.recall)
            grid.ndcg["elsa"].append(fold.ndcg)
            row: dict[str, Any] = {"fold": fold.index, "seed": seed, "epochs": len(history)}
            for name, set_up in fold_ways.items():
                set_up(sae)
                r, n, st, row[name] = measure_served(fold, sae, bench.device)
                if extra is not None:
                    row[name].update(extra(fold, sae))
                grid.recall[name].append(r)
                grid.ndcg[name].append(n)
                grid.stats[name].append(st)
            grid.per_sae.append(row)
            logging.info("fold %d seed %d: %s", fold.index + 1, seed, {
                k: {m: round(x, 4) for m, x in v.items()} for k, v in row.items()
                if isinstance(v, dict)})
    grid.seconds = time.perf_counter() - started
    return grid


def grid_rows(grid: ServedGrid, rng: np.random.Generator) -> dict[str, dict[str, Any]]:
    """`sae_row` for each way of serving, against ELSA on the same users."""
    base_n, base_r = np.concatenate(grid.ndcg["elsa"]), np.concatenate(grid.recall["elsa"])
    return {name: sae_row(grid.ndcg[name], grid.recall[name], base_n, base_r,
                          grid.stats[name], rng) for name in grid.stats}


def grid_report(bench: FoldBenchmark, variants: dict[str, Any], grid: ServedGrid
                ) -> dict[str, Any]:
    """The report of a `serve_grid` benchmark: its settings, the variants' rows, the
    per-SAE rows, its time and machine."""
    return {"dataset": bench.args.dataset, "folds": bench.args.folds, "seeds": bench.seeds,
            "device": bench.device.type, "saes": len(grid.per_sae), "variants": variants,
            "per_sae": grid.per_sae, "seconds": grid.seconds,
            "machine": machine_info(bench.device)}


def grid_intro(report: dict[str, Any]) -> str:
    """'5-fold over users; per fold one ELSA and 2 SAEs (seeds 1, 2), 10 SAEs in all,
    on cpu' for `grid_report`'s reports."""
    return (f"{report['folds']}-fold over users; per fold one ELSA and "
            f"{len(report['seeds'])} SAEs (seeds {', '.join(map(str, report['seeds']))}), "
            f"{report['saes']} SAEs in all, on {report['device']}")


def fold_table(report: dict[str, Any], recall: bool = False) -> list[str]:
    """Per fold, the mean over its SAEs of each variant's nDCG@20 kept (and Recall@20's):
    `report["per_sae"]` rows hold {"fold", variant: {"ndcg_kept", "recall_kept"}}."""
    names = list(report["variants"])
    lines = [f"Per fold (mean over seeds), nDCG@20{' / Recall@20' if recall else ''} kept:",
             "", "| fold | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for f in range(report["folds"]):
        mine = [r for r in report["per_sae"] if r["fold"] == f]
        cells = [f"{100 * np.mean([r[v]['ndcg_kept'] for r in mine]):.1f}%"
                 + (f" / {100 * np.mean([r[v]['recall_kept'] for r in mine]):.1f}%"
                    if recall else "") for v in names]
        lines.append(f"| {f + 1} | " + " | ".join(cells) + " |")
    return lines


def fmt_paired(diff_ci: list[float]) -> str:
    """[diff, ci_low, ci_high] -> '+0.0012 [-0.0030, +0.0051]' for the tables."""
    d, lo, hi = diff_ci
    return f"{d:+.4f} [{lo:+.4f}, {hi:+.4f}]"


def seeded_command(name: str, report: dict[str, Any]) -> str:
    """The report's closing line: the command that reran it (--folds, --seeds) and its
    minutes."""
    return (f"`python -m benchmarks.{name} --folds {report['folds']} --seeds "
            f"{','.join(map(str, report['seeds']))}` ({report['seconds'] / 60:.0f} min)")


@dataclass(frozen=True)
class BundleLabelling:
    """What the label benchmarks read: the bundle, its dataset, the concept vocabulary
    built as the bundle's was (models.pipeline.label_knobs), and the untrained control
    of the bundle's SAE shape (models.train.untrained_sae, seed 1), all on the CPU."""

    bundle: Bundle
    dataset: Dataset
    vocab: ConceptVocabulary
    untrained: SparseAutoencoder


def bundle_labelling(path: Path) -> BundleLabelling:
    torch.set_num_threads(int(os.environ.get("KNOBS_THREADS", "2")))
    b = load_bundle(path)
    ds = load_dataset(b.config["dataset"])
    vocab = build_vocabulary(ds.catalog, ds.tag_events, min_items=MIN_CONCEPT_ITEMS,
                             hetrec_taggers=ds.hetrec_taggers)
    untrained = untrained_sae(b.elsa, b.interactions.matrix, b.train_config.sae,
                              torch.device("cpu"), torch.Generator().manual_seed(1))
    return BundleLabelling(b, ds, vocab, untrained)


def write_reports(out: Path, report: dict[str, Any], lines: list[str]) -> None:
    """Write OUT.json (the report) and OUT.md (the lines), and print the table."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def migrated_url(url: str) -> str:
    """`url` after `alembic upgrade head`."""
    from alembic import command

    from app.db.session import alembic_config

    command.upgrade(alembic_config(url), "head")
    return url


def start_server(bundle: Path, port: int, database_url: str, workers: int = 1,
                 loop: str = "asyncio") -> subprocess.Popen[bytes]:
    """The product's own `knobs serve --workers N --loop L` on the CPU (a socket per
    worker when N > 1, app/workers.py), request logging off."""
    env = {**os.environ, "KNOBS_BUNDLE": str(bundle), "KNOBS_DEVICE": "cpu",
           "KNOBS_DATABASE_URL": database_url}
    return subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port),
                             "--workers", str(workers), "--log-level", "warning",
                             "--loop", loop],
                            env=env, cwd=REPO, stdout=subprocess.DEVNULL)


def wait_ready(proc: subprocess.Popen[bytes], base: str, timeout: float = 120.0) -> None:
    """Until /readyz answers 200; RuntimeError if the server exits or takes too long."""
    deadline = time.time() + timeout
    while True:
        try:
            if httpx.get(f"{base}/readyz").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode}")
        if time.time() > deadline:
            raise RuntimeError(f"the server was not ready within {timeout:.0f} s")
        time.sleep(0.2)


@contextmanager
def serve(bundle: Path, port: int, timeout: float = 120.0,
          database_url: str | None = None, workers: int = 1,
          loop: str = "asyncio") -> Iterator[str]:
    """The app on 127.0.0.1:`port` (`knobs serve` in its own process, on the CPU) serving
    `bundle` with `database_url` (default: a fresh SQLite database); yields its base URL
    once /readyz answers 200. Raises if the server exits or is not ready within
    `timeout` s; stops it on the way out."""
    with tempfile.TemporaryDirectory() as tmp:
        url = database_url or migrated_url(f"sqlite:///{Path(tmp) / 'knobs.db'}")
        proc = start_server(bundle, port, url, workers, loop)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_ready(proc, base, timeout)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
