"""Fixtures of the pipeline's stand-ins: a registry for ECR, a model stack in moto with the platform's
runner published to it, and a model repository to push to it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import REPO, local_registry
from validation_stack import Stack, deployed


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's docker-registry on 127.0.0.1, standing in for ECR (Docker treats loopback as insecure-OK)."""
    with local_registry(tmp_path_factory.mktemp("registry")) as address:
        yield address


@pytest.fixture(scope="module")
def stack(registry: str, moto_endpoint: str, platform_runner: str) -> Iterator[Stack]:
    """The stack's buckets, topic, parameters, clusters and task definitions in moto, behind the IAM proxy
    (validation_stack.deployed), and the platform's runner published as 1.0.0."""
    with deployed(moto_endpoint, registry) as created:
        created.runner = created.publish_runner(platform_runner, "1.0.0")
        yield created


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository as `make new-model` writes it, with a usp-named notebook (the stack's NOTEBOOK):
    one per test module, which may change it."""
    root = tmp_path_factory.mktemp("models") / "usp"
    done = subprocess.run([str(REPO / "scripts" / "new-model.sh"), str(root)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return root
