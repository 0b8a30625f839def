"""settings.yml, the model's settings: `make deploy` reads it (scripts/settings.py), a command-line variable
wins over it, and a bad file is refused before any AWS call with a message naming the key, the value and the
fix (a stand-in `aws` records the calls, tests/pipeline/fake_aws.py); then every value deployed is held to the
platform's bounds (platform.yml, scripts/bounds.py), and a bad platform file is refused as well."""

from __future__ import annotations

import copy
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import REPO, SETTINGS_SCRIPT, settings_script
from test_make_deploy import (
    CONNECTION,
    DOMAIN,
    ENVIRONMENTS,
    GOOD,
    HADOOP,
    HOTELS,
    KEYTAB,
    KMS_KEY,
    ONE_STACK,
    PARAMETERS,
    SOURCES_OFF,
    STAGING_REPOSITORY,
    STAGING_VERSIONS,
    deploy_call,
    environments_file,
    make,
    platform_file,
    without_settings,
)  # fmt: skip

SETTINGS = REPO / "settings.yml"
SCRIPT = SETTINGS_SCRIPT
settings = settings_script()
VARIABLES = {key.variable for key in [*settings.KEYS.values(), settings.SECRET_NAMES]}
PLATFORM = REPO / "platform.yml"


PIN = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/notebook-platform-runner@sha256:" + "0123456789abcdef" * 4


def overrides(call: list[str]) -> list[str]:
    return call[call.index("--parameter-overrides") + 1 :]


def said(done: subprocess.CompletedProcess[str]) -> list[str]:
    """What the script wrote on stderr, less make's own "make: *** ... Error 2" (make[1]: under make)."""
    return [line for line in done.stderr.splitlines() if not re.match(r"make(\[\d+\])?: ", line)]


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "model-settings.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("target", ["deploy", "deploy-plan"])
def test_make_deploy_with_only_the_repository_takes_every_other_setting_from_settings_yml(
    tmp_path: Path, target: str
) -> None:
    """Under the shipped platform.yml (PLATFORM_FILE empty: the default), whose bounds hold settings.yml."""
    done, calls = make(tmp_path, target, GITHUB_REPO="o/r", PLATFORM_FILE="")

    call = deploy_call(calls)
    assert done.returncode == 0, done.stderr
    assert call[call.index("--tags") + 1 : call.index("--parameter-overrides")] == [
        "notebook-pipeline:platform=notebook-platform", "notebook-pipeline:model=r",
    ]  # fmt: skip
    assert overrides(call) == [
        "GitHubRepository=o/r", "GitHubBranch=main", "ConnectionArn=", *ONE_STACK, "NotebookPath=usp.ipynb",
        "PlatformStackName=notebook-platform", "RunnerImage=",
        "DataLakeBucket=hotel-data-lake", "OutputBucket=hotel-output", "NotificationEmails=", *SOURCES_OFF,
        "DataLakePrefix=snapshots", "ValidationDate=2019-08-01", "ValidationPrefix=validation",
        "CompareKeyColumns=accommodation_id,usp", "MaxChangedShare=0.1", "ReleaseApproval=none",
        "ScheduleExpression=cron(0 6 * * ? *)", "ScheduleTimezone=UTC", "OutputPrefix=usp/daily",
        "OutputTable=usp", "SnapshotRetentionDays=30", "ConsumerScanLimitBytes=10737418240",
        "TaskCpu=1024", "TaskMemory=2048", "RunnerMajorVersion=1",
    ] + (["--no-execute-changeset"] if target == "deploy-plan" else [])  # fmt: skip


def test_a_variable_on_the_command_line_wins_over_the_settings_file(tmp_path: Path) -> None:
    done, calls = make(
        tmp_path, "deploy", GITHUB_REPO="o/r", TASK_MEMORY="4096", SCHEDULE="", OUTPUT_BUCKET="other-out",
        DATA_LAKE_PREFIX="lake/v2",
    )  # fmt: skip

    passed = overrides(deploy_call(calls))
    assert done.returncode == 0, done.stderr
    assert {
        "TaskMemory=4096",
        "ScheduleExpression=",
        "OutputBucket=other-out",
        "DataLakePrefix=lake/v2",
    } < set(passed)
    assert {"TaskCpu=1024", "DataLakeBucket=hotel-data-lake"} < set(passed)  # the file's other values
    assert not {"TaskMemory=2048", "OutputBucket=hotel-output", "DataLakePrefix=snapshots"} & set(passed)


def test_settings_file_reads_another_models_settings(tmp_path: Path) -> None:
    other = write(
        tmp_path,
        "notebook: models/adr.ipynb\ndata_lake: {bucket: adr-lake, prefix: raw}\n"
        "output: {bucket: adr-out, prefix: adr/daily}\nvalidation: {date: 2024-02-29}\n"
        "schedule: {expression: '', timezone: Europe/Amsterdam}\nrun: {cpu: 2048, memory: 8192}\n"
        "alerts: {emails: [data-eng@example.com, oncall@example.com]}\n"
        "network: {subnets: [subnet-0a1b2c3d, subnet-4e5f6a7b], security_groups: [sg-0a1b2c3d],"
        " assign_public_ip: DISABLED}\n"
        f"github: {{branch: release/1, connection_arn: '{CONNECTION}'}}\n"
        f"runner: {{major: 2, image: '{PIN}'}}\n",
    )
    done, calls = make(tmp_path, "deploy", GITHUB_REPO="o/adr", SETTINGS_FILE=other, FAKE_STACK_EXISTS="no")

    assert done.returncode == 0, done.stderr
    assert not [c for c in calls if c[0] == "ec2"]  # the file's network, not the default VPC
    assert overrides(deploy_call(calls)) == [
        "GitHubRepository=o/adr", "GitHubBranch=release/1", f"ConnectionArn={CONNECTION}", *ONE_STACK,
        "NotebookPath=models/adr.ipynb", "PlatformStackName=test-platform", f"RunnerImage={PIN}",
        "DataLakeBucket=adr-lake", "OutputBucket=adr-out",
        "NotificationEmails=data-eng@example.com,oncall@example.com", *SOURCES_OFF, "DataLakePrefix=raw",
        "ValidationDate=2024-02-29", "ScheduleExpression=", "ScheduleTimezone=Europe/Amsterdam",
        "OutputPrefix=adr/daily", "TaskCpu=2048", "TaskMemory=8192", "RunnerMajorVersion=2",
        "Subnets=subnet-0a1b2c3d,subnet-4e5f6a7b", "SecurityGroups=sg-0a1b2c3d", "AssignPublicIp=DISABLED",
        "OutputDatabase=notebook_pipeline_adr",  # on creation: the stack's name
    ]  # fmt: skip


def test_without_a_settings_file_every_setting_comes_from_the_variables(tmp_path: Path) -> None:
    empty = write(tmp_path, "")
    missing, missing_calls = make(tmp_path / "missing", "deploy", GITHUB_REPO="o/r", SETTINGS_FILE=empty)
    given, calls = make(
        tmp_path / "given", "deploy", GITHUB_REPO="o/r", SETTINGS_FILE=empty, DATA_LAKE_BUCKET="lake",
        OUTPUT_BUCKET="out",
    )  # fmt: skip

    assert (missing.returncode, missing_calls) == (2, [])
    assert missing.stderr.startswith("pipeline: DATA_LAKE_BUCKET is not set"), missing.stderr
    assert given.returncode == 0, given.stderr
    # nothing else: the stack keeps it
    assert overrides(deploy_call(calls))[-9:] == ["NotificationEmails=", *SOURCES_OFF]


def test_a_settings_file_named_but_missing_is_refused(tmp_path: Path) -> None:
    done, calls = make(tmp_path, "deploy", GITHUB_REPO="o/r", SETTINGS_FILE=str(tmp_path / "nope.yml"))

    assert (done.returncode, calls) == (2, [])
    assert said(done) == [
        (
            f"pipeline: SETTINGS_FILE={tmp_path / 'nope.yml'} cannot be read: No such file or directory "
            "(point SETTINGS_FILE at a settings file)"
        )
    ]


