"""What the benchmarks share: the K-fold command line and set-up, report writing, and a
server to measure."""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
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


@contextmanager
def serve(bundle: Path, port: int, *uvicorn_args: str, timeout: float = 120.0
          ) -> Iterator[str]:
    """The app on 127.0.0.1:`port` (uvicorn in its own process, on the CPU) serving
    `bundle`; yields its base URL once /readyz answers 200. Raises if the server exits
    or is not ready within `timeout` s; stops it on the way out."""
    env = {**os.environ, "KNOBS_BUNDLE": str(bundle), "KNOBS_DEVICE": "cpu"}
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "app.main:create_app",
                             "--factory", "--host", "127.0.0.1", "--port", str(port),
                             "--log-level", "warning", *uvicorn_args], env=env, cwd=REPO)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        while True:
            try:
                if httpx.get(f"{base}/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with status {proc.returncode}")
            if time.time() > deadline:
                raise RuntimeError(f"the server was not ready within {timeout:.0f} s")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
