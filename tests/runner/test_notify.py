"""runner/notify.py on this machine's Python (no container, no AWS): the run's mail links its report and
its folder in the S3 console (report.py's links), and every run that finishes is counted by its exit code
(the metrics the dashboard draws; test_runner_s3.py puts them in moto through the image)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from runner import notify
from runner.exits import EXITS, OK
from runner.locations import Location
from runner.report import console_link, console_object_link

REPORTS = "s3://hotel-out/usp/daily/_runs/date=2019-08-01/schedule-0a1b2c"


def manifest(**changes: Any) -> dict[str, Any]:
    """A failed run's manifest, as run.py records it (the fields the mail and the metrics read)."""
    return {
        "run_id": "schedule-0a1b2c", "date": "2019-08-01", "image": "repo@sha256:" + "a" * 64,
        "notebook": "usp", "status": "failed", "exit_code": 20, "meaning": "the check failed",
        "failed_step": "check", "message": "the check failed: 2 duplicated pairs", "duration_seconds": 61.5,
        "rows": None, "output_uri": "s3://hotel-out/usp/daily", "report_uri": REPORTS,
        "report": f"{REPORTS}/usp.html", "not_published": [], **changes,
    }  # fmt: skip


@pytest.fixture(autouse=True)
def region(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    return "eu-west-1"


def test_the_mail_links_the_report_page_and_its_folder_in_the_console_and_says_how_to_copy_it() -> None:
    _, body = notify.mail(manifest())
    lines = body.splitlines()

    assert lines[-3:] == [
        f"Report:   {console_object_link(Location(f'{REPORTS}/usp.html'), 'eu-west-1')}",
        f"Copy:     aws s3 cp {REPORTS}/usp.html .",
        f"Browse:   {console_link(Location(REPORTS), 'eu-west-1')}",
    ]
    assert lines[-3] == (
        "Report:   https://s3.console.aws.amazon.com/s3/object/hotel-out?region=eu-west-1"
        "&prefix=usp/daily/_runs/date=2019-08-01/schedule-0a1b2c/usp.html"
    )
    assert lines[-1] == (
        "Browse:   https://s3.console.aws.amazon.com/s3/buckets/hotel-out?region=eu-west-1"
        "&prefix=usp/daily/_runs/date=2019-08-01/schedule-0a1b2c/"
    )


@pytest.mark.parametrize(
    "report", ["not stored: writing s3://gone/x (NoSuchBucket)", "none (the run stopped before it started)"]
)
def test_a_report_that_is_not_in_s3_is_said_as_it_is_without_a_link(report: str) -> None:
    _, body = notify.mail(manifest(report=report, report_uri=""))

    assert body.splitlines()[-2:] == [f"Report:   {report}", "Browse:   -"]
    assert "console.aws" not in body and "aws s3 cp" not in body


def test_files_left_out_are_named_before_where_the_report_is() -> None:
    _, body = notify.mail(manifest(not_published=[".hidden.parquet"]))

    assert body.splitlines()[-4].startswith("Left out: 1 hidden file(s) in staging")


@pytest.mark.parametrize("code", sorted(EXITS))
def test_every_run_is_counted_by_its_exit_code_and_only_a_success_puts_the_rest(code: int) -> None:
    data = notify.run_metrics(
        "notebook-pipeline-usp", manifest(exit_code=code, rows=3000 if code == 0 else None)
    )
    named = {d["MetricName"]: {x["Name"]: x["Value"] for x in d["Dimensions"]} for d in data}

    assert named[notify.RUNS] == {notify.JOB: "notebook-pipeline-usp", notify.EXIT_CODE: str(code)}
    if code == OK.code:
        assert set(named) == set(notify.METRICS)
        assert {d["MetricName"]: d["Value"] for d in data} == {
            notify.RUNS: 1, notify.SUCCESSFUL_RUNS: 1, notify.RUN_SECONDS: 61.5, notify.ROWS_PUBLISHED: 3000
        }  # fmt: skip
    else:
        assert set(named) == {notify.RUNS}
    for datum in data:
        assert [d["Name"] for d in datum["Dimensions"]] == list(notify.METRICS[datum["MetricName"]])
        assert datum["Unit"] == notify.UNITS[datum["MetricName"]]


def test_a_success_that_published_no_rows_puts_no_row_count() -> None:
    data = notify.run_metrics("job", manifest(exit_code=0, rows=None))

    assert [d["MetricName"] for d in data] == [notify.RUNS, notify.SUCCESSFUL_RUNS, notify.RUN_SECONDS]


class Recorder:
    """A CloudWatch client that records put_metric_data, or refuses it."""

    def __init__(self, refuse: bool = False) -> None:
        self.calls: list[dict[str, Any]] = []
        self.refuse = refuse

    def put_metric_data(self, **request: Any) -> None:
        if self.refuse:
            raise PermissionError("AccessDenied")
        self.calls.append(request)


def test_the_metrics_go_in_one_call_to_the_namespace_given(monkeypatch: pytest.MonkeyPatch) -> None:
    client = Recorder()
    monkeypatch.setattr(notify, "aws_client", lambda service: client)

    notify.put_run_metrics("NotebookPipeline/usp", "usp", manifest())

    assert client.calls == [
        {"Namespace": "NotebookPipeline/usp", "MetricData": notify.run_metrics("usp", manifest())}
    ]


@pytest.mark.parametrize(
    ("code", "said"), [(0, "the missed-run alarm may fire"), (20, "the dashboard does not count it")]
)
def test_metrics_that_cannot_be_put_are_logged_never_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, code: int, said: str
) -> None:
    monkeypatch.setattr(notify, "aws_client", lambda service: Recorder(refuse=True))

    with caplog.at_level(logging.WARNING, logger="runner"):
        notify.put_run_metrics("NotebookPipeline/usp", "usp", manifest(exit_code=code))

    assert "could not put the run's metrics in NotebookPipeline/usp" in caplog.text
    assert said in caplog.text


@pytest.mark.parametrize("name", ["a&b.html", "a#b.html", "a+b c.html", "å%20.html"])
def test_a_console_link_keeps_a_key_with_url_characters_whole(name: str) -> None:
    """The notebook's name makes the page's key: a character a URL gives a meaning of its own is escaped,
    so the console opens that object, not another prefix."""
    import urllib.parse

    key = f"{Location(REPORTS).key}/{name}"
    page = Location(f"{REPORTS}/{name}")
    for link, prefix in (
        (console_object_link(page, "eu-west-1"), key),
        (console_link(page, "eu-west-1"), key + "/"),
    ):
        query = urllib.parse.urlsplit(link)
        assert not query.fragment and urllib.parse.parse_qs(query.query)["prefix"] == [prefix], link
