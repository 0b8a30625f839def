"""Fixtures of the pipeline's stand-ins: a registry for ECR, a model stack in moto with the platform's
runner published to it, and a model repository to push to it."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import REPO, local_registry
from validation_stack import RUNNER_REPOSITORY, Stack, deployed


@pytest.fixture(scope="session")
def runner_layers(tmp_path_factory: pytest.TempPathFactory, platform_runner: str) -> Path:
    """A registry's storage holding the platform's runner's layers in its repository (no manifest, no tag),
    pushed once for the session: each module's registry starts with them, so its stack publishes the runner
    without pushing a layer."""
    root = tmp_path_factory.mktemp("runner-layers")
    with local_registry(root) as address:
        seed = f"{address}/{RUNNER_REPOSITORY}:seed"
        for command in (["docker", "tag", platform_runner, seed], ["docker", "push", "-q", seed]):
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            assert done.returncode == 0, done.stderr
        subprocess.run(["docker", "image", "rm", seed], capture_output=True, check=False)
    storage = root / "registry"
    shutil.rmtree(storage / "docker" / "registry" / "v2" / "repositories" / RUNNER_REPOSITORY / "_manifests")
    return storage


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, runner_layers: Path) -> Iterator[str]:
    """Debian's docker-registry on 127.0.0.1, standing in for ECR (Docker treats loopback as insecure-OK): one
    per module, holding nothing but the runner's layers (hard links: a registry never rewrites a blob)."""
    root = tmp_path_factory.mktemp("registry")
    subprocess.run(["cp", "-al", str(runner_layers), str(root / "registry")], check=True)
    with local_registry(root) as address:
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
