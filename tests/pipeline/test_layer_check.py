"""The validation's layer check against candidates crafted by hand, as a compromised build could push them
(the attacker's review of issue 17): each is read one way by Python and another by Docker's Go readers
(archive/tar, encoding/json), or does what the check's rules forbid. Every one is refused before it runs.

The candidates are the platform's runner (published to the harness registry) plus one crafted layer, or a
crafted manifest or configuration, pushed to the model's repository through the registry's HTTP API."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from validation_stack import REPOSITORY, RUNNER_REPOSITORY, Stack, commit_id, validate

pytestmark = pytest.mark.docker
MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
BLOCK = 512
END = bytes(2 * BLOCK)
PAYLOAD = b"PWNED\n"


class Registry:
    def __init__(self, address: str) -> None:
        self.address = address

    def call(
        self, path: str, method: str = "GET", body: bytes | None = None, **headers: str
    ) -> tuple[bytes, Any]:
        request = urllib.request.Request(f"http://{self.address}/v2/{path}", data=body, method=method,
                                         headers=headers)  # fmt: skip
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 -- the local registry
            return response.read(), response.headers

    def put_blob(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        _, headers = self.call(f"{REPOSITORY}/blobs/uploads/", "POST")
        location = headers["Location"]
        url = f"{location}{'&' if '?' in location else '?'}digest={digest}"
        kind = {"Content-Type": "application/octet-stream"}
        upload = urllib.request.Request(url, data=data, method="PUT", headers=kind)  # noqa: S310 -- the local registry
        urllib.request.urlopen(upload, timeout=30).read()  # noqa: S310 -- the local registry
        return digest

    def runner(self, reference: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The runner's manifest and configuration, its blobs mounted into the model's repository."""
        digest = reference.split("@")[1]
        manifest = json.loads(self.call(f"{RUNNER_REPOSITORY}/manifests/{digest}", Accept=MANIFEST)[0])
        for blob in [*manifest["layers"], manifest["config"]]:
            self.call(f"{REPOSITORY}/blobs/uploads/?mount={blob['digest']}&from={RUNNER_REPOSITORY}", "POST")
        config = json.loads(self.call(f"{RUNNER_REPOSITORY}/blobs/{manifest['config']['digest']}")[0])
        return manifest, config

    def push(self, tag: str, manifest: bytes) -> str:
        _, headers = self.call(f"{REPOSITORY}/manifests/{tag}", "PUT", manifest, **{"Content-Type": MANIFEST})
        return f"{self.address}/{REPOSITORY}@{headers['Docker-Content-Digest']}"


def candidate(
    registry: Registry,
    runner: str,
    layers: list[bytes],
    config_text: Callable[[dict[str, Any]], str] = json.dumps,
    manifest_text: Callable[[dict[str, Any]], str] = json.dumps,
) -> str:
    """The runner plus `layers` (uncompressed tars), its configuration and manifest written by the given
    functions; pushed, by digest."""
    manifest, config = registry.runner(runner)
    for raw in layers:
        compressed = gzip.compress(raw, mtime=0)
        digest = registry.put_blob(compressed)
        manifest["layers"].append({"mediaType": LAYER, "size": len(compressed), "digest": digest})
        config["rootfs"]["diff_ids"].append("sha256:" + hashlib.sha256(raw).hexdigest())
    text = config_text(config).encode()
    manifest["config"] = {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(text),
                          "digest": registry.put_blob(text)}  # fmt: skip
    return registry.push(commit_id()[:20], manifest_text(manifest).encode())


def header(name: bytes, kind: bytes, size: int = 0, magic: bytes = b"ustar\x0000", prefix: bytes = b"",
           link: bytes = b"") -> bytes:  # fmt: skip
    """One tar header, written field by field (what a hand-made layer can hold)."""
    block = bytearray(BLOCK)
    block[0 : len(name)] = name
    block[100:108] = b"%07o\x00" % 0o644
    block[108:116] = block[116:124] = b"%07o\x00" % 0
    block[124:136] = b"%011o\x00" % size
    block[136:148] = b"%011o\x00" % 0
    block[156:157] = kind
    block[157 : 157 + len(link)] = link
    block[257:265] = magic
    block[345 : 345 + len(prefix)] = prefix
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\x00 " % sum(block)
    return bytes(block)


def padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)


def pax(records: dict[str, str]) -> bytes:
    out = b""
    for key, value in records.items():
        record = f" {key}={value}\n".encode()
        length = len(record) + 1
        while len(str(length)) + len(record) != length:
            length += 1
        out += str(length).encode() + record
    return out


