"""Loaded before the runner in the bench's traced image only (bench/timeline.py): marks on stderr when each
step of a run starts and ends, as `[trace] <unix time> <step> start|end`, for the bench's timeline.

Each step is a function of the runner's, wrapped where the run calls it; a name that is not there (the
runner's modules change) is skipped, and the timeline shows what was found. Nothing else changes.
"""

from __future__ import annotations

import os
import time


def mark(label: str) -> None:
    os.write(2, f"[trace] {time.time():.6f} {label}\n".encode())


mark("runner's Python up")
import atexit  # noqa: E402
import functools  # noqa: E402
import importlib  # noqa: E402
import inspect  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import runner.run  # noqa: E402, F401 -- the runner's own imports, timed

mark("runner imported")

# (step, where the run calls it: module:attribute path, each place it may be). A name imported into another
# module is wrapped where it is called (run.py's execute, copy_staged, run_check).
STEPS = [
    ("the runner's main", ["runner.run:main"]),
    ("configuration", ["runner.config:load"]),
    ("the table's imports ahead (a thread)", ["runner.table:prepare"]),
    ("output folders checked", ["runner.run:Run.prepare_locations"]),
    ("notebook identity", ["runner.credentials:NotebookIdentity.__enter__"]),
    ("kernel spawn", ["runner.execute:start_kernel"]),
    ("preflight", ["runner.execute:preflight"]),
    ("notebook", ["runner.run:execute"]),
    ("kernel stop", ["runner.execute:stop_kernel"]),
    ("copy for the check", ["runner.run:copy_staged"]),
    ("check", ["runner.run:run_check"]),
    ("parse process", ["runner.publish:read_checked"]),
    ("secrets search", ["runner.redaction:columns_holding_secrets"]),
    ("schema", ["runner.table:with_date", "runner.schema:with_date"]),
    ("commit", ["runner.table:commit"]),
    ("catalog open", ["runner.table:open_catalog", "runner.catalog:open_catalog"]),
    ("staging cleared", ["runner.run:remove_published_from_staging"]),
    ("expiry", ["runner.table:expire", "runner.maintenance:expire"]),
    ("report and manifest", ["runner.run:Run.record"]),
    ("metrics", ["runner.notify:put_run_metrics"]),
    ("finish", ["runner.run:Run.finish"]),
    ("work folder removed", ["runner.sandbox:Workspace.remove"]),
]
# Papermill's client, imported by the run: its kernel is ready once the client has its first reply.
KERNEL_READY = ("waiting for the kernel", "nbclient.client:NotebookClient.async_start_new_kernel_client")


def traced(original: Callable[..., Any], step: str, then: Callable[[], None] | None) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(original):

        @functools.wraps(original)
        async def waiting(*args: Any, **kwargs: Any) -> Any:
            mark(f"{step} start")
            try:
                return await original(*args, **kwargs)
            finally:
                mark(f"{step} end")

        return waiting

    @functools.wraps(original)
    def calling(*args: Any, **kwargs: Any) -> Any:
        mark(f"{step} start")
        if then is not None:
            then()
        try:
            return original(*args, **kwargs)
        finally:
            mark(f"{step} end")

    return calling


def wrap(step: str, where: str, then: Callable[[], None] | None = None) -> None:
    module_name, path = where.split(":")
    module = sys.modules.get(module_name)
    if module is None:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            return
    *owners, name = path.split(".")
    owner: Any = module
    for part in owners:
        owner = getattr(owner, part, None)
    original = getattr(owner, name, None) if owner is not None else None
    if callable(original):
        setattr(owner, name, traced(original, step, then))


def kernel_ready() -> None:
    """Papermill is imported once the preflight starts: its client is wrapped then, not imported earlier."""
    if "nbclient.client" in sys.modules:
        wrap(*KERNEL_READY)


for step, places in STEPS:
    for where in places:
        wrap(step, where, kernel_ready if step == "preflight" else None)
atexit.register(mark, "interpreter exit")  # the first registered: the last handler before teardown, if any