BAD = {
    "unknown key": (
        "data_lake: {buket: hotel-lake}\n",
        "unknown key data_lake.buket: did you mean data_lake.bucket? (see the comments in settings.yml)",
    ),
    "unknown top-level key": ("notebok: usp.ipynb\n", "unknown key notebok: did you mean notebook?"),
    "a key in the wrong section": (
        "subnets: [subnet-0a1b2c3d]\n",
        "unknown key subnets: did you mean network.subnets?",
    ),
    "bad bucket": (
        "output: {bucket: Hotel_Out}\n",
        (
            "output.bucket='Hotel_Out' is not valid: it must be an S3 bucket name (3-63 lowercase letters, "
            "digits, '.', '-') (the template's OutputBucket): fix it in the file, or override it with "
            "OUTPUT_BUCKET=..."
        ),
    ),
    "wrong kind of ARN": (
        "github: {connection_arn: 'arn:aws:codebuild:eu-west-1:123456789012:project/usp'}\n",
        (
            "github.connection_arn='arn:aws:codebuild:eu-west-1:123456789012:project/usp' is not valid: it "
            "must be empty or a connection ARN, arn:aws:codeconnections:REGION:ACCOUNT:connection/UUID (the "
            "template's ConnectionArn)"
        ),
    ),
    "a list for a text": (
        "notebook: [usp.ipynb]\n",
        "notebook=['usp.ipynb'] is a list, not a text: write one value",
    ),
    "a text for a list": (
        "network: {subnets: subnet-0a1b2c3d, security_groups: [sg-0a1b2c3d]}\n",
        "network.subnets='subnet-0a1b2c3d' is not a list: write a YAML list, e.g. subnets: [subnet-0a1b2c3d]",
    ),
    "a text for a number": (
        "run: {cpu: 1 vCPU}\n",
        "run.cpu='1 vCPU' is not a whole number: write digits only, e.g. cpu: 1024",
    ),
    "a number the template refuses": (
        "run: {cpu: 3000}\n",
        "run.cpu='3000' is not valid: it must be 256, 512, 1024, 2048, 4096, 8192 or 16384 (the template's",
    ),
    "memory out of the template's range": (
        "run: {memory: 100}\n",
        "run.memory='100' is not valid: it must be a whole number of MiB from 512 to 122880",
    ),
    "four addresses": (
        "alerts: {emails: [a@x.io, b@x.io, c@x.io, d@x.io]}\n",
        "alerts.emails='a@x.io,b@x.io,c@x.io,d@x.io' is not valid: it must be empty or 1 to 3 email",
    ),
    "an empty required bucket": ("data_lake: {bucket: ''}\n", "data_lake.bucket='' is not valid"),
    "a key without a value": ("schedule: {expression: }\n", "schedule.expression has no value: give it one"),
    "a section that is no mapping": (
        "output: hotel-out\n",
        "output='hotel-out' is not a mapping: write output: {",
    ),
    "invalid YAML": (
        "data_lake: {bucket: hotel-lake\nnotebook: usp.ipynb\n",
        "the file is not valid YAML at line 2, column 9:",
    ),
    "a top-level list": ("- notebook: usp.ipynb\n", "the file is a YAML list, not a mapping of keys"),
    "a runner major of 0": (
        "runner: {major: 0}\n",
        (
            "runner.major='0' is not valid: it must be a major version number, 1 to 999 (the template's "
            "RunnerMajorVersion): fix it in the file, or override it with RUNNER_MAJOR=..."
        ),
    ),
    "a runner major as text": (
        "runner: {major: v1}\n",
        "runner.major='v1' is not a whole number: write digits only, e.g. major: 1024",
    ),
    "a changed share above 1": (
        "promotion: {max_changed_share: 1.5}\n",
        (
            "promotion.max_changed_share='1.5' is not valid: it must be empty or a number from 0 to 1 with "
            "at most 4 decimals, e.g. 0.1 for 10% (the template's MaxChangedShare): fix it in the file, or "
            "override it with MAX_CHANGED_SHARE=..."
        ),
    ),
    "a changed share in words": (
        "promotion: {max_changed_share: lots}\n",
        "promotion.max_changed_share='lots' is not valid: it must be empty or a number from 0 to 1 with at",
    ),
    "a changed share as a percentage": (
        "promotion: {max_changed_share: 10%}\n",
        "promotion.max_changed_share='10%' is not valid: it must be empty or a number from 0 to 1 with at",
    ),
    "a changed share with 5 decimals": (
        "promotion: {max_changed_share: 0.00001}\n",  # a YAML float, 1e-05: named as written
        "promotion.max_changed_share='0.00001' is not valid: it must be empty or a number from 0 to 1",
    ),
    "a changed share as a flag": (
        "promotion: {max_changed_share: yes}\n",
        "promotion.max_changed_share=True is not a number: write one, e.g. max_changed_share: 0.1",
    ),
    "a changed share as a list": (
        "promotion: {max_changed_share: [0.1]}\n",
        "promotion.max_changed_share=[0.1] is not a number: write one, e.g. max_changed_share: 0.1",
    ),
    "a changed share without a value": (
        "promotion: {max_changed_share: }\n",
        "promotion.max_changed_share has no value: give it one (e.g. 0.1), or remove the key",
    ),
    "compare keys as a text": (
        "promotion: {compare_keys: accommodation_id}\n",
        (
            "promotion.compare_keys='accommodation_id' is not a list: write a YAML list, e.g. compare_keys: "
            "[accommodation_id]"
        ),
    ),
    "a compare key that is no column name": (
        "promotion: {compare_keys: [accommodation_id, usp-count]}\n",
        (
            "promotion.compare_keys item='usp-count' is not valid: it must be empty or up to 10 column "
            "names (letters, digits and _), comma-separated, e.g. kind,state (the template's "
            "CompareKeyColumns): fix it in the file, or override it with COMPARE_KEYS=..."
        ),
    ),
    "eleven compare keys": (
        f"promotion: {{compare_keys: [{', '.join(f'c{n}' for n in range(11))}]}}\n",
        f"promotion.compare_keys='{','.join(f'c{n}' for n in range(11))}' is not valid: it must be empty",
    ),
    "an approval the template refuses": (
        "promotion: {approval: always}\n",
        (
            "promotion.approval='always' is not valid: it must be none or required (the template's "
            "ReleaseApproval): fix it in the file, or override it with RELEASE_APPROVAL=..."
        ),
    ),
    "an approval as a flag": (
        "promotion: {approval: no}\n",
        "promotion.approval=False is a number or flag, not a text: write one value",
    ),
    "a typo under promotion": (
        "promotion: {max_change_share: 0.1}\n",
        "unknown key promotion.max_change_share: did you mean promotion.max_changed_share?",
    ),
    "a runner image by tag": (
        "runner: {image: 'notebook-runner:1.2.0'}\n",
        (
            "runner.image='notebook-runner:1.2.0' is not valid: it must be empty or the platform's runner "
            "repository URI @sha256:<64 hex digits> (the template's RunnerImage): fix it in the file, or "
            "override it with RUNNER_PIN=..."
        ),
    ),
}


@pytest.mark.parametrize("text, message", BAD.values(), ids=BAD.keys())
def test_a_bad_settings_file_is_refused_before_any_aws_call_naming_the_key_value_and_fix(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    done, calls = make(tmp_path, "deploy", GITHUB_REPO="o/r", SETTINGS_FILE=path)

    assert (done.returncode, calls) == (2, [])
    (line,) = said(done)
    assert line.startswith(f"pipeline: {path}: {message}"), line


def test_a_bad_value_in_the_file_is_refused_even_when_a_variable_overrides_it(tmp_path: Path) -> None:
    path = write(tmp_path, "run: {cpu: 3000}\n")
    done, calls = make(tmp_path, "deploy", GITHUB_REPO="o/r", SETTINGS_FILE=path, TASK_CPU="1024")

    assert (done.returncode, calls) == (2, [])
    assert f"pipeline: {path}: run.cpu='3000' is not valid" in done.stderr


def test_every_key_checks_the_template_parameter_the_deploy_passes_it_to() -> None:
    """settings.py's table names the variables pipeline.sh passes as those parameters."""
    code = (REPO / "scripts" / "pipeline.sh").read_text()
    for name, key in settings.KEYS.items():
        assert key.parameter in settings.template_parameters(), name
        assert f"{key.parameter}=${{{key.variable}}}" in code or (
            f"{key.variable} {key.parameter}" in code  # pass_if_set VARIABLE PARAMETER
        ), f"{name}: pipeline.sh passes {key.variable} as another parameter than {key.parameter}"


def test_the_shipped_settings_file_is_valid_and_documents_every_key() -> None:
    env = {k: v for k, v in os.environ.items() if k not in {key.variable for key in settings.KEYS.values()}}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(SETTINGS)], cwd=REPO, env=env, capture_output=True, text=True
    )

    assert (done.returncode, done.stderr) == (0, "")
    assert "SCHEDULE='cron(0 6 * * ? *)'" in done.stdout.splitlines()
    lines = SETTINGS.read_text().splitlines()
    root = yaml.compose(SETTINGS.read_text())
    assert isinstance(root, yaml.MappingNode)
    found = set()
    for section, value in root.value:
        nested = value.value if isinstance(value, yaml.MappingNode) else []
        for key, _ in [(section, value), *nested]:
            line = key.start_mark.line
            name = key.value if key is section else f"{section.value}.{key.value}"
            found.add(name)
            while line > 0 and lines[line - 1].lstrip().startswith("#"):
                line -= 1  # to the first line of the comment just above the key
            comment = lines[line].lstrip()
            assert comment.startswith((f"# {key.value} ", f"# {key.value}:")), f"{name}: no comment above it"
    assert found - set(settings.SECTIONS) == set(settings.KEYS), "the file ships every key, and no other"


# --- the notebook's data sources -------------------------------------------------------------------------

