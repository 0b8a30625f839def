"""The variables `make deploy` takes (make's command line, or the environment), as scripts/settings.py merges
them, in process: each refused exactly when the template refuses its value, naming the variable and the fix
(make deploy prints the line and exits 2 before any AWS call); the notebook's data sources, from the file
and from variables."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploying import (
    ALWAYS,
    CONNECTION,
    DOMAIN,
    GOOD,
    HADOOP,
    HOTELS,
    KEYTAB,
    KMS_KEY,
    PARAMETERS,
    merged,
    refused,
    settings,
    settings_file,
)
from support import REPO
from test_settings import BUCKETS, PIN, SETTINGS

# Each variable settings.py checks against the template parameter it sets, and values to try: the template
# says which ones the deploy must refuse. The schedule's, time zone's and output prefix's are test_runs.py's
# too.
TRIED = {
    "GITHUB_REPO": ("GitHubRepository", [
        "hotel-profiling/usp-model", "a/b", "o/" + "n" * 100, "o" * 39 + "/u.s_p-1", "", "usp-model", "a/b/c",
        "-o/n", "o/" + "n" * 101, "o" * 40 + "/n", "o/n m", "o_x/n",
    ]),
    "GITHUB_BRANCH": ("GitHubBranch", [
        "main", "release/2024", "a.b_c-d", "b" * 255, "", "-x", "/main", "b" * 256, "a b", "a:b",
    ]),
    "NOTEBOOK": ("NotebookPath", [
        "usp.ipynb", "notebooks/daily/usp.ipynb", "_a-b/c.d.ipynb", "", "usp.py", "/abs/usp.ipynb",
        "../usp.ipynb", ".usp.ipynb", "a b.ipynb", "dir/.ipynb",
    ]),
    "CONNECTION_ARN": ("ConnectionArn", [
        "", CONNECTION, CONNECTION.replace("codeconnections", "codestar-connections"),
        CONNECTION.replace("arn:aws:", "arn:aws-cn:"), "my-connection", CONNECTION[:-1], f"{CONNECTION}/x",
        CONNECTION.replace("123456789012", "12345678901"), CONNECTION.replace("codeconnections", "codebuild"),
    ]),
    "DATA_LAKE_BUCKET": ("DataLakeBucket", [
        "hotel-lake", "abc", "a.b-c", "b" * 63, "", "ab", "b" * 64, "Hotel-Lake", "hotel_lake", "-lake",
        "lake-",
    ]),
    "OUTPUT_BUCKET": ("OutputBucket", ["hotel-out", "0.9", "", "Hotel-Out", "hotel_out", "out.", "o", "a b"]),
    "NOTIFICATION_EMAILS": ("NotificationEmails", [
        "", "a@x.io", "data-eng@example.com,oncall@example.com", "a@x.io,b@y.co.uk,c@z.io", "data-eng", "a@x",
        "a@x.io,b@x.io,c@x.io,d@x.io", "a@x.io, b@x.io", "a@x.io,", "a@@x.io",
    ]),
    "SCHEDULE": ("ScheduleExpression", []),
    "SCHEDULE_TIMEZONE": ("ScheduleTimezone", []),
    "OUTPUT_PREFIX": ("OutputPrefix", ["usp/daily(1)", "o/b/c/d/e/f", "a b", "usp\\daily", "o/b/c/d/e/f/g"]),
    "TASK_CPU": ("TaskCpu", ["256", "1024", "16384", "", "3000", "1 vCPU", "0256", "32768"]),
    "TASK_MEMORY": ("TaskMemory", [
        "512", "2048", "122880", "", "511", "122881", "100", "999999", "0", "-2048", "2GB", "2 048",
        "99999999999999999999",
    ]),
    "ASSIGN_PUBLIC_IP": ("AssignPublicIp", ["ENABLED", "DISABLED", "", "yes", "enabled"]),
    "DATA_LAKE_PREFIX": ("DataLakePrefix", [
        "snapshots", "lake/snapshots", "a.b_c-(1)", "", "/snapshots", "snapshots/", "a//b", "a b", "a\\b",
    ]),
    "VALIDATION_DATE": ("ValidationDate", [
        "2019-08-01", "2024-02-29", "2019-12-31", "", "2019-8-1", "2019-13-01", "2019-08-32", "20190801",
        "2019-08-01T00:00", "yesterday",
    ]),
    # none inside OUTPUT_PREFIX's value beside it, nor holding it (test_validation_prefix.py refuses those)
    "VALIDATION_PREFIX": ("ValidationPrefix", [
        "validation", "ci/validation", "v/b/c/d/e/f", "", "/validation", "validation/", "a//b", "a b",
        "v/b/c/d/e/f/g",
    ]),
    "TABLE_DATABASE": ("OutputDatabase", ["usp_models", "_x1", "", "Usp", "usp-models", "1usp", "a" * 256]),
    "TABLE_NAME": ("OutputTable", ["usp", "usp_daily_v2", "", "USP", "usp.daily", "9x"]),
    "KEEP_SNAPSHOT_DAYS": ("SnapshotRetentionDays", ["1", "30", "3650", "", "0", "3651", "30d"]),
    "CONSUMER_SCAN_LIMIT_BYTES": ("ConsumerScanLimitBytes", [
        "10485760", "10737418240", "", "10485759", "10 GiB", "1125899906842625",
    ]),
    "COMPARE_KEYS": ("CompareKeyColumns", [
        "accommodation_id", "accommodation_id,usp", "_k1", ",".join(f"c{n}" for n in range(10)), "k" * 64, "",
        ",".join(f"c{n}" for n in range(11)), "k" * 65, "1id", "usp-count", "a,,b", "a, b", ",a", "a,", "a.b",
        "a;b",
    ]),
    "MAX_CHANGED_SHARE": ("MaxChangedShare", [
        "0", "0.1", "0.0001", "0.9999", "1", "1.0", "1.0000", "", "1.5", "lots", "0.12345", "1.01", "-0.1",
        ".5", "10%", "0,1", "01", "1e-4", "0.1 ",
    ]),
    "RELEASE_APPROVAL": ("ReleaseApproval", ["none", "required", "", "None", "REQUIRED", "yes", "approval"]),
    # A valid name needs the settings file's environment of that name: test_settings_environments.py's.
    "ENV": ("EnvironmentName", ["", "Staging", "1prod", "e" * 17, "pro-d", "prod uction", "staging/x"]),
    "RUNNER_MAJOR": ("RunnerMajorVersion", ["1", "2", "", "0", "1000", "v1", "1.0", "-1"]),
    "RUNNER_PIN": ("RunnerImage", [
        "", PIN, PIN.replace("eu-west-1.amazonaws.com", "cn-north-1.amazonaws.com.cn"), PIN.partition("@")[0],
        PIN[:-1], "notebook-runner:1.2.0",
    ]),
    "RELEASE_ACCOUNTS": ("ReleaseAccountIds", ["", "222222222222", "222222222222,333333333333", "2", "abc"]),
    "GLUE_DATABASES": ("GlueDatabases", ["", "hotel_lake", "hotel_lake,reviews", "a,b,c,d", "Hotel", "a b"]),
    "OPENSEARCH_DOMAIN_ARNS": ("OpenSearchDomainArns", [
        "", DOMAIN, f"{DOMAIN},{HOTELS}", "arn:aws:s3:::hotel-data-lake", f"{DOMAIN},",
    ]),
    "SECRET_KMS_KEY_ARNS": ("SecretKmsKeyArns", [
        "", KMS_KEY, "arn:aws:kms:eu-west-1:123456789012:alias/aws/secretsmanager",
    ]),
}  # fmt: skip
# Tried elsewhere, as they hold with others: the secrets (names and ARNs, one for each), the releases from
# staging (both or neither, the template's rule), Athena (a workgroup and its result location, its rules);
# and what no template parameter constrains: the network's ids (test_the_network_is_typed_ids_given_together).
TOGETHER = {
    "SECRET_NAMES", "SECRET_ARNS", "RELEASES_FROM_REPOSITORY", "RELEASES_FROM_VERSIONS_BUCKET",
    "ATHENA_WORKGROUP", "ATHENA_RESULTS_BUCKET", "ATHENA_RESULTS_PREFIX", "SUBNETS", "SECURITY_GROUPS",
}  # fmt: skip


def template_accepts(parameter: dict[str, Any], value: str) -> bool:
    """What CloudFormation would take for the parameter (a Number as a whole number: MiB, not fractions)."""
    if "AllowedValues" in parameter:
        return value in [str(allowed) for allowed in parameter["AllowedValues"]]
    if parameter["Type"] == "Number":
        whole = re.fullmatch(r"-?[0-9]+", value) is not None
        return whole and parameter["MinValue"] <= int(value) <= parameter["MaxValue"]
    return re.fullmatch(parameter["AllowedPattern"], value) is not None


def deploy_must_accept(name: str, value: str) -> bool:
    """What the template takes; and an empty value where the parameter has a Default, which means: keep the
    stack's value (or take the default on creation). ScheduleTimezone's pattern admits any name: a zone
    unknown here is refused too (EventBridge Scheduler would, mid-deploy)."""
    parameter = PARAMETERS[name]
    if name == "ScheduleTimezone" and value and not (Path("/usr/share/zoneinfo") / value).is_file():
        return False
    return template_accepts(parameter, value) or (value == "" and "Default" in parameter)


def test_every_variable_is_tried() -> None:
    variables = {key.variable for key in [*settings.KEYS.values(), settings.SECRET_NAMES]}
    assert variables | {"GITHUB_REPO", "ENV"} == set(TRIED) | TOGETHER


@pytest.mark.parametrize("variable", TRIED)
def test_a_variable_is_refused_exactly_when_the_template_refuses_its_value(
    tmp_path: Path, variable: str
) -> None:
    """A value the template's AllowedPattern, AllowedValues or MinValue/MaxValue refuses is refused, naming
    the variable; every other one is passed as it is (an empty one: none, the default, or the stack's)."""
    from test_runs import PATTERNS

    name, values = TRIED[variable]
    values = values + [v for listed in PATTERNS.get(name, ()) for v in listed]
    accepted = [v for v in values if deploy_must_accept(name, v)]
    assert accepted and len(accepted) < len(values), f"try {variable} values {name} accepts and refuses"
    for value in values:
        given = {**GOOD, variable: value}
        if value not in accepted:
            assert refused(tmp_path, **given).startswith(variable), (
                f"{variable}={value!r}: the template refuses it"
            )
            continue
        passed = merged(tmp_path, **given)
        assert passed.get(name, "") == (value or passed.get(name, "")), f"{variable}={value!r}"
        assert value or passed.get(name) in ("", None, str(PARAMETERS[name].get("Default", "")))


def test_the_network_is_typed_ids_given_together(tmp_path: Path) -> None:
    """Subnets and SecurityGroups are typed ids the template has no pattern for (CloudFormation looks them up
    mid-deploy): checked as ids, and given together (or neither: the default VPC on creation)."""
    network = {"SUBNETS": "subnet-0a1b2c3d,subnet-4e5f6a7b9c8d7e6f5", "SECURITY_GROUPS": "sg-0a1b2c3d"}
    passed = merged(tmp_path, **GOOD, **network)

    assert (passed["Subnets"], passed["SecurityGroups"]) == tuple(network.values())
    assert refused(tmp_path, **GOOD, SUBNETS="subnet-x", SECURITY_GROUPS="sg-0a1b2c3d").startswith(
        "SUBNETS item='subnet-x' is not valid: it must be subnet ids of one VPC, comma-separated (the "
        "template's Subnets)"
    )
    assert refused(tmp_path, **GOOD, SUBNETS="subnet-0a1b2c3d", SECURITY_GROUPS="0a1b2c3d").startswith(
        "SECURITY_GROUPS item='0a1b2c3d' is not valid"
    )
    assert refused(tmp_path, **GOOD, SUBNETS="subnet-0a1b2c3d") == (
        "set SUBNETS and SECURITY_GROUPS together (or neither, for the default VPC on creation)"
    )
    assert refused(tmp_path, "network: {security_groups: [sg-0a1b2c3d]}\n", **GOOD).startswith("set SUBNETS")


VARIABLE = "fix the variable {} (make's command line or the environment), or leave it out"
# (variables, the refusal): each named as the variable, with the template's constraint and the fix.
BAD_VARIABLES = {
    "missing bucket": (
        {"DATA_LAKE_BUCKET": ""},
        (
            "DATA_LAKE_BUCKET is not set: the template's DataLakeBucket has no default; give it with "
            "settings.yml "
            "data_lake.bucket, or DATA_LAKE_BUCKET=... on make's command line"
        ),
    ),
    "memory out of range": (
        {"TASK_MEMORY": "100"},
        (
            "TASK_MEMORY='100' is not valid: it must be a whole number of MiB from 512 to 122880 that "
            "Fargate "
            f"offers with TaskCpu (the template's TaskMemory): {VARIABLE.format('TASK_MEMORY')}"
        ),
    ),
    "crontab schedule": (
        {"SCHEDULE": "0 6 * * *"},
        (
            "SCHEDULE='0 6 * * *' is not valid: it must be empty, cron(min hour day-of-month month "
            "day-of-week "
            f"year) or rate(N unit), e.g. cron(0 6 * * ? *) (the template's ScheduleExpression): "
            f"{VARIABLE.format('SCHEDULE')}"
        ),
    ),
    "unknown time zone": (
        {"SCHEDULE_TIMEZONE": "Mars/Olympus"},
        (
            "SCHEDULE_TIMEZONE='Mars/Olympus' is not valid: it must be an IANA time zone name such as UTC or "
            f"Europe/Amsterdam (the template's ScheduleTimezone): {VARIABLE.format('SCHEDULE_TIMEZONE')}"
        ),
    ),
    "time zone path": (
        {"SCHEDULE_TIMEZONE": "../etc/passwd"}, "SCHEDULE_TIMEZONE='../etc/passwd' is not valid",
    ),
    "a changed share above 1": (
        {"MAX_CHANGED_SHARE": "1.5"},
        (
            "MAX_CHANGED_SHARE='1.5' is not valid: it must be empty or a number from 0 to 1 with at most 4 "
            "decimals, e.g. 0.1 for 10% (the template's MaxChangedShare): "
            f"{VARIABLE.format('MAX_CHANGED_SHARE')}"
        ),
    ),
    "a compare key that is no column name": (
        {"COMPARE_KEYS": "accommodation_id,usp-count"},
        "COMPARE_KEYS item='usp-count' is not valid: it must be empty or up to 10 column names",
    ),
    "an approval the template refuses": (
        {"RELEASE_APPROVAL": "always"},
        (
            "RELEASE_APPROVAL='always' is not valid: it must be none or required (the template's "
            f"ReleaseApproval): {VARIABLE.format('RELEASE_APPROVAL')}"
        ),
    ),
    "a runner major of 1000": (
        {"RUNNER_MAJOR": "1000"},
        (
            "RUNNER_MAJOR='1000' is not valid: it must be a major version number, 1 to 999 (the template's "
            f"RunnerMajorVersion): {VARIABLE.format('RUNNER_MAJOR')}"
        ),
    ),
    "a runner image without its digest": (
        {"RUNNER_PIN": PIN.partition("@")[0]},
        (
            f"RUNNER_PIN={PIN.partition('@')[0]!r} is not valid: it must be empty or the platform's runner "
            "repository URI @sha256:<64 hex digits> (the template's RunnerImage): "
            f"{VARIABLE.format('RUNNER_PIN')}"
        ),
    ),
    "an s3 arn as an opensearch domain": (
        {"OPENSEARCH_DOMAIN_ARNS": f"{DOMAIN},arn:aws:s3:::hotel-data-lake"},
        (
            "OPENSEARCH_DOMAIN_ARNS item='arn:aws:s3:::hotel-data-lake' is not valid: it must be empty or 1 "
            "to 5 domain ARNs, arn:aws:es:REGION:ACCOUNT:domain/NAME, separated by commas (the template's "
            f"OpenSearchDomainArns): {VARIABLE.format('OPENSEARCH_DOMAIN_ARNS')}"
        ),
    ),
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
        "SECRET_NAMES item='LD_PRELOAD' is not valid: it must be empty or 1 to 5 variable names",
    ),
    "a secret named twice": (
        {"SECRET_NAMES": "HADOOP_PASSWORD,HADOOP_PASSWORD", "SECRET_ARNS": f"{HADOOP},{HADOOP}"},
        (
            "SECRET_NAMES names HADOOP_PASSWORD: a secret's variable must be new and its own, not one the "
            "runner, the AWS SDKs, the C library or Python read: rename it, e.g. HADOOP_PASSWORD"
        ),
    ),
}  # fmt: skip


