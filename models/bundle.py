"""A checkpoint bundle: one folder that a server can load and trust.

  config.json            format version, dataset, model shapes, training config, versions
  elsa.safetensors       A [items, d]
  sae.safetensors        W_enc [d, h], b_enc [h], W_dec [h, d], b_dec [d], and the refit's
                         refine_metric [d, d] where config.json's sae.refine_metric is true
  interactions.safetensors  the dataset users' positives as CSR (indptr, indices) + ids
  catalog.jsonl          one item per line, in model order: id, title, year, genres, metadata
  quality.json           held-out metrics of this bundle's models (and label quality)
  concepts.json          the knobs' concept vocabulary: names, kinds, how it was built
  concepts.safetensors   the concept map (models.concepts.ConceptMap): labels, top concepts,
                         concept -> neuron maps, label precision, top items, user density
  manifest.json          sha256 and size of every file above, the training data's
                         fingerprint and the training config

Weights are safetensors only (no pickle). A bundle is written into a temporary folder
beside its destination and renamed into place, so a crash never leaves half a bundle.
`load_bundle` checks the manifest, every hash, the tensor names, shapes and dtypes, and
the format version, and raises BundleError naming the file and the problem.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from models.concepts import ConceptMap
from models.config import TrainConfig
from models.data.interactions import Interactions, Vocabulary
from models.elsa import ELSA
from models.sae import BasicSAE, SparseAutoencoder, TopKSAE

FORMAT_VERSION = 5  # 2: sae.refine_steps, sae.refine_candidates; 3: concepts.*;
#                    4: sae.refine_metric; 5: sae.refine_solver
READS = (3, 4, 5)
"""Format versions this Knobs loads: a version 3 bundle is a version 4 one without a refit
metric; a version 4 bundle is a version 5 one whose refit takes plain projected-gradient
steps (the only solver it knew)."""
MANIFEST = "manifest.json"
FILES = ("config.json", "elsa.safetensors", "sae.safetensors", "interactions.safetensors",
         "catalog.jsonl", "quality.json", "concepts.json", "concepts.safetensors")
# ConceptMap array fields stored in concepts.safetensors: name -> (shape over h / C / items,
# dtype). "h", "C" stand for the SAE width and the number of concepts.
_CONCEPT_ARRAYS: dict[str, tuple[tuple[str | int, ...], torch.dtype]] = {
    "items_per_concept": (("C",), torch.int64), "live": (("h",), torch.bool),
    "label": (("h",), torch.int64), "paper_label": (("h",), torch.int64),
    "top_concepts": (("h", 5), torch.int64), "top_scores": (("h", 5), torch.float32),
    "precision": (("h",), torch.float32), "paper_precision": (("h",), torch.float32),
    "confidence": (("h",), torch.float32), "best": (("C", -1), torch.int64),
    "best_scores": (("C", -1), torch.float32), "unique": (("C", -1), torch.int64),
    "unique_scores": (("C", -1), torch.float32), "lifts": (("C", -1), torch.int64),
    "lift_scores": (("C", -1), torch.float32), "entropy_decrease": (("C",), torch.float32),
    "top_items": (("h", -1), torch.int64), "density": (("h",), torch.float32),
}
# arrays that hold NaN by design (dead neurons, concepts without weight, unknown density)
_NAN_OK = frozenset({"precision", "paper_precision", "confidence", "entropy_decrease",
                     "density"})
CATALOG_FIELDS = ("item", "title", "year", "genres", "tags", "hetrec_tags", "directors",
                  "countries", "authors", "shelves")
OPTIONAL_LISTS = ("authors", "shelves")
"""Catalog columns added after format 5 was fixed (books): a bundle without them reads
them as empty lists."""


class BundleError(ValueError):
    """A bundle that cannot be trusted: missing, corrupt or mismatched. The message names
    the file and the problem."""


@dataclass(frozen=True)
class Bundle:
    """Everything the server needs, on one device."""

    path: Path
    config: dict[str, Any]
    train_config: TrainConfig
    elsa: ELSA
    sae: SparseAutoencoder
    interactions: Interactions
    catalog: pd.DataFrame
    quality: dict[str, Any]
    manifest: dict[str, Any]
    concepts: ConceptMap

    @property
    def sha256(self) -> str:
        """Identity of the bundle: the hash of its manifest."""
        return sha256_file(self.path / MANIFEST)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                    encoding="utf-8")


def _jsonable(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    return value


def save_bundle(out: str | Path, *, dataset: str, elsa: ELSA, sae: SparseAutoencoder,
                train_config: TrainConfig, data: Interactions, catalog: pd.DataFrame,
                quality: dict[str, Any], concepts: ConceptMap,
                concept_settings: dict[str, Any] | None = None,
                extra_config: dict[str, Any] | None = None) -> Path:
    """Write a bundle to `out` atomically (temporary sibling folder, then rename).
    concept_settings: how the vocabulary was built (stored in concepts.json)."""
    out = Path(out)
    if concepts.h != sae.h:
        raise ValueError(f"concept map has {concepts.h} neurons, the SAE {sae.h}")
    if len(catalog) != data.n_items or not np.array_equal(catalog["item"].to_numpy(),
                                                           data.items.ids):
        raise ValueError("catalog rows must be the item vocabulary, in order")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        config = {
            "format_version": FORMAT_VERSION,
            "dataset": dataset,
            "n_items": data.n_items,
            "n_users": data.n_users,
            "elsa": {"d": elsa.d},
            "sae": {"kind": "topk" if isinstance(sae, TopKSAE) else "basic", "h": sae.h,
                    "k": getattr(sae, "k", None),
                    "refine_steps": getattr(sae, "refine_steps", 0),
                    "refine_candidates": getattr(sae, "refine_candidates", 0),
                    "refine_solver": getattr(sae, "refine_solver", "projected-gradient"),
                    "refine_metric": getattr(sae, "refine_metric", None) is not None},
            "train": train_config.to_dict(),
            "versions": {"torch": torch.__version__, "numpy": np.__version__},
            **(extra_config or {}),
        }
        _write_json(tmp / "config.json", config)
        save_file({"A": elsa.A.detach().float().cpu().contiguous()},
                  str(tmp / "elsa.safetensors"))
        save_file({k: v.detach().float().cpu().contiguous()
                   for k, v in sae.state_dict().items()}, str(tmp / "sae.safetensors"))
        m = data.matrix.tocsr()
        save_file({"indptr": torch.from_numpy(m.indptr.astype(np.int64)),
                   "indices": torch.from_numpy(m.indices.astype(np.int64)),
                   "user_ids": torch.from_numpy(data.users.ids.astype(np.int64)),
                   "item_ids": torch.from_numpy(data.items.ids.astype(np.int64))},
                  str(tmp / "interactions.safetensors"))
        catalog = catalog.copy()
        for column in OPTIONAL_LISTS:
            if column not in catalog:
                catalog[column] = [[] for _ in range(len(catalog))]
        with (tmp / "catalog.jsonl").open("w", encoding="utf-8") as f:
            for row in catalog[list(CATALOG_FIELDS)].itertuples(index=False):
                f.write(json.dumps({k: _jsonable(v) for k, v in zip(CATALOG_FIELDS, row,
                                                                     strict=True)},
                                   ensure_ascii=False) + "\n")
        _write_json(tmp / "quality.json", quality)
        _write_json(tmp / "concepts.json", {"names": concepts.names, "kinds": concepts.kinds,
                                            "settings": concept_settings or {}})
        save_file({name: torch.from_numpy(np.ascontiguousarray(
                       getattr(concepts, name))).to(dtype)
                   for name, (_, dtype) in _CONCEPT_ARRAYS.items()},
                  str(tmp / "concepts.safetensors"))
        manifest = {
            "format_version": FORMAT_VERSION,
            "files": {name: {"sha256": sha256_file(tmp / name),
                             "bytes": (tmp / name).stat().st_size} for name in FILES},
            "data_fingerprint": data.fingerprint(),
            "dataset": dataset,
            "train_config": train_config.to_dict(),
        }
        _write_json(tmp / MANIFEST, manifest)
        for name in (*FILES, MANIFEST):
            with (tmp / name).open("rb") as fh:
                os.fsync(fh.fileno())
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: cannot be read as JSON ({exc})") from exc


def _versions() -> str:
    """READS for a message: '3, 4 and 5'."""
    *rest, last = READS
    return f"{', '.join(map(str, rest))} and {last}" if rest else str(last)


def verify_manifest(path: Path) -> dict[str, Any]:
    """Check the manifest and every file's size and sha256; return the manifest."""
    if not path.is_dir():
        raise BundleError(f"{path}: no bundle folder there (train one with `knobs train`)")
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise BundleError(f"{mpath}: manifest missing; this is not a complete bundle")
    manifest = _read_json(mpath)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise BundleError(f"{mpath}: manifest has no 'files' table")
    if manifest.get("format_version") not in READS:
        raise BundleError(f"{mpath}: format version {manifest.get('format_version')!r}, this "
                          f"Knobs reads versions {_versions()}; retrain the bundle")
    files = manifest["files"]
    if set(files) != set(FILES):
        raise BundleError(f"{mpath}: lists {sorted(files)}, expected {sorted(FILES)}")
    for name, entry in files.items():
        f = path / name
        if not isinstance(entry, dict):
            raise BundleError(f"{mpath}: entry {name!r} is not an object with bytes and sha256")
        if Path(name).name != name or f.resolve().parent != path.resolve():
            raise BundleError(f"{mpath}: entry {name!r} points outside the bundle folder")
        if not f.is_file():
            raise BundleError(f"{f}: missing (listed in the manifest)")
        size = f.stat().st_size
        if size != entry.get("bytes"):
            raise BundleError(f"{f}: {size} bytes, the manifest says {entry.get('bytes')} "
                              "(truncated or replaced)")
        digest = sha256_file(f)
        if digest != entry.get("sha256"):
            raise BundleError(f"{f}: sha256 {digest[:16]}… does not match the manifest's "
                              f"{str(entry.get('sha256'))[:16]}… (corrupted or modified)")
    return manifest


