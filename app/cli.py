"""The `knobs` command line: data, train, evaluate, steer-eval, inspect, serve.

Heavy imports (torch, pandas) happen inside the commands so `knobs --help` is instant.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
from click.core import ParameterSource

if TYPE_CHECKING:
    from models.evaluate import SplitKind

log = logging.getLogger("knobs")

DEVICE = click.Choice(["auto", "cpu", "cuda"])
SPLIT = click.Choice(["folds", "holdout"])
"""models.evaluate.SPLIT_KINDS, spelled out so `knobs --help` needs no torch."""


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)


def _dataset_choice() -> click.Choice:
    from models.data.datasets import DATASETS

    return click.Choice(list(DATASETS))


def _fail(exc: Exception) -> NoReturn:
    """One clear line on stderr and exit status 2 for errors a person can act on."""
    click.echo(f"knobs: error: {exc}", err=True)
    sys.exit(2)


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _split_option(split: SplitKind) -> None:
    """--folds means K-fold; with --split holdout it would be silently ignored: refuse."""
    source = click.get_current_context().get_parameter_source("folds")
    if split == "holdout" and source is not ParameterSource.DEFAULT:
        _fail(ValueError("--folds is for --split folds; --split holdout is one 80/10/10 "
                         "user split (drop --folds)"))


def _threads() -> None:
    import torch

    n = os.environ.get("KNOBS_THREADS")
    if n:
        torch.set_num_threads(int(n))


TO_READ = click.option(
    "--to-read", is_flag=True,
    help="goodbooks-10k only: count 'to read' marks as positives too (off by default: "
         "a mark says a reader wants a book, not that they liked it).")


def _load(dataset: str, device: str, seed: int, hetrec_metadata: bool = True,
          to_read: bool = False) -> tuple[Any, Any]:
    """(torch device, Dataset) for a command, or one clear line and exit 2."""
    from models.data.datasets import load_dataset
    from models.data.download import ChecksumMismatchError, DataUnavailableError
    from models.data.parsing import MalformedFileError
    from models.train import resolve_device

    _threads()
    try:
        dev = resolve_device(device)
        return dev, load_dataset(dataset, seed=seed, hetrec_metadata=hetrec_metadata,
                                 to_read=to_read)
    except (DataUnavailableError, ChecksumMismatchError, MalformedFileError,
            RuntimeError, ValueError) as exc:
        _fail(exc)


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(verbose: bool) -> None:
    """Knobs: steer recommendations with labelled sparse-autoencoder knobs."""
    _setup_logging(verbose)


@main.command()
@click.option("--dataset", required=True, type=_dataset_choice(), help="Dataset name.")
@TO_READ
def data(dataset: str, to_read: bool) -> None:
    """Fetch (or find) a dataset, preprocess it, and print its size."""
    from models.data.datasets import load_dataset
    from models.data.download import ChecksumMismatchError, DataUnavailableError
    from models.data.parsing import MalformedFileError

    try:
        ds = load_dataset(dataset, to_read=to_read)
    except (DataUnavailableError, ChecksumMismatchError, MalformedFileError,
            ValueError) as exc:
        _fail(exc)
    d = ds.interactions
    click.echo(json.dumps({"dataset": dataset, "users": d.n_users, "items": d.n_items,
                           "positives": d.nnz, "fingerprint": d.fingerprint(),
                           "metadata": list(ds.metadata_sources)}, indent=2))


@main.command()
@click.option("--dataset", required=True, type=_dataset_choice(), help="Dataset name.")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Bundle folder to write (replaced atomically if it exists).")
@click.option("--device", default="auto", type=DEVICE, show_default=True)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--progress/--no-progress", default=True, help="Progress bars on stderr.")
@TO_READ
def train(dataset: str, out: Path, device: str, seed: int, progress: bool,
          to_read: bool) -> None:
    """Train ELSA and its SAE on DATASET and write a checkpoint bundle to OUT."""
    from models.bundle import save_bundle
    from models.config import defaults_for
    from models.pipeline import label_knobs, train_models

    dev, ds = _load(dataset, device, seed, to_read=to_read)
    cfg = defaults_for(ds.interactions.n_users, seed)
    log.info("training on %s (%s)", dev, dataset)
    trained = train_models(ds.interactions, cfg, dev, progress)
    try:
        concepts, settings = label_knobs(trained.elsa, trained.sae, ds.interactions,
                                         ds.catalog, ds.tag_events, dev, ds.hetrec_taggers)
    except ValueError as exc:
        _fail(exc)
    q = {**trained.quality, "labels": settings["labels"]}
    path = save_bundle(out, dataset=dataset, elsa=trained.elsa, sae=trained.sae,
                       train_config=cfg, data=ds.interactions, catalog=ds.catalog,
                       quality=q, concepts=concepts, concept_settings=settings,
                       extra_config={"metadata_sources": list(ds.metadata_sources)})
    click.echo(f"bundle written to {path}\n"
               f"test nDCG@20: ELSA {q['elsa']['ndcg@20']:.4f}, ELSA+SAE "
               f"{q['elsa+sae']['ndcg@20']:.4f}; SAE cosine {q['elsa+sae']['cosine']:.3f}, "
               f"dead latents {100 * q['elsa+sae']['dead_fraction']:.1f}%; "
               f"{q['train_seconds']:.0f} s\n"
               f"labels: {q['labels']['concepts']} concepts; "
               f"{100 * q['labels']['coverage']:.0f}% of live neurons carry a label with "
               f"precision >= 0.2, median precision {q['labels']['median_precision']:.2f}")


@main.command()
@click.option("--dataset", required=True, type=_dataset_choice(), help="Dataset name.")
@click.option("--split", default="folds", show_default=True, type=SPLIT,
              help="folds: K-fold over users, every user tested once (small data); "
                   "holdout: one seeded 80/10/10 user split (large data).")
@click.option("--folds", default=5, show_default=True, type=click.IntRange(min=2),
              help="K, with --split folds.")
@click.option("--json", "json_path", required=True, type=click.Path(path_type=Path))
@click.option("--md", "md_path", required=True, type=click.Path(path_type=Path))
@click.option("--device", default="auto", type=DEVICE, show_default=True)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--progress/--no-progress", default=True, help="Progress bars on stderr.")
@TO_READ
def evaluate(dataset: str, split: SplitKind, folds: int, json_path: Path, md_path: Path,
             device: str, seed: int, progress: bool, to_read: bool) -> None:
    """Compare popularity, EASE, ELSA, ELSA+SAE, MultVAE and MultVAE+SAE."""
    from models.config import defaults_for
    from models.evaluate import run_evaluation, write_markdown

    _split_option(split)
    dev, ds = _load(dataset, device, seed, hetrec_metadata=False, to_read=to_read)
    cfg = defaults_for(ds.interactions.n_users, seed)
    report: dict[str, Any] = run_evaluation(ds.interactions, cfg, folds, dev, dataset,
                                            progress, splits=split)
    _atomic_write(json_path, json.dumps(report, indent=2) + "\n")
    _atomic_write(md_path, write_markdown(report))
    click.echo(write_markdown(report))


@main.command("steer-eval")
@click.option("--dataset", required=True, type=_dataset_choice(), help="Dataset name.")
@click.option("--split", default="folds", show_default=True, type=SPLIT,
              help="folds: K-fold over users, every user tested once (small data); "
                   "holdout: one seeded 80/10/10 user split (large data).")
@click.option("--folds", default=5, show_default=True, type=click.IntRange(min=2),
              help="K, with --split folds.")
@click.option("--json", "json_path", required=True, type=click.Path(path_type=Path))
@click.option("--md", "md_path", required=True, type=click.Path(path_type=Path))
@click.option("--plot", "plot_path", required=True, type=click.Path(path_type=Path),
              help="PNG of personal vs segment nDCG@20.")
@click.option("--device", default="auto", type=DEVICE, show_default=True)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--progress/--no-progress", default=True, help="Progress bars on stderr.")
@TO_READ
def steer_eval(dataset: str, split: SplitKind, folds: int, json_path: Path, md_path: Path,
               plot_path: Path, device: str, seed: int, progress: bool, to_read: bool) -> None:
    """Label each split's SAE and measure steering toward concepts (method.md §5-§6)."""
    from models.config import defaults_for
    from models.steer_eval import plot, run_steering_evaluation, write_markdown

    if plot_path.suffix.lower() != ".png":
        _fail(ValueError(f"--plot {plot_path}: the plot is written as PNG; name it *.png"))
    _split_option(split)
    dev, ds = _load(dataset, device, seed, to_read=to_read)
    cfg = defaults_for(ds.interactions.n_users, seed)
    try:
        report = run_steering_evaluation(ds.interactions, ds.catalog, ds.tag_events, cfg,
                                         folds, dev, dataset, progress,
                                         hetrec_taggers=ds.hetrec_taggers,
                                         splits=split)
    except ValueError as exc:
        _fail(exc)
    _atomic_write(json_path, json.dumps(report, indent=2) + "\n")
    _atomic_write(md_path, write_markdown(report))
    plot(report, plot_path)
    click.echo(write_markdown(report))


