"""Bundles: save then load gives identical scores; every kind of damage is a BundleError
naming the file; saving over a bundle replaces it atomically."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

from models.bundle import (
    FORMAT_VERSION,
    BundleError,
    load_bundle,
    save_bundle,
    sha256_file,
)
from models.concepts import ConceptMap, build_vocabulary, item_codes, map_concepts
from models.config import ELSAConfig, SAEConfig, TrainConfig
from models.data.datasets import build_catalog
from models.data.interactions import Interactions
from models.data.synthetic import Synthetic
from models.elsa import ELSA
from models.recommender import Recommender
from models.sae import TopKSAE

D, H, K, REFINE = 8, 24, 4, 7
CFG = TrainConfig(elsa=ELSAConfig(d=D), sae=SAEConfig(h=H, k=K), seed=5)


@pytest.fixture
def catalog(synthetic: Synthetic, interactions: Interactions) -> pd.DataFrame:
    return build_catalog(interactions.items.ids, synthetic.movies, synthetic.tags, None)


def models(n_items: int, seed: int) -> tuple[ELSA, TopKSAE]:
    gen = torch.Generator().manual_seed(seed)
    elsa, sae = ELSA(n_items, D, gen), TopKSAE(D, H, K, gen, refine_steps=REFINE,
                                                 refine_candidates=2 * K,
                                                 refine_solver="accelerated")
    with torch.no_grad():                                       # non-trivial biases
        sae.b_enc.copy_(0.1 * torch.randn(H, generator=gen))
        sae.b_dec.copy_(0.1 * torch.randn(D, generator=gen))
    root = torch.randn(D, D, generator=gen)                     # and a refit metric
    sae.set_refine_metric(root @ root.T / D)
    return elsa.eval(), sae.eval()


def concept_map(elsa: ELSA, sae: TopKSAE, catalog: pd.DataFrame) -> ConceptMap:
    vocab = build_vocabulary(catalog, None, min_items=5)
    cmap = map_concepts(item_codes(elsa, sae, elsa.n_items, torch.device("cpu")), vocab)
    return dataclasses.replace(cmap, density=np.linspace(0, 1, sae.h))


def save(out: Path, interactions: Interactions, catalog: pd.DataFrame,
         seed: int = 0) -> tuple[ELSA, TopKSAE]:
    elsa, sae = models(interactions.n_items, seed)
    save_bundle(out, dataset="synthetic", elsa=elsa, sae=sae, train_config=CFG,
                data=interactions, catalog=catalog, quality={"elsa": {"ndcg@20": 0.5}},
                concepts=concept_map(elsa, sae, catalog), concept_settings={"min_items": 5})
    return elsa, sae


@pytest.fixture
def bundle(tmp_path: Path, interactions: Interactions, catalog: pd.DataFrame) -> Path:
    out = tmp_path / "bundle"
    save(out, interactions, catalog)
    return out


def update_manifest(path: Path, name: str) -> None:
    """Make the manifest agree with `name` as it is now on disk."""
    mpath = path / "manifest.json"
    manifest = json.loads(mpath.read_text())
    manifest["files"][name] = {"sha256": sha256_file(path / name),
                               "bytes": (path / name).stat().st_size}
    mpath.write_text(json.dumps(manifest))


def edit_manifest(path: Path, **changes: Any) -> None:
    mpath = path / "manifest.json"
    manifest = json.loads(mpath.read_text())
    manifest.update(changes)
    mpath.write_text(json.dumps(manifest))


def test_save_then_load_gives_identical_scores(tmp_path: Path, interactions: Interactions,
                                               catalog: pd.DataFrame) -> None:
    out = tmp_path / "b"
    elsa, sae = save(out, interactions, catalog)
    b = load_bundle(out)
    x = torch.from_numpy(interactions.matrix[:16].toarray())
    with torch.no_grad():
        assert torch.equal(Recommender(b.elsa, b.sae)(x), Recommender(elsa, sae)(x))
    assert isinstance(b.sae, TopKSAE) and b.sae.k == K and b.sae.refine_steps == REFINE
    assert b.sae.refine_candidates == 2 * K and b.sae.refine_solver == "accelerated"
    assert b.sae.refine_metric is not None and sae.refine_metric is not None
    assert torch.equal(b.sae.refine_metric, sae.refine_metric)
    assert b.config["sae"]["refine_metric"] is True
    assert b.train_config == CFG
    assert b.interactions.fingerprint() == interactions.fingerprint()
    assert b.manifest["data_fingerprint"] == interactions.fingerprint()
    assert b.config["format_version"] == FORMAT_VERSION and b.config["dataset"] == "synthetic"
    assert b.quality == {"elsa": {"ndcg@20": 0.5}}
    assert b.catalog["item"].tolist() == catalog["item"].tolist()
    assert b.catalog["title"].tolist() == catalog["title"].tolist()
    assert b.catalog["genres"].tolist() == catalog["genres"].tolist()
    assert b.catalog["year"].tolist() == catalog["year"].tolist()
    assert len(b.sha256) == 64
    assert not b.elsa.training and not b.sae.training
    want = concept_map(elsa, sae, catalog)
    for f in dataclasses.fields(ConceptMap):
        got, exp = getattr(b.concepts, f.name), getattr(want, f.name)
        if isinstance(exp, list):
            assert got == exp, f.name
        else:
            assert np.allclose(got, exp, equal_nan=True), f.name
            assert got.shape == exp.shape, f.name
    assert json.loads((out / "concepts.json").read_text())["settings"] == {"min_items": 5}


def test_flipped_byte_in_sae_weights(bundle: Path) -> None:
    f = bundle / "sae.safetensors"
    raw = bytearray(f.read_bytes())
    raw[-5] ^= 0xFF
    f.write_bytes(bytes(raw))
    with pytest.raises(BundleError, match=r"sae\.safetensors.*sha256"):
        load_bundle(bundle)


def test_truncated_elsa_weights(bundle: Path) -> None:
    f = bundle / "elsa.safetensors"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(BundleError, match=r"elsa\.safetensors.*bytes"):
        load_bundle(bundle)


def test_missing_catalog(bundle: Path) -> None:
    (bundle / "catalog.jsonl").unlink()
    with pytest.raises(BundleError, match=r"catalog\.jsonl.*missing"):
        load_bundle(bundle)


def test_manifest_entry_outside_the_folder(bundle: Path) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"]["../x"] = manifest["files"].pop("catalog.jsonl")
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"manifest\.json.*\.\./x"):
        load_bundle(bundle)


def test_tensor_of_the_wrong_shape_with_a_matching_hash(bundle: Path) -> None:
    f = bundle / "sae.safetensors"
    tensors = load_file(str(f))
    tensors["W_enc"] = torch.zeros(D, H + 1)
    save_file(tensors, str(f))
    update_manifest(bundle, "sae.safetensors")
    with pytest.raises(BundleError, match=r"sae\.safetensors.*W_enc"):
        load_bundle(bundle)


def test_wrong_elsa_width_with_a_matching_hash(bundle: Path) -> None:
    f = bundle / "elsa.safetensors"
    a = load_file(str(f))["A"]
    save_file({"A": a[:, :-1].contiguous()}, str(f))
    update_manifest(bundle, "elsa.safetensors")
    with pytest.raises(BundleError, match=r"elsa\.safetensors.*A"):
        load_bundle(bundle)


def test_nan_weights_with_a_matching_hash(bundle: Path) -> None:
    f = bundle / "elsa.safetensors"
    a = load_file(str(f))["A"]
    a[0, 0] = float("nan")
    save_file({"A": a}, str(f))
    update_manifest(bundle, "elsa.safetensors")
    with pytest.raises(BundleError, match=r"elsa\.safetensors.*NaN"):
        load_bundle(bundle)


def rewrite_sae(bundle: Path, **tensors: torch.Tensor | None) -> None:
    """Replace (None: drop) tensors of sae.safetensors and update the manifest."""
    f = bundle / "sae.safetensors"
    held = load_file(str(f))
    for name, t in tensors.items():
        if t is None:
            held.pop(name)
        else:
            held[name] = t
    save_file(held, str(f))
    update_manifest(bundle, "sae.safetensors")


def edit_config(bundle: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    cpath = bundle / "config.json"
    config = json.loads(cpath.read_text())
    edit(config)
    cpath.write_text(json.dumps(config))
    update_manifest(bundle, "config.json")


def test_version_3_bundle_loads_without_a_refit_metric(bundle: Path,
                                                       interactions: Interactions) -> None:
    """A bundle from before the refit metric (format 3) still serves, refitting plainly."""
    rewrite_sae(bundle, refine_metric=None)

    def to_v3(config: dict[str, Any]) -> None:
        config["format_version"] = 3
        del config["sae"]["refine_metric"], config["sae"]["refine_solver"]

    edit_config(bundle, to_v3)
    edit_manifest(bundle, format_version=3)
    b = load_bundle(bundle)
    assert isinstance(b.sae, TopKSAE) and b.sae.refine_metric is None
    assert b.sae.refine_solver == "projected-gradient"
    elsa, sae = models(interactions.n_items, 0)                # the fixture's weights
    sae.set_refine_metric(None)
    sae.refine_solver = "projected-gradient"
    x = torch.from_numpy(interactions.matrix[:16].toarray())
    with torch.no_grad():
        assert torch.equal(Recommender(b.elsa, b.sae)(x), Recommender(elsa, sae)(x))


def test_version_4_bundle_refits_with_projected_gradient_steps(
        bundle: Path, interactions: Interactions) -> None:
    """A bundle from before the accelerated solver (format 4) is served as it was trained
    and evaluated: its refit takes plain projected-gradient steps."""
    def to_v4(config: dict[str, Any]) -> None:
        config["format_version"] = 4
        del config["sae"]["refine_solver"]

    edit_config(bundle, to_v4)
    edit_manifest(bundle, format_version=4)
    b = load_bundle(bundle)
    assert isinstance(b.sae, TopKSAE) and b.sae.refine_solver == "projected-gradient"
    elsa, sae = models(interactions.n_items, 0)
    x = torch.from_numpy(interactions.matrix[:16].toarray())
    with torch.no_grad():
        accelerated = Recommender(elsa, sae)(x)
        sae.refine_solver = "projected-gradient"
        assert torch.equal(Recommender(b.elsa, b.sae)(x), Recommender(elsa, sae)(x))
    assert not torch.equal(Recommender(b.elsa, b.sae)(x), accelerated)


@pytest.mark.parametrize("solver", ["newton", 3, None])
def test_unknown_refit_solver(bundle: Path, solver: object) -> None:
    edit_config(bundle, lambda c: c["sae"].update(refine_solver=solver))
    with pytest.raises(BundleError, match=r"config\.json.*refine_solver"):
        load_bundle(bundle)
    edit_config(bundle, lambda c: c["sae"].pop("refine_solver"))
    with pytest.raises(BundleError, match=r"config\.json.*refine_solver"):
        load_bundle(bundle)


def test_refit_metric_missing_or_not_symmetric(bundle: Path) -> None:
    rewrite_sae(bundle, refine_metric=None)
    with pytest.raises(BundleError, match=r"sae\.safetensors.*holds tensors"):
        load_bundle(bundle)
    skew = torch.arange(D * D, dtype=torch.float32).reshape(D, D)
    rewrite_sae(bundle, refine_metric=skew)
    with pytest.raises(BundleError, match=r"sae\.safetensors.*symmetric"):
        load_bundle(bundle)


def test_refit_metric_flag_must_fit_the_format_and_the_sae(bundle: Path) -> None:
    edit_config(bundle, lambda c: c["sae"].pop("refine_metric"))     # version 4 needs it
    with pytest.raises(BundleError, match=r"config\.json.*refine_metric"):
        load_bundle(bundle)
    edit_config(bundle, lambda c: c["sae"].update(refine_metric=True, refine_steps=0))
    with pytest.raises(BundleError, match=r"config\.json.*refine_steps > 0"):
        load_bundle(bundle)

    def v3_with_metric(config: dict[str, Any]) -> None:
        config["format_version"] = 3
        config["sae"].update(refine_metric=True, refine_steps=REFINE)

    edit_config(bundle, v3_with_metric)
    edit_manifest(bundle, format_version=3)
    with pytest.raises(BundleError, match=r"config\.json.*needs version 4"):
        load_bundle(bundle)


def test_config_and_manifest_versions_must_agree(bundle: Path) -> None:
    edit_config(bundle, lambda c: c.update(format_version=3))
    with pytest.raises(BundleError,
                       match=rf"config\.json.*format version 3 \(manifest: {FORMAT_VERSION}\)"):
        load_bundle(bundle)


@pytest.mark.parametrize("version", [FORMAT_VERSION + 1, 0, None])
def test_wrong_format_version(bundle: Path, version: int | None) -> None:
    edit_manifest(bundle, format_version=version)
    with pytest.raises(BundleError, match=r"manifest\.json.*format version"):
        load_bundle(bundle)


def test_missing_folder_and_manifest(tmp_path: Path, bundle: Path) -> None:
    with pytest.raises(BundleError, match="nowhere"):
        load_bundle(tmp_path / "nowhere")
    (bundle / "manifest.json").unlink()
    with pytest.raises(BundleError, match=r"manifest\.json"):
        load_bundle(bundle)


def test_catalog_rows_must_match_items(tmp_path: Path, interactions: Interactions,
                                       catalog: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="catalog"):
        save(tmp_path / "b", interactions, catalog.iloc[::-1].reset_index(drop=True))
    assert not list(tmp_path.iterdir())


def test_saving_over_a_bundle_replaces_it_atomically(tmp_path: Path,
                                                     interactions: Interactions,
                                                     catalog: pd.DataFrame) -> None:
    out = tmp_path / "parent" / "bundle"
    save(out, interactions, catalog, seed=0)
    (out / "stray.txt").write_text("from the old bundle")
    elsa, sae = save(out, interactions, catalog, seed=1)
    assert [p.name for p in out.parent.iterdir()] == ["bundle"]     # no temp or .old folder
    assert not (out / "stray.txt").exists()
    b = load_bundle(out)
    assert torch.equal(b.elsa.A, elsa.A) and torch.equal(b.sae.W_dec, sae.W_dec)
    x = torch.from_numpy(interactions.matrix[:4].toarray().astype(np.float32))
    with torch.no_grad():
        assert torch.equal(Recommender(b.elsa, b.sae)(x), Recommender(elsa, sae)(x))


def test_concept_index_out_of_range_with_a_matching_hash(bundle: Path) -> None:
    f = bundle / "concepts.safetensors"
    tensors = load_file(str(f))
    tensors["best"][0, 0] = H
    save_file(tensors, str(f))
    update_manifest(bundle, "concepts.safetensors")
    with pytest.raises(BundleError, match=r"concepts\.safetensors.*best.*outside -1\.\.23"):
        load_bundle(bundle)


def test_concept_names_and_arrays_must_agree(bundle: Path) -> None:
    f = bundle / "concepts.json"
    meta = json.loads(f.read_text())
    meta["names"] = meta["names"][:-1]
    meta["kinds"] = meta["kinds"][:-1]
    f.write_text(json.dumps(meta))
    update_manifest(bundle, "concepts.json")
    with pytest.raises(BundleError, match=r"concepts\.safetensors.*items_per_concept"):
        load_bundle(bundle)
    meta["kinds"] = meta["kinds"][:-1]
    f.write_text(json.dumps(meta))
    update_manifest(bundle, "concepts.json")
    with pytest.raises(BundleError, match=r"concepts\.json.*equal length"):
        load_bundle(bundle)
    meta = json.loads(f.read_text())
    meta["names"] = meta["names"][:len(meta["kinds"])]
    meta["names"][0], meta["names"][1] = meta["names"][1], meta["names"][0]  # unsorted
    f.write_text(json.dumps(meta))
    update_manifest(bundle, "concepts.json")
    with pytest.raises(BundleError, match=r"concepts\.json.*sorted and distinct"):
        load_bundle(bundle)


def test_concept_map_must_fit_the_sae(tmp_path: Path, interactions: Interactions,
                                      catalog: pd.DataFrame) -> None:
    elsa, sae = models(interactions.n_items, 0)
    small = TopKSAE(D, H - 1, K)
    with pytest.raises(ValueError, match="concept map has 24 neurons, the SAE 23"):
        save_bundle(tmp_path / "b", dataset="synthetic", elsa=elsa, sae=small,
                    train_config=CFG, data=interactions, catalog=catalog, quality={},
                    concepts=concept_map(elsa, sae, catalog))
    assert not list(tmp_path.iterdir())


def test_no_pickle_anywhere(tmp_path: Path, interactions: Interactions,
                            catalog: pd.DataFrame) -> None:
    """A bundle is JSON and safetensors only, and no code of ours can unpickle."""
    out = tmp_path / "b"
    save(out, interactions, catalog)
    for f in out.iterdir():
        assert f.suffix in {".json", ".jsonl", ".safetensors"}, f.name
        head = f.read_bytes()[:2]
        assert head not in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05", b"PK"), f.name
    repo = Path(__file__).resolve().parents[2]
    for py in [*repo.glob("app/**/*.py"), *repo.glob("models/**/*.py"),
               *repo.glob("migrations/**/*.py"), *repo.glob("benchmarks/**/*.py"),
               *repo.glob("experiments/**/*.py")]:
        text = py.read_text()
        for unsafe in ("import pickle", "torch.load(", "allow_pickle=True", "joblib",
                       "import dill", "cloudpickle", "pd.read_pickle", "import shelve",
                       "from shelve", "shelve.open"):  # not Goodreads' shelves
            assert unsafe not in text, f"{py.relative_to(repo)}: {unsafe}"


@pytest.mark.parametrize(("change", "names"), [
    (lambda row: row.pop("title"), "row 1: title is missing"),
    (lambda row: row.update(title=7), "row 1: title 7 is not valid"),
    (lambda row: [row.pop(k) for k in list(row)], "row 1: item is missing"),
    (lambda row: row.update(year="nineteen"), "row 1: year 'nineteen' is not valid"),
    (lambda row: row.update(item="1"), "row 1: item '1' is not valid"),
    (lambda row: row.update(genres="Drama"), "row 1: genres 'Drama' is not valid"),
    (lambda row: row.update(directors=[3]), "row 1: directors [3] is not valid"),
    (lambda row: row.update(hetrec_tags=[["pixar", "10"]]),
     "row 1: hetrec_tags [['pixar', '10']] is not valid"),
])
def test_a_rehashed_catalog_is_still_checked(bundle: Path, change: Any, names: str) -> None:
    """The manifest proves integrity, not sense: whoever edits a file can re-hash it."""
    f = bundle / "catalog.jsonl"
    rows = [json.loads(line) for line in f.read_text().splitlines()]
    change(rows[0])
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    update_manifest(bundle, "catalog.jsonl")
    with pytest.raises(BundleError, match=rf"catalog\.jsonl: {re.escape(names)}"):
        load_bundle(bundle)


def test_a_rehashed_config_and_manifest_are_still_checked(bundle: Path) -> None:
    config = json.loads((bundle / "config.json").read_text())
    config["sae"]["kind"] = "mystery"
    (bundle / "config.json").write_text(json.dumps(config))
    update_manifest(bundle, "config.json")
    with pytest.raises(BundleError, match=r"config\.json: sae\.kind 'mystery'"):
        load_bundle(bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"]["sae.safetensors"] = "trust me"
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"entry 'sae\.safetensors' is not an object"):
        load_bundle(bundle)


def test_book_catalog_columns_round_trip(tmp_path: Path, interactions: Interactions,
                                         catalog: pd.DataFrame) -> None:
    books = catalog.assign(
        authors=[[f"Author {i % 3}", "An Illustrator"] if i % 2 else [f"Author {i % 3}"]
                 for i in range(len(catalog))],
        shelves=[[("vampires", 0.5), ("magic", 1.0)] if i % 2 else []
                 for i in range(len(catalog))])
    save(tmp_path / "b", interactions, books)
    loaded = load_bundle(tmp_path / "b").catalog
    assert loaded["authors"].tolist() == books["authors"].tolist()
    assert loaded["shelves"].tolist()[:2] == [[], [["vampires", 0.5], ["magic", 1.0]]]


def test_catalog_without_book_columns_reads_them_empty(bundle: Path) -> None:
    path = bundle / "catalog.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps({k: v for k, v in r.items()
                                        if k not in ("authors", "shelves")}) + "\n"
                            for r in rows))
    update_manifest(bundle, "catalog.jsonl")
    cat = load_bundle(bundle).catalog
    assert cat["authors"].tolist() == [[]] * len(rows) == cat["shelves"].tolist()


@pytest.mark.parametrize("shelf", [["vampires", 0], ["vampires", 1.5], ["vampires"], [3, 0.5]])
def test_bad_shelf_pair_names_row_and_column(bundle: Path, shelf: list[Any]) -> None:
    path = bundle / "catalog.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[1]["shelves"] = [shelf]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    update_manifest(bundle, "catalog.jsonl")
    with pytest.raises(BundleError, match="row 2: shelves"):
        load_bundle(bundle)
