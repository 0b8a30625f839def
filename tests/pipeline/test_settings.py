"""settings.yml, the model's settings, as `make deploy` merges them (scripts/settings.py, in process here):
the file's values, a command-line variable winning over them, what the deploy passes of each key, and a bad
file refused with one line naming the key, the value and the fix (make deploy prints it and exits 2 before
any AWS call: test_make_deploy.py). The variables one by one: test_settings_variables.py; the platform's
bounds: test_settings_bounds.py; the environments: test_settings_environments.py."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from deploying import (
    ALWAYS,
    CONNECTION,
    GOOD,
    PARAMETERS,
    environment,
    merged,
    platform_file,
    refused,
    settings,
    settings_file,
    write,
)
from support import REPO

SETTINGS = REPO / "settings.yml"
PIN = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/notebook-platform-runner@sha256:" + "0123456789abcdef" * 4
# What the deploy passes of the shipped settings.yml, less what ALWAYS holds.
SHIPPED = {
    "DataLakeBucket": "hotel-data-lake", "OutputBucket": "hotel-output", "DataLakePrefix": "snapshots",
    "ValidationDate": "2019-08-01", "ValidationPrefix": "validation",
    "CompareKeyColumns": "accommodation_id,usp", "MaxChangedShare": "0.1", "ReleaseApproval": "none",
    "ScheduleExpression": "cron(0 6 * * ? *)", "ScheduleTimezone": "UTC", "OutputPrefix": "usp/daily",
    "OutputTable": "usp", "SnapshotRetentionDays": "30", "ConsumerScanLimitBytes": "10737418240",
    "TaskCpu": "1024", "TaskMemory": "2048", "RunnerMajorVersion": "1",
}  # fmt: skip


def test_only_the_repository_takes_every_other_setting_from_settings_yml(tmp_path: Path) -> None:
    """Under the shipped platform.yml (PLATFORM_FILE empty: the default), whose bounds hold settings.yml; no
    SETTINGS_FILE or MODEL_DIR: this repository's settings.yml."""
    deploy = settings.merged({"GITHUB_REPO": "o/r"}, REPO)

    assert deploy.parameters == {
        **ALWAYS, "GitHubRepository": "o/r", "PlatformStackName": "notebook-platform", **SHIPPED,
    }  # fmt: skip
    assert list(deploy.parameters) == [name for name in PARAMETERS if name in deploy.parameters]
    assert deploy.shell == {
        "GITHUB_BRANCH": "main", "RELEASES_FROM_REPOSITORY": "", "SUBNETS": "", "ASSIGN_PUBLIC_IP": "",
        "TABLE_DATABASE": "",
    }  # fmt: skip


def test_a_variable_on_the_command_line_wins_over_the_settings_file(tmp_path: Path) -> None:
    passed = merged(
        tmp_path, SETTINGS.read_text(), GITHUB_REPO="o/r", TASK_MEMORY="4096", SCHEDULE="",
        OUTPUT_BUCKET="other-out", DATA_LAKE_PREFIX="lake/v2", RELEASE_APPROVAL="",
    )  # fmt: skip

    assert {
        "TaskMemory": "4096", "ScheduleExpression": "", "OutputBucket": "other-out",
        "DataLakePrefix": "lake/v2",
    }.items() <= passed.items()  # fmt: skip
    assert {"TaskCpu": "1024", "DataLakeBucket": "hotel-data-lake"}.items() <= passed.items()  # the file's
    assert "ReleaseApproval" not in passed  # set empty: the stack keeps its own


def test_settings_file_reads_another_models_settings(tmp_path: Path) -> None:
    text = (
        "notebook: models/adr.ipynb\ndata_lake: {bucket: adr-lake, prefix: raw}\n"
        "output: {bucket: adr-out, prefix: adr/daily}\nvalidation: {date: 2024-02-29}\n"
        "schedule: {expression: '', timezone: Europe/Amsterdam}\nrun: {cpu: 2048, memory: 8192}\n"
        "alerts: {emails: [data-eng@example.com, oncall@example.com]}\n"
        "network: {subnets: [subnet-0a1b2c3d, subnet-4e5f6a7b], security_groups: [sg-0a1b2c3d],"
        " assign_public_ip: DISABLED}\n"
        f"github: {{branch: release/1, connection_arn: '{CONNECTION}'}}\n"
        f"runner: {{major: 2, image: '{PIN}'}}\n"
    )
    deploy = settings.merged(environment(tmp_path, text, {"GITHUB_REPO": "o/adr"}), REPO)

    assert deploy.parameters == {
        **ALWAYS, "GitHubRepository": "o/adr", "GitHubBranch": "release/1", "ConnectionArn": CONNECTION,
        "NotebookPath": "models/adr.ipynb", "RunnerImage": PIN, "DataLakeBucket": "adr-lake",
        "OutputBucket": "adr-out", "NotificationEmails": "data-eng@example.com,oncall@example.com",
        "DataLakePrefix": "raw", "ValidationDate": "2024-02-29", "ScheduleExpression": "",
        "ScheduleTimezone": "Europe/Amsterdam", "OutputPrefix": "adr/daily", "TaskCpu": "2048",
        "TaskMemory": "8192", "RunnerMajorVersion": "2", "Subnets": "subnet-0a1b2c3d,subnet-4e5f6a7b",
        "SecurityGroups": "sg-0a1b2c3d", "AssignPublicIp": "DISABLED",
    }  # fmt: skip
    assert deploy.shell["SUBNETS"] == "subnet-0a1b2c3d,subnet-4e5f6a7b"  # pipeline.sh: no default VPC


