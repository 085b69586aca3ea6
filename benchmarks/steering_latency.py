"""CPU cost of a knob change (method.md §7; issue 3 target: a ten-knob change costs well
under a millisecond beyond the top-N itself). Writes reports/steering_latency.{json,md}.

    .venv/bin/python -m benchmarks.steering_latency [--bundle bundles/ml-latest-small]

For each of --users users of the bundle, a session starts: the user's code, unsteered
scores and the item-score rows R[n] of the knobs the page shows (the user's active neurons
and ten concept knobs of 10 neurons each, as the app's) are computed once and timed as
"session start".
Then --changes times each, ten neuron knobs, and the ten concept knobs, are set to
strengths in [-1, 1] and the scores recomputed by
  fast:  steered_scores() (the §7 update: one cached mean row per knob, plus the rows of
         active neurons a "less of" knob turns down), the rows picked from the session's;
  full:  steer() on the whole code + the SAE decoder + ELSA's decoder,
and the top-20 with the inputs masked is timed on its own. One thread (torch), as one
request on a busy server gets.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import REPO, write_reports
from models.bundle import load_bundle
from models.concepts import KNOB_NEURONS
from models.evaluate import machine_info
from models.metrics import top_n_owned
from models.steering import (
    Knob,
    knob_row,
    latent_rows,
    score_basis,
    steer,
    steered_scores,
    user_scores,
)


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
    parser.add_argument("--concept-neurons", type=int, default=KNOB_NEURONS,
                        help="neurons per concept knob (the app's CONCEPT_NEURONS)")
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "steering_latency")
    args = parser.parse_args()
    torch.set_num_threads(1)
    b = load_bundle(args.bundle)
    elsa, sae = b.elsa, b.sae
    rng = np.random.default_rng(0)
    users = rng.choice(b.interactions.n_users, min(args.users, b.interactions.n_users),
                       replace=False)
    basis = score_basis(elsa, sae)
    cmap = b.concepts
    size = args.concept_neurons
    concepts = [c for c in range(len(cmap.names))
                if len(cmap.neurons_for(c, "lifts", size)) == size]
    fast: dict[str, list[float]] = {"neuron": [], "concept": []}
    full: list[float] = []
    topn: list[float] = []
    start: list[float] = []
    max_err = 0.0
    with torch.no_grad():
        for u in users:
            x = torch.from_numpy(b.interactions.matrix[int(u)].toarray())
            taken = torch.from_numpy(np.flatnonzero(x[0].numpy() > 0))
            t0 = time.perf_counter()
            code, mean, std = sae.encode(elsa.encode(x))
            user = user_scores(elsa, sae, basis, code[0], mean, std)
            # the page shows the user's active neurons and 10 concept knobs (10 neurons
            # each, Knobs' "lifts" map); their rows are computed when the session starts
            chosen = rng.choice(concepts, args.knobs, replace=False)
            concept_sets = [tuple(int(n) for n in cmap.neurons_for(c, "lifts", size))
                            for c in chosen]
            active = sorted(user.active)
            active_rows = latent_rows(elsa, sae, torch.tensor(active))
            position = {n: i for i, n in enumerate(active)}
            rows_of: dict[tuple[int, ...], torch.Tensor] = {
                (n,): active_rows[i] for n, i in position.items()}
            for ns in concept_sets:
                rows_of[ns] = knob_row(latent_rows(elsa, sae, torch.tensor(ns)))
            start.append(time.perf_counter() - t0)

            def neuron_row(n: int, rows: torch.Tensor = active_rows,
                           at: dict[int, int] = position) -> torch.Tensor:
                return rows[at[n]]

            changes: list[tuple[str, list[Knob]]] = []
            for _ in range(args.changes):
                picked = [int(n) for n in rng.choice(sorted(user.active),
                                                     min(args.knobs, len(user.active)),
                                                     replace=False)]
                changes.append(("neuron", [Knob((n,), float(rng.uniform(-1, 1)))
                                           for n in picked]))
                changes.append(("concept", [Knob(ns, float(rng.uniform(-1, 1)))
                                            for ns in concept_sets]))
            results = []
            for kind, knobs in changes:     # the fast path, as a session runs it
                t0 = time.perf_counter()
                knob_rows = [rows_of[k.neurons] for k in knobs]   # a list, as the app
                scores = steered_scores(user, knobs, knob_rows, neuron_row)
                fast[kind].append(time.perf_counter() - t0)
                owned = scores.clone()                  # top_n_owned overwrites its input
                t0 = time.perf_counter()
                top_n_owned(owned, 20, taken)
                topn.append(time.perf_counter() - t0)
                results.append(scores)
            for (_, knobs), scores in zip(changes, results, strict=True):   # full decode
                t0 = time.perf_counter()
                st = steer(code[0], knobs)
                ref = elsa.decode(sae.decode(st.code[None], mean, std))[0]
                full.append(time.perf_counter() - t0)
                max_err = max(max_err, float((scores - ref).abs().max()))
    report: dict[str, Any] = {
        "bundle": str(args.bundle), "bundle_sha256": b.sha256,
        "items": elsa.n_items, "h": sae.h, "d": elsa.d, "knobs_per_change": args.knobs,
        "users": len(users), "changes_per_user": args.changes,
        "fast": _us(fast["neuron"]), "fast_concept_knobs": _us(fast["concept"]),
        "full_decode": _us(full), "top20": _us(topn),
        "session_start": _us(start), "max_abs_difference_fast_vs_full": max_err,
        "target_us": 1000.0, "threads": 1,
        "machine": machine_info(torch.device("cpu")),
    }
    f, d, t = report["fast"], report["full_decode"], report["top20"]
    fc = report["fast_concept_knobs"]
    lines = [
        f"# Steering latency ({b.config['dataset']}, {elsa.n_items} items, h = {sae.h}, "
        f"{args.knobs} knobs per change, 1 CPU thread)", "",
        "| per change | median | p95 |", "|---|---|---|",
        f"| ten neuron knobs: steered_scores, cached rows (§7) | {f['median_us']:.0f} us | "
        f"{f['p95_us']:.0f} us |",
        f"| ten concept knobs ({size} neurons each): the same | {fc['median_us']:.0f} us | "
        f"{fc['p95_us']:.0f} us |",
        f"| steer + full decode | {d['median_us']:.0f} us | {d['p95_us']:.0f} us |",
        f"| top-20 (not counted) | {t['median_us']:.0f} us | {t['p95_us']:.0f} us |", "",
        f"{len(users)} users x {args.changes} changes of each kind. Session start (encode, "
        f"unsteered scores, the rows of the active neurons and of the ten concept knobs): median "
        f"{report['session_start']['median_us']:.0f} us, once per user. Largest score "
        f"difference fast vs full: {max_err:.2e}. Target: well under 1000 us beyond the "
        "top-N.",
        "", "`.venv/bin/python -m benchmarks.steering_latency`",
    ]
    write_reports(args.out, report, lines)


if __name__ == "__main__":
    main()