def tar(*members: tuple[str, bytes, str]) -> bytes:
    """A well-formed PAX tar, as Python writes it: (name, type, link name) members."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, kind, link in members:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, link
            info.size = len(PAYLOAD) if kind == tarfile.REGTYPE else 0
            archive.addfile(info, io.BytesIO(PAYLOAD) if kind == tarfile.REGTYPE else None)
    return buffer.getvalue()


def case_insensitive_duplicate(config: dict[str, Any]) -> str:
    """The runner's Entrypoint first (what Python's json keeps), then another, `entrypoint` (Go keeps it)."""
    entrypoint = json.dumps(config["config"]["Entrypoint"])
    return json.dumps(config).replace(
        f'"Entrypoint": {entrypoint}', f'"Entrypoint": {entrypoint}, "entrypoint": ["/bin/sh"]', 1
    )


def another_diff_id(config: dict[str, Any]) -> str:
    """The last layer's digest in the configuration, not that of the bytes the manifest points to."""
    config["rootfs"]["diff_ids"][-1] = "sha256:" + hashlib.sha256(b"another layer").hexdigest()
    return json.dumps(config)


def layers_twice(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest)[:-1] + f', "Layers": {json.dumps(manifest["layers"][:-1])}}}'


def env_twice(config: dict[str, Any]) -> str:
    config["config"]["Env"].append("VIRTUAL_ENV=/tmp/elsewhere")
    return json.dumps(config)


SAFE = padded(PAYLOAD)
OK, PWNED = pax({"path": "opt/venv/ok"}), pax({"path": "etc/pwned"})
FILE = header(b"x", b"0", len(PAYLOAD)) + SAFE
GOOD = [tar(("opt/venv/ok", tarfile.REGTYPE, ""))]
GNU_NAMES = (header(b"././@LongLink", b"L", 12) + padded(b"opt/venv/ok\x00")
             + header(b"././@LongLink", b"L", 10) + padded(b"etc/pwned\x00") + FILE + END)  # fmt: skip
TWO_PAX = (header(b"PaxHeader/x", b"x", len(OK)) + padded(OK)
           + header(b"PaxHeader/x", b"x", len(PWNED)) + padded(PWNED) + FILE + END)  # fmt: skip
GLOBAL_PAX = (header(b"pax_global_header", b"g", len(OK)) + padded(OK)
              + header(b"etc/pwned", b"0", len(PAYLOAD)) + SAFE + END)  # fmt: skip
V7 = header(b"etc/pwned", b"0", len(PAYLOAD), magic=bytes(8), prefix=b"opt/venv") + SAFE + END
CLIMBING_LINK = tar(("opt/venv/shadow", tarfile.LNKTYPE, "opt/venv/../../etc/shadow"))
WHITEOUT = header(b"opt/venv/lib/.wh.python3.11", b"0") + END
# name: (layers, how the documents are written, what the refusal says)
CRAFTED: dict[str, tuple[list[bytes], dict[str, Any], str]] = {
    # Python's tarfile keeps the first GNU long name, Go's archive/tar the last
    "two GNU long names": ([GNU_NAMES], {}, "of type b'L'"),
    "two PAX headers for one member": ([TWO_PAX], {}, "two PAX headers"),  # the first, or the last
    "a PAX global header": ([GLOBAL_PAX], {}, "of type b'g'"),  # applied by Python, ignored by Go
    "a V7 header with a prefix": ([V7], {}, "not POSIX ustar"),  # its prefix read by Python, not by Go
    "a hard link climbing out": ([CLIMBING_LINK], {}, "links /opt/venv/shadow"),
    "a whiteout in /opt/venv": ([WHITEOUT], {}, "whiteout"),
    # Go's encoding/json matches keys ignoring case, and keeps the last
    "a key twice in the configuration": (GOOD, {"config_text": case_insensitive_duplicate}, "repeats a key"),
    "layers twice in the manifest": (GOOD, {"manifest_text": layers_twice}, "repeats a key"),
    "a variable twice in the environment": (GOOD, {"config_text": env_twice}, "names a variable twice"),
    "a layer that is not the one its configuration names": (
        GOOD,
        {"config_text": another_diff_id},
        "is not the layer sha256:",
    ),
}


def test_a_well_formed_layer_under_opt_venv_passes_the_check(
    tmp_path: Path, registry: str, stack: Stack
) -> None:
    """The control: the same crafting, with nothing wrong in it, gets past the layer check (and then fails
    its run, having no notebook, which is the run's business)."""
    reference = candidate(Registry(registry), stack.runner, GOOD)

    validation = validate(tmp_path, registry, stack, commit_id(), reference, stack.runner)

    assert "the layer check passed" in validation.log, validation.log[-3000:]


@pytest.mark.parametrize("layers, texts, why", CRAFTED.values(), ids=CRAFTED.keys())
def test_a_layer_or_document_docker_would_read_otherwise_is_refused(
    tmp_path: Path, registry: str, stack: Stack, layers: list[bytes], texts: dict[str, Any], why: str
) -> None:
    before = stack.validated_image()
    reference = candidate(Registry(registry), stack.runner, layers, **texts)

    validation = validate(tmp_path, registry, stack, commit_id(), reference, stack.runner)

    assert not validation.succeeded and validation.failed_phase == "pre_build"
    assert "the layer check refused" in validation.log and why in validation.log, validation.log[-3000:]
    assert stack.validated_image() == before
