"""What the K-fold benchmarks share: their command line and their set-up."""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from models.config import TrainConfig, defaults_for
from models.data.datasets import load_dataset
from models.data.interactions import Interactions
from models.train import resolve_device

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class FoldBenchmark:
    """args: the parsed command line; device, data and the shipped defaults for them."""

    args: argparse.Namespace
    device: torch.device
    data: Interactions
    cfg: TrainConfig


def fold_benchmark(description: str | None, out: str) -> FoldBenchmark:
    """Parse --dataset, --folds, --device, --out (default reports/OUT), set up logging,
    load the dataset and its default training config."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--dataset", default="ml-latest-small")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=REPO / "reports" / out)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    data = load_dataset(args.dataset, hetrec_metadata=False).interactions
    return FoldBenchmark(args, resolve_device(args.device), data,
                         defaults_for(data.n_users))


def fmt_paired(diff_ci: list[float]) -> str:
    """[diff, ci_low, ci_high] -> '+0.0012 [-0.0030, +0.0051]' for the tables."""
    d, lo, hi = diff_ci
    return f"{d:+.4f} [{lo:+.4f}, {hi:+.4f}]"


def write_reports(out: Path, report: dict[str, Any], lines: list[str]) -> None:
    """Write OUT.json (the report) and OUT.md (the lines), and print the table."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