@pytest.mark.parametrize("variables, message", BAD_VARIABLES.values(), ids=BAD_VARIABLES.keys())
def test_a_bad_variable_is_refused_naming_it_not_the_file(
    tmp_path: Path, variables: dict[str, str], message: str
) -> None:
    said = refused(tmp_path, **{**GOOD, **variables})

    assert said.startswith(message), said
    assert "\n" not in said


# --- the notebook's data sources -------------------------------------------------------------------------

ATHENA = (
    "athena: {workgroup: usp-analysts, results_bucket: hotel-athena-results,"
    " results_prefix: athena-results/usp}\n"
)
SOURCES = (
    f"{ATHENA}glue: {{databases: [hotel_lake, reviews]}}\nopensearch: {{domains: ['{DOMAIN}']}}\n"
    f"secrets:\n  HIVE_KEYTAB: '{KEYTAB}'\n  HADOOP_PASSWORD: '{HADOOP}'\nsecret_kms_keys: ['{KMS_KEY}']\n"
)
# What the deploy passes of BUCKETS: the repository, and the file's buckets (the rest at defaults, off).
BASE = {
    **ALWAYS,
    "GitHubRepository": "o/r",
    "DataLakeBucket": "hotel-data-lake",
    "OutputBucket": "hotel-output",
}
ATHENA_ON = {
    "AthenaWorkGroup": "usp-analysts", "AthenaResultsBucket": "hotel-athena-results",
    "AthenaResultsPrefix": "athena-results/usp",
}  # fmt: skip
SOURCES_ON = {
    **ATHENA_ON, "GlueDatabases": "hotel_lake,reviews", "OpenSearchDomainArns": DOMAIN,
    "SecretNames": "HIVE_KEYTAB,HADOOP_PASSWORD", "SecretArns": f"{KEYTAB},{HADOOP}",
    "SecretKmsKeyArns": KMS_KEY,
}  # fmt: skip


