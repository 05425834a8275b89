"""Reading YAML strictly: one document, safe types only, and a key given twice is an error.

Theory of operation: PyYAML's SafeLoader builds plain Python values (no object tags), but it
quietly keeps the last of two equal keys, so a skill.yaml or a SKILL.md front matter that
names `description` twice would silently lose one. `load` uses a SafeLoader subclass whose
mapping constructor refuses a repeated key, and turns every YAML error into a YamlError whose
message names the line and column (1-based) of the problem.
"""

from __future__ import annotations

from typing import Any

import yaml


class YamlError(ValueError):
    """The text is not the YAML it should be; the message says where and why."""


class _StrictLoader(yaml.SafeLoader):
    pass


def _mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            repeated = key in seen
        except TypeError:  # an unhashable key (a list or a map used as a key)
            raise yaml.constructor.ConstructorError(
                None, None, "a key must be a plain value", key_node.start_mark
            ) from None
        if repeated:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is given twice", key_node.start_mark
            )
        seen[key] = loader.construct_object(value_node, deep=True)
    return seen


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load(text: str) -> Any:
    """The one YAML document in `text`, or YamlError("line L, column C: why")."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: plain data only
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        why = error.problem or error.context or "not valid YAML"
        raise YamlError(f"{where}{why}") from None
    except yaml.YAMLError as error:
        raise YamlError(str(error)) from None