BUCKETS = "data_lake: {bucket: hotel-data-lake}\noutput: {bucket: hotel-output}\n"
ATHENA = (
    "athena: {workgroup: usp-analysts, results_bucket: hotel-athena-results,"
    " results_prefix: athena-results/usp}\n"
)
SOURCES = (
    f"{ATHENA}glue: {{databases: [hotel_lake, reviews]}}\nopensearch: {{domains: ['{DOMAIN}']}}\n"
    f"secrets:\n  HIVE_KEYTAB: '{KEYTAB}'\n  HADOOP_PASSWORD: '{HADOOP}'\nsecret_kms_keys: ['{KMS_KEY}']\n"
)
# What the deploy passes before the sources: the repository, and the file's buckets (the rest at defaults).
BEFORE_SOURCES = [
    "GitHubRepository=o/r", "GitHubBranch=main", "ConnectionArn=", *ONE_STACK, "NotebookPath=usp.ipynb",
    "PlatformStackName=test-platform", "RunnerImage=", "DataLakeBucket=hotel-data-lake",
    "OutputBucket=hotel-output", "NotificationEmails=",
]  # fmt: skip
SOURCES_ON = [
    "AthenaWorkGroup=usp-analysts", "AthenaResultsBucket=hotel-athena-results",
    "AthenaResultsPrefix=athena-results/usp", "GlueDatabases=hotel_lake,reviews",
    f"OpenSearchDomainArns={DOMAIN}", "SecretNames=HIVE_KEYTAB,HADOOP_PASSWORD",
    f"SecretArns={KEYTAB},{HADOOP}", f"SecretKmsKeyArns={KMS_KEY}",
]  # fmt: skip


def test_the_shipped_settings_file_has_every_data_source_off_and_names_its_variables() -> None:
    shipped = yaml.safe_load(SETTINGS.read_text())
    variables = {key.variable for key in [*settings.KEYS.values(), settings.SECRET_NAMES]}
    env = {k: v for k, v in os.environ.items() if k not in variables}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(SETTINGS)], cwd=REPO, env=env, capture_output=True, text=True
    )
    text = SETTINGS.read_text()

    assert shipped["athena"] == {"workgroup": "", "results_bucket": "", "results_prefix": ""}
    assert (shipped["glue"], shipped["opensearch"]) == ({"databases": []}, {"domains": []})
    assert (shipped["secrets"], shipped["secret_kms_keys"]) == ({}, [])
    assert done.returncode == 0, done.stderr
    assert {
        "ATHENA_WORKGROUP=''", "ATHENA_RESULTS_BUCKET=''", "ATHENA_RESULTS_PREFIX=''", "GLUE_DATABASES=''",
        "OPENSEARCH_DOMAIN_ARNS=''", "SECRET_NAMES=''", "SECRET_ARNS=''", "SECRET_KMS_KEY_ARNS=''",
    } <= set(done.stdout.splitlines())  # fmt: skip
    for name in settings.DATA_SOURCES:  # each key's comment names its variable and template parameter
        key = settings.KEYS[name]
        if name == "secrets":
            assert "# secrets (SECRET_NAMES + SECRET_ARNS, SecretNames + SecretArns):" in text
        else:
            assert f"# {name.rsplit('.', 1)[-1]} ({key.variable}, {key.parameter}):" in text, name


def test_a_settings_file_with_the_data_sources_deploys_with_them(tmp_path: Path) -> None:
    path = write(tmp_path, BUCKETS + SOURCES)
    done, calls = make(tmp_path, "deploy", GITHUB_REPO="o/r", SETTINGS_FILE=path)

    assert done.returncode == 0, done.stderr
    assert overrides(deploy_call(calls)) == BEFORE_SOURCES + SOURCES_ON  # the secrets in the file's order


def test_a_variable_on_the_command_line_overrides_a_data_source_of_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, BUCKETS + SOURCES)
    other = HOTELS
    token = "arn:aws:ssm:eu-west-1:123456789012:parameter/usp/api-token"
    done, calls = make(
        tmp_path, "deploy", GITHUB_REPO="o/r", SETTINGS_FILE=path, OPENSEARCH_DOMAIN_ARNS=other,
        GLUE_DATABASES="", SECRET_NAMES="API_TOKEN", SECRET_ARNS=token,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert overrides(deploy_call(calls)) == [
        *BEFORE_SOURCES, *SOURCES_ON[:3], "GlueDatabases=", f"OpenSearchDomainArns={other}",
        "SecretNames=API_TOKEN", f"SecretArns={token}", f"SecretKmsKeyArns={KMS_KEY}",
    ]  # fmt: skip


def test_a_data_source_removed_from_the_file_is_passed_empty_and_so_turned_off(tmp_path: Path) -> None:
    deployed = {}
    for step, text in {"all": BUCKETS + SOURCES, "athena only": BUCKETS + ATHENA, "none": BUCKETS}.items():
        done, calls = make(
            tmp_path / step, "deploy", GITHUB_REPO="o/r", SETTINGS_FILE=write(tmp_path / step, text)
        )
        assert done.returncode == 0, done.stderr
        deployed[step] = overrides(deploy_call(calls))

    assert deployed["all"] == BEFORE_SOURCES + SOURCES_ON
    assert deployed["athena only"] == BEFORE_SOURCES + SOURCES_ON[:3] + SOURCES_OFF[3:]
    assert deployed["none"] == BEFORE_SOURCES + SOURCES_OFF


SECRET = "{HADOOP_PASSWORD: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:hadoop-AbCdEf'}"
# The template's SecretNames constraint, as its messages quote it.
SECRET_NAMES_RULE = (
    "must be empty or 1 to 5 variable names (A-Z, 0-9, '_'; not starting with a digit) separated by commas, "
    "none a variable the runner, the AWS SDKs, the C library or Python read (AWS_*, LD_*, *_PROXY, PATH, "
    "TMPDIR, the runner's settings such as DATA_URI)"
)
BAD_SOURCES = {
    "a typo under athena": (
        "athena: {work_group: usp-analysts}\n",
        "unknown key athena.work_group: did you mean athena.workgroup? (see the comments in settings.yml)",
    ),
    "a bad results bucket": (
        "athena: {workgroup: usp, results_bucket: Athena_Results, results_prefix: usp}\n",
        (
            "athena.results_bucket='Athena_Results' is not valid: it must be empty or an S3 bucket name "
            "(3-63 lowercase letters, digits, '.', '-') (the template's AthenaResultsBucket): fix it in the "
            "file, or override it with ATHENA_RESULTS_BUCKET=..."
        ),
    ),
    "query results in the output bucket": (
        "athena: {workgroup: usp, results_bucket: hotel-output, results_prefix: usp}\n",
        (
            "athena.results_bucket='hotel-output' is also OUTPUT_BUCKET: the notebook writes its query "
            "results, so they go to a bucket of their own, never where consumers read or the lake (the "
            "template's rule QueryResultsApartFromTheData)"
        ),
    ),
    "a wildcard as the results prefix": (
        "athena: {workgroup: usp, results_bucket: hotel-athena-results, results_prefix: '*'}\n",
        (
            "athena.results_prefix='*' is not valid: it must be empty or a key prefix of letters, digits and "
            "!_.()- (no '*', an IAM wildcard), without leading or trailing '/', e.g. athena-results/usp "
            "(the template's AthenaResultsPrefix): fix it in the file, or override it with "
            "ATHENA_RESULTS_PREFIX=..."
        ),
    ),
    "an s3 arn as an opensearch domain": (
        "opensearch: {domains: ['arn:aws:s3:::hotel-data-lake']}\n",
        (
            "opensearch.domains item='arn:aws:s3:::hotel-data-lake' is not valid: it must be empty or 1 to 5 "
            "domain ARNs, arn:aws:es:REGION:ACCOUNT:domain/NAME, separated by commas (the template's "
            "OpenSearchDomainArns): fix it in the file, or override it with OPENSEARCH_DOMAIN_ARNS=..."
        ),
    ),
    "a secret arn without its suffix": (
        "secrets: {HADOOP_PASSWORD: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:hadoop'}\n",
        (
            "secrets.HADOOP_PASSWORD='arn:aws:secretsmanager:eu-west-1:123456789012:secret:hadoop' is not "
            "valid: it must be empty or 1 to 5 ARNs of secrets "
            "(arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-AbCdEf) or parameters "
            "(arn:aws:ssm:REGION:ACCOUNT:parameter/NAME) separated by commas (the template's SecretArns): "
            "fix it in the file, or override it with SECRET_ARNS=..."
        ),
    ),
    "secrets as a list": (
        "secrets: ['arn:aws:secretsmanager:eu-west-1:123456789012:secret:hadoop-AbCdEf']\n",
        (
            "secrets=['arn:aws:secretsmanager:eu-west-1:123456789012:secret:hadoop-AbCdEf'] is not a "
            "mapping: write one VARIABLE: ARN line per secret, e.g. secrets: {HADOOP_PASSWORD: "
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:hadoop-AbCdEf}"
        ),
    ),
    "a secret named as an aws variable": (
        f"secrets: {SECRET.replace('HADOOP_PASSWORD', 'AWS_SECRET_ACCESS_KEY')}\n",
        (
            "secrets.AWS_SECRET_ACCESS_KEY is a variable the runner, the AWS SDKs, the C library or Python "
            "read: give the secret another name, e.g. HADOOP_PASSWORD"
        ),
    ),
    "a secret name that is no variable name": (
        f"secrets: {SECRET.replace('HADOOP_PASSWORD', 'hadoop-password')}\n",
        (
            "secrets.hadoop-password is not a variable name: the notebook reads the secret from it, so use "
            "A-Z, 0-9 and '_', not starting with a digit, e.g. HADOOP_PASSWORD"
        ),
    ),
    "two arns for one secret": (
        f"secrets: {{HADOOP_PASSWORD: '{HADOOP},{KEYTAB}'}}\n",
        f"secrets.HADOOP_PASSWORD='{HADOOP},{KEYTAB}' is not an ARN: give the secret's or parameter's ARN",
    ),
    "six secrets": (
        "secrets:\n" + "".join(f"  S{n}: '{KEYTAB}{n}'\n" for n in range(6)),
        (
            f"secrets='S0,S1,S2,S3,S4,S5' is not valid: it {SECRET_NAMES_RULE} (the template's SecretNames): "
            "fix it in the file, or override it with SECRET_NAMES=..."
        ),
    ),
    "secrets without a value": (
        "secrets:\n",
        "secrets has no value: give it one (e.g. {NAME: arn:...}, or {} for none), or remove the key",
    ),
    "glue databases as a text": (
        "glue: {databases: hotel_lake}\n",
        "glue.databases='hotel_lake' is not a list: write a YAML list, e.g. databases: [hotel_lake]",
    ),
    "four glue databases": (
        "glue: {databases: [a, b, c, d]}\n",
        (
            "glue.databases='a,b,c,d' is not valid: it must be empty or 1 to 3 database names (lowercase "
            "letters, digits, '_', '-') separated by commas (the template's GlueDatabases): fix it in the "
            "file, or override it with GLUE_DATABASES=..."
        ),
    ),
    "a kms alias for a key": (
        "secret_kms_keys: ['arn:aws:kms:eu-west-1:123456789012:alias/aws/secretsmanager']\n",
        (
            "secret_kms_keys item='arn:aws:kms:eu-west-1:123456789012:alias/aws/secretsmanager' is not "
            "valid: it must be empty or 1 to 5 KMS key ARNs, arn:aws:kms:REGION:ACCOUNT:key/UUID, separated "
            "by commas (the template's SecretKmsKeyArns): fix it in the file, or override it with "
            "SECRET_KMS_KEY_ARNS=..."
        ),
    ),
}