def test_the_shipped_settings_file_has_every_data_source_off() -> None:
    shipped = yaml.safe_load(SETTINGS.read_text())
    passed = settings.merged({"GITHUB_REPO": "o/r", "SETTINGS_FILE": str(SETTINGS)}, REPO).parameters

    assert shipped["athena"] == {"workgroup": "", "results_bucket": "", "results_prefix": ""}
    assert (shipped["glue"], shipped["opensearch"]) == ({"databases": []}, {"domains": []})
    assert (shipped["secrets"], shipped["secret_kms_keys"]) == ({}, [])
    off = [settings.KEYS[name].parameter for name in settings_file.DATA_SOURCES] + ["SecretNames"]
    assert {name: passed[name] for name in off} == dict.fromkeys(off, "")


SOURCE_STEPS = {
    "all": (SOURCES, {}, SOURCES_ON),  # the secrets in the file's order
    "athena only": (ATHENA, {}, ATHENA_ON),
    "none: removed from the file, passed empty, and so turned off": ("", {}, {}),
    "variables over the file's": (
        SOURCES,
        {
            "OPENSEARCH_DOMAIN_ARNS": HOTELS, "GLUE_DATABASES": "", "SECRET_NAMES": "API_TOKEN",
            "SECRET_ARNS": "arn:aws:ssm:eu-west-1:123456789012:parameter/usp/api-token",
        },
        {
            **SOURCES_ON, "GlueDatabases": "", "OpenSearchDomainArns": HOTELS, "SecretNames": "API_TOKEN",
            "SecretArns": "arn:aws:ssm:eu-west-1:123456789012:parameter/usp/api-token",
        },
    ),
}  # fmt: skip


