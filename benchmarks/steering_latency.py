"""CPU cost of a knob change (method.md §7; issue 3 target: a ten-knob change costs well
under a millisecond beyond the top-N itself). Writes reports/steering_latency.{json,md}.

    .venv/bin/python -m benchmarks.steering_latency [--bundle bundles/ml-latest-small]

For each of --users users of the bundle, a session starts: the user's code, unsteered
scores and the item-score rows R[n] of the knobs the page shows (the user's active neurons
and 8 concept neurons) are computed once and timed as "session start". Then --changes
times, ten of those knobs are set to strengths in [-1, 1] and the scores recomputed by
  fast:  steered_scores() (the rule on the knob neurons only + the §7 update), the ten
         rows picked from the session's row matrix;
  full:  steer() on the whole code + the SAE decoder + ELSA's decoder,
and the top-20 with the inputs masked is timed on its own. One thread (torch), as one
request on a busy server gets.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import write_reports
from models.bundle import load_bundle
from models.metrics import top_n
from models.steering import (
    Knob,
    knob_neurons,
    latent_rows,
    score_basis,
    steer,
    steered_scores,
    user_scores,
)

REPO = Path(__file__).resolve().parents[1]


def _us(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {"median_us": 1e6 * statistics.median(s), "p95_us": 1e6 * s[int(0.95 * (len(s) - 1))],
            "mean_us": 1e6 * statistics.fmean(s)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bundle", type=Path, default=REPO / "bundles" / "ml-latest-small")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--knobs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "steering_latency")
    args = parser.parse_args()
    torch.set_num_threads(1)
    b = load_bundle(args.bundle)
    elsa, sae = b.elsa, b.sae
    rng = np.random.default_rng(0)
    users = rng.choice(b.interactions.n_users, min(args.users, b.interactions.n_users),
                       replace=False)
    basis = score_basis(elsa, sae)
    fast: list[float] = []
    full: list[float] = []
    topn: list[float] = []
    start: list[float] = []
    max_err = 0.0
    with torch.no_grad():
        for u in users:
            x = torch.from_numpy(b.interactions.matrix[int(u)].toarray())
            t0 = time.perf_counter()
            code, mean, std = sae.encode(elsa.encode(x))
            user = user_scores(elsa, sae, basis, code[0], mean, std)
            shown = sorted(set(user.active) | {int(n) for n in rng.choice(sae.h, 8)})
            session_rows = latent_rows(elsa, sae, torch.tensor(shown))
            start.append(time.perf_counter() - t0)
            position = {n: i for i, n in enumerate(shown)}
            changes = []
            for _ in range(args.changes):
                picked = [int(n) for n in rng.choice(shown, min(args.knobs, len(shown)),
                                                     replace=False)]
                changes.append([Knob((n,), float(rng.uniform(-1, 1))) for n in picked])
            results = []
            for knobs in changes:           # the fast path, as a session runs it
                t0 = time.perf_counter()
                neurons = knob_neurons(knobs)
                rows = session_rows[torch.tensor([position[n] for n in neurons])]
                scores = steered_scores(user, knobs, neurons, rows)
                fast.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                top_n(torch.relu(scores - x[0])[None], 20, exclude=x > 0)
                topn.append(time.perf_counter() - t0)
                results.append(scores)
            for knobs, scores in zip(changes, results, strict=True):   # the full decode
                t0 = time.perf_counter()
                st = steer(code[0], knobs)
                ref = elsa.decode(sae.decode(st.code[None], mean, std))[0]
                full.append(time.perf_counter() - t0)
                max_err = max(max_err, float((scores - ref).abs().max()))
    report: dict[str, Any] = {
        "bundle": str(args.bundle), "bundle_sha256": b.sha256,
        "items": elsa.n_items, "h": sae.h, "d": elsa.d, "knobs_per_change": args.knobs,
        "users": len(users), "changes_per_user": args.changes,
        "fast": _us(fast), "full_decode": _us(full), "top20": _us(topn),
        "session_start": _us(start), "max_abs_difference_fast_vs_full": max_err,
        "target_us": 1000.0, "threads": 1,
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "python": platform.python_version(), "torch": torch.__version__},
    }
    f, d, t = report["fast"], report["full_decode"], report["top20"]
    lines = [
        f"# Steering latency ({b.config['dataset']}, {elsa.n_items} items, h = {sae.h}, "
        f"{args.knobs} knobs per change, 1 CPU thread)", "",
        "| per change | median | p95 |", "|---|---|---|",
        f"| steered_scores, cached rows (§7) | {f['median_us']:.0f} us | {f['p95_us']:.0f} us |",
        f"| steer + full decode | {d['median_us']:.0f} us | {d['p95_us']:.0f} us |",
        f"| top-20 (not counted) | {t['median_us']:.0f} us | {t['p95_us']:.0f} us |", "",
        f"{len(users)} users x {args.changes} changes. Session start (encode, unsteered "
        f"scores, the rows of the ~40 knobs shown): median "
        f"{report['session_start']['median_us']:.0f} us, once per user. Largest score "
        f"difference fast vs full: {max_err:.2e}. Target: well under 1000 us beyond the "
        "top-N.",
        "", "`.venv/bin/python -m benchmarks.steering_latency`",
    ]
    write_reports(args.out, report, lines)


if __name__ == "__main__":
    main()
