"""The notebook's secrets (NOTEBOOK_SECRETS): a notebook and a check that print one, every way a cell can,
leave its value nowhere the runner writes (the report, the manifest, check.txt) nor in the container's
output; a secret in the checked rows, or naming one of their columns, is never published. A secret that
cannot be redacted, or passed as a parameter, is a configuration error: test_config.py's, in process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import make_notebook, manifest, published, write_rows_cell
from test_runner_failures import GOOD_ROWS, run_notebook

# Quotes, markup, a backslash and two lines: the escapes of JSON, repr and HTML each show it differently.
SECRET = 'hunter2-"s3cr3t"-<b>&amp;\\x41\nsecond-line-of-the-key'
# Secrets Manager's shape for credentials: a JSON object, whose password a notebook puts in a URL.
PASSWORD = "Pa55w0rd-xyz!"
DB_SECRET = json.dumps({"username": "etl_user", "password": PASSWORD})
SECRETS_ENV = {
    "NOTEBOOK_SECRETS": "HADOOP_PASSWORD,DB_SECRET",
    "HADOOP_PASSWORD": SECRET,
    "DB_SECRET": DB_SECRET,
}

PRINT_IT = """
import os, subprocess, sys
secret = os.environ["HADOOP_PASSWORD"]
print(secret)
print(repr(secret))
sys.stderr.write(secret + "\\n")
os.write(1, (secret + "\\n").encode())
os.write(2, (secret + "\\n").encode())
sys.__stdout__.write(secret + "\\n"); sys.__stdout__.flush()
subprocess.run(["sh", "-c", 'echo "$HADOOP_PASSWORD"; echo "$HADOOP_PASSWORD" >&2'], check=True)
from IPython.display import HTML, display
display(HTML(f"<p>{secret}</p>"))
display({"host": "db.internal", "password": secret})  # repr, then HTML-escaped in the report
import json, time, urllib.parse
print(urllib.parse.quote(secret, safe=""), secret.encode())
first_line = secret.splitlines()[0]
print(first_line[:20] + "...")  # a display's cut, as pandas shows a long value
db = json.loads(os.environ["DB_SECRET"])
print(f"postgresql://{db['username']}:{db['password']}@db.internal:5432/lake")
print(first_line[:9], end="", flush=True); time.sleep(0.5); print(first_line[9:])  # in two pieces
secret
"""

CHECK_PRINTS_IT = """
import os, sys
print("the password is", os.environ["HADOOP_PASSWORD"])
print("CHECK PASSED")
"""


def leaks(text: str, pieces: bool = True) -> list[str]:
    """The forms of the secrets found in text: the values, their lines, their JSON and repr escapes, the
    database password, and (with pieces) a secret's first 12 characters, all a display's cut or a cut
    message would keep of it."""
    forms = {SECRET, json.dumps(SECRET)[1:-1], repr(SECRET)[1:-1], *SECRET.splitlines(), PASSWORD}
    forms |= {SECRET[:12]} if pieces else set()
    return sorted(f for f in forms if f in text)


def written(out: Path) -> dict[str, str]:
    return {
        str(p.relative_to(out)): p.read_bytes().decode(errors="replace")
        for p in out.rglob("*")
        if p.is_file()
    }


def test_a_printed_secret_is_redacted_everywhere_the_runner_writes(
    runner_image: str, out: Path, tmp_path: Path
) -> None:
    nb = tmp_path / "nb"
    make_notebook(nb / "leaky.ipynb", PRINT_IT, GOOD_ROWS)
    (nb / "check.py").write_text(CHECK_PRINTS_IT)

    run = run_notebook(runner_image, out, nb, "leaky.ipynb", CHECK_SCRIPT="/nb/check.py", **SECRETS_ENV)

    assert run.code == 0, run.stderr
    assert len(published(out)) == 1
    files = written(out)
    assert {name for name in files if name.endswith((".ipynb", ".html", "check.txt", "manifest.json"))}
    assert {name: leaks(text) for name, text in files.items() if leaks(text)} == {}
    # papermill logs each piece the kernel sent as it came: the piece printed alone is in the log (README)
    assert leaks(run.stdout + run.stderr, pieces=False) == []
    report = next(text for name, text in files.items() if name.endswith("leaky.ipynb"))
    assert report.count("[REDACTED]") >= 14  # each way the cell printed it, and the cell's value
    assert "the password is [REDACTED]" in next(t for n, t in files.items() if n.endswith("check.txt"))
    assert "[REDACTED]" in run.stderr  # the kernel's own stdout and stderr, through the runner


def test_a_secret_in_a_failing_cells_error_is_redacted_in_the_message_and_manifest(
    runner_image: str, out: Path, tmp_path: Path
) -> None:
    nb = tmp_path / "nb"
    # The message runs past the 300 characters the last line keeps: the cut falls inside the secret.
    make_notebook(
        nb / "fails.ipynb",
        "import os\nraise ValueError('login failed for ' + '.' * 270 + os.environ['HADOOP_PASSWORD'])",
    )

    run = run_notebook(runner_image, out, nb, "fails.ipynb", **SECRETS_ENV)

    assert run.code == 10, run.stderr
    # Cut before it was redacted, the message would end in the secret's first 13 characters.
    said = f"fails.ipynb raised ValueError in cell [3]: login failed for {'.' * 270}[REDACTED]"
    assert said in run.last_line
    assert manifest(out)["message"] == said
    assert {name: leaks(text) for name, text in written(out).items() if leaks(text)} == {}
    assert leaks(run.stdout + run.stderr) == []


# The secret as a row value, and as an HTTP Basic header a client builds from it.
IN_THE_ROWS = {
    "value": "[(1, 100, os.environ['DB_SECRET'], None)]",
    "basic header": (
        "[(1, 100, 'Basic ' + base64.b64encode(b'etl_user:' + "
        "json.loads(os.environ['DB_SECRET'])['password'].encode()).decode(), None)]"
    ),
}


@pytest.mark.parametrize("rows", IN_THE_ROWS.values(), ids=IN_THE_ROWS.keys())
def test_a_secret_in_the_checked_rows_is_never_published_and_never_named(
    runner_image: str, out: Path, tmp_path: Path, rows: str
) -> None:
    make_notebook(tmp_path / "nb" / "leak.ipynb", "import base64, json, os\n" + write_rows_cell(rows))

    run = run_notebook(runner_image, out, tmp_path / "nb", "leak.ipynb", **SECRETS_ENV)

    assert run.code == 20, run.stderr[-3000:]
    assert "the output's column(s) usp hold the value of one of the notebook's secrets" in run.last_line
    assert "nothing was published" in run.last_line
    assert published(out) == []
    assert leaks(run.stderr + json.dumps(manifest(out))) == []


def test_a_column_named_after_a_secret_is_refused_by_its_redacted_name(
    runner_image: str, out: Path, tmp_path: Path
) -> None:
    cell = GOOD_ROWS.replace(
        '("usp", pa.string())', '(os.environ["HADOOP_PASSWORD"].splitlines()[1], pa.string())'
    )
    make_notebook(tmp_path / "nb" / "named.ipynb", "import os\n" + cell)
    (tmp_path / "nb" / "passes.py").write_text(
        "print('CHECK PASSED')\n"
    )  # usp's own check wants a usp column

    run = run_notebook(
        runner_image, out, tmp_path / "nb", "named.ipynb", CHECK_SCRIPT="/nb/passes.py", **SECRETS_ENV
    )

    assert run.code == 20, run.stderr[-3000:]
    assert (
        "the output's column(s) [REDACTED] hold the value of one of the notebook's secrets" in run.last_line
    )
    assert published(out) == [] and leaks(run.stderr) == []