@pytest.mark.parametrize("text, variables, on", SOURCE_STEPS.values(), ids=SOURCE_STEPS.keys())
def test_the_data_sources_are_always_passed_the_files_or_the_variables(
    tmp_path: Path, text: str, variables: dict[str, str], on: dict[str, str]
) -> None:
    assert merged(tmp_path, BUCKETS + text, GITHUB_REPO="o/r", **variables) == {**BASE, **on}


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
    "a workgroup without its result location (the template's rule)": (
        "athena: {workgroup: usp-analysts}\n",
        (
            "athena.results_bucket (ATHENA_RESULTS_BUCKET)='', athena.results_prefix "
            "(ATHENA_RESULTS_PREFIX)='': "
            "AthenaWorkGroup needs AthenaResultsBucket and AthenaResultsPrefix, the workgroup's query result "
            "location (the template's rule AthenaNeedsItsResultLocation)"
        ),
    ),
    "a result location without its workgroup (the template's rule)": (
        "athena: {results_bucket: hotel-athena-results, results_prefix: usp}\n",
        (
            "athena.workgroup (ATHENA_WORKGROUP)='': AthenaResultsBucket and AthenaResultsPrefix are the "
            "result "
            "location of AthenaWorkGroup; set it, or clear them (the template's rule "
            "ResultLocationNeedsAthena)"
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
def test_a_bad_data_source_in_the_file_is_refused_with_its_message(
    tmp_path: Path, text: str, message: str
) -> None:
    assert (
        refused(tmp_path, BUCKETS + text, GITHUB_REPO="o/r")
        == f"{tmp_path / 'model-settings.yml'}: {message}"
    )


def test_emptying_only_the_files_secret_names_on_the_command_line_is_refused(tmp_path: Path) -> None:
    """SecretNames='' beside the file's SecretArns would fail the template's rule mid-deploy."""
    assert refused(tmp_path, BUCKETS + SOURCES, GITHUB_REPO="o/r", SECRET_NAMES="") == (
        "SECRET_NAMES and SECRET_ARNS go together, one name for each ARN in the same order (SECRET_NAMES "
        "has 0, "
        "SECRET_ARNS 2): set both, or neither (the template's rule SecretsNeedTheirNames)"
    )