@pytest.mark.parametrize("text, message", BAD_SOURCES.values(), ids=BAD_SOURCES.keys())
def test_a_bad_data_source_in_the_file_is_refused_before_any_aws_call_with_its_message(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, BUCKETS + text)
    done, calls = make(tmp_path, "deploy", GITHUB_REPO="o/r", SETTINGS_FILE=path)

    assert (done.returncode, calls) == (2, [])
    assert said(done) == [f"pipeline: {path}: {message}"]


BAD_VARIABLES = {
    "secret names without arns": (
        {"SECRET_NAMES": "HADOOP_PASSWORD"},
        (
            "SECRET_NAMES and SECRET_ARNS go together, one name for each ARN in the same order "
            "(SECRET_NAMES has 1, SECRET_ARNS 0): set both, or neither"
        ),
    ),
    "more secret names than arns": (
        {"SECRET_NAMES": "HADOOP_PASSWORD,HIVE_KEYTAB", "SECRET_ARNS": HADOOP},
        (
            "SECRET_NAMES and SECRET_ARNS go together, one name for each ARN in the same order "
            "(SECRET_NAMES has 2, SECRET_ARNS 1): set both, or neither"
        ),
    ),
    "a secret named as the loader's variable": (
        {"SECRET_NAMES": "LD_PRELOAD", "SECRET_ARNS": HADOOP},
        (
            f"SECRET_NAMES item='LD_PRELOAD' is not valid: it {SECRET_NAMES_RULE} (the template's "
            "SecretNames): fix the variable SECRET_NAMES (make's command line or the environment), or leave "
            "it out"
        ),
    ),
    "a secret named twice": (
        {"SECRET_NAMES": "HADOOP_PASSWORD,HADOOP_PASSWORD", "SECRET_ARNS": f"{HADOOP},{HADOOP}"},
        (
            "SECRET_NAMES names HADOOP_PASSWORD: a secret's variable must be new and its own, not one the "
            "runner, the AWS SDKs, the C library or Python read: rename it, e.g. HADOOP_PASSWORD"
        ),
    ),
    "a runner major of 1000": (
        {"RUNNER_MAJOR": "1000"},
        (
            "RUNNER_MAJOR='1000' is not valid: it must be a major version number, 1 to 999 (the template's "
            "RunnerMajorVersion): fix the variable RUNNER_MAJOR (make's command line or the environment), or "
            "leave it out"
        ),
    ),
    "a runner image without its digest": (
        {"RUNNER_PIN": PIN.partition("@")[0]},
        (
            f"RUNNER_PIN={PIN.partition('@')[0]!r} is not valid: it must be empty or the platform's runner "
            "repository URI @sha256:<64 hex digits> (the template's RunnerImage): fix the variable "
            "RUNNER_PIN (make's command line or the environment), or leave it out"
        ),
    ),
    "an s3 arn as an opensearch domain": (
        {"OPENSEARCH_DOMAIN_ARNS": f"{DOMAIN},arn:aws:s3:::hotel-data-lake"},
        (
            "OPENSEARCH_DOMAIN_ARNS item='arn:aws:s3:::hotel-data-lake' is not valid: it must be empty or 1 "
            "to 5 domain ARNs, arn:aws:es:REGION:ACCOUNT:domain/NAME, separated by commas (the template's "
            "OpenSearchDomainArns): fix the variable OPENSEARCH_DOMAIN_ARNS (make's command line or the "
            "environment), or leave it out"
        ),
    ),
}


@pytest.mark.parametrize("variables, message", BAD_VARIABLES.values(), ids=BAD_VARIABLES.keys())
def test_a_bad_data_source_variable_without_a_settings_file_is_refused_naming_the_variable(
    tmp_path: Path, variables: dict[str, str], message: str
) -> None:
    """Named as the variable, not as a file: with no settings file at all, pipeline.sh has settings.py read
    /dev/null (run here as it runs it), and make deploy with an empty one."""
    done, calls = make(tmp_path, "deploy", **GOOD, **without_settings(tmp_path), **variables)
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    direct = subprocess.run(
        [sys.executable, str(SCRIPT), "/dev/null"], cwd=REPO, env={**env, **variables}, capture_output=True,
        text=True,
    )  # fmt: skip

    assert (done.returncode, calls) == (2, [])
    assert said(done) == [f"pipeline: {message}"]
    assert (direct.returncode, direct.stdout, direct.stderr) == (2, "", f"pipeline: {message}\n")


def test_emptying_only_the_files_secret_names_on_the_command_line_is_refused(tmp_path: Path) -> None:
    """SecretNames='' beside the file's SecretArns would fail the template's rule mid-deploy."""
    path = write(tmp_path, BUCKETS + SOURCES)
    done, calls = make(tmp_path, "deploy", GITHUB_REPO="o/r", SETTINGS_FILE=path, SECRET_NAMES="")

    assert (done.returncode, calls) == (2, [])
    assert said(done) == [
        (
            "pipeline: SECRET_NAMES and SECRET_ARNS go together, one name for each ARN in the same order "
            "(SECRET_NAMES has 0, SECRET_ARNS 2): set both, or neither"
        )
    ]


# --- the promotion: the comparison with production, and approval --------------------------------------------

PROMOTION = (
    "promotion: {compare_keys: [accommodation_id, usp], max_changed_share: 0.05, approval: required}\n"
)
PROMOTION_ON = ["CompareKeyColumns=accommodation_id,usp", "MaxChangedShare=0.05", "ReleaseApproval=required"]
PROMOTION_PARAMETERS = ("CompareKeyColumns", "MaxChangedShare", "ReleaseApproval")


def promotion_passed(call: list[str]) -> list[str]:
    return [arg for arg in overrides(call) if arg.startswith(tuple(f"{p}=" for p in PROMOTION_PARAMETERS))]


def test_the_shipped_settings_file_compares_by_the_outputs_key_and_documents_the_promotion() -> None:
    """usp's rows are one per (accommodation_id, usp) pair, the key check.py holds unique."""
    shipped = yaml.safe_load(SETTINGS.read_text())
    text = SETTINGS.read_text()

    assert shipped["promotion"] == {
        "compare_keys": ["accommodation_id", "usp"], "max_changed_share": 0.1, "approval": "none",
    }  # fmt: skip
    assert "no duplicate (accommodation_id, usp) pair" in (REPO / "check.py").read_text()
    for name in ("promotion.compare_keys", "promotion.max_changed_share", "promotion.approval"):
        key = settings.KEYS[name]  # each key's comment names its variable and template parameter
        assert f"# {name.rsplit('.', 1)[-1]} ({key.variable}, {key.parameter}):" in text, name


def test_a_new_model_compares_by_its_check_pys_key(tmp_path: Path) -> None:
    """scripts/new-model.sh writes the platform's settings.yml with the model template's key (its check.py's
    KEY), and a file settings.py takes."""
    model = tmp_path / "hotel-usp"
    done = subprocess.run(
        [str(REPO / "scripts" / "new-model.sh"), str(model)], capture_output=True, text=True
    )
    key = re.search(r'^KEY = "(\w+)"$', (model / "check.py").read_text(), re.MULTILINE)

    assert done.returncode == 0, done.stderr
    assert key and yaml.safe_load((model / "settings.yml").read_text())["promotion"] == {
        "compare_keys": [key.group(1)], "max_changed_share": 0.1, "approval": "none",
    }  # fmt: skip
    checked = run_settings(tmp_path, (model / "settings.yml").read_text(), platform_file(tmp_path))
    assert (checked.returncode, checked.stderr) == (0, "")
    assert f"COMPARE_KEYS={key.group(1)}" in checked.stdout.splitlines()