CATALOG_LISTS = ("genres", "tags", "directors", "countries", "authors")


def _check_catalog(f: Path, catalog: pd.DataFrame) -> None:
    """BundleError naming the file, column and row unless every row has an integer
    item, a text title, an integer year or none, and lists of text for the metadata."""
    missing = [c for c in ("item", "title", "year", *CATALOG_LISTS, "hetrec_tags")
               if c not in catalog]
    if missing:
        raise BundleError(f"{f}: no column {missing[0]!r}")

    def bad(column: str, ok: Any) -> None:
        rows = [r for r, v in enumerate(catalog[column].tolist()) if not ok(v)]
        if rows:
            v = catalog[column].iloc[rows[0]]
            what = "is missing" if v is None or (isinstance(v, float) and np.isnan(v)) \
                else f"{v!r} is not valid"
            raise BundleError(f"{f}: row {rows[0] + 1}: {column} {what}")

    bad("item", lambda v: isinstance(v, int) and not isinstance(v, bool))
    bad("title", lambda v: isinstance(v, str))
    bad("year", lambda v: v is None or (isinstance(v, float) and np.isnan(v))
        or (isinstance(v, int | float) and not isinstance(v, bool) and float(v).is_integer()))
    for column in CATALOG_LISTS:
        bad(column, lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v))
    bad("hetrec_tags", lambda v: isinstance(v, list) and all(     # [tag, weight] pairs
        isinstance(x, list) and len(x) == 2 and isinstance(x[0], str)
        and isinstance(x[1], int) and not isinstance(x[1], bool) for x in v))
    bad("shelves", lambda v: isinstance(v, list) and all(         # [shelf, strength] pairs
        isinstance(x, list) and len(x) == 2 and isinstance(x[0], str)
        and isinstance(x[1], int | float) and not isinstance(x[1], bool)
        and 0 < x[1] <= 1 for x in v))


