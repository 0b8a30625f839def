"""The code stays easy to change: each runner function at radon's grade C or better, each Python file of the
runner and the scripts about 500 lines at most. In process, well under a second."""

from __future__ import annotations

from pathlib import Path

from radon.complexity import cc_rank, cc_visit

ROOT = Path(__file__).resolve().parents[1]
WORST_GRADE = "C"  # radon's grades run A (simplest) to F
MAX_LINES = 500


def python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).glob("*.py"))


def test_every_runner_function_is_at_grade_c_or_better() -> None:
    worse = [
        f"{path.relative_to(ROOT)}:{block.lineno} {block.fullname} {cc_rank(block.complexity)} "
        f"({block.complexity})"
        for path in python_files("runner")
        for block in cc_visit(path.read_text())
        if cc_rank(block.complexity) > WORST_GRADE
    ]
    assert python_files("runner") and not worse, "split these by job:\n" + "\n".join(worse)


def test_no_python_file_of_the_runner_or_the_scripts_is_over_500_lines() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in python_files("runner", "scripts", "bench")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"split these files by job: {long}"