def test_without_a_settings_file_every_setting_comes_from_the_variables(tmp_path: Path) -> None:
    assert refused(tmp_path, GITHUB_REPO="o/r").startswith("DATA_LAKE_BUCKET is not set: ")
    assert merged(tmp_path, **GOOD) == ALWAYS  # nothing else: the stack keeps it
    assert settings.settings_path({}, tmp_path) == REPO / "settings.yml"  # none named: this repository's


def test_a_settings_file_named_but_missing_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yml"
    said = refused(tmp_path, GITHUB_REPO="o/r", SETTINGS_FILE=str(missing))

    assert said == (
        f"SETTINGS_FILE={missing} cannot be read: No such file or directory (point SETTINGS_FILE at a "
        "settings file)"
    )


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
def test_a_bad_settings_file_is_refused_naming_the_key_value_and_fix(
    tmp_path: Path, text: str, message: str
) -> None:
    said = refused(tmp_path, text, GITHUB_REPO="o/r")

    assert said.startswith(f"{tmp_path / 'model-settings.yml'}: {message}"), said
    assert "\n" not in said


def test_a_bad_value_in_the_file_is_refused_even_when_a_variable_overrides_it(tmp_path: Path) -> None:
    said = refused(tmp_path, "run: {cpu: 3000}\n", **GOOD, TASK_CPU="1024")

    assert said.startswith(f"{tmp_path / 'model-settings.yml'}: run.cpu='3000' is not valid")


def test_every_key_sets_a_parameter_of_the_template_and_the_file_names_its_variable() -> None:
    """The shipped settings.yml names the variable and the parameter of the data sources, the promotion and
    the releases in the comment above each key."""
    text = SETTINGS.read_text()
    promotion = [name for name in settings.KEYS if name.startswith("promotion.")]
    assert all(key.parameter in PARAMETERS for key in settings.KEYS.values())
    for name in [*settings_file.DATA_SOURCES, *promotion, *settings_file.RELEASES]:
        key, leaf = settings.KEYS[name], name.rsplit(".", 1)[-1]
        if name == "secrets":
            assert "# secrets (SECRET_NAMES + SECRET_ARNS, SecretNames + SecretArns):" in text
        else:
            assert f"# {leaf} ({key.variable}, {key.parameter}):" in text, name


def test_the_shipped_settings_file_is_valid_and_documents_every_key() -> None:
    assert settings.merged({"GITHUB_REPO": "o/r", "SETTINGS_FILE": str(SETTINGS)}, REPO).parameters
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
    assert found - set(settings_file.SECTIONS) == set(settings.KEYS), "the file ships every key, and no other"


# --- where the settings file is (MODEL_DIR, SETTINGS_FILE) -------------------------------------------------


def test_a_model_dirs_settings_yml_is_read_and_settings_file_wins_over_it(tmp_path: Path) -> None:
    checkout = tmp_path / "hotel-usp"
    checkout.mkdir()
    (checkout / "settings.yml").write_text("data_lake: {bucket: adr-lake}\noutput: {bucket: adr-out}\n")
    other = write(tmp_path, "data_lake: {bucket: hotel-lake}\noutput: {bucket: hotel-out}\n", "other.yml")
    variables = {"GITHUB_REPO": "o/r", "PLATFORM_FILE": str(platform_file(tmp_path))}

    model = settings.merged({**variables, "MODEL_DIR": "hotel-usp"}, tmp_path).parameters  # from its folder
    named = settings.merged(
        {**variables, "MODEL_DIR": str(checkout), "SETTINGS_FILE": other}, REPO
    ).parameters

    assert (model["DataLakeBucket"], model["OutputBucket"]) == ("adr-lake", "adr-out")
    assert (named["DataLakeBucket"], named["OutputBucket"]) == ("hotel-lake", "hotel-out")


def test_a_model_dir_that_is_no_folder_has_no_settings_yml_or_a_link_as_it_is_refused(tmp_path: Path) -> None:
    """A link could have the deploy read (and quote in its messages) any file of the deployer's machine."""
    linked, empty = tmp_path / "linked", tmp_path / "empty"
    linked.mkdir()
    empty.mkdir()
    (linked / "settings.yml").symlink_to(REPO / "settings.yml")
    said = {
        name: refused(tmp_path, GITHUB_REPO="o/r", SETTINGS_FILE="", MODEL_DIR=str(folder))
        for name, folder in (("none", tmp_path / "nope"), ("empty", empty), ("linked", linked))
    }

    assert said == {
        "none": (
            f"MODEL_DIR={tmp_path / 'nope'} is not a folder: give the checkout of the model's repository, "
            "e.g. MODEL_DIR=../hotel-usp"
        ),
        "empty": (
            f"MODEL_DIR={empty} has no settings.yml: a model repository keeps its settings in settings.yml "
            "at its root (this repository's settings.yml shows every key), or name the file with "
            "SETTINGS_FILE=path"
        ),
        "linked": (
            f"MODEL_DIR={linked} has a link as settings.yml: the model's settings are a file of its own, "
            "read as it is; replace the link by the file, or name a file with SETTINGS_FILE=path"
        ),
    }


