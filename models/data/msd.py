"""Million Song Dataset, Echo Nest taste profile subset: `train_triplets.txt`
(`user<TAB>song<TAB>play count`, no header, 48,373,586 lines, about 2.9 GB unpacked),
usually read straight out of `train_triplets.txt.zip`.

Design of the ids: the string ids (40-hex user hashes, 'SOAKIMP12A8C130995' song ids) are
parsed as pandas categoricals and replaced by int64 codes, so the frame stays about 1.2 GB
and fits `positives_from_ratings` like a MovieLens frame. Codes index the *sorted* unique
string ids, so they do not depend on the order of lines. `load_with_vocab` returns the
frame together with those id arrays (`vocab.users[code]` is the original user id);
`load_triplets` returns only the frame. Typical use (method.md §1):

    triplets, vocab = msd.load_with_vocab()
    data = positives_from_ratings(triplets, threshold=None, min_item_users=200,
                                  min_user_positives=20)
    song_ids = vocab.songs[data.items.ids]
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from models.data.download import resolve
from models.data.parsing import Column, TableSpec, read_table

log = logging.getLogger(__name__)

NAME = "msd"
MEMBER = "train_triplets.txt"

TRIPLETS = TableSpec(
    "\t",
    (Column("user", "category"), Column("item", "category"), Column("plays", "int", low=1)),
)


@dataclass(frozen=True)
class MsdVocab:
    """The original string ids behind the integer codes of `load_triplets`."""

    users: np.ndarray
    """[n_users] str (object) array, sorted; user code u is `users[u]`."""
    songs: np.ndarray
    """[n_songs] str (object) array, sorted; item code i is `songs[i]`."""


def _codes(col: pd.Series) -> tuple[pd.Series, np.ndarray]:
    cat = col.cat
    if not cat.categories.is_monotonic_increasing:
        col = cat.reorder_categories(cat.categories.sort_values())
    return (pd.Series(col.cat.codes.to_numpy().astype(np.int64), index=col.index),
            col.cat.categories.to_numpy(dtype=object))


def load_with_vocab(data_dir: str | Path | None = None) -> tuple[pd.DataFrame, MsdVocab]:
    """The play-count triplets and their id vocabularies.

    Returns (frame with columns user: int64 code, item: int64 code, plays: int64 >= 1,
    vocab). Raises MalformedFileError naming the line of the first bad row.
    """
    files = resolve(NAME, data_dir)
    raw = read_table(lambda: files.open(MEMBER), TRIPLETS, files.path_for_messages(MEMBER))
    users, user_ids = _codes(raw["user"])
    items, song_ids = _codes(raw["item"])
    frame = pd.DataFrame({"user": users, "item": items,
                          "plays": raw["plays"].astype(np.int64)})
    log.info("MSD: %d triplets, %d users, %d songs", len(frame), len(user_ids), len(song_ids))
    return frame, MsdVocab(users=user_ids, songs=song_ids)


def load_triplets(data_dir: str | Path | None = None) -> pd.DataFrame:
    """Columns user: int64 code, item: int64 code, plays: int64; see `load_with_vocab` for
    the string ids the codes stand for."""
    return load_with_vocab(data_dir)[0]
