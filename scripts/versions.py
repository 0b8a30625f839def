"""versions.py -- print a model's versions for make versions (scripts/releases.sh reads the records).

    python -I scripts/versions.py RECORDS RUNNING_IMAGE MODEL [ENV]

RECORDS holds versions/*.json (one per image that passed validation, written by the validation) and
promotions/*.json (one per promotion, written by the promote project), as the stack's VersionsBucket keeps
them; RUNNING_IMAGE is the image the run family's latest revision starts. Prints the versions newest first,
the running one marked *, each with its commit, runner, when it was validated and last promoted (by what,
by whom), its comparison with production, and what to type to go back to one (with ENV=, for an environment
of the model: the commands name it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def load(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def change(version: dict[str, Any]) -> str:
    """The comparison in a few words: rows added, removed, changed and the share, or why there is none."""
    comparison = version.get("comparison") or {}
    if not comparison:
        return "not compared"
    if comparison.get("error"):
        return "comparison failed"
    if comparison.get("compared_by") is None:
        return "nothing to compare"
    counts = [f"+{comparison.get('added')}", f"-{comparison.get('removed')}"]
    if comparison.get("changed") is not None:
        counts.append(f"~{comparison['changed']}")
    share = comparison.get("changed_share")
    said = " ".join(counts) + (f" ({share:.1%})" if isinstance(share, int | float) else "")
    crossed = [c["figure"] for c in comparison.get("crossed") or []]
    return said + (f" CROSSED {','.join(crossed)}" if crossed else "")


def promoted(version: dict[str, Any], promotions: list[dict[str, Any]]) -> str:
    mine = [p for p in promotions if p["image"] == version["image"]]
    if not mine:
        return "never promoted"
    last = max(mine, key=lambda p: p["when"])
    accepted = f", accepted {','.join(last['accepted'])}" if last.get("accepted") else ""
    return f"{last['when']} {last['by']} by {last['who']}{accepted}"


def table(versions: list[dict[str, Any]], promotions: list[dict[str, Any]], running: str) -> list[str]:
    rows = [("", "VERSION", "COMMIT", "RUNNER", "VALIDATED", "LAST PROMOTED", "VS PRODUCTION")]
    for v in sorted(versions, key=lambda v: v["version"], reverse=True):
        mark = "*" if v["image"] == running else ""
        when, runner = v["validated_at"], v.get("runner_version", "?")
        last = promoted(v, promotions)
        rows.append((mark, str(v["version"]), v["commit"][:12], runner, when, last, change(v)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    padded = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) for row in rows]
    return [f"{line}  {row[-1]}" for line, row in zip(padded, rows, strict=True)]


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 4):
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    records, running, model = Path(argv[0]), argv[1], argv[2]
    env = f" ENV={argv[3]}" if len(argv) == 4 and argv[3] else ""
    versions, promotions = load(records / "versions"), load(records / "promotions")
    if not versions:
        print(f"{model} has no version yet: the first push that passes its validation makes version 1")
        return 0
    print(f"Versions of {model}, newest first (* = the one the daily runs use):")
    print("\n".join(table(versions, promotions, running)))
    if not any(v["image"] == running for v in versions):
        print(f"The daily runs use {running}, which is no recorded version.")
    print(f"\nBack:    make rollback GITHUB_REPO={model}{env} TO=<version>")
    print(f"Forward: make promote GITHUB_REPO={model}{env} TO=<version> [ACCEPT=<the figures it crossed>]")
    print("Each version's report and comparison: its record in the stack's output VersionRecordsBucketName.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