@main.command()
@click.option("--bundle", "bundle_dir", required=True, type=click.Path(path_type=Path),
              help="Bundle folder written by `knobs train`.")
@click.option("--neuron", type=int, default=None, help="One neuron (default: the most used).")
@click.option("--top", default=10, show_default=True, type=click.IntRange(min=1),
              help="How many of the most used neurons.")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of text.")
def inspect(bundle_dir: Path, neuron: int | None, top: int, as_json: bool) -> None:
    """Show knobs: label, concepts, items lifted and activating, density, neighbours."""

    from models.bundle import BundleError, load_bundle
    from models.neurons import describe_neuron, format_view, most_used, view_dict

    try:
        bundle = load_bundle(bundle_dir)
        ids = [neuron] if neuron is not None else most_used(bundle, top)
        views = [describe_neuron(bundle, n) for n in ids]
    except (BundleError, ValueError) as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps([view_dict(v) for v in views], indent=2, ensure_ascii=False,
                              allow_nan=False))
    else:
        click.echo("\n".join(format_view(v) for v in views), nl=False)


@main.command()
@click.option("--bundle", "bundle_dir", type=click.Path(path_type=Path), default=None,
              help="Bundle folder (default: KNOBS_BUNDLE or bundles/ml-latest-small).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--device", default=None, type=DEVICE,
              help="Default: KNOBS_DEVICE or auto (CUDA when present).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Worker processes, each with its own copy of the model (one per core; "
                   "they share the database).")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]),
              help="uvicorn's log level; info logs every request (the access log).")
