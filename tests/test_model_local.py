"""A model repository on an engineer's or a data scientist's machine (issue 17): `make new-model` writes one
with nothing of the platform in it, and `make` reads nothing of it but data, checked. A model's files are
untrusted: a settings.yml whose notebook is shell, or a sample lake or output folder that is a symbolic link
out of the model, is refused before anything runs (the attacker's review of the change). No Docker here: the
model's image and run are tests/runner's and tests/pipeline's."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml
from cfn import load
from support import REPO

PLATFORM_FILES = (
    "Dockerfile",
    "run_notebook.sh",
    "runner",
    "buildspec.yml",
    "template",
    "scripts",
    "Makefile",
)


def make(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    return subprocess.run(["make", "-s", "-C", str(REPO), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, check=False)  # fmt: skip


@pytest.fixture
def model(tmp_path: Path) -> Path:
    done = make("new-model", f"DIR={tmp_path / 'hotel-usp'}")
    assert done.returncode == 0, done.stderr
    return tmp_path / "hotel-usp"


def test_new_model_writes_the_model_and_nothing_of_the_platform(model: Path) -> None:
    names = sorted(p.name for p in model.iterdir())
    settings = yaml.safe_load((model / "settings.yml").read_text())

    assert names == [".dockerignore", ".gitignore", "README.md", "check.py", "hotel_usp.ipynb",
                     "requirements.txt", "sample", "settings.yml"]  # fmt: skip
    assert not [name for name in PLATFORM_FILES if (model / name).exists()]
    assert (settings["notebook"], settings["output"]["table"], settings["output"]["prefix"]) == (
        "hotel_usp.ipynb", "hotel_usp", "hotel_usp/daily",
    )  # fmt: skip
    pin = next(line for line in (REPO / "runner" / "requirements.txt").read_text().splitlines()
               if line.startswith("pyarrow=="))  # fmt: skip
    assert pin in (model / "requirements.txt").read_text().splitlines()  # the platform's pyarrow, one version
    assert "MODEL_NAME" not in (model / "README.md").read_text() + (model / "check.py").read_text()
    assert f"make -C {REPO} run MODEL_DIR=$PWD" in (model / "README.md").read_text()


def test_new_model_never_writes_into_a_folder_that_holds_something(model: Path) -> None:
    before = (model / "check.py").read_text()

    done = make("new-model", f"DIR={model}")

    assert done.returncode == 2
    refused = f"new-model: {model} exists and is not empty: give a new folder (nothing is overwritten)"
    assert refused in done.stderr
    assert (model / "check.py").read_text() == before


def test_make_takes_the_models_notebook_from_its_settings(model: Path) -> None:
    done = make("help", f"MODEL_DIR={model}")

    assert done.returncode == 0, done.stderr
    assert "NOTEBOOK=hotel_usp.ipynb" in done.stdout and "IMAGE=notebook-model:hotel_usp" in done.stdout


HOSTILE_NOTEBOOKS = {
    "commands after a semicolon": "x.ipynb;touch${IFS}PWNED;:",
    "a command substitution": "$(touch${IFS}PWNED).ipynb",
    "backquotes": "`touch${IFS}PWNED`.ipynb",
    "a make function": "$(shell${IFS}touch${IFS}PWNED).ipynb",
}


@pytest.mark.parametrize("target", ["help", "build", "run", "history"])
@pytest.mark.parametrize("notebook", HOSTILE_NOTEBOOKS.values(), ids=HOSTILE_NOTEBOOKS.keys())
def test_a_settings_notebook_that_is_shell_is_refused_and_never_run(
    tmp_path: Path, notebook: str, target: str
) -> None:
    hostile = tmp_path / "hostile"
    hostile.mkdir()
    (hostile / "settings.yml").write_text(f"notebook: {notebook}\n")

    done = make(target, f"MODEL_DIR={hostile}", "DATE=2019-08-01", cwd=tmp_path)

    assert done.returncode != 0
    assert f"settings.yml: notebook: {notebook} is not a notebook's path in the model" in done.stderr
    assert "its settings.yml names no notebook make can use" in done.stderr
    assert not list(tmp_path.glob("PWNED")) and not list(REPO.glob("PWNED"))


@pytest.mark.parametrize("folder", ["sample/lake", "output"])
def test_a_model_folder_that_leads_outside_the_model_is_refused_before_anything_runs(
    model: Path, tmp_path: Path, folder: str
) -> None:
    """A sample lake linked to the engineer's home would be mounted for the notebook; an output folder
    linked to another model's would be written (and chowned) there."""
    elsewhere = tmp_path / "engineer-home"
    elsewhere.mkdir()
    (elsewhere / "secret").write_text("ENGINEER-SECRET")
    target = model / folder
    if target.exists():
        subprocess.run(["rm", "-rf", str(target)], check=True)
    target.symlink_to(elsewhere)

    done = make("run", f"MODEL_DIR={model}")

    assert done.returncode == 2
    assert f"leads outside the model's folder {model} (a symbolic link to {elsewhere})" in done.stderr
    assert "building" not in done.stdout  # refused before the image's build
    assert elsewhere.stat().st_uid == os.getuid() and sorted(p.name for p in elsewhere.iterdir()) == [
        "secret"
    ]


def test_a_link_inside_the_model_and_folders_given_elsewhere_are_the_engineers_to_choose(
    model: Path, tmp_path: Path
) -> None:
    (model / "lake-copy").symlink_to(model / "sample" / "lake")
    other = tmp_path / "my-lake"
    other.mkdir()

    for folders in ([str(model / "lake-copy")], [str(other), str(tmp_path / "out")]):
        done = subprocess.run([str(REPO / "scripts" / "build.sh"), "local-folders", str(model), *folders],
                              capture_output=True, text=True, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr


def test_the_notebook_pattern_make_checks_is_the_templates() -> None:
    pattern = load()["Parameters"]["NotebookPath"]["AllowedPattern"]

    assert f"readonly NOTEBOOK_PATTERN='{pattern}'" in (REPO / "scripts" / "build.sh").read_text()


def test_the_runners_build_context_holds_every_file_the_dockerfile_copies() -> None:
    """scripts/build.sh runner sends RUNNER_FILES alone: each COPY of the Dockerfile finds its files there."""
    import re

    patterns = re.search(r"^readonly RUNNER_FILES='(.*)'$", (REPO / "scripts" / "build.sh").read_text(), re.M)
    sent = {path for pattern in patterns.group(1).split() for path in REPO.glob(pattern)}  # type: ignore[union-attr]
    copies = re.findall(r"^COPY (?!--from)(.+) \S+$", (REPO / "Dockerfile").read_text(), re.MULTILINE)
    sources = [source for line in copies for source in line.split()]

    assert sources and all(set(REPO.glob(source)) and set(REPO.glob(source)) <= sent for source in sources)
