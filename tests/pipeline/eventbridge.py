"""moto's EventBridge pattern matcher, with one thing it leaves out put back: EventBridge matches a field
inside an array of objects against the values it takes in any of them (AWS's own patterns rely on it,
e.g. Security Hub's {"detail": {"findings": {"Severity": {"Label": ["CRITICAL"]}}}} over the findings
array). ECS task events carry their exit codes that way, in detail.containers[].exitCode."""

from __future__ import annotations

import json
from typing import Any

from moto.events.models import EventPattern


class ArrayAwarePattern(EventPattern):
    @staticmethod
    def _flatten_dict(node: Any, prefix: str = "", result: dict[str, Any] | None = None) -> dict[str, Any]:
        result = {} if result is None else result
        if not isinstance(node, dict):
            return result
        for key, value in node.items():
            name = f"{prefix}.{key}" if prefix else key
            if isinstance(value, dict) and value:
                ArrayAwarePattern._flatten_dict(value, name, result)
            elif isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
                for item in value:  # each object's fields, gathered as the field's values
                    for field, found in ArrayAwarePattern._flatten_dict(item, name).items():
                        result.setdefault(field, []).extend(found if isinstance(found, list) else [found])
            else:
                result[name] = value
        return result


def pattern(document: dict[str, Any]) -> EventPattern:
    return ArrayAwarePattern.load(json.dumps(document))
