"""The notebook and its check are untrusted code (their cells and every package they import): what they may
try in a local run, and that nothing they did not get checked reaches where consumers read."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from support import (
    NOTEBOOK_UID,
    READER_UID,
    SAMPLE_DATE,
    SEARCH,
    day_rows,
    make_notebook,
    manifest,
    published,
    run_dirs,
    searched,
    world_writable_dir,
    writable_dir,
)
from test_runner_failures import GOOD_ROWS, run_notebook

pytestmark = pytest.mark.docker

# Writes two good rows to the published partition itself, as the team's original notebook did.
WRITE_PUBLISHED = GOOD_ROWS.replace("output_uri", '"/output"')


def test_a_notebook_cannot_write_where_consumers_read(runner_image: str, out: Path, tmp_path: Path) -> None:
    make_notebook(tmp_path / "nb" / "direct.ipynb", GOOD_ROWS, WRITE_PUBLISHED)

    run = run_notebook(runner_image, out, tmp_path / "nb", "direct.ipynb")

    assert run.code == 10, run.stderr
    assert "raised PermissionError in cell [4]" in run.last_line
    assert published(out) == [] and not (out / f"date={SAMPLE_DATE}").exists()


def test_a_published_folder_the_notebook_could_write_is_refused_before_anything_runs(
    runner_image: str, tmp_path: Path
) -> None:
    """A careless mount everyone may write, or a table folder the notebook's user made its own: the notebook
    could change the table after its check (own its data/ before the first commit, rename the runner's
    folders). Refused (exit 2), nothing run, nothing published."""
    careless = world_writable_dir(tmp_path / "careless")
    taken = writable_dir(tmp_path / "taken")
    (taken / "data").mkdir()
    os.chown(taken / "data", NOTEBOOK_UID, NOTEBOOK_UID)
    make_notebook(tmp_path / "nb" / "direct.ipynb", GOOD_ROWS, WRITE_PUBLISHED)

    runs = {
        out: run_notebook(runner_image, out, tmp_path / "nb", "direct.ipynb") for out in (careless, taken)
    }

    said = {out: run.last_line for out, run in runs.items()}
    assert [run.code for run in runs.values()] == [2, 2], said
    assert "OUTPUT_URI /output is not the runner's alone: /output is writable by everyone" in said[careless]
    assert "/output/data is owned by the notebook's user (10002)" in said[taken]
    assert "Executing Cell" not in "".join(run.stderr for run in runs.values())
    assert published(careless) == [] and published(taken) == []


def test_a_notebook_looking_for_output_uri_in_its_environment_does_not_find_it(
    runner_image: str, out: Path, tmp_path: Path
) -> None:
    make_notebook(tmp_path / "nb" / "env.ipynb", "import os\ntarget = os.environ['OUTPUT_URI']")

    run = run_notebook(runner_image, out, tmp_path / "nb", "env.ipynb")

    assert run.code == 10, run.stderr
    assert "raised KeyError in cell [3]: 'OUTPUT_URI'" in run.last_line
    assert published(out) == []


HIDDEN_FILES = """
import pathlib
part = pathlib.Path(output_uri) / f"date={date}"
(part / "_unchecked.parquet").write_bytes((part / "part-0.parquet").read_bytes() * 2)
(part / ".hidden.csv").write_text("accommodation_id,usp\\n1,spa\\n")
(part / "_temporary" / "0").mkdir(parents=True)
(part / "_temporary" / "0" / "part-9.parquet").write_bytes(b"not checked")
"""


def test_hidden_files_in_staging_are_not_published_but_listed_and_kept(
    runner_image: str, out: Path, tmp_path: Path
) -> None:
    make_notebook(tmp_path / "nb" / "hidden.ipynb", GOOD_ROWS, HIDDEN_FILES)

    run = run_notebook(runner_image, out, tmp_path / "nb", "hidden.ipynb")

    assert run.code == 0, run.stderr
    assert len(published(out)) == 1 and day_rows(out).num_rows == 2
    facts = manifest(out)
    left_out = [".hidden.csv", "_temporary/0/part-9.parquet", "_unchecked.parquet"]
    assert sorted(facts["not_published"]) == left_out
    assert facts["published_files"] == ["part-0.parquet"]
    staged = run_dirs(out)[0] / "staging" / f"date={SAMPLE_DATE}"
    assert sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file()) == left_out


# A daemon (double fork, its own session) that rewrites the staged file with duplicates from 2 s on, for a
# minute: long after the kernel has ended, while a slow check reads.
DAEMON = """
import os, subprocess, sys, textwrap
staged = f"{output_uri}/date={date}/part-0.parquet"
code = textwrap.dedent(f'''
    import os, time
    if os.fork():
        os._exit(0)
    time.sleep(2)
    import pyarrow as pa, pyarrow.parquet as pq
    table = pq.read_table({staged!r})
    doubled = pa.concat_tables([table, table])
    end = time.time() + 60
    while time.time() < end:
        pq.write_table(doubled, {staged!r})
        time.sleep(0.05)
''')
subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
print("daemon started")
"""
SLOW_CHECK = """
import runpy, sys, time
time.sleep(4)
sys.argv[0] = "/app/check.py"
runpy.run_path("/app/check.py", run_name="__main__")
"""


def test_a_process_the_notebook_left_behind_is_gone_before_the_check_reads(
    runner_image: str, out: Path, tmp_path: Path
) -> None:
    nb_dir = tmp_path / "nb"
    make_notebook(nb_dir / "daemon.ipynb", GOOD_ROWS, DAEMON)
    (nb_dir / "slow_check.py").write_text(SLOW_CHECK)

    run = run_notebook(runner_image, out, nb_dir, "daemon.ipynb", CHECK_SCRIPT="/nb/slow_check.py")

    assert run.code == 0, run.stderr
    assert "killed 1 process(es) of the notebook's user left running after the notebook" in run.stderr
    (part,) = published(out)
    assert pq.read_table(part).num_rows == 2  # as the notebook wrote it, never the daemon's duplicates


# A check that, for three seconds, stops and kills every process it can see but itself, then runs the real
# check: the parser of the checked files runs meanwhile (publish.Reading), as a user of its own.
SIGNALLING_CHECK = """
import os, runpy, signal, sys, time
seen, reached = set(), set()
end = time.time() + 3
while time.time() < end:
    for pid in [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]:
        try:
            with open(f"/proc/{pid}/status") as status:
                uid = int(next(line for line in status if line.startswith("Uid:")).split()[1])
        except (OSError, StopIteration, ValueError):
            continue
        seen.add(uid)
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            try:
                os.kill(pid, sig)
                reached.add(uid)
            except OSError:
                pass
    time.sleep(0.005)