def _tensors(f: Path, expected: dict[str, tuple[tuple[int, ...], torch.dtype]],
             nan_ok: frozenset[str] = frozenset()) -> dict[str, torch.Tensor]:
    """Load a safetensors file and check its tensor names, shapes (-1: any) and dtypes;
    floating tensors must be finite (NaN allowed for the names in `nan_ok`)."""
    try:
        tensors = load_file(str(f))
    except (SafetensorError, OSError, ValueError) as exc:
        raise BundleError(f"{f}: not a readable safetensors file ({exc})") from exc
    if set(tensors) != set(expected):
        raise BundleError(f"{f}: holds tensors {sorted(tensors)}, expected {sorted(expected)}")
    for name, (shape, dtype) in expected.items():
        t = tensors[name]
        shape_ok = len(t.shape) == len(shape) and all(
            want in (-1, got) for want, got in zip(shape, t.shape, strict=True))
        if not shape_ok or t.dtype != dtype:
            raise BundleError(f"{f}: tensor {name} is {tuple(t.shape)} {t.dtype}, config.json "
                              f"implies {shape} {dtype}")
        if t.is_floating_point() and not (torch.isfinite(t) | (
                torch.isnan(t) if name in nan_ok else torch.zeros_like(t, dtype=torch.bool)
        )).all():
            raise BundleError(f"{f}: tensor {name} holds NaN or infinite values")
    return tensors


