"""What a knob page shows, as JSON: no NaN (JSON has none)."""

from __future__ import annotations

import json

from models.neurons import ConceptScore, NeuronView, view_dict


def test_view_dict_turns_unknown_numbers_into_null() -> None:
    v = NeuronView(neuron=3, live=False, label=None, kind=None, paper_label=None,
                   precision=float("nan"), confidence=float("nan"), density=0.25,
                   concepts=[ConceptScore("horror", "genre", float("nan"))], lifts=[],
                   activated_by=[], neighbours=[])
    d = view_dict(v)
    assert d["precision"] is None and d["confidence"] is None and d["density"] == 0.25
    assert d["concepts"] == [{"name": "horror", "kind": "genre", "score": None}]
    json.dumps(d, allow_nan=False)