print("seen uids", sorted(seen), "reached uids", sorted(reached))
sys.argv[0] = "/app/check.py"
runpy.run_path("/app/check.py", run_name="__main__")
"""


def test_the_check_can_neither_stop_nor_kill_what_reads_the_checked_rows_back(
    runner_image: str, out: Path, tmp_path: Path
) -> None:
    """The checked rows are read back while the check runs: by the image's `reader` user, which the check
    (the notebook's user) can neither signal nor trace; the rows published are the checked copy's."""
    nb_dir = tmp_path / "nb"
    make_notebook(nb_dir / "good.ipynb", GOOD_ROWS)
    (nb_dir / "signalling_check.py").write_text(SIGNALLING_CHECK)

    run = run_notebook(runner_image, out, nb_dir, "good.ipynb", CHECK_SCRIPT="/nb/signalling_check.py")

    said = next(line for line in run.stderr.splitlines() if "seen uids" in line)
    seen, reached = re.findall(r"\[([^\]]*)\]", said)
    assert str(READER_UID) in seen.split(", "), said  # the parser ran while the check did
    assert reached == "", said
    assert run.code == 0, run.stderr
    (part,) = published(out)
    assert pq.read_table(part).num_rows == 2


TASK_SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIATASKKEYMARKER",
    "AWS_SECRET_ACCESS_KEY": "task-secret-marker",
    "AWS_SESSION_TOKEN": "task-session-token-marker",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/relative-uri-marker",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN": "authorization-token-marker",
    "ECS_CONTAINER_METADATA_URI_V4": "http://169.254.170.2/v4/metadata-marker",
    "AWS_PROFILE": "task-profile-marker",
}


def test_the_kernel_holds_no_task_credential_nor_any_runner_setting(
    runner_image: str, out: Path, tmp_path: Path
) -> None:
    """A task (container credentials present) with no notebook role: the kernel gets none of them."""
    markers = [v.rsplit("/", 1)[-1] for v in TASK_SECRETS.values()]
    make_notebook(tmp_path / "nb" / "search.ipynb", SEARCH.format(markers=markers), GOOD_ROWS)

    run = run_notebook(runner_image, out, tmp_path / "nb", "search.ipynb", **TASK_SECRETS, SNS_TOPIC_ARN="")

    assert run.code == 0, run.stderr
    found = searched(run)
    assert found["found"] == []
    assert not [n for n in found["names"] if n.startswith("AWS_") and n != "AWS_EC2_METADATA_DISABLED"]
    assert not {"OUTPUT_URI", "DATA_URI", "REPORT_URI", "SNS_TOPIC_ARN", "RUN_DATE"} & set(found["names"])
    assert "the notebook runs without AWS credentials" in run.stderr


def test_on_a_laptop_the_users_own_credentials_reach_the_notebook(
    runner_image: str, out: Path, tmp_path: Path
) -> None:
    """No container credentials: the keys given to docker run are the user's own, and the notebook's."""
    make_notebook(tmp_path / "nb" / "search.ipynb", SEARCH.format(markers=["AKIALAPTOP"]), GOOD_ROWS)

    run = run_notebook(
        runner_image, out, tmp_path / "nb", "search.ipynb", AWS_ACCESS_KEY_ID="AKIALAPTOP",
        AWS_SECRET_ACCESS_KEY="s",
    )  # fmt: skip

    assert run.code == 0, run.stderr
    assert ["AWS_ACCESS_KEY_ID", "AKIALAPTOP"] in searched(run)["found"]