def _load_concepts(path: Path, h: int, n_items: int) -> ConceptMap:
    """concepts.json + concepts.safetensors -> ConceptMap, every index checked in range."""
    meta = _read_json(path / "concepts.json")
    names, kinds = (meta.get("names"), meta.get("kinds")) if isinstance(meta, dict) else (
        None, None)
    if (not isinstance(names, list) or not isinstance(kinds, list)
            or len(names) != len(kinds) or not all(isinstance(n, str) for n in names)):
        raise BundleError(f"{path / 'concepts.json'}: needs lists 'names' and 'kinds' of "
                          "equal length")
    if any(a >= b for a, b in zip(names, names[1:], strict=False)):
        raise BundleError(f"{path / 'concepts.json'}: 'names' must be sorted and distinct")
    sizes = {"h": h, "C": len(names)}
    expected = {name: (tuple(sizes[d] if isinstance(d, str) else d for d in shape), dtype)
                for name, (shape, dtype) in _CONCEPT_ARRAYS.items()}
    f = path / "concepts.safetensors"
    t = _tensors(f, expected, _NAN_OK)
    bounds = {"label": len(names), "paper_label": len(names), "top_concepts": len(names),
              "best": h, "unique": h, "lifts": h, "top_items": n_items}
    for name, upper in bounds.items():
        v = t[name]
        if v.numel() and (int(v.min()) < -1 or int(v.max()) >= upper):
            raise BundleError(f"{f}: tensor {name} holds indices outside -1..{upper - 1}")
    arrays = {name: (v.numpy().astype(np.float64) if v.is_floating_point() else v.numpy())
              for name, v in t.items()}
    return ConceptMap(names=names, kinds=[str(k) for k in kinds], **arrays)