@click.option("--loop", default="asyncio", show_default=True,
              type=click.Choice(["asyncio", "uvloop", "auto"]),
              help="uvicorn's event loop. asyncio's answered the JSON API's knob changes "
                   "at 64 clients with a shorter tail than uvloop's (README, serving "
                   "performance); auto: uvloop when installed.")
def serve(bundle_dir: Path | None, host: str, port: int, device: str | None,
          workers: int, log_level: str, loop: str) -> None:
    """Serve the web app and the JSON API (docs at /docs)."""
    import uvicorn

    from app.main import StartupError, create_app, load_engine, open_bundle, open_database
    from app.settings import Settings
    from app.workers import WorkerError, reuse_port_supported, run_workers

    overrides: dict[str, Any] = {}
    if bundle_dir is not None:
        overrides["bundle"] = bundle_dir
    if device is not None:
        overrides["device"] = device
    settings = Settings(**overrides)
    try:
        # one worker: load it here; several: only check it, each worker loads its own
        engine = load_engine(settings) if workers == 1 else None
        where = engine.device if engine else open_bundle(settings, on="cpu")[0]
        db, _ = open_database(settings)        # migrated? (make migrate / alembic upgrade head)
        db.dispose()
    except StartupError as exc:
        _fail(exc)
    click.echo(f"serving {settings.bundle} on http://{host}:{port} ({where}, "
               f"{workers} worker{'s' if workers > 1 else ''})")
    if engine is not None:
        uvicorn.run(create_app(settings, engine=engine), host=host, port=port,
                    log_level=log_level, loop=loop, http="httptools")
        return
    os.environ["KNOBS_BUNDLE"] = str(settings.bundle)
    os.environ["KNOBS_DEVICE"] = settings.device
    if not reuse_port_supported():          # uvicorn's workers, one shared socket
        uvicorn.run("app.main:create_app", factory=True, host=host, port=port,
                    workers=workers, log_level=log_level, loop=loop,
                    http="httptools")
        return
    try:                                    # a socket each: connections spread evenly
        run_workers(host, port, workers, log_level, loop)
    except WorkerError as exc:
        _fail(exc)


if __name__ == "__main__":  # pragma: no cover
    main()
