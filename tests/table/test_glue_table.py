"""runner/table.py on the Glue catalog and S3, through moto over HTTP: Glue behind a shim that enforces
UpdateTable's VersionId as Glue does (moto ignores it; without the shim a race would prove nothing), S3
behind a proxy that injects errors. Two runs of one day started together, 20 times; faults while the data
is written and while the commit lands; a reader during 20 publishes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from uuid import uuid4

import boto3
import pyarrow as pa
import pytest
from aws_shims import Faults, glue_version_shim, injecting
from races import runs_in_day, runs_seen_by_a_reader_while, started_together, two_runs_of_one_day_race
from support import moto_server

from runner import catalog, exits, maintenance, schema, table
from runner.errors import Output, RunFailed
from runner.locations import Location

REGION = "us-east-1"
DAY = "2019-08-01"


@dataclass
class Aws:
    moto: str
    glue: str  # the shim's endpoint
    s3: str  # the fault proxy's endpoint
    faults: Faults

    def client(self, service: str, endpoint: str | None = None) -> object:
        return boto3.client(service, region_name=REGION, endpoint_url=endpoint or self.moto,
                            aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip


@pytest.fixture(scope="module")
def aws() -> Iterator[Aws]:
    with moto_server() as moto, glue_version_shim(moto, REGION) as glue, injecting(moto) as (s3, faults):
        yield Aws(moto, glue, s3, faults)


@pytest.fixture
def cfg(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> Iterator[catalog.TableConfig]:
    """A table of its own: a bucket, a Glue database; the runner's clients reach Glue through the shim and
    S3 through the fault proxy."""
    suffix = uuid4().hex[:8]
    aws.client("s3").create_bucket(Bucket=f"out-{suffix}")
    aws.client("glue").create_database(DatabaseInput={"Name": f"db_{suffix}"})
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL_GLUE": aws.glue, "AWS_ENDPOINT_URL_S3": aws.s3, "AWS_ENDPOINT_URL": aws.moto,
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    yield catalog.TableConfig("glue", f"db_{suffix}.usp", Location(f"s3://out-{suffix}/usp/daily"), 30)
    aws.faults.clear()


def rows(run: str, n: int, date: str = DAY) -> pa.Table:
    data = pa.table({"id": pa.array(range(n), pa.int64()), "usp": pa.array([run] * n)})
    return schema.with_date(data, date)


def publish(cfg: catalog.TableConfig, run: str, n: int = 3, date: str = DAY) -> catalog.Committed:
    return table.commit(cfg, rows(run, n, date), catalog.Lineage(run, date))


def snapshots(cfg: catalog.TableConfig) -> list[int]:
    return [s.snapshot_id for s in catalog.open_catalog(cfg).load_table(cfg.name).snapshots()]


def test_the_shim_refuses_a_stale_version_id_as_glue_does_and_moto_alone_would_not(
    aws: Aws, cfg: catalog.TableConfig
) -> None:
    publish(cfg, "a")
    database, name = cfg.name.split(".")
    shimmed, bare = aws.client("glue", aws.glue), aws.client("glue")
    current = shimmed.get_table(DatabaseName=database, Name=name)["Table"]
    stale = str(int(current["VersionId"]) - 1)
    update = {
        "DatabaseName": database,
        "TableInput": {"Name": name, "TableType": "EXTERNAL_TABLE", "Parameters": current["Parameters"]},
    }
    with pytest.raises(shimmed.exceptions.ConcurrentModificationException):
        shimmed.update_table(**update, VersionId=stale)
    bare.update_table(**update, VersionId=stale)  # moto takes it: the shim is what the race tests stand on
    shimmed.update_table(**update, VersionId=str(int(current["VersionId"]) + 1))  # the current one


def test_two_runs_of_one_day_on_glue_that_read_the_same_table_leave_one_runs_rows_and_a_loser(
    cfg: catalog.TableConfig,
) -> None:
    two_runs_of_one_day_race(cfg, publish)


def test_runs_of_different_days_on_glue_both_land(cfg: catalog.TableConfig) -> None:
    publish(cfg, "seed", date="2019-07-31")
    days = ["2019-08-01", "2019-08-02", "2019-08-03"]
    outcomes = started_together({day: partial(publish, cfg, f"run-{day}", 2, day) for day in days})
    assert all(isinstance(o, catalog.Committed) for o in outcomes.values()), outcomes
    assert [runs_in_day(cfg, day) for day in days] == [[f"run-{day}"] for day in days]


def test_an_s3_error_while_the_data_is_written_leaves_the_table_unchanged(
    aws: Aws, cfg: catalog.TableConfig
) -> None:
    publish(cfg, "a")
    before = snapshots(cfg)
    aws.faults.fail("PUT", r"/usp/daily/data/.*\.parquet$")

    with pytest.raises(RunFailed, match=r"could not publish to the table .*injected by the test") as caught:
        publish(cfg, "b")

    assert caught.value.output is Output.UNCHANGED
    assert aws.faults.refused and snapshots(cfg) == before and runs_in_day(cfg) == ["a"]


def test_an_s3_error_while_the_commit_is_written_leaves_the_table_unchanged(
    aws: Aws, cfg: catalog.TableConfig
) -> None:
    publish(cfg, "a")
    before = snapshots(cfg)
    aws.faults.fail("PUT", r"/usp/daily/metadata/.*\.metadata\.json$", status=503, code="SlowDown")

    with pytest.raises(RunFailed, match="could not publish to the table") as caught:
        publish(cfg, "b")

    assert caught.value.exit is exits.PUBLISH and caught.value.output is Output.UNCHANGED
    assert any("metadata.json" in r for r in aws.faults.refused)
    assert snapshots(cfg) == before and runs_in_day(cfg) == ["a"]


def test_a_first_commit_that_fails_creates_no_table(aws: Aws, cfg: catalog.TableConfig) -> None:
    aws.faults.fail("PUT", r"/usp/daily/metadata/.*\.metadata\.json$")

    with pytest.raises(RunFailed, match="could not publish to the table") as caught:
        publish(cfg, "a")

    assert caught.value.output is Output.UNCHANGED
    database = cfg.name.split(".")[0]
    assert aws.client("glue").get_tables(DatabaseName=database)["TableList"] == []


def test_a_catalog_update_whose_reply_is_lost_is_found_and_counts_as_published(
    aws: Aws, cfg: catalog.TableConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Glue applied the commit but its answer never came back (every UpdateTable applied, then answered
    with an error no client retries): the runner reads the table back and says the truth, published."""
    publish(cfg, "a")
    with injecting(aws.glue) as (lossy, lost):
        lost.fail("POST", r"^/$", target="AWSGlue.UpdateTable", after_forwarding=True, status=400)
        monkeypatch.setenv("AWS_ENDPOINT_URL_GLUE", lossy)
        done = publish(cfg, "b", 5)
    monkeypatch.setenv("AWS_ENDPOINT_URL_GLUE", aws.glue)
    assert lost.refused and done.rows == 5 and runs_in_day(cfg) == ["b"]


