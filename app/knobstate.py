"""A screen's knob state: parsing it from forms and JSON, resolving it to neurons and
labels, the events a change makes, and the steered screen it gives.

A knob entry is {"key", "alpha", "direction"}: key "n:<neuron>", "c:<concept>" or
"p:<preset id>", alpha in [0, 1], direction "more" or "less". The "more" alphas share one
convex budget: when they add up to over 1 they are scaled to sum to 1 (method.md §6, and
the API refuses such a request instead); "less of" knobs each turn their neurons down
independently."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from app import service
from app.db.tables import EventType
from app.engine import Engine, UserState
from app.schemas import MAX_KNOBS, KnobOut
from models.concepts import normalize
from models.steering import Knob

HIGH = 0.5
"""Warn when two or more knobs are above this."""
NEW_KNOB = 0.1
"""New knobs start small (ux.md)."""
NUDGE = 0.1
"""One press of a more/less button."""


class KnobError(ValueError):
    """Bad knob input; the message names the field (answered as 422)."""


@dataclass(frozen=True)
class Entry:
    key: str
    alpha: float
    direction: str

    def as_json(self) -> dict[str, Any]:
        return {"key": self.key, "alpha": self.alpha, "direction": self.direction}


@dataclass(frozen=True)
class PresetInfo:
    """What a preset knob needs from the database."""

    id: int
    name: str
    targets: tuple[str, ...]


@dataclass
class KnobRow:
    """A knob as a screen shows it."""

    key: str
    alpha: float
    direction: str
    label: str
    kind: str                      # "neuron", "concept" or "preset"
    neuron: int | None
    neurons: list[int] = field(default_factory=list)


def entry(key: str, alpha: Any, direction: Any) -> Entry:
    """One validated entry; KnobError naming the bad part."""
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise KnobError(f"alpha: {alpha!r} is not a number") from None
    if not (math.isfinite(a) and 0.0 <= a <= 1.0):
        raise KnobError(f"alpha: must be in [0, 1], got {alpha}")
    if direction not in ("more", "less"):
        raise KnobError(f"direction: must be 'more' or 'less', got {direction!r}")
    return Entry(canonical(key), round(a, 4), direction)


def canonical(key: str) -> str:
    """The one spelling of a knob key ("c:" + the normalised concept name, "n:" / "p:" +
    the number without leading zeros); KnobError if it is none of the three."""
    kind, _, ref = key.partition(":")
    if kind in ("n", "p") and ref.isascii() and ref.isdigit() and len(ref) < 10:
        return f"{kind}:{int(ref)}"
    name = normalize(ref) if kind == "c" and len(ref) <= 200 else ""
    if not name or "\x00" in name:
        raise KnobError(f"key: {key[:60]!r} is not 'n:<neuron>', 'c:<concept>' or "
                        "'p:<preset>'")
    return f"c:{name}"


def from_form(kid: Sequence[str], ka: Sequence[Any], kd: Sequence[Any]) -> list[Entry]:
    """Entries from a form's (or the API's) parallel key / alpha / direction lists."""
    if not len(kid) == len(ka) == len(kd):
        raise KnobError("knobs: kid, ka and kd must come in threes")
    entries = [entry(k, a, d) for k, a, d in zip(kid, ka, kd, strict=True)]
    return _unique(entries)


def from_json(raw: Sequence[Mapping[str, Any]]) -> list[Entry]:
    return [Entry(str(r["key"]), float(r["alpha"]), str(r["direction"])) for r in raw]


def to_json(entries: Sequence[Entry]) -> list[dict[str, Any]]:
    return [e.as_json() for e in entries]


def _unique(entries: list[Entry]) -> list[Entry]:
    keys = [e.key for e in entries]
    if len(set(keys)) != len(keys):
        raise KnobError("knobs: the same knob twice")
    if len(entries) > MAX_KNOBS:
        raise KnobError(f"knobs: at most {MAX_KNOBS}, got {len(entries)}")
    return entries


def edit(entries: list[Entry], add: str | None = None, remove: str | None = None,
         nudge: str | None = None) -> list[Entry]:
    """Apply a form's add / remove / nudge ("<key>:+" or "<key>:-") to `entries`."""
    out = list(entries)
    if remove is not None:
        remove = canonical(remove)
        if remove not in {e.key for e in out}:
            raise KnobError(f"remove: no knob {remove[:60]!r} on this screen")
        out = [e for e in out if e.key != remove]
    if add is not None and canonical(add) not in {e.key for e in out}:
        out.append(entry(add, NEW_KNOB, "more"))
    if nudge is not None:
        key, _, sign = nudge.rpartition(":")
        key = canonical(key) if sign in ("+", "-") else key
        if sign not in ("+", "-") or key not in {e.key for e in out}:
            raise KnobError(f"nudge: {nudge[:60]!r} is not '<knob on this screen>:+' or ':-'")
        out = [_nudged(e, sign) if e.key == key else e for e in out]
    return _unique(out)