def test_a_settings_file_with_the_promotion_deploys_with_it(tmp_path: Path) -> None:
    path = write(tmp_path, BUCKETS + PROMOTION)
    done, calls = make(tmp_path, "deploy", GITHUB_REPO="o/r", SETTINGS_FILE=path)

    assert done.returncode == 0, done.stderr
    assert overrides(deploy_call(calls)) == [*BEFORE_SOURCES, *SOURCES_OFF, *PROMOTION_ON]


def test_a_promotion_left_out_of_the_file_keeps_the_stacks_and_one_set_empty_is_passed_as_none(
    tmp_path: Path,
) -> None:
    """[] compares whole rows and '' sets no limit: passed, unlike a key left out (the stack keeps its)."""
    empty = "promotion: {compare_keys: [], max_changed_share: '', approval: ''}\n"
    deployed = {}
    for step, text in {"left out": BUCKETS, "empty": BUCKETS + empty}.items():
        done, calls = make(
            tmp_path / step, "deploy", GITHUB_REPO="o/r", SETTINGS_FILE=write(tmp_path / step, text)
        )
        assert done.returncode == 0, done.stderr
        deployed[step] = promotion_passed(deploy_call(calls))

    assert deployed["left out"] == []
    assert deployed["empty"] == ["CompareKeyColumns=", "MaxChangedShare="]  # approval '': the stack's


def test_a_variable_on_the_command_line_overrides_the_files_promotion(tmp_path: Path) -> None:
    path = write(tmp_path, BUCKETS + PROMOTION)
    done, calls = make(
        tmp_path, "deploy", GITHUB_REPO="o/r", SETTINGS_FILE=path, COMPARE_KEYS="", MAX_CHANGED_SHARE="0.2",
        RELEASE_APPROVAL="none",
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    passed = promotion_passed(deploy_call(calls))
    assert passed == ["CompareKeyColumns=", "MaxChangedShare=0.2", "ReleaseApproval=none"]


# How the file may write a share, and what make deploy passes: the YAML number (1.0000 is 1.0), not in
# Python's exponent notation, or the text as it is.
SHARES = {
    "0.1": "0.1", "0": "0", "1": "1", "1.0": "1.0", ".25": "0.25", "0.0001": "0.0001", "'0.5'": "0.5",
    "''": "", "1.0000": "1.0",
}  # fmt: skip


@pytest.mark.parametrize("written, passed", SHARES.items(), ids=SHARES.keys())
def test_a_changed_share_written_as_a_yaml_number_or_text_is_passed_as_written(
    tmp_path: Path, written: str, passed: str
) -> None:
    done = run_settings(
        tmp_path, f"{BUCKETS}promotion: {{max_changed_share: {written}}}\n", platform_file(tmp_path)
    )

    assert (done.returncode, done.stderr) == (0, "")
    assert f"MAX_CHANGED_SHARE={shlex.quote(passed)}" in done.stdout.splitlines()
    assert re.fullmatch(PARAMETERS["MaxChangedShare"]["AllowedPattern"], passed)


# --- the platform's bounds (platform.yml) ----------------------------------------------------------------

# A platform that allows exactly INSIDE's values (bounds a folder deep, so that one beside them is outside).
BOUNDED = {
    "stack": "hotel-platform",
    "bounds": {
        "data_lake": ["hotel-data-lake/snapshots"],
        "publish": ["hotel-output/usp", "hotel-output/validation"],
        "athena_workgroups": ["usp-analysts"],
        "athena_results": ["hotel-athena-results/athena-results"],
        "glue_databases": ["hotel_lake", "reviews"],
        "opensearch_domains": [DOMAIN],
        "secrets": [HADOOP, "arn:aws:ssm:eu-west-1:123456789012:parameter/usp/"],
        "secret_kms_keys": [KMS_KEY],
        "task": {"cpu": 2048, "memory": 8192},
        "runner_majors": [1, 2],
    },
}
INSIDE = (
    "data_lake: {bucket: hotel-data-lake, prefix: snapshots/v2}\n"
    "output: {bucket: hotel-output, prefix: usp/daily}\nvalidation: {prefix: validation/usp}\n"
    f"run: {{cpu: 2048, memory: 8192}}\nrunner: {{major: 2}}\n{SOURCES}"
)


def run_settings(
    tmp_path: Path, text: str, platform: Path | None = None, **variables: str
) -> subprocess.CompletedProcess[str]:
    """settings.py as pipeline.sh runs it (-I, from the repository's folder), on the text as settings file."""
    args = [sys.executable, "-I", str(SCRIPT), write(tmp_path, text), *([str(platform)] if platform else [])]
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES} | variables
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True)


def test_settings_inside_every_bound_pass_and_name_the_platforms_stack(tmp_path: Path) -> None:
    done = run_settings(tmp_path, INSIDE, platform_file(tmp_path, BOUNDED))

    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines()[-1] == "PLATFORM_STACK_NAME=hotel-platform"


# What every refusal says between the value and the bound's choices ({platform}: the platform file).
ASK = (
    "is outside the platform's bounds ({platform} bounds.{bound}): ask the platform's engineers to add it to "
)
LAKE = "data_lake.bucket/data_lake.prefix (DATA_LAKE_BUCKET/DATA_LAKE_PREFIX)"
LAKE_CHOICE = "{platform} bounds.data_lake, or choose a location inside one of: hotel-data-lake/snapshots"
OUT = "output.bucket/output.prefix (OUTPUT_BUCKET/OUTPUT_PREFIX)"
PUBLISH_CHOICE = (
    "{platform} bounds.publish, or choose a location inside one of: hotel-output/usp, hotel-output/validation"
)
SECRETS_CHOICE = (
    "{platform} bounds.secrets, or choose one of (an ARN ending in '/': any secret under it): "
    f"{HADOOP}, arn:aws:ssm:eu-west-1:123456789012:parameter/usp/"
)
MORE = (
    "run.{key} ({variable})='{value}' is outside the platform's bounds ({{platform}} bounds.task.{key}): "
    "ask the platform's engineers to raise {{platform}} bounds.task.{key}, or choose at most {most}"
)
OTHER_KEYTAB = KEYTAB.replace("/usp/", "/usp-ops/")  # beside the bound's path usp/
OTHER_HADOOP = HADOOP.replace("AbCdEf", "XyZ123")
OTHER_KMS_KEY = KMS_KEY.replace("0a1b2c3d4e5f", "ffffffffffff")
# (the change to INSIDE, the bound, the refusal): each value outside its bound, and its exact message.
OUTSIDE = {
    "a data lake folder that only starts as the bound's": (
        ("prefix: snapshots/v2}", "prefix: snap}"), "data_lake",
        f"{LAKE}='hotel-data-lake/snap' {{ask}}{LAKE_CHOICE}",
    ),
    "a data lake folder beside the bound's": (
        ("prefix: snapshots/v2}", "prefix: snapshots-old}"), "data_lake",
        f"{LAKE}='hotel-data-lake/snapshots-old' {{ask}}{LAKE_CHOICE}",
    ),
    "another data lake bucket": (
        ("bucket: hotel-data-lake,", "bucket: finance-lake,"), "data_lake",
        f"{LAKE}='finance-lake/snapshots/v2' {{ask}}{LAKE_CHOICE}",
    ),
    "an output folder that only starts as the bound's": (
        ("prefix: usp/daily}", "prefix: usp-athena/daily}"), "publish",
        f"{OUT}='hotel-output/usp-athena/daily' {{ask}}{PUBLISH_CHOICE}",
    ),
    "an output prefix left out, its default outside": (
        (", prefix: usp/daily}", "}"), "publish",
        (
            f"{OUT}='hotel-output/daily' (output.prefix not given: the template's default) "
            f"{{ask}}{PUBLISH_CHOICE}"
        ),
    ),
    "a validation prefix outside": (
        ("prefix: validation/usp}", "prefix: ci/usp}"), "publish",
        (
            "output.bucket/validation.prefix (OUTPUT_BUCKET/VALIDATION_PREFIX)='hotel-output/ci/usp' "
            f"{{ask}}{PUBLISH_CHOICE}"
        ),
    ),
    "another athena workgroup": (
        ("workgroup: usp-analysts", "workgroup: primary"), "athena_workgroups",
        (
            "athena.workgroup (ATHENA_WORKGROUP)='primary' {ask}{platform} bounds.athena_workgroups, or "
            "choose one of: usp-analysts"
        ),
    ),
    "query results beside the bound's": (
        ("results_prefix: athena-results/usp", "results_prefix: athena-results-v2/usp"), "athena_results",
        (
            "athena.results_bucket/athena.results_prefix (ATHENA_RESULTS_BUCKET/ATHENA_RESULTS_PREFIX)="
            "'hotel-athena-results/athena-results-v2/usp' {ask}{platform} bounds.athena_results, or choose a "
            "location inside one of: hotel-athena-results/athena-results"
        ),
    ),
    "another glue database": (
        ("[hotel_lake, reviews]", "[hotel_lake, finance]"), "glue_databases",
        (
            "glue.databases (GLUE_DATABASES) item='finance' {ask}{platform} bounds.glue_databases, or choose "
            "one of: hotel_lake, reviews"
        ),
    ),
    "another opensearch domain": (
        (DOMAIN, HOTELS), "opensearch_domains",
        (
            f"opensearch.domains (OPENSEARCH_DOMAIN_ARNS) item='{HOTELS}' {{ask}}{{platform}} "
            f"bounds.opensearch_domains, or choose one of: {DOMAIN}"
        ),
    ),
    "a secret beside the bound's path": (
        (KEYTAB, OTHER_KEYTAB), "secrets",
        f"secrets.HIVE_KEYTAB (SECRET_ARNS)='{OTHER_KEYTAB}' {{ask}}{SECRETS_CHOICE}",
    ),
    "another secret": (
        (HADOOP, OTHER_HADOOP), "secrets",
        f"secrets.HADOOP_PASSWORD (SECRET_ARNS)='{OTHER_HADOOP}' {{ask}}{SECRETS_CHOICE}",
    ),
    "another kms key": (
        (KMS_KEY, OTHER_KMS_KEY), "secret_kms_keys",
        (
            f"secret_kms_keys (SECRET_KMS_KEY_ARNS) item='{OTHER_KMS_KEY}' {{ask}}{{platform}} "
            f"bounds.secret_kms_keys, or choose one of: {KMS_KEY}"
        ),
    ),
    "more cpu": (
        ("cpu: 2048, memory: 8192", "cpu: 4096, memory: 8192"), "task.cpu",
        MORE.format(key="cpu", variable="TASK_CPU", value=4096, most=2048),
    ),
    "more memory": (
        ("memory: 8192", "memory: 16384"), "task.memory",
        MORE.format(key="memory", variable="TASK_MEMORY", value=16384, most=8192),
    ),
    "another runner major": (
        ("major: 2", "major: 3"), "runner_majors",
        "runner.major (RUNNER_MAJOR)='3' {ask}{platform} bounds.runner_majors, or choose one of: 1, 2",
    ),
}  # fmt: skip


