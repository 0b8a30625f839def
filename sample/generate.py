"""Generate the small data-lake sample shipped for the quick start.

Same tables, schema and layout as the hotel-profiling team's snapshot
(``<lake>/<table>/date=<D>/<table>.json``, JSON Lines), with the same quirks:
accommodations without a locality, USP rows whose accommodation is unknown,
``accommodation_ns`` always 100. Deterministic: the same seed writes the same bytes.

    python sample/generate.py [--out sample/lake] [--date 2019-08-01]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

USPS = [
    "animation_team",
    "bowling",
    "casino",
    "golf_course",
    "hot_tub",
    "infinity_pool",
    "kids_club",
    "rooftop_bar",
    "sandy_beach",
    "sauna",
    "spa",
    "water_slide",
]
ACCOMMODATIONS = 1_000
LOCALITIES = 40
USP_IDS_UP_TO = 2_400  # ids above ACCOMMODATIONS have USPs but no accommodation row
USP_ROWS = 3_000
NAMESPACE = 100


def write_table(lake: Path, table: str, date: str, rows: list[dict]) -> Path:
    path = lake / table / f"date={date}" / f"{table}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, separators=(",", ":")) + "\n")
    return path


def generate(lake: Path, date: str, seed: int = 20190801) -> list[Path]:
    rng = random.Random(seed)  # noqa: S311 -- reproducible sample data, not secrets
    accommodations = [
        {
            "accommodation_id": i,
            "accommodation_ns": NAMESPACE,
            # More than half of the real accommodations have no locality.
            "locality_id": rng.randint(1, LOCALITIES) if rng.random() < 0.45 else None,
            "date": date,
        }
        for i in range(1, ACCOMMODATIONS + 1)
    ]
    pairs: set[tuple[int, str]] = set()
    while len(pairs) < USP_ROWS:
        pairs.add((rng.randint(1, USP_IDS_UP_TO), rng.choice(USPS)))
    ordered = sorted(pairs)  # a set's order varies between processes; a sorted list does not
    rng.shuffle(ordered)
    usps = [
        {"accommodation_id": i, "usp": u, "accommodation_ns": NAMESPACE, "date": date} for i, u in ordered
    ]
    return [
        write_table(lake, "accommodation", date, accommodations),
        write_table(lake, "unique_selling_points", date, usps),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "lake")
    parser.add_argument("--date", default="2019-08-01")
    args = parser.parse_args()
    for path in generate(args.out, args.date):
        print(path)


if __name__ == "__main__":
    main()