def test_platform_stack_must_be_the_platform_files(tmp_path: Path) -> None:
    assert merged(tmp_path, **GOOD, PLATFORM_STACK="test-platform")["PlatformStackName"] == "test-platform"
    assert refused(tmp_path, **GOOD, PLATFORM_STACK="other-platform").startswith(
        "PLATFORM_STACK=other-platform is not the stack of the platform file"
    )


# --- the promotion: the comparison with production, and approval --------------------------------------------

BUCKETS = "data_lake: {bucket: hotel-data-lake}\noutput: {bucket: hotel-output}\n"
PROMOTION = (
    "promotion: {compare_keys: [accommodation_id, usp], max_changed_share: 0.05, approval: required}\n"
)
PROMOTION_ON = {
    "CompareKeyColumns": "accommodation_id,usp",
    "MaxChangedShare": "0.05",
    "ReleaseApproval": "required",
}


def promotion(passed: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in passed.items() if name in PROMOTION_ON}


def test_the_shipped_settings_file_compares_by_the_outputs_key_and_documents_the_promotion() -> None:
    """usp's rows are one per (accommodation_id, usp) pair, the key check.py holds unique."""
    shipped = yaml.safe_load(SETTINGS.read_text())

    assert shipped["promotion"] == {
        "compare_keys": ["accommodation_id", "usp"], "max_changed_share": 0.1, "approval": "none",
    }  # fmt: skip
    assert "no duplicate (accommodation_id, usp) pair" in (REPO / "check.py").read_text()


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
    passed = merged(tmp_path, (model / "settings.yml").read_text(), GITHUB_REPO="o/r")
    assert passed["CompareKeyColumns"] == key.group(1)


# (the file's promotion, variables, what the deploy passes of it): a key left out keeps the stack's; [] and ''
# are passed, the template reading them as none (whole rows, no limit); approval '' keeps the stack's.
PROMOTIONS = {
    "in the file": (PROMOTION, {}, PROMOTION_ON),
    "left out": ("", {}, {}),
    "empty in the file": (
        "promotion: {compare_keys: [], max_changed_share: '', approval: ''}\n", {},
        {"CompareKeyColumns": "", "MaxChangedShare": ""},
    ),
    "variables over the file's": (
        PROMOTION, {"COMPARE_KEYS": "", "MAX_CHANGED_SHARE": "0.2", "RELEASE_APPROVAL": "none"},
        {"CompareKeyColumns": "", "MaxChangedShare": "0.2", "ReleaseApproval": "none"},
    ),
    "variables alone": (
        "",
        {"COMPARE_KEYS": "accommodation_id,usp", "MAX_CHANGED_SHARE": "0.25", "RELEASE_APPROVAL": "required"},
        {
            "CompareKeyColumns": "accommodation_id,usp", "MaxChangedShare": "0.25",
            "ReleaseApproval": "required",
        },
    ),
    "variables set empty": (
        "", {"COMPARE_KEYS": "", "MAX_CHANGED_SHARE": "", "RELEASE_APPROVAL": ""},
        {"CompareKeyColumns": "", "MaxChangedShare": ""},
    ),
}  # fmt: skip


@pytest.mark.parametrize("text, variables, expected", PROMOTIONS.values(), ids=PROMOTIONS.keys())
def test_the_promotion_is_passed_when_given_and_empty_keys_as_none(
    tmp_path: Path, text: str, variables: dict[str, str], expected: dict[str, str]
) -> None:
    passed = merged(tmp_path, BUCKETS + text, GITHUB_REPO="o/r", **variables)

    assert promotion(passed) == expected


# How the file may write a share, and what make deploy passes: the YAML number (1.0000 is 1.0), not in
# Python's exponent notation, or the text as it is.
SHARES = {
    "0.1": "0.1", "0": "0", "1": "1", "1.0": "1.0", ".25": "0.25", "0.0001": "0.0001", "'0.5'": "0.5",
    "''": "", "1.0000": "1.0",
}  # fmt: skip


@pytest.mark.parametrize("written, expected", SHARES.items(), ids=SHARES.keys())
def test_a_changed_share_written_as_a_yaml_number_or_text_is_passed_as_written(
    tmp_path: Path, written: str, expected: str
) -> None:
    passed = merged(tmp_path, f"{BUCKETS}promotion: {{max_changed_share: {written}}}\n", GITHUB_REPO="o/r")

    assert passed["MaxChangedShare"] == expected
    assert re.fullmatch(PARAMETERS["MaxChangedShare"]["AllowedPattern"], expected)