def load_bundle(path: str | Path, device: torch.device | str = "cpu") -> Bundle:
    """Load and verify a bundle; raise BundleError naming the file and problem."""
    path = Path(path)
    manifest = verify_manifest(path)
    config = _read_json(path / "config.json")
    if (not isinstance(config, dict) or config.get("format_version") not in READS
            or config.get("format_version") != manifest.get("format_version")):
        raise BundleError(f"{path / 'config.json'}: format version "
                          f"{config.get('format_version') if isinstance(config, dict) else None!r}"
                          f" (manifest: {manifest.get('format_version')!r}), this Knobs reads "
                          f"versions {_versions()}; retrain the bundle")
    try:
        n_items, d = int(config["n_items"]), int(config["elsa"]["d"])
        n_users = int(config["n_users"])
        kind, h, k = config["sae"]["kind"], int(config["sae"]["h"]), config["sae"]["k"]
        refine = (int(config["sae"]["refine_steps"]), int(config["sae"]["refine_candidates"]))
        metric = (config["sae"]["refine_metric"] if config["format_version"] >= 4
                  else config["sae"].get("refine_metric", False))
        if not isinstance(metric, bool) or (metric and config["format_version"] < 4):
            raise ValueError(f"sae.refine_metric {metric!r} is not a boolean of this format "
                             "version (true needs version 4)")
        solver: Any = (config["sae"]["refine_solver"] if config["format_version"] >= 5
                       else "projected-gradient")        # TopKSAE checks it
        train_config = TrainConfig.from_dict(config["train"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{path / 'config.json'}: missing or invalid field ({exc})") from exc
    if kind not in ("topk", "basic"):
        raise BundleError(f"{path / 'config.json'}: sae.kind {kind!r} is neither 'topk' nor "
                          "'basic'")
    if metric and (kind != "topk" or refine[0] == 0):
        raise BundleError(f"{path / 'config.json'}: sae.refine_metric is true, but only a "
                          "TopK SAE with refine_steps > 0 refits")
    f32 = torch.float32
    a = _tensors(path / "elsa.safetensors", {"A": ((n_items, d), f32)})["A"]
    s = _tensors(path / "sae.safetensors", {"W_enc": ((d, h), f32), "b_enc": ((h,), f32),
                                           "W_dec": ((h, d), f32), "b_dec": ((d,), f32),
                                           **({"refine_metric": ((d, d), f32)} if metric
                                              else {})})
    inter = _tensors(path / "interactions.safetensors", {
        "indptr": ((n_users + 1,), torch.int64), "indices": ((-1,), torch.int64),
        "user_ids": ((n_users,), torch.int64), "item_ids": ((n_items,), torch.int64)})
    indptr, indices = inter["indptr"].numpy(), inter["indices"].numpy()
    nnz = len(indices)
    if (indptr[0] != 0 or indptr[-1] != nnz or (np.diff(indptr) < 0).any()
            or (nnz and (indices.min() < 0 or indices.max() >= n_items))):
        raise BundleError(f"{path / 'interactions.safetensors'}: CSR structure is inconsistent")
    matrix = sp.csr_matrix((np.ones(nnz, dtype=np.float32), indices, indptr),
                           shape=(n_users, n_items))
    interactions = Interactions(matrix, Vocabulary(inter["user_ids"].numpy()),
                                Vocabulary(inter["item_ids"].numpy()))
    try:
        catalog = pd.read_json(path / "catalog.jsonl", lines=True, dtype=False)
    except ValueError as exc:
        raise BundleError(f"{path / 'catalog.jsonl'}: not valid JSON lines ({exc})") from exc
    for column in OPTIONAL_LISTS:
        if column not in catalog and len(catalog):
            catalog[column] = [[] for _ in range(len(catalog))]
    _check_catalog(path / "catalog.jsonl", catalog)
    if len(catalog) != n_items or not np.array_equal(catalog["item"].to_numpy(),
                                                     interactions.items.ids):
        raise BundleError(f"{path / 'catalog.jsonl'}: rows do not match the model's items")
    catalog["year"] = catalog["year"].astype("Int64")

    elsa = ELSA(n_items, d)
    elsa.A.data.copy_(a)
    try:
        sae: SparseAutoencoder = (TopKSAE(d, h, int(k), refine_steps=refine[0],
                                          refine_candidates=refine[1], refine_solver=solver)
                                  if kind == "topk" else BasicSAE(d, h))
    except ValueError as exc:
        raise BundleError(f"{path / 'config.json'}: invalid SAE settings ({exc})") from exc
    if metric and isinstance(sae, TopKSAE):
        try:
            sae.set_refine_metric(s["refine_metric"])
        except ValueError as exc:
            raise BundleError(f"{path / 'sae.safetensors'}: {exc}") from exc
    sae.load_state_dict(s)
    elsa.to(device).eval()
    sae.to(device).eval()
    concepts = _load_concepts(path, h, n_items)
    return Bundle(path, config, train_config, elsa, sae, interactions, catalog,
                  _read_json(path / "quality.json"), manifest, concepts)
