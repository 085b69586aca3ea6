"""Request and response models of the JSON API v1."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_KNOBS = 32


class KnobIn(BaseModel):
    """One knob: a neuron or a concept (exactly one), how far (alpha in [0, 1]: 0 = as
    before, 1 = only this) and which way."""

    model_config = ConfigDict(extra="forbid", strict=True)

    neuron: int | None = Field(default=None, ge=0)
    concept: str | None = Field(default=None, min_length=1, max_length=200)
    alpha: float = Field(ge=0.0, le=1.0)
    direction: Literal["more", "less"] = "more"

    @model_validator(mode="after")
    def _one_target(self) -> KnobIn:
        if (self.neuron is None) == (self.concept is None):
            raise ValueError("give exactly one of 'neuron' or 'concept'")
        return self


class RecommendIn(BaseModel):
    """Recommendations for a dataset user (`user`, its external id) or an ad-hoc list of
    liked items (`items`, external ids), steered by `knobs`."""

    model_config = ConfigDict(extra="forbid", strict=True,
                              json_schema_extra={"examples": [{"user": 1, "n": 10, "knobs": [
                                  {"neuron": 0, "alpha": 0.3}]}]})

    user: int | None = None
    items: list[int] | None = Field(default=None, min_length=1, max_length=500)
    knobs: list[KnobIn] = Field(default_factory=list, max_length=MAX_KNOBS)
    n: int = Field(default=20, ge=1, le=100)

    @model_validator(mode="after")
    def _check(self) -> RecommendIn:
        if (self.user is None) == (self.items is None):
            raise ValueError("give exactly one of 'user' or 'items'")
        more = sum(k.alpha for k in self.knobs if k.direction == "more")
        if more > 1.0 + 1e-9:
            raise ValueError(f"knobs: the 'more' alphas add up to {more:g}; their combined "
                             "strength must be at most 1")
        return self


class ItemOut(BaseModel):
    """An item of the catalog; `authors` is empty where the catalog has none (films)."""

    id: int
    title: str
    year: int | None
    genres: list[str]
    authors: list[str]


class Why(BaseModel):
    """A part of an item's score: one of the user's own neurons (`neuron`) or one of the
    request's "more of" knobs (`knob`, its index in `knobs`)."""

    neuron: int | None = None
    knob: int | None = None
    label: str | None
    contribution: float


class RankedItem(ItemOut):
    score: float
    rank: int
    rank_before: int | None
    """0-based rank in the unsteered list, None if the item entered with the knobs."""
    why: list[Why]


class KnobOut(BaseModel):
    """A knob as applied: its neurons, signed strength and label."""

    neurons: list[int]
    strength: float
    label: str | None


class RecommendOut(BaseModel):
    steered: list[RankedItem]
    unsteered: list[ItemOut]
    knobs: list[KnobOut]


class UserOut(BaseModel):
    id: int
    history: int


class ActiveKnob(BaseModel):
    neuron: int
    value: float
    label: str | None
    kind: str | None
    confidence: float | None


class CodeOut(BaseModel):
    user: int
    history: int
    mass: float
    knobs: list[ActiveKnob]


class ConceptOut(BaseModel):
    name: str
    kind: str
    items: int
    neurons: list[int]


class Problem(BaseModel):
    """An error: `detail` says what is wrong (FastAPI's own validation errors list the
    fields)."""

    detail: str | list[dict[str, Any]]


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "The body cannot be parsed (not UTF-8 JSON)"},
    404: {"model": Problem, "description": "An unknown user, item, knob, concept or session"},
    413: {"model": Problem, "description": "The request body is over the size limit"},
    422: {"model": Problem, "description": "A field is invalid; the detail names it"},
}
"""The error answers every JSON API route documents."""