def test_a_reader_never_sees_a_day_mixing_two_runs_during_10_publishes_on_glue(
    cfg: catalog.TableConfig,
) -> None:
    publish(cfg, "run-0", 20)
    seen = runs_seen_by_a_reader_while(cfg, lambda: [publish(cfg, f"run-{i}", 20 + i) for i in range(1, 11)])
    assert len(seen) >= 5
    assert all(len(runs) == 1 for runs in seen), [runs for runs in seen if len(runs) != 1][:3]


def test_a_commit_on_glue_is_registered_as_an_iceberg_table_athena_reads(
    aws: Aws, cfg: catalog.TableConfig
) -> None:
    publish(cfg, "a")
    database, name = cfg.name.split(".")
    glue_table = aws.client("glue").get_table(DatabaseName=database, Name=name)["Table"]
    assert glue_table["Parameters"]["table_type"] == "ICEBERG"
    assert glue_table["Parameters"]["metadata_location"].startswith(f"{cfg.location}/metadata/")
    assert json.loads(json.dumps(glue_table["StorageDescriptor"]["Location"])) == cfg.location.uri


def test_expiry_on_s3_removes_only_the_files_no_kept_snapshot_uses(
    aws: Aws, cfg: catalog.TableConfig
) -> None:
    import datetime as dt

    for run in ("a", "b"):
        publish(cfg, run)
    publish(cfg, "other-day", date="2019-08-02")
    s3 = aws.client("s3")
    bucket, prefix = cfg.location.bucket, cfg.location.prefix()

    def data_files() -> list[str]:
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix + "data/").get("Contents", [])
        return sorted(o["Key"] for o in listed)

    assert len(data_files()) == 3
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=31)
    said = maintenance.expire(cfg, later, orphan_age=dt.timedelta(0))
    assert said.startswith("expired 3 snapshot(s)") and len(data_files()) == 2, said  # a's file is gone
    assert runs_in_day(cfg) == ["b"] and runs_in_day(cfg, "2019-08-02") == ["other-day"]