def _nudged(e: Entry, sign: str) -> Entry:
    """A "more" press moves the knob one step toward more (through zero from "less of")."""
    signed = (e.alpha if e.direction == "more" else -e.alpha) + (NUDGE if sign == "+" else -NUDGE)
    signed = max(-1.0, min(1.0, round(signed, 4)))
    return Entry(e.key, abs(signed), "less" if signed < 0 else "more")


def resolve(engine: Engine, entries: Sequence[Entry],
            presets: Mapping[int, PresetInfo]) -> list[KnobRow]:
    """Rows with labels and neurons; NotFound for an unknown neuron, concept or preset."""
    rows = []
    for e in entries:
        kind, _, ref = e.key.partition(":")
        if kind == "n":
            neuron = int(ref)
            service.check_neuron(engine, neuron)
            rows.append(KnobRow(e.key, e.alpha, e.direction, service.knob_title(engine, neuron),
                                "neuron", neuron, [neuron]))
        elif kind == "c":
            c, neurons = service.concept_neurons(engine, ref)
            rows.append(KnobRow(e.key, e.alpha, e.direction, engine.bundle.concepts.names[c],
                                "concept", None, neurons))
        else:
            preset = presets.get(int(ref))
            if preset is None:
                raise service.NotFound(f"unknown preset {ref}")
            rows.append(KnobRow(e.key, e.alpha, e.direction, preset.name, "preset", None,
                                target_neurons(engine, preset.targets)))
    return rows


def target_neurons(engine: Engine, targets: Sequence[str]) -> list[int]:
    """The union of the neurons that a preset's targets ("c:..." / "n:...") move."""
    neurons: dict[int, None] = {}
    for t in targets:
        kind, _, ref = t.partition(":")
        if kind == "n" and ref.isascii() and ref.isdigit():
            service.check_neuron(engine, int(ref))
            neurons[int(ref)] = None
        elif kind == "c":
            neurons.update(dict.fromkeys(service.concept_neurons(engine, ref)[1]))
        else:
            raise KnobError(f"targets: {t[:60]!r} is not 'c:<concept>' or 'n:<neuron>'")
    return list(neurons)


Change = tuple[EventType, str | None, float | None, str | None]
"""(type, knob key, alpha, direction) of one event."""


def changes(old: Sequence[Entry], new: Sequence[Entry]) -> list[Change]:
    """The typed events that turn `old` into `new`: removed, added, then per kept knob a
    direction change and/or a move."""
    before = {e.key: e for e in old}
    after = {e.key: e for e in new}
    out: list[Change] = [(EventType.knob_remove, e.key, None, None)
                         for e in old if e.key not in after]
    for e in new:
        was = before.get(e.key)
        if was is None:
            out.append((EventType.knob_add, e.key, e.alpha, e.direction))
            continue
        if was.direction != e.direction:
            out.append((EventType.direction_change, e.key, e.alpha, e.direction))
        elif was.alpha != e.alpha:
            out.append((EventType.knob_move, e.key, e.alpha, e.direction))
    return out


def seed(state: UserState, k: int) -> list[Entry]:
    """The user's own k most active neurons, at 0: their tastes, ready to turn."""
    own = sorted(state.scores.active.items(), key=lambda kv: -kv[1])[:k]
    return [Entry(f"n:{n}", 0.0, "more") for n, _ in own]


def screen(engine: Engine, state: UserState, rows: Sequence[KnobRow], n: int
           ) -> dict[str, Any]:
    """The steered and unsteered lists of a screen and its warnings."""
    more = sum(r.alpha for r in rows if r.direction == "more")
    scale = 1.0 / more if more > 1.0 else 1.0
    knobs, shown = [], []
    for r in rows:
        if r.alpha <= 0:
            continue
        strength = r.alpha * scale if r.direction == "more" else -r.alpha
        knobs.append(Knob(tuple(r.neurons), strength))
        shown.append(KnobOut.model_construct(neurons=r.neurons, strength=strength,
                                             label=r.label))
    ranked = engine.recommend(state, knobs, n)
    steered = service.ranked_items(engine, ranked, shown)
    for item in steered:              # pages name neurons with both labels
        for w in item["why"]:
            if w["neuron"] is not None:
                w["label"] = service.knob_title(engine, w["neuron"])
    return {"steered": steered,
            "unsteered": [dict(engine.item_dicts[i]) for i in ranked.unsteered],
            "more_total": more, "scaled": scale < 1.0,
            "high": sum(r.alpha > HIGH for r in rows) >= 2}
