"""docs/protocol.md is the peers' contract: every message type is documented there with an
example payload, and every example parses with its type's model (adapters/messages.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from raft_manager.adapters.messages import MODELS, ChangeRequest

DOCS = Path(__file__).parent.parent / "docs" / "protocol.md"


def _examples() -> dict[str, dict[str, object]]:
    text = DOCS.read_text()
    section = text[text.index("## The peers: message types") :]
    section = section[: section.index("\n## ")]
    found = {}
    for type, example in re.findall(r"#### `([a-z_.]+)`\n.*?```json\n(.*?)```", section, re.S):
        assert type not in found, f"{type} is documented twice"
        found[type] = json.loads(example)
    return found


def test_every_type_is_documented_with_an_example_that_parses_with_its_model() -> None:
    examples = _examples()
    assert sorted(examples) == sorted(MODELS)
    for type, example in examples.items():
        parsed = MODELS[type].model_validate(example)
        assert parsed.model_dump(mode="json", exclude_unset=True) == example, type


def test_the_bus_sections_envelope_example_is_a_change_request() -> None:
    text = DOCS.read_text()
    section = text[text.index("## The bus") :]
    example = re.search(r"```json\n(.*?)```", section, re.S)
    assert example is not None
    envelope = json.loads(example.group(1))
    assert envelope["type"] == "quorum.change_request"
    ChangeRequest.model_validate(envelope["payload"])


@pytest.mark.parametrize(
    "payload",
    [
        {"action": "add", "node": "n4"},
        {"action": "add", "node": "n4", "address": "h:1", "client_address": "no-port"},
        {"action": "promote", "node": "n4", "address": "h:1"},
        {"action": "remove", "node": "n4", "extra": 1},
    ],
)
def test_requests_refuse_what_they_do_not_expect(payload: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ChangeRequest.model_validate(payload)