@pytest.mark.parametrize("change, bound, message", OUTSIDE.values(), ids=OUTSIDE.keys())
def test_a_setting_outside_the_platforms_bounds_is_refused_naming_key_variable_value_and_bound(
    tmp_path: Path, change: tuple[str, str], bound: str, message: str
) -> None:
    platform = platform_file(tmp_path, BOUNDED)
    assert change[0] in INSIDE
    done = run_settings(tmp_path, INSIDE.replace(*change), platform)

    path = tmp_path / "model-settings.yml"
    ask = ASK.format(platform=platform, bound=bound)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"pipeline: {path}: {message.format(ask=ask, platform=platform)}\n"


def test_a_bound_holds_a_location_folder_by_folder_and_a_secret_under_its_path() -> None:
    inside = settings.bounds.inside
    assert inside("lake/snapshots", "lake/snapshots") and inside("lake/snapshots/v2/x", "lake/snapshots")
    assert inside("lake/snapshots", "lake")  # a bucket alone: all of it
    assert not inside("lake/snap", "lake/snapshots") and not inside("lake/snapshots-old", "lake/snapshots")
    assert not inside("lake", "lake/snapshots") and not inside("lakehouse/snapshots", "lake")
    secret = settings.bounds.BOUNDS["secrets"]
    path = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:usp/"
    assert settings.bounds.admitted(secret, f"{path}hadoop-AbCdEf", (path,))
    assert not settings.bounds.admitted(secret, f"{path[:-1]}-ops/hadoop-AbCdEf", (path,))
    assert not settings.bounds.admitted(secret, HADOOP, (HADOOP[:-1],))  # a full ARN is exact


API_TOKEN = "arn:aws:ssm:eu-west-1:123456789012:parameter/api-token"  # outside the bound's path usp/
# (variables, the bound, the refusal): a variable on make's command line is bounded as the file's values are,
# and named as a variable (no file).
VARIABLES_OUTSIDE = {
    "an output bucket": (
        {"OUTPUT_BUCKET": "other-out"}, "publish", f"{OUT}='other-out/usp/daily' {{ask}}{PUBLISH_CHOICE}",
    ),
    "a data lake prefix": (
        {"DATA_LAKE_PREFIX": "raw"}, "data_lake", f"{LAKE}='hotel-data-lake/raw' {{ask}}{LAKE_CHOICE}",
    ),
    "the memory": (
        {"TASK_MEMORY": "12288"}, "task.memory",
        MORE.format(key="memory", variable="TASK_MEMORY", value=12288, most=8192),
    ),
    "a secret": (
        {"SECRET_NAMES": "API_TOKEN", "SECRET_ARNS": API_TOKEN},
        "secrets",
        (
            f"secrets.API_TOKEN (SECRET_ARNS)='{API_TOKEN}' {{ask}}{SECRETS_CHOICE}"
        ),
    ),
    "a runner major": (
        {"RUNNER_MAJOR": "9"}, "runner_majors",
        "runner.major (RUNNER_MAJOR)='9' {ask}{platform} bounds.runner_majors, or choose one of: 1, 2",
    ),
}  # fmt: skip


@pytest.mark.parametrize(
    "variables, bound, message", VARIABLES_OUTSIDE.values(), ids=VARIABLES_OUTSIDE.keys()
)
def test_a_command_line_variable_outside_the_bounds_is_refused_naming_it(
    tmp_path: Path, variables: dict[str, str], bound: str, message: str
) -> None:
    platform = platform_file(tmp_path, BOUNDED)
    done = run_settings(tmp_path, INSIDE, platform, **variables)

    ask = ASK.format(platform=platform, bound=bound)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"pipeline: {message.format(ask=ask, platform=platform)}\n"


def test_make_deploy_refuses_a_variable_outside_the_shipped_platforms_bounds_before_any_aws_call(
    tmp_path: Path,
) -> None:
    done, calls = make(tmp_path, "deploy", GITHUB_REPO="o/r", PLATFORM_FILE="", TASK_CPU="8192")

    assert (done.returncode, calls) == (2, [])
    assert said(done) == [
        "pipeline: "
        + MORE.format(key="cpu", variable="TASK_CPU", value=8192, most=4096).format(platform="platform.yml")
    ]


