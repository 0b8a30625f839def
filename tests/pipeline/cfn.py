"""The pipeline template and buildspecs, loaded for the tests (short tags such as !Ref kept as Fn:: maps)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from support import REPO

TEMPLATE = REPO / "template" / "pipeline.yaml"
BUILDSPECS = {"BuildProject": REPO / "buildspec.yml", "ValidateProject": REPO / "buildspec-validate.yml"}


class CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's !Ref, !Sub, !GetAtt ... as their long forms."""


def _tag(loader: CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


CfnLoader.add_multi_constructor("!", _tag)


def load(path: Path = TEMPLATE) -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=CfnLoader)  # noqa: S506 -- a SafeLoader subclass
