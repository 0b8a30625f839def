"""Fixtures of the pipeline's stand-ins: the buildspec harness's aws served, a registry for ECR, a model stack
in moto with the platform's runner published to it, and a model repository to push to it."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from codebuild import AWS_SOCKET, HARNESS_BIN
from support import REPO, local_registry
from validation_stack import RUNNER_REPOSITORY, Stack, deployed


@pytest.fixture(scope="session", autouse=True)
def harness_aws_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The buildspec harness's aws served for the session (harness/aws_server.py: boto3 imported and its
    models loaded once, each call a fork of it: tens of milliseconds, not a third of a second). Its socket is
    in this process's environment (AWS_SOCKET) while it serves: codebuild.run passes it on to each build."""
    folder = tmp_path_factory.mktemp("harness-aws")
    path, log = folder / "aws.sock", folder / "server.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            [sys.executable, str(HARNESS_BIN / "aws_server.py"), str(path)],
            stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not answers(path):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the harness's aws server did not start on {path}: {log.read_text()}")
            time.sleep(0.05)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(AWS_SOCKET, str(path))
            yield path
    finally:
        server.terminate()
        server.wait(timeout=10)


def answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


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
