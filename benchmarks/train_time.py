"""Wall time of `knobs train` with the shipped defaults (target: <= 3 min on 2 CPU cores
for ml-latest-small). Writes reports/training.json.

    .venv/bin/python benchmarks/train_time.py [--dataset ml-latest-small] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _gpu(device: str) -> str | None:
    if device == "cpu":
        return None
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="ml-latest-small")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "training.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "bundle"
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "app.cli", "train", "--dataset", args.dataset,
                        "--out", str(bundle), "--device", args.device, "--no-progress"],
                       check=True, cwd=REPO)
        seconds = time.perf_counter() - started
        quality = json.loads((bundle / "quality.json").read_text())
    result = {"dataset": args.dataset, "device": args.device, "wall_seconds": seconds,
              "target_seconds": 180, "quality": quality,
              "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                          "python": platform.python_version(), "gpu": _gpu(args.device)}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".tmp")
    tmp_out.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp_out, args.out)
    print(f"knobs train --dataset {args.dataset}: {seconds:.1f} s (target <= 180 s)")


if __name__ == "__main__":
    main()
