"""The serving engine: one bundle on one device, per-user state and per-neuron item rows
cached, knob changes applied through the affine form of method.md §7.

- A user's state (their SAE code, the standardisation's mean and std, the unsteered
  scores and their inputs) is computed once and kept in an LRU cache. Cold users that
  arrive together are encoded in one batch by a worker thread (`_Batcher`).
- The item-score rows R = W_dec A^T ([h, items]) are computed at start-up when they fit
  the row budget (ml-latest-small's 4096 x 6,298: 103 MB), so a row is a view and a
  "why" gathers its values; otherwise a neuron's row is computed the first time it is
  needed and kept in an LRU cache bounded in bytes. A concept knob's mean row is kept
  in an LRU cache likewise.
- A knob change is `models.steering.steered_scores`: O((1 + knobs) x items), plus a row
  per active neuron that a "less of" knob turns down.
- `recommend_many` answers several knob changes at once (the API's warm requests of one
  event-loop round, app/rounds.py): each job's scores as alone into a row of one
  buffer, one top-n and one "why" for all. Every job gets the bits it gets alone.

Every method is safe to call from many threads: caches are guarded by a lock, torch
inference on separate tensors needs none.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, TypeVar, cast

import numpy as np
import pydantic_core
import scipy.sparse as sp
import torch

from app.schemas import ItemOut
from models.bundle import Bundle
from models.data import goodbooks, movielens
from models.metrics import top_n_owned
from models.steering import (
    Knob,
    UserScores,
    knob_row,
    latent_rows,
    own_scale,
    push_norm,
    score_basis,
    steered_scores,
    user_scores,
)
from models.train import embed_rows

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


UNSTEERED_TOP = 100
"""The unsteered list kept per user is this long (the API's largest n), so every n is a
prefix of one list."""


class Nouns(NamedTuple):
    """What the pages call the bundle's items: `one` and `many` ("book", "books");
    `search`, the label of the title search (which also matches authors); `examples`,
    the concepts the knob search suggests."""

    one: str
    many: str
    search: str
    examples: str


def nouns(dataset: str) -> Nouns:
    """The nouns for a bundle of `dataset` (bundle.config["dataset"]): books for
    goodbooks-10k, movies for MovieLens, neutral titles for anything else."""
    if dataset == goodbooks.NAME:
        return Nouns("book", "books", "Title or author", "fantasy, stephen king, 1980s")
    if dataset in movielens.DATASETS:
        return Nouns("movie", "movies", "Title", "horror, tom hanks, 1980s")
    return Nouns("title", "titles", "Title", "horror, 1980s")


class LRU(Generic[K, V]):
    """A thread-safe least-recently-used map bounded by total `size` of its values."""

    def __init__(self, capacity: float, size: Callable[[V], float] = lambda _: 1.0) -> None:
        self.capacity, self.size = capacity, size
        self._items: OrderedDict[K, V] = OrderedDict()
        self._used = 0.0
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            if key in self._items:
                self._used -= self.size(self._items.pop(key))
            self._items[key] = value
            self._used += self.size(value)
            while self._used > self.capacity and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._used -= self.size(old)

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True)
class UserState:
    """scores: the §7 state (code, active neurons, mass, std, offset, latent); inputs:
    [m] item indices the user has (masked from recommendations); taken: the same on the
    device; unsteered: [items] the unsteered scores (shared: never written)."""

    scores: UserScores
    inputs: np.ndarray
    taken: torch.Tensor
    unsteered: torch.Tensor
    _cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def own(self) -> OwnNeurons:
        """The user's active neurons as the "why" of every request needs them (once)."""
        got: OwnNeurons | None = self._cache.get("own")
        if got is None:
            ids = sorted(self.scores.active)
            got = self._cache["own"] = OwnNeurons(
                np.array(ids, dtype=np.int64),
                np.array([self.scores.active[n] for n in ids], dtype=np.float32),
                {n: j for j, n in enumerate(ids)}, [Part("neuron", n) for n in ids])
        return got


class Part(NamedTuple):
    """A part of the steered scores: kind "neuron" (ref: a neuron of the user's own code)
    or "knob" (ref: the index of a "more of" knob in the request)."""

    kind: str
    ref: int


@dataclass(frozen=True)
class OwnNeurons:
    """A user's active neurons, sorted: ids_np [k], values [k] their code values, index:
    neuron -> position, parts: each as a Part of the "why"."""

    ids_np: np.ndarray
    values: np.ndarray
    index: dict[int, int]
    parts: list[Part]


@dataclass(frozen=True)
class Why:
    """Per ranked item, the parts that lift it most: order [n, <=3] indices into `parts`,
    largest contribution first, values [n, <=3] their contributions to the score (a value
    <= 0 lifts nothing: not a reason)."""

    parts: list[Part]
    order: np.ndarray
    values: np.ndarray

    def reasons(self, row: int) -> list[tuple[Part, float]]:
        """Item `row`'s reasons: (part, contribution), largest first."""
        return [(self.parts[j], float(v)) for j, v in zip(self.order[row], self.values[row],
                                                         strict=True) if v > 0]


class Job(NamedTuple):
    """One knob change: a user's state, the request's knobs, how many items to rank."""

    state: UserState
    knobs: Sequence[Knob]
    n: int = 20


@dataclass(frozen=True)
class Ranked:
    """items: [n] item indices best first; scores: [n]; rank_before: [n] each item's rank
    (0-based) in the unsteered list, -1 if it was not in its top n; unsteered: [n] the
    unsteered top n; why: per item, up to 3 parts that lift it most."""

    items: np.ndarray
    scores: np.ndarray
    rank_before: np.ndarray
    unsteered: np.ndarray
    why: Why


def _frozen(*arrays: np.ndarray) -> None:
    """Read-only: a batch's answers are views of shared arrays."""
    for a in arrays:
        a.setflags(write=False)


class _Batcher:
    """Encodes cold users in batches: callers submit an input row and wait on a Future; a
    worker thread takes whatever is queued (up to `max_batch`, waiting `window_s` after
    the first for more) and encodes it in one pass."""

    def __init__(self, encode: Callable[[torch.Tensor], list[UserState]],
                 n_items: int, max_batch: int = 64, window_s: float = 0.002) -> None:
        self._encode, self._n_items = encode, n_items
        self._max, self._window = max_batch, window_s
        self._queue: queue.Queue[tuple[np.ndarray, Future[UserState]]] = queue.Queue()
        self.batches: deque[int] = deque(maxlen=1024)   # sizes of the latest batches run
        self._thread = threading.Thread(target=self._run, name="knobs-batcher", daemon=True)
        self._thread.start()

    def submit(self, items: np.ndarray) -> UserState:
        fut: Future[UserState] = Future()
        self._queue.put((items, fut))
        return fut.result()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            jobs = [job]
            deadline = time.perf_counter() + self._window
            while len(jobs) < self._max:
                left = deadline - time.perf_counter()
                try:
                    jobs.append(self._queue.get(timeout=max(left, 0.0)) if left > 0
                                else self._queue.get_nowait())
                except queue.Empty:
                    break
            self.batches.append(len(jobs))
            try:
                x = torch.zeros(len(jobs), self._n_items)
                for r, (items, _) in enumerate(jobs):
                    x[r, torch.from_numpy(items)] = 1.0
                states = self._encode(x)
            except Exception as exc:  # noqa: BLE001 - handed to every waiting caller
                for _, fut in jobs:
                    fut.set_exception(exc)
                continue
            for (_, fut), state in zip(jobs, states, strict=True):
                fut.set_result(state)


class Engine:
    """Serves one bundle. `row_cache_bytes` bounds the per-neuron item rows kept;
    `user_cache` the number of user states kept."""

    def __init__(self, bundle: Bundle, device: torch.device, row_cache_bytes: int = 256 << 20,
                 user_cache: int = 4096) -> None:
        self.bundle, self.device = bundle, device
        self.elsa, self.sae = bundle.elsa.to(device).eval(), bundle.sae.to(device).eval()
        for module in (self.elsa, self.sae):     # served, never trained: no op records a
            module.requires_grad_(False)          # graph, no autograd context needed
        self.n_items = self.elsa.n_items
        self.basis = score_basis(self.elsa, self.sae)
        self.host = device.type == "cpu"
        """Gather the "why"'s values in numpy, from views of the tensors (on the CPU: a
        numpy gather costs a fraction of torch's on arrays this small); else in torch on
        the device."""
        self.nouns = nouns(str(bundle.config.get("dataset", "")))
        """What the pages call the items (every template gets it: app.htmx)."""
        cat = bundle.catalog
        self.item_views = [
            ItemOut(id=int(i), title=str(t), year=None if np.isnan(y) else int(y),
                    genres=[str(g) for g in gs], authors=[str(a) for a in authors])
            for i, t, y, gs, authors in zip(cat["item"].tolist(), cat["title"].tolist(),
                                            cat["year"].astype("float64").tolist(),
                                            cat["genres"].tolist(), cat["authors"].tolist(),
                                            strict=True)]
        """The catalog as response models, in item order (built once)."""
        self.item_dicts = [v.model_dump() for v in self.item_views]
        """The same as plain dicts, for the hot JSON and HTML paths (copied per answer)."""
        self.item_json = [pydantic_core.to_json(d).decode()[:-1] for d in self.item_dicts]
        """Each item's ItemOut JSON without its closing brace (the API's ranked lists add
        their fields to it)."""
        self.user_rows = {int(u): r for r, u in enumerate(bundle.interactions.users.ids)}
        """External user id -> row."""
        self.item_rows = {int(i): r for r, i in enumerate(bundle.interactions.items.ids)}
        """External item id -> index."""
        row_bytes = 4 * self.n_items
        self.row_table: torch.Tensor | None = None
        """R = W_dec A^T, [h, items], when all h rows fit `row_cache_bytes` (else None:
        rows are computed per neuron and kept in an LRU cache)."""
        self._table: np.ndarray | None = None
        """The same on the host, as numpy (a view), when `host`."""
        if self.sae.h * row_bytes <= row_cache_bytes:
            self.row_table = latent_rows(self.elsa, self.sae,   # frozen: no graph
                                         torch.arange(self.sae.h, device=device))
            self._table = self.row_table.numpy() if self.host else None
            log.info("item-score rows held whole: %d x %d (%.0f MB)", self.sae.h,
                     self.n_items, self.sae.h * row_bytes / 1e6)
        self._rows: LRU[int, torch.Tensor] = LRU(row_cache_bytes / row_bytes)
        self._knob_rows: LRU[tuple[int, ...], torch.Tensor] = LRU(row_cache_bytes / row_bytes)
        self._users: LRU[Hashable, UserState] = LRU(user_cache)
        self._batcher = _Batcher(self._encode_batch, self.n_items)
        self.memo: dict[Hashable, Any] = {}
        """Facts derived from the bundle alone that callers compute once (a concept knob's
        neurons): immutable values, so a race only computes one twice."""
        self._codes: sp.csc_matrix | None = None
        self._codes_lock = threading.Lock()

    # -- users -------------------------------------------------------------------------

    @torch.no_grad()
    def _encode_batch(self, x: torch.Tensor) -> list[UserState]:
        x = x.to(self.device)
        code, mean, std = self.sae.encode(self.elsa.encode(x))
        out = []
        for r in range(x.shape[0]):
            s = user_scores(self.elsa, self.sae, self.basis, code[r], mean[r], std[r])
            taken = torch.nonzero(x[r] > 0).ravel()
            out.append(UserState(s, taken.cpu().numpy(), taken, s.offset + s.std * s.latent))
        return out

    def user(self, index: int) -> UserState:
        """State of the bundle's user at row `index` (IndexError if there is none)."""
        if not 0 <= index < self.bundle.interactions.n_users:
            raise IndexError(f"no user at row {index}")
        m = self.bundle.interactions.matrix
        return self._state(("user", index),
                           lambda: m.indices[m.indptr[index]:m.indptr[index + 1]].astype(np.int64))

    def is_warm(self, user_row: int | None = None, items: Sequence[int] = ()) -> bool:
        """Whether that user's (or profile's) state is cached: a request for it costs well
        under a millisecond and can run on the event loop."""
        key = ("user", user_row) if user_row is not None else (
            "profile", tuple(sorted({int(i) for i in items})))
        return self._users.get(key) is not None

    def profile(self, items: Sequence[int]) -> UserState:
        """State of an ad-hoc history (item indices; fold-in, no retraining)."""
        key = ("profile", tuple(sorted({int(i) for i in items})))
        return self._state(key, lambda: np.asarray(key[1], dtype=np.int64))

    def _state(self, key: Hashable, items: Callable[[], np.ndarray]) -> UserState:
        state = self._users.get(key)
        if state is None:
            state = self._batcher.submit(items())
            self._users.put(key, state)
        return state

    # -- knobs -------------------------------------------------------------------------

    def row(self, neuron: int) -> torch.Tensor:
        """R[n] = W_dec[n] A^T ([items]), computed once per neuron (the hot path's
        "less of" and single-neuron knobs: a cache lookup, no stacking)."""
        if self.row_table is not None:
            return self.row_table[neuron]
        row = self._rows.get(neuron)
        if row is None:
            row = latent_rows(self.elsa, self.sae,
                              torch.tensor([neuron], device=self.device))[0]
            self._rows.put(neuron, row)
        return row

    def rows(self, neurons: Sequence[int]) -> torch.Tensor:
        """R[n] for the given neurons: [len(neurons), items], each read through `row`.
        Without the table each row is its own product, never part of a larger one: a
        product's rows can differ in the last bits with its shape, and a neuron's row
        must be the same bits whichever request computed it (and after an eviction)."""
        if self.row_table is not None:
            return self.row_table[list(neurons)]
        return torch.stack([self.row(n) for n in neurons]) if neurons else torch.zeros(
            0, self.n_items, device=self.device)

    def knob_row(self, neurons: tuple[int, ...]) -> torch.Tensor:
        """The mean item-score row of a knob's neurons: [items], cached per neuron set."""
        if len(neurons) == 1:
            return self.row(neurons[0])
        row = self._knob_rows.get(neurons)
        if row is None:
            row = knob_row(self.rows(list(neurons)))
            self._knob_rows.put(neurons, row)
        return row

    def recommend(self, state: UserState, knobs: Sequence[Knob], n: int = 20) -> Ranked:
        """Top n steered by `knobs`, beside the unsteered top n, with each item's why
        (n is capped at the items the user does not have): `recommend_many` of one."""
        return self.recommend_many([Job(state, knobs, n)])[0]

    def recommend_many(self, jobs: Sequence[Job]) -> list[Ranked]:
        """`recommend` for several knob changes at once (the ones a server has ready
        together), in a few operations over the batch instead of a few per job:

        - each job's steered scores are computed as alone (`steered_scores`, the same
          operations) into a row of one buffer; its inputs masked in one pass;
        - one top-n over the buffer per distinct n (its values are the scores);
        - one "why" for all jobs (`_why_many`).

        Each answer is what its job gets alone, bit for bit: per row the same operations,
        each element of a product or a row's top-k independent of the other rows (so the
        API's batched answers equal the pages' one by one; checked on the CPU: CUDA's
        top-k may order tied items by the batch's shape). No autograd context: the
        engine's parameters are frozen, so nothing here records a graph."""
        ns = [max(0, min(j.n, self.n_items - len(j.state.inputs))) for j in jobs]
        tops = [self._unsteered_top(j.state, n) for j, n in zip(jobs, ns, strict=True)]
        knob_rows = [[self.knob_row(k.neurons) for k in j.knobs] for j in jobs]
        # no knobs: the unsteered list itself; the steered jobs' lists replace theirs below
        items = [ids_all[:n] for n, (_, ids_all, _) in zip(ns, tops, strict=True)]
        scores = [j.state.unsteered.index_select(0, top_all[:n]).cpu().numpy()
                  if not j.knobs else np.zeros(0, np.float32)
                  for j, n, (top_all, _, _) in zip(jobs, ns, tops, strict=True)]
        steered = [b for b, j in enumerate(jobs) if j.knobs]
        if steered:
            buf = torch.empty(len(steered), self.n_items, device=self.device)
            for r, b in enumerate(steered):
                steered_scores(jobs[b].state.scores, jobs[b].knobs, knob_rows[b], self.row,
                               out=buf[r])
            taken = np.concatenate([jobs[b].state.inputs + r * self.n_items
                                    for r, b in enumerate(steered)])
            buf.view(-1).index_fill_(0, self._on_device(taken), float("-inf"))  # inputs
            for n in dict.fromkeys(ns[b] for b in steered):
                rows = [r for r, b in enumerate(steered) if ns[b] == n]
                best = (buf if len(rows) == len(steered) else buf[rows]).topk(n, dim=1)
                got_items, got_scores = best.indices.cpu().numpy(), best.values.cpu().numpy()
                _frozen(got_items, got_scores)
                for at, r in enumerate(rows):
                    items[steered[r]], scores[steered[r]] = got_items[at], got_scores[at]
        whys = self._why_many(jobs, knob_rows, items)
        out = []
        for job_items, job_scores, n, (_, ids_all, rank_all), why in zip(
                items, scores, ns, tops, whys, strict=True):
            rank_before = np.array([r if (r := rank_all.get(i, n)) < n else -1
                                    for i in job_items.tolist()], dtype=np.int64)
            out.append(Ranked(job_items, job_scores, rank_before, ids_all[:n], why))
        return out

    def _unsteered_top(self, state: UserState, n: int
                       ) -> tuple[torch.Tensor, np.ndarray, dict[int, int]]:
        """The user's unsteered top max(n, UNSTEERED_TOP) (a shorter list's is its
        prefix): indices, the same in numpy (read-only: shared by every answer), and each
        item's rank. Kept per user, one entry whatever n callers ask for."""
        got: tuple[torch.Tensor, np.ndarray, dict[int, int]] | None = state._cache.get("top")
        if got is None or len(got[1]) < n:
            k = min(max(n, UNSTEERED_TOP), self.n_items - len(state.inputs))
            top = top_n_owned(state.unsteered.clone(), k, state.taken)
            ids = top.cpu().numpy()
            ids.setflags(write=False)
            got = state._cache["top"] = (top, ids, {i: r for r, i in enumerate(ids.tolist())})
        return got

    def _why_many(self, jobs: Sequence[Job], knob_rows: list[list[torch.Tensor]],
                  items: list[np.ndarray]) -> list[Why]:
        """Per job and ranked item, the 3 largest parts of its steered score: each "more
        of" knob as one part (std * mass * a_j / norm * knob_row_j[i], what the knob
        pushed) and each of the user's own neurons that a knob leaves in the code
        (std * z'_n * R[n, i]). knob_rows: each job's knobs' `knob_row`s.

        All jobs at once: [jobs, items, own neurons + knobs] values of the rows at the
        ranked items (gathered from R when it is held, else A[items] W_dec[ids]^T per
        job), times each part's weight, one top-3 over the parts per group of jobs with
        as many parts. Each product is one multiplication and each (job, item)'s top-3
        reads exactly its own parts, so a job's why is the same in any batch."""
        parts: list[list[Part]] = []
        whys: list[Why | None] = [None] * len(jobs)
        live: list[tuple[int, OwnNeurons, np.ndarray, list[torch.Tensor]]] = []
        for b, (job, rows, job_items) in enumerate(zip(jobs, knob_rows, items, strict=True)):
            s, own, knobs = job.state.scores, job.state.own(), job.knobs
            more = [j for j, k in enumerate(knobs) if k.strength > 0]
            parts.append(own.parts + [Part("knob", j) for j in more])
            if not parts[b] or not len(job_items):
                whys[b] = Why(parts[b], np.zeros((len(job_items), 0), np.int64),
                              np.zeros((len(job_items), 0), np.float32))
                continue
            keep, factor = own_scale(s.mass, knobs, s.active)
            own_w = s.std * keep * own.values
            for n, f in factor.items():
                if n in own.index:
                    own_w[own.index[n]] *= f
            norm = push_norm(knobs)
            w = np.concatenate([own_w, np.array([s.std * s.mass * knobs[j].strength / norm
                                                 for j in more], np.float32)])
            live.append((b, own, w, [rows[j] for j in more]))
        if not live:
            return cast(list[Why], whys)
        ks = [len(own.ids_np) for _, own, _, _ in live]
        qs = [len(pushed) for _, _, _, pushed in live]
        ms = [len(items[b]) for b, _, _, _ in live]
        n_own, n_knobs, n_items = max(ks), max(qs), max(ms)
        width = n_own + n_knobs
        # each job's parts at [0, k + q) of the last axis, its own neurons then its knobs,
        # as alone; what lies past them (zeros, padding) is never read
        cols = np.zeros((len(live), n_items), dtype=np.int64)
        ids = np.zeros((len(live), n_own), dtype=np.int64)
        w = np.zeros((len(live), width), dtype=np.float32)
        for r, (b, own, job_w, _) in enumerate(live):
            cols[r, :ms[r]], ids[r, :ks[r]] = items[b], own.ids_np
            w[r, :len(job_w)] = job_w
        own_at = self._own_at(ids, cols, ks, ms)
        if self.host:
            picked = np.zeros((len(live), n_items, width), dtype=np.float32)
            picked[:, :, :n_own] = own_at
            for r, (_, _, _, pushed) in enumerate(live):
                for j, row in enumerate(pushed):
                    picked[r, :, ks[r] + j] = row.numpy().take(cols[r])
            contrib = torch.from_numpy(picked * w[:, None, :])
        else:
            contrib = torch.zeros(len(live), n_items, width, device=self.device)
            contrib[:, :, :n_own] = own_at
            if n_knobs:                     # the knobs' rows, stacked once, at the items
                distinct = {id(row): row for _, _, _, pushed in live for row in pushed}
                where = {key: u for u, key in enumerate(distinct)}
                which = np.zeros((len(live), 1, n_knobs), dtype=np.int64)
                for r, (_, _, _, pushed) in enumerate(live):
                    which[r, 0, :qs[r]] = [where[id(row)] for row in pushed]
                values = torch.take(torch.stack(list(distinct.values())), self._on_device(
                    which * self.n_items + cols[:, :, None]))
                at = np.array(ks)[:, None, None] + np.arange(n_knobs)      # k + j
                contrib.scatter_(2, self._on_device(np.broadcast_to(
                    at, values.shape).copy()), values)
            contrib *= self._on_device(w[:, None, :])
        # one top-3 per group of jobs with the same number of parts, over exactly those:
        # each (job, item)'s slice then holds what it holds alone, and top-k breaks ties
        # (two knobs on one neuron tie) by a slice's content and length alone
        groups: dict[int, list[int]] = {}
        for r in range(len(live)):
            groups.setdefault(ks[r] + qs[r], []).append(r)
        for size, members in groups.items():
            sub = contrib if len(members) == len(live) else contrib[members]
            values_t, order_t = torch.topk(sub[:, :, :size], min(3, size), dim=2)
            values_np, order_np = values_t.cpu().numpy(), order_t.cpu().numpy()
            _frozen(values_np, order_np)
            for g, r in enumerate(members):
                job_b = live[r][0]
                whys[job_b] = Why(parts[job_b], order_np[g, :ms[r]], values_np[g, :ms[r]])
        return cast(list[Why], whys)

    def _on_device(self, array: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(array)
        return tensor if self.device.type == "cpu" else tensor.to(self.device)

    def _own_at(self, ids: np.ndarray, cols: np.ndarray, ks: list[int], ms: list[int]
                ) -> Any:
        """R[ids_b][:, cols_b]^T for each job b: [jobs, cols, neurons] (ids: [jobs,
        neurons], cols: [jobs, items]; ks, ms: each job's real neurons and items, the
        rest padding). Gathered from R when it is held, in one take; else
        A[cols] W_dec[ids]^T per job (no rows kept per user). A numpy array on the
        host (`host`), else a tensor on the device."""
        if self.row_table is not None:
            at = ids[:, None, :] * self.n_items + cols[:, :, None]
            if self.host and self._table is not None:
                return np.take(self._table, at)
            return torch.take(self.row_table, self._on_device(at))
        out = torch.zeros(*cols.shape, ids.shape[1], device=self.device)
        for r, (k, m) in enumerate(zip(ks, ms, strict=True)):
            if k and m:
                out[r, :m, :k] = (self.elsa.A.index_select(0, self._on_device(cols[r, :m]))
                                  @ self.sae.W_dec.index_select(
                                      0, self._on_device(ids[r, :k])).T)
        return out.numpy() if self.host else out

    @torch.no_grad()
    def activations(self, neuron: int) -> np.ndarray:
        """[users] the neuron's value in every bundle user's code (for the knob page's
        histogram); all users' codes are computed once, on first use."""
        with self._codes_lock:
            if self._codes is None:
                matrix = self.bundle.interactions.matrix
                parts = [sp.csr_matrix(self.sae.encode(
                    embed_rows(self.elsa, matrix[s:s + 256], self.device)).code.cpu().numpy())
                    for s in range(0, matrix.shape[0], 256)]
                self._codes = (sp.vstack(parts).tocsc() if parts
                               else sp.csc_matrix((0, self.sae.h)))
        return np.asarray(self._codes[:, neuron].todense()).ravel()

    def warm_up(self) -> None:
        """Run one user through every path once (first-call costs paid at start-up)."""
        if self.bundle.interactions.n_users:
            state = self.user(0)
            first = next(iter(state.scores.active), 0)
            self.recommend(state, [Knob((first,), 0.2)])
