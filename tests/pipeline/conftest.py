"""Fixtures of the pipeline's stand-ins: a registry for ECR, and a model stack in moto with the platform's
runner published to it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support import local_registry
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
