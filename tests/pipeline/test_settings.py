"""settings.yml, the model's settings: `make deploy` reads it (scripts/settings.py), a command-line variable
wins over it, and a bad file is refused before any AWS call with a message naming the key, the value and the
fix (a stand-in `aws` records the calls, tests/pipeline/fake_aws.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support import REPO, SETTINGS_SCRIPT, settings_script
from test_make_deploy import CONNECTION, GOOD, SOURCES_OFF, deploy_call, make, without_settings

SETTINGS = REPO / "settings.yml"
SCRIPT = SETTINGS_SCRIPT
settings = settings_script()


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
    done, calls = make(tmp_path, target, GITHUB_REPO="o/r")

    assert done.returncode == 0, done.stderr
    assert overrides(deploy_call(calls)) == [
        "GitHubRepository=o/r", "GitHubBranch=main", "ConnectionArn=", "NotebookPath=usp.ipynb",
        "DataLakeBucket=hotel-data-lake", "OutputBucket=hotel-output", "NotificationEmails=", *SOURCES_OFF,
        "DataLakePrefix=snapshots", "ValidationDate=2019-08-01", "ValidationPrefix=validation",
        "ScheduleExpression=cron(0 6 * * ? *)", "ScheduleTimezone=UTC", "OutputPrefix=usp/daily",
        "OutputTable=usp", "SnapshotRetentionDays=30", "ConsumerScanLimitBytes=10737418240",
        "TaskCpu=1024", "TaskMemory=2048",
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
        f"github: {{branch: release/1, connection_arn: '{CONNECTION}'}}\n",
    )
    done, calls = make(tmp_path, "deploy", GITHUB_REPO="o/adr", SETTINGS_FILE=other, FAKE_STACK_EXISTS="no")

    assert done.returncode == 0, done.stderr
    assert not [c for c in calls if c[0] == "ec2"]  # the file's network, not the default VPC
    assert overrides(deploy_call(calls)) == [
        "GitHubRepository=o/adr", "GitHubBranch=release/1", f"ConnectionArn={CONNECTION}",
        "NotebookPath=models/adr.ipynb", "DataLakeBucket=adr-lake", "OutputBucket=adr-out",
        "NotificationEmails=data-eng@example.com,oncall@example.com", *SOURCES_OFF, "DataLakePrefix=raw",
        "ValidationDate=2024-02-29", "ScheduleExpression=", "ScheduleTimezone=Europe/Amsterdam",
        "OutputPrefix=adr/daily", "TaskCpu=2048", "TaskMemory=8192",
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

DOMAIN = "arn:aws:es:eu-west-1:123456789012:domain/reviews-domain"
HADOOP = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:hadoop-AbCdEf"
KEYTAB = "arn:aws:ssm:eu-west-1:123456789012:parameter/usp/hive-keytab"
KMS_KEY = "arn:aws:kms:eu-west-1:123456789012:key/0a1b2c3d-0a1b-0a1b-0a1b-0a1b2c3d4e5f"
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
    "GitHubRepository=o/r", "GitHubBranch=main", "ConnectionArn=", "NotebookPath=usp.ipynb",
    "DataLakeBucket=hotel-data-lake", "OutputBucket=hotel-output", "NotificationEmails=",
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
    other = "arn:aws:es:eu-west-1:123456789012:domain/hotels"
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
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_NAMES", "SECRET_ARNS"}}
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
