"""How label precision depends on how many latents each item's code keeps, for the trained
SAE of a bundle and for an untrained SAE of the same shape (the control). Writes
reports/label_sensitivity.{json,md}.

    .venv/bin/python -m benchmarks.label_sensitivity [--bundle bundles/ml-latest-small]

The paper's S (method.md §5) codes each item's one-hot with the SAE as it is (k latents,
here refit). Reading S with fewer latents per item (the item's strongest k' by the plain
encoder) keeps, for each neuron, only the items it is a main ingredient of. This measures
what that does to both labels' precision; the bundle keeps the paper's S.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import bundle_labelling, write_reports
from models.concepts import item_codes, map_concepts
from models.sae import SparseAutoencoder, TopKSAE

REPO = Path(__file__).resolve().parents[1]


def with_k(sae: SparseAutoencoder, k: int) -> TopKSAE:
    """The same weights read with the plain TopK encoder keeping k latents (no refit, so
    no refit metric)."""
    out = TopKSAE(sae.d, sae.h, k)
    out.load_state_dict({n: t for n, t in sae.state_dict().items() if n != "refine_metric"})
    return out.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bundle", type=Path, default=REPO / "bundles" / "ml-latest-small")
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "label_sensitivity")
    args = parser.parse_args()
    lab = bundle_labelling(args.bundle)
    b, vocab, untrained = lab.bundle, lab.vocab, lab.untrained
    dev = torch.device("cpu")
    k = int(b.config["sae"]["k"])
    rows: list[dict[str, Any]] = []
    for name, sae in (("trained", b.sae), ("untrained", untrained)):
        readings: list[tuple[str, SparseAutoencoder]] = [(f"as served (k = {k})", sae)]
        readings += [(f"plain, k' = {kk}", with_k(sae, kk)) for kk in (16, 8, 4)]
        for reading, model in readings:
            s = map_concepts(item_codes(b.elsa, model, b.elsa.n_items, dev), vocab).summary()
            rows.append({"sae": name, "item_code": reading, **s})
    lines = [f"# Label precision against the item codes' sparsity ({b.config['dataset']}, "
             f"h = {b.sae.h})", "",
             "Share of live neurons whose label is carried by >= 20% of their 20 "
             "top-activating items (coverage) and the median of that share, for Knobs' "
             "label and the paper's TF-IDF label.", "",
             "| SAE | item codes | live | coverage (Knobs) | median (Knobs) | "
             "coverage (paper) | median (paper) | entropy decrease |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['sae']} | {r['item_code']} | {r['live']} | {r['coverage']:.1%} | "
                     f"{r['median_precision']:.2f} | {r['paper']['coverage']:.1%} | "
                     f"{r['paper']['median_precision']:.2f} | {r['entropy_decrease']:.3f} |")
    lines += ["", "`.venv/bin/python -m benchmarks.label_sensitivity`"]
    write_reports(args.out, {"bundle": str(args.bundle), "bundle_sha256": b.sha256,
                             "rows": rows}, lines)


if __name__ == "__main__":
    main()