def test_a_value_its_template_parameter_refuses_is_left_to_that_check(tmp_path: Path) -> None:
    """Not called out of bounds: pipeline.sh then names what is wrong with it."""
    done = run_settings(tmp_path, INSIDE, platform_file(tmp_path, BOUNDED), OUTPUT_BUCKET="Hotel_Output")

    assert (done.returncode, done.stderr) == (0, "")


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A change to a platform document: the value at a dotted path (None: the key removed)."""

    def change(document: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        for parent in parents:
            document = document[parent]
        if value is None:
            del document[leaf]
        else:
            document[leaf] = value

    return change


WILDCARD = (
    "is a wildcard: a bound names each thing it allows, never a pattern that would let any model ask for more"
)
SECRET_ENTRY = (
    "a secret's or parameter's full ARN, or one ending in '/' after a name path, e.g. secrets: "
    "[arn:aws:secretsmanager:eu-west-1:123456789012:secret:usp/]"
)
TASK_EXAMPLE = "write task: {cpu: 4096, memory: 16384}"
# (a change to BOUNDED, the refusal): a bad platform file is refused before the model's settings are read.
BAD_PLATFORMS = {
    "an unknown key": (
        _set("bound", {}), "unknown key bound: did you mean bounds? (see the comments in platform.yml)"
    ),
    "an unknown bound": (
        _set("bounds.glue_database", ["hotel_lake"]),
        (
            "unknown key bounds.glue_database: did you mean bounds.glue_databases? (see the comments in "
            "platform.yml)"
        ),
    ),
    "a bound left out": (
        _set("bounds.secrets", None),
        (
            "bounds.secrets is missing: list what models may ask, e.g. secrets: "
            "[arn:aws:secretsmanager:eu-west-1:123456789012:secret:usp/], or [] for none"
        ),
    ),
    "a text for a list": (
        _set("bounds.glue_databases", "hotel_lake"),
        (
            "bounds.glue_databases='hotel_lake' is not a list: write a YAML list, e.g. glue_databases: "
            "[hotel_lake]"
        ),
    ),
    "a wildcard database": (
        _set("bounds.glue_databases", ["*"]),
        (
            f"bounds.glue_databases item '*' {WILDCARD}; write a Glue database's name, e.g. glue_databases: "
            "[hotel_lake]"
        ),
    ),
    "a wildcard in a location": (
        _set("bounds.data_lake", ["hotel-data-lake/*"]),
        (
            f"bounds.data_lake item 'hotel-data-lake/*' {WILDCARD}; write a data lake location, bucket or "
            "bucket/prefix, e.g. data_lake: [hotel-data-lake/snapshots]"
        ),
    ),
    "a wildcard secret": (
        _set("bounds.secrets", ["arn:aws:secretsmanager:eu-west-1:123456789012:secret:*"]),
        (
            f"bounds.secrets item 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:*' {WILDCARD}; write "
            f"{SECRET_ENTRY}"
        ),
    ),
    "every parameter of an account": (
        _set("bounds.secrets", ["arn:aws:ssm:eu-west-1:123456789012:parameter/"]),
        (
            "bounds.secrets item 'arn:aws:ssm:eu-west-1:123456789012:parameter/' is not "
            + SECRET_ENTRY.replace(", e.g.", ": write one, e.g.")
        ),
    ),
    "a location ending in '/'": (
        _set("bounds.data_lake", ["hotel-data-lake/"]),
        (
            "bounds.data_lake item 'hotel-data-lake/' is not a data lake location, bucket or bucket/prefix: "
            "write one, e.g. data_lake: [hotel-data-lake/snapshots]"
        ),
    ),
    "a bucket name that is none": (
        _set("bounds.publish", ["Hotel_Output/usp"]),
        (
            "bounds.publish item 'Hotel_Output/usp' is not a location to publish to, bucket or "
            "bucket/prefix: write one, e.g. publish: [hotel-output/usp]"
        ),
    ),
    "a number for a name": (
        _set("bounds.athena_workgroups", [7]),
        (
            "bounds.athena_workgroups item 7 is not a text: write an Athena workgroup's name, e.g. "
            "athena_workgroups: [usp]"
        ),
    ),
    "a runner major of 0": (
        _set("bounds.runner_majors", [0]),
        "bounds.runner_majors item '0' is not a runner major version: write one, e.g. runner_majors: [1]",
    ),
    "a task that is no mapping": (
        _set("bounds.task", [4096, 16384]), f"bounds.task=[4096, 16384] is not a mapping: {TASK_EXAMPLE}"
    ),
    "a task size as text": (
        _set("bounds.task.memory", "16 GiB"),
        f"bounds.task.memory='16 GiB' is not a whole number above 0: {TASK_EXAMPLE}",
    ),
    "an unknown task key": (
        _set("bounds.task.mem", 8192),
        "unknown key bounds.task.mem: did you mean bounds.task.memory? (see the comments in platform.yml)",
    ),
    "a stack name that is none": (
        _set("stack", "1platform"),
        (
            "stack='1platform' is not valid: it must be a CloudFormation stack name (a letter, then letters, "
            "digits and '-') (the template's PlatformStackName)"
        ),
    ),
    "no bounds": (
        _set("bounds", None),
        (
            "bounds=None is not a mapping: write bounds: with data_lake, publish, athena_workgroups, "
            "athena_results, glue_databases, opensearch_domains, secrets, secret_kms_keys, runner_majors, "
            "task (see the comments in platform.yml)"
        ),
    ),
}  # fmt: skip


@pytest.mark.parametrize("change, message", BAD_PLATFORMS.values(), ids=BAD_PLATFORMS.keys())
def test_a_bad_platform_file_is_refused_naming_the_key_value_and_fix(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], message: str
) -> None:
    document = copy.deepcopy(BOUNDED)
    change(document)
    platform = platform_file(tmp_path, document)
    done = run_settings(tmp_path, INSIDE, platform)

    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"pipeline: {platform}: {message}\n"


NO_PLATFORM = {
    "a list": (
        "- stack\n",
        "the file is a YAML list, not a mapping: write stack: and bounds: (see the comments in platform.yml)",
    ),
    "invalid YAML": (
        "stack: [x\n",
        "the file is not valid YAML at line 2, column 1 (check its indentation and quoting)",
    ),
}


@pytest.mark.parametrize("text, message", NO_PLATFORM.values(), ids=NO_PLATFORM.keys())
def test_a_platform_file_that_is_no_mapping_is_refused(tmp_path: Path, text: str, message: str) -> None:
    platform = tmp_path / "platform.yml"
    platform.write_text(text)
    done = run_settings(tmp_path, INSIDE, platform)

    assert (done.returncode, done.stderr) == (2, f"pipeline: {platform}: {message}\n")


def test_make_deploy_with_a_missing_platform_file_is_refused_before_any_aws_call(tmp_path: Path) -> None:
    done, calls = make(tmp_path, "deploy", GITHUB_REPO="o/r", PLATFORM_FILE=str(tmp_path / "nope.yml"))

    assert (done.returncode, calls) == (2, [])
    assert said(done) == [
        (
            f"pipeline: PLATFORM_FILE={tmp_path / 'nope.yml'} cannot be read: No such file or directory "
            "(point PLATFORM_FILE at the platform's settings, such as its platform.yml)"
        )
    ]


MODELS = ["settings.yml", *sorted(str(p.relative_to(REPO)) for p in REPO.glob("examples/*/settings.yml"))]


@pytest.mark.parametrize("model", MODELS)
def test_the_shipped_platform_holds_this_repositorys_models(model: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    done = subprocess.run(
        [sys.executable, "-I", str(SCRIPT), model, str(PLATFORM)], cwd=REPO, env=env, capture_output=True,
        text=True,
    )  # fmt: skip

    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines()[-1] == f"PLATFORM_STACK_NAME={PARAMETERS['PlatformStackName']['Default']}"


def test_the_shipped_platform_file_documents_every_bound_and_the_stacks_default() -> None:
    """Its stack is the template's default, which its comment names; each bound has a comment above it
    naming it; each holds keys of the model's settings."""
    text = PLATFORM.read_text()
    default = PARAMETERS["PlatformStackName"]["Default"]
    shipped = yaml.safe_load(text)
    bounds = settings.bounds

    assert shipped["stack"] == default and f"the template's default: {default}." in text
    assert set(shipped["bounds"]) == {*bounds.BOUNDS, "task"}
    lines = text.splitlines()
    for name in shipped["bounds"]:
        (line,) = [n for n, line in enumerate(lines) if line.startswith(f"  {name}:")]
        while lines[line - 1].lstrip().startswith("#"):
            line -= 1
        assert lines[line].startswith(f"  # {name}: "), f"bounds.{name}: no comment above it"
    held = {key for bound in bounds.BOUNDS.values() for keys in bound.keys for key in keys}
    assert held | set(bounds.TASK.values()) <= set(settings.KEYS)


# --- a model's environments (environments:, ENV=) -----------------------------------------------------------


def assigned(done: subprocess.CompletedProcess[str]) -> dict[str, str]:
    return dict(shlex.split(line)[0].split("=", 1) for line in done.stdout.splitlines())


def test_an_environment_overrides_the_files_keys_one_by_one(tmp_path: Path) -> None:
    """A section an environment gives overrides only the keys it names: staging's output.prefix, the file's
    output.bucket."""
    platform = platform_file(tmp_path)
    staging, production = (
        run_settings(tmp_path / env, ENVIRONMENTS, platform, ENV=env) for env in ("staging", "production")
    )

    assert (staging.returncode, staging.stderr, production.returncode, production.stderr) == (0, "", 0, "")
    assert assigned(staging) == {
        "DATA_LAKE_BUCKET": "hotel-lake", "OUTPUT_BUCKET": "hotel-out", "OUTPUT_PREFIX": "usp/staging",
        "SCHEDULE": "cron(0 5 * * ? *)", "NOTIFICATION_EMAILS": "data-eng@example.com",
        "RELEASE_ACCOUNTS": "222222222222", "PLATFORM_STACK_NAME": "test-platform",
    }  # fmt: skip
    assert assigned(production) == {
        "DATA_LAKE_BUCKET": "hotel-lake", "OUTPUT_BUCKET": "hotel-out", "OUTPUT_PREFIX": "usp/daily",
        "SCHEDULE": "cron(0 6 * * ? *)", "NOTIFICATION_EMAILS": "oncall@example.com",
        "RELEASES_FROM_REPOSITORY": STAGING_REPOSITORY, "RELEASES_FROM_VERSIONS_BUCKET": STAGING_VERSIONS,
        "PLATFORM_STACK_NAME": "test-platform",
    }  # fmt: skip


def test_a_variable_on_the_command_line_wins_over_the_environments_value(tmp_path: Path) -> None:
    done = run_settings(tmp_path, ENVIRONMENTS, platform_file(tmp_path), ENV="staging", OUTPUT_PREFIX="x/y")

    assert (done.returncode, done.stderr) == (0, "")
    assert "OUTPUT_PREFIX" not in assigned(done)  # pipeline.sh passes the variable's


def environment_changed(old: str, new: str) -> str:
    assert old in ENVIRONMENTS
    return ENVIRONMENTS.replace(old, new)


PRODUCTION_RELEASES = (
    f"    releases: {{from_repository: '{STAGING_REPOSITORY}', from_versions_bucket: {STAGING_VERSIONS}}}\n"
)
STAGING_PREFIX = "    output: {prefix: usp/staging}\n"


def production_sharing(account: str) -> str:
    """ENVIRONMENTS, production's releases.to_accounts [account]."""
    shared = PRODUCTION_RELEASES.replace("}\n", f", to_accounts: ['{account}']}}\n")
    return environment_changed(PRODUCTION_RELEASES, shared)


