"""Concurrent runs and readers of one output table, for the SQLite catalog (tests/runner/test_table.py) and
the Glue one (tests/table/test_glue_table.py): the same races, each catalog's own set-up."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from pyiceberg.expressions import EqualTo

from runner import catalog, exits, history, table
from runner.errors import Output, RunFailed

DAY = "2019-08-01"


def started_together(calls: dict[str, Callable[[], object]]) -> dict[str, object]:
    """Each call in a thread of its own, all released at once; what each returned or raised, by name."""
    start = threading.Barrier(len(calls))
    outcomes: dict[str, object] = {}

    def run(name: str) -> None:
        start.wait()
        try:
            outcomes[name] = calls[name]()
        except BaseException as exc:  # noqa: BLE001 -- the caller asserts on it
            outcomes[name] = exc

    threads = [threading.Thread(target=run, args=(name,)) for name in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def runs_in_day(cfg: catalog.TableConfig, date: str = DAY, snapshot_id: int | None = None) -> list[str]:
    """The runs whose rows the table holds for date, now or at a snapshot (each row's usp names its run)."""
    return sorted(set(history.read_day(cfg, date, snapshot_id).column("usp").to_pylist()))


def assert_one_run_holds_the_day(
    cfg: catalog.TableConfig, outcomes: dict[str, object], rows: dict[str, int]
) -> None:
    """Exactly one run's rows; the other failed naming it (exit 30), or landed first and was replaced."""
    (held,) = runs_in_day(cfg)
    assert held in outcomes and history.read_day(cfg, DAY).num_rows == rows[held]
    assert isinstance(outcomes[held], catalog.Committed), outcomes[held]
    (loser,) = set(outcomes) - {held}
    lost = outcomes[loser]
    if isinstance(lost, RunFailed):
        assert lost.exit is exits.PUBLISH, lost
        assert f"run {held} published {DAY}" in str(lost) and lost.output is Output.UNCHANGED, lost
    else:
        assert [v.run_id for v in history.history(cfg, DAY)][-2:] == [loser, held]


def runs_seen_by_a_reader_while(cfg: catalog.TableConfig, publishing: Callable[[], None]) -> list[list[str]]:
    """What a reader scanning the day in a loop saw, each scan's runs, while publishing() ran."""
    done = threading.Event()
    seen: list[list[str]] = []

    def read() -> None:
        opened = catalog.open_catalog(cfg)
        while not done.is_set():
            day = opened.load_table(cfg.name).scan(row_filter=EqualTo("date", DAY)).to_arrow()
            seen.append(sorted(set(day.column("usp").to_pylist())))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        publishing()
    finally:
        done.set()
        reader.join()
    return seen


def two_runs_of_one_day_race(
    cfg: catalog.TableConfig, publish: Callable[..., object], rounds: int = 5
) -> None:
    """rounds times, two runs of DAY on the table as the last round left it, each reading the table before
    either writes (both commits stand on the same snapshot): each time exactly one run's rows, and the
    other failed naming it (exit 30): the conflict happened, every round."""
    publish(cfg, "earlier")  # the table exists: the runs race on its next commit
    for i in range(rounds):
        names = {f"left-{i}": 5, f"right-{i}": 6}  # each run's row count
        with both_read_before_either_writes(len(names)):
            outcomes = started_together({name: partial(publish, cfg, name, n) for name, n in names.items()})
        assert_one_run_holds_the_day(cfg, outcomes, names)
        lost = [o for o in outcomes.values() if isinstance(o, RunFailed)]
        assert len(lost) == 1, f"round {i}: no conflict, the commits ran one after the other: {outcomes}"


@contextlib.contextmanager
def both_read_before_either_writes(runs: int) -> Iterator[None]:
    """The commit's first read of the table (table.py's load) held until every run has made it: what the
    races assert is then a real conflict, not two commits that happened to run one after the other."""
    read = threading.Barrier(runs, timeout=60)
    first = threading.local()
    real = table.load

    def load(opened: Any, name: str) -> Any:
        found = real(opened, name)
        if not getattr(first, "done", False):
            first.done = True
            read.wait()
        return found

    table.load = load  # type: ignore[assignment]
    try:
        yield
    finally:
        table.load = real  # type: ignore[assignment]
