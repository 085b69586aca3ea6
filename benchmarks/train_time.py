"""Wall time and peak memory of `knobs train` with the shipped defaults (targets on 2 CPU
cores: <= 3 min for ml-latest-small, <= 15 min for goodbooks-10k, in 24 GB). Writes
reports/training.json (ml-latest-small) or reports/<dataset>/training.json.

    .venv/bin/python benchmarks/train_time.py [--dataset ml-latest-small] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_SECONDS = {"ml-latest-small": 180, "goodbooks-10k": 900}


def _gpu(device: str) -> str | None:
    if device == "cpu":
        return None
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="ml-latest-small")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=None,
                        help="Default: reports/training.json for ml-latest-small, "
                             "reports/<dataset>/training.json otherwise.")
    args = parser.parse_args()
    if args.out is None:
        folder = REPO / "reports" if args.dataset == "ml-latest-small" else (
            REPO / "reports" / args.dataset)
        args.out = folder / "training.json"
    target = TARGET_SECONDS.get(args.dataset)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "bundle"
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "app.cli", "train", "--dataset", args.dataset,
                        "--out", str(bundle), "--device", args.device, "--no-progress"],
                       check=True, cwd=REPO)
        seconds = time.perf_counter() - started
        # the largest resident set of any child process so far (Linux: KiB)
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        quality = json.loads((bundle / "quality.json").read_text())
    result = {"dataset": args.dataset, "device": args.device, "wall_seconds": seconds,
              "target_seconds": target, "peak_rss_mib": peak_mib, "quality": quality,
              "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                          "python": platform.python_version(), "gpu": _gpu(args.device),
                          "threads_env": os.environ.get("KNOBS_THREADS")}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".tmp")
    tmp_out.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp_out, args.out)
    print(f"knobs train --dataset {args.dataset}: {seconds:.1f} s (target <= {target} s), "
          f"peak memory {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