ASSERTIONS = settings._template()["Rules"][settings.RELEASES_RULE]["Assertions"]
# The descriptions of the rule's assertions on ReleaseApproval and on ReleaseAccountIds.
APPROVAL, SHARING = (
    next(a["AssertDescription"].rstrip(".") for a in ASSERTIONS if settings.references(a["Assert"]) == {name})
    for name in ("ReleaseApproval", "ReleaseAccountIds")
)
# (the settings, ENV, the refusal; {path}: the file, as settings.py names it): each refused before any AWS
# call, with exit 2.
BAD_ENVIRONMENTS = {
    "an env that is no environment's name": (
        ENVIRONMENTS, "Prod",
        (
            "ENV='Prod' is not valid: an environment's name is 1 to 16 lower-case letters and digits, "
            "starting with a letter, e.g. staging or production (the template's EnvironmentName): give one "
            "of {path}'s environments, or leave ENV out"
        ),
    ),
    "an env without environments": (
        BUCKETS, "staging",
        (
            "ENV=staging names an environment, but {path} describes none: add environments: {{staging: "
            "{{...}}}} with the settings that differ in staging (see the example at the end of "
            "settings.yml), or leave ENV out"
        ),
    ),
    "environments without an env": (
        ENVIRONMENTS, "",
        (
            "{path} describes environments staging, production: give ENV=staging or ENV=production, each "
            "environment its own stack (make deploy GITHUB_REPO=... ENV=staging)"
        ),
    ),
    "an env the file does not describe": (
        ENVIRONMENTS, "qa",
        (
            "ENV=qa is no environment of {path}, which describes staging, production: give ENV=staging or "
            "ENV=production, or add environments.qa with the settings that differ in qa"
        ),
    ),
    "a production that builds": (
        environment_changed(PRODUCTION_RELEASES, ""), "production",
        (
            "{path}: environments.production has no releases.from_repository and no "
            "releases.from_versions_bucket: production never builds, it promotes exactly the images staging "
            "validated. Set environments.production's releases.from_repository and "
            "releases.from_versions_bucket to the staging stack's outputs ImageRepositoryArn and "
            "VersionsBucketName (make deploy GITHUB_REPO=... ENV=staging prints them)"
        ),
    ),
    "a production without staging's records": (
        environment_changed(f", from_versions_bucket: {STAGING_VERSIONS}", ""), "production",
        "{path}: environments.production has no releases.from_versions_bucket: production never builds",
    ),
    "two environments publishing to one table": (
        environment_changed(STAGING_PREFIX, ""), "staging",
        (
            "{path}: environments staging and production both publish to hotel-out/usp/daily "
            "(output.bucket/output.prefix): their tables would overwrite each other. Give each its own "
            "output.prefix, neither inside the other, e.g. environments.staging.output.prefix: usp/staging"
        ),
    ),
    "a table inside another's": (
        environment_changed("prefix: usp/staging", "prefix: usp/daily/staging"), "production",
        (
            "{path}: environments staging and production publish to hotel-out/usp/daily/staging and "
            "hotel-out/usp/daily (output.bucket/output.prefix): their tables would overwrite each other. "
            "Give each its own output.prefix, neither inside the other, e.g. "
            "environments.staging.output.prefix: usp/staging"
        ),
    ),
    "staging validating in production's table": (
        environment_changed(STAGING_PREFIX, f"{STAGING_PREFIX}    validation: {{prefix: usp/daily/ci}}\n"),
        "staging",
        (
            "{path}: environment staging's validation writes to hotel-out/usp/daily/ci, which overlaps "
            "production's table hotel-out/usp/daily: a validation runs images nobody validated yet, and may "
            "never write where consumers read. Give environments.staging.validation.prefix a prefix apart "
            "from production's output.prefix"
        ),
    ),
    "a typo in an environment": (
        environment_changed("{prefix: usp/staging}", "{prefx: usp/staging}"), "production",
        (
            "{path}: unknown key environments.staging.output.prefx: did you mean "
            "environments.staging.output.prefix? (see the comments in settings.yml)"
        ),
    ),
    "a key in the wrong section of an environment": (
        environment_changed(STAGING_PREFIX, "    subnets: [subnet-0a1b2c3d]\n"), "staging",
        (
            "{path}: unknown key environments.staging.subnets: did you mean "
            "environments.staging.network.subnets?"
        ),
    ),
    "an environment inside an environment": (
        environment_changed(STAGING_PREFIX, "    environments: {}\n"), "staging",
        "{path}: unknown key environments.staging.environments: the keys are alerts, athena, consumers,",
    ),
    "a bad value in an environment": (
        environment_changed(STAGING_PREFIX, f"{STAGING_PREFIX}    run: {{cpu: 3000}}\n"), "staging",
        (
            "{path}: environments.staging.run.cpu='3000' is not valid: it must be 256, 512, 1024, 2048, "
            "4096, 8192 or 16384 (the template's TaskCpu): fix it in the file, or override it with "
            "TASK_CPU=..."
        ),
    ),
    "an environment that is no mapping": (
        environment_changed("  production:\n", "  qa: usp/qa\n  production:\n"), "production",
        (
            "{path}: environments.qa='usp/qa' is not a mapping: write the settings that differ in qa, e.g. "
            "qa: {{output: {{prefix: usp/qa}}}}, or qa: {{}} for the file's"
        ),
    ),
    "an environment's name that is none": (
        environment_changed("  staging:", "  Staging:"), "production",
        (
            "{path}: environments.Staging is no environment's name: rename it, 1 to 16 lower-case letters "
            "and digits, starting with a letter, e.g. staging or production"
        ),
    ),
    "environments that are no mapping": (
        f"{BUCKETS}environments: [staging, production]\n", "staging",
        "{path}: environments=['staging', 'production'] is not a mapping of environments: write",
    ),
    "a production holding releases for approval (the template's rule)": (
        f"promotion: {{approval: required}}\n{ENVIRONMENTS}", "production",
        (
            f"{{path}}: promotion.approval (RELEASE_APPROVAL)='required': {APPROVAL.rstrip('.')} (the "
            "template's rule ReleasesComeWithTheirRecords; environments.production may set its own)"
        ),
    ),
    "an account id that is none": (
        production_sharing("2"), "production",
        "{path}: environments.production.releases.to_accounts item='2' is not valid",
    ),
    "a production sharing its releases (the template's rule)": (
        production_sharing("333333333333"), "production",
        (
            "{path}: environments.production.releases.to_accounts (RELEASE_ACCOUNTS)='333333333333': "
            f"{SHARING.rstrip('.')} (the template's rule ReleasesComeWithTheirRecords)"
        ),
    ),
}  # fmt: skip


@pytest.mark.parametrize("text, env, message", BAD_ENVIRONMENTS.values(), ids=BAD_ENVIRONMENTS.keys())
def test_bad_environments_or_env_are_refused_before_any_aws_call_naming_the_key_and_fix(
    tmp_path: Path, text: str, env: str, message: str
) -> None:
    path = environments_file(tmp_path, text)
    done, calls = make(tmp_path, "deploy", GITHUB_REPO="o/usp-model", SETTINGS_FILE=path, ENV=env)

    assert (done.returncode, calls) == (2, [])
    (line,) = said(done)
    assert line.startswith(f"pipeline: {message.format(path=path)}"), line


# Each assertion of the template's rule, and variables that break it (no settings file, no environments): the
# refusal is the assertion's own description, naming the variables, before any AWS call.
RELEASES_FROM = {
    "RELEASES_FROM_REPOSITORY": STAGING_REPOSITORY, "RELEASES_FROM_VERSIONS_BUCKET": STAGING_VERSIONS,
}  # fmt: skip
BREAKING = [
    ({"RELEASES_FROM_REPOSITORY": STAGING_REPOSITORY}, (
        f"releases.from_repository (RELEASES_FROM_REPOSITORY)='{STAGING_REPOSITORY}', "
        "releases.from_versions_bucket (RELEASES_FROM_VERSIONS_BUCKET)=''"
    )),
    ({**RELEASES_FROM, "RELEASE_APPROVAL": "required"}, "promotion.approval (RELEASE_APPROVAL)='required'"),
    ({**RELEASES_FROM, "RELEASE_ACCOUNTS": "222222222222"}, (
        "releases.to_accounts (RELEASE_ACCOUNTS)='222222222222'"
    )),
]  # fmt: skip


@pytest.mark.parametrize("n", range(len(BREAKING)))
def test_the_templates_releases_rule_is_evaluated_before_any_aws_call(tmp_path: Path, n: int) -> None:
    assertions = settings._template()["Rules"][settings.RELEASES_RULE]["Assertions"]
    variables, shown = BREAKING[n]
    done, calls = make(tmp_path, "deploy", **GOOD, **without_settings(tmp_path), **variables)

    assert len(assertions) == len(BREAKING), "a case breaking each of the rule's assertions"
    assert (done.returncode, calls) == (2, [])
    description = assertions[n]["AssertDescription"].rstrip(".")
    assert said(done) == [f"pipeline: {shown}: {description} (the template's rule {settings.RELEASES_RULE})"]


def test_settings_that_keep_the_rule_deploy_a_production_stack(tmp_path: Path) -> None:
    done, calls = make(
        tmp_path, "deploy", **GOOD, **without_settings(tmp_path), **RELEASES_FROM, RELEASE_APPROVAL="none"
    )

    assert done.returncode == 0, done.stderr
    assert {f"ReleasesFromRepository={STAGING_REPOSITORY}", "ReleaseApproval=none"} <= set(deploy_call(calls))


def test_the_shipped_settings_files_environments_example_deploys_each_environment(tmp_path: Path) -> None:
    """Commented out (make deploy without ENV deploys the one stack), the example is a valid environments:
    block, within the shipped platform's bounds; and the releases keys name their variables."""
    text = SETTINGS.read_text()
    example = text.split("\n# environments:\n", 1)[1]
    block = "environments:\n" + "\n".join(line.removeprefix("# ") for line in example.splitlines())
    shipped = yaml.safe_load(text)

    assert "environments" not in shipped
    assert shipped["releases"] == {"from_repository": "", "from_versions_bucket": "", "to_accounts": []}
    for name in settings.RELEASES:
        key = settings.KEYS[name]
        assert f"# {name.rsplit('.', 1)[-1]} ({key.variable}, {key.parameter}):" in text, name
    for env in ("staging", "production"):
        done = run_settings(tmp_path / env, f"{text}\n{block}\n", PLATFORM, ENV=env)
        assert (done.returncode, done.stderr) == (0, ""), env
    assert assigned(done)["RELEASES_FROM_REPOSITORY"].startswith("arn:aws:ecr:")
