"""What the label metric gives lists of items that no SAE chose, beside the bundle's
neurons. Writes reports/label_floor.{json,md}.

    .venv/bin/python -m benchmarks.label_floor [--bundle bundles/ml-latest-small]

Issue 3 asks that >= 80% of live neurons carry a label with precision >= 0.2 (the share
of the neuron's 20 top-activating items that carry it) and a median precision >= 0.5.
Knobs' label is the most precise concept *enriched* among those items (carried by at
least MIN_LIFT times the share of them as of all items; models.concepts). The same rule is
applied here to lists of 20 distinct items chosen without any SAE (a list with no
enriched concept scores 0; a neuron's label would fall back to the paper's):

- random lists: 20 catalogue items drawn uniformly, from the whole catalogue (the
  metric's floor) and from each popularity band (positives among the dataset's users:
  rare items also carry fewer concepts, since tags come from users);
- ELSA neighbourhoods: an item and its 19 nearest items by the cosine of ELSA's item
  rows A, for seed items of each popularity band: set against the band's random lists,
  how much metadata the backbone's item space holds, band by band;

and to each live neuron's top-activating items (up to 20) of the bundle's SAE and of an
untrained SAE of its shape (the reports' control), with the neuron's label precision as
`map_concepts` gives it. The trained SAE's neurons are also split by the share of the
dataset's users whose code has the neuron active (the bundle's `density`): neurons no
user's code uses fire only for item one-hots; no dataset user has them among their own
knobs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from benchmarks.common import bundle_labelling, write_reports
from models.concepts import (
    MIN_LIFT,
    TOP_ITEMS,
    item_codes,
    map_concepts,
    precision_matrix,
    top_items,
)

REPO = Path(__file__).resolve().parents[1]
POP_BANDS = ((1, 1), (2, 4), (5, 19), (20, None))
DENSITY_BANDS = (("no user (item one-hots only)", lambda d: d == 0),
                 ("some users, < 0.5% of them", lambda d: (d > 0) & (d < 0.005)),
                 (">= 0.5% of users", lambda d: d >= 0.005))


def best_enriched(lists: np.ndarray, carries: sp.csr_matrix, base: np.ndarray) -> np.ndarray:
    """[rows]: for each list of items (-1 padded), the share of them carrying the most
    precise concept enriched among them (Knobs' label rule); 0 where none is enriched."""
    prec = np.nan_to_num(precision_matrix(lists, carries))
    return np.where(prec >= MIN_LIFT * base, prec, 0.0).max(axis=1)


def quality(precision: np.ndarray) -> dict[str, Any]:
    return {"lists": int(len(precision)),
            "coverage": float((precision >= 0.2).mean()) if len(precision) else float("nan"),
            "median_precision": float(np.median(precision)) if len(precision) else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bundle", type=Path, default=REPO / "bundles" / "ml-latest-small")
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "label_floor")
    parser.add_argument("--draws", type=int, default=2000, help="random lists / seeds per band")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    lab = bundle_labelling(args.bundle)
    b, vocab = lab.bundle, lab.vocab
    carries = vocab.carries
    n_items = carries.shape[1]
    base = np.asarray(carries.sum(axis=1)).ravel() / n_items
    pop = np.asarray(b.interactions.matrix.sum(axis=0)).ravel()
    rng = np.random.default_rng(args.seed)
    dev = torch.device("cpu")
    rows: list[dict[str, Any]] = []

    def random_lists(pool: np.ndarray) -> np.ndarray:
        """`draws` lists of TOP_ITEMS distinct items of `pool`."""
        order = np.argsort(rng.random((args.draws, len(pool))), axis=1)[:, :TOP_ITEMS]
        return pool[order]

    def row(lists_of: str, band: str, precision: np.ndarray, lists: np.ndarray
            ) -> dict[str, Any]:
        items = lists[lists >= 0]
        return {"lists_of": lists_of, "band": band, **quality(precision),
                "median_list_length": float(np.median((lists >= 0).sum(axis=1))),
                "median_item_positives": float(np.median(pop[items])) if len(items)
                else float("nan")}

    everything = np.arange(n_items)
    lists = random_lists(everything)
    rows.append(row("random items", f"whole catalogue ({n_items} items)",
                    best_enriched(lists, carries, base), lists))
    a = torch.nn.functional.normalize(b.elsa.A.detach().to(dev), dim=1)
    for lo, hi in POP_BANDS:
        pool = everything[(pop >= lo) & (pop <= (hi if hi is not None else np.inf))]
        band = ("1 positive" if lo == hi == 1 else f"{lo} positives" if lo == hi
                else f"{lo}-{hi} positives" if hi else f">= {lo} positives")
        lists = random_lists(pool)
        rows.append(row("random items", f"items with {band} ({len(pool)} items)",
                        best_enriched(lists, carries, base), lists))
        seeds = torch.from_numpy(rng.choice(pool, size=min(args.draws, len(pool)),
                                            replace=False))
        near = (a[seeds] @ a.T).topk(TOP_ITEMS, dim=1).indices.numpy()
        rows.append(row("ELSA neighbourhoods", f"seed item with {band}",
                        best_enriched(near, carries, base), near))

    density = b.concepts.density
    for name, sae in (("trained SAE", b.sae), ("untrained SAE", lab.untrained)):
        codes = item_codes(b.elsa, sae, b.elsa.n_items, dev)
        cmap = map_concepts(codes, vocab)
        tops = top_items(codes)
        live = cmap.live
        lists_of = f"{name}: neurons' top-activating items"
        rows.append(row(lists_of, "all live neurons (issue 3's measure)",
                        cmap.precision[live], tops[live]))
        if name == "trained SAE":
            for label, band_of in DENSITY_BANDS:
                m = live & band_of(density)
                rows.append(row(lists_of, f"active for {label}", cmap.precision[m], tops[m]))

    lines = [f"# What the label metric gives item lists no SAE chose ({b.config['dataset']}, "
             f"h = {b.sae.h})", "",
             f"Knobs' label rule (the most precise concept carried by >= {MIN_LIFT:g}x its "
             f"catalogue share of the list) on lists of up to {TOP_ITEMS} distinct items "
             "(a neuron's list holds the items that activate it, at most 20). Coverage: "
             "share of lists whose label precision is >= 0.2 (target 80%); median precision "
             "(target 0.5). Positives: among the dataset's "
             f"{b.interactions.matrix.shape[0]} users. Density: the share of those users "
             "whose code has the neuron active.", "",
             "| lists of | band | lists | coverage | median precision | median list length "
             "| median positives of the items |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['lists_of']} | {r['band']} | {r['lists']} | {r['coverage']:.1%} | "
                     f"{r['median_precision']:.2f} | {r['median_list_length']:g} | "
                     f"{r['median_item_positives']:g} |")
    lines += ["", f"`.venv/bin/python -m benchmarks.label_floor --draws {args.draws} "
              f"--seed {args.seed}`"]
    write_reports(args.out, {"bundle": str(args.bundle), "bundle_sha256": b.sha256,
                             "draws": args.draws, "seed": args.seed, "min_lift": MIN_LIFT,
                             "rows": rows}, lines)


if __name__ == "__main__":
    main()
