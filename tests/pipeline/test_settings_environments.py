"""A model's environments (settings.yml environments:, ENV=staging|production), as `make deploy` merges
them (scripts/settings.py, in process here): the environment ENV picks overrides the file's keys one by one;
a bad environments: block or ENV is refused naming the key and the fix; the template's rules are evaluated
for the values passed (make deploy prints a refusal and exits 2 before any AWS call; its ENV= runs:
test_make_deploy.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from deploying import GOOD, constraints, merged, refused, settings, write
from support import REPO
from test_make_deploy import ENVIRONMENTS, STAGING_REPOSITORY, STAGING_VERSIONS
from test_settings import BUCKETS

SETTINGS = REPO / "settings.yml"
# What the deploy passes of the environments' settings (less the parameters no key of ENVIRONMENTS sets).
SHOWN = (
    "DataLakeBucket", "OutputBucket", "OutputPrefix", "ScheduleExpression", "NotificationEmails",
    "EnvironmentName", "ReleasesFromRepository", "ReleasesFromVersionsBucket", "ReleaseAccountIds",
)  # fmt: skip


def test_an_environment_overrides_the_files_keys_one_by_one(tmp_path: Path) -> None:
    """A section an environment gives overrides only the keys it names: staging's output.prefix, the file's
    output.bucket."""
    staging, production = (
        merged(tmp_path / env, ENVIRONMENTS, GITHUB_REPO="o/r", ENV=env) for env in ("staging", "production")
    )

    assert {name: staging[name] for name in SHOWN} == {
        "DataLakeBucket": "hotel-lake", "OutputBucket": "hotel-out", "OutputPrefix": "usp/staging",
        "ScheduleExpression": "cron(0 5 * * ? *)", "NotificationEmails": "data-eng@example.com",
        "EnvironmentName": "staging", "ReleasesFromRepository": "", "ReleasesFromVersionsBucket": "",
        "ReleaseAccountIds": "222222222222",
    }  # fmt: skip
    assert {name: production[name] for name in SHOWN} == {
        "DataLakeBucket": "hotel-lake", "OutputBucket": "hotel-out", "OutputPrefix": "usp/daily",
        "ScheduleExpression": "cron(0 6 * * ? *)", "NotificationEmails": "oncall@example.com",
        "EnvironmentName": "production", "ReleasesFromRepository": STAGING_REPOSITORY,
        "ReleasesFromVersionsBucket": STAGING_VERSIONS, "ReleaseAccountIds": "",
    }  # fmt: skip


def test_a_variable_on_the_command_line_wins_over_the_environments_value(tmp_path: Path) -> None:
    passed = merged(tmp_path, ENVIRONMENTS, GITHUB_REPO="o/r", ENV="staging", OUTPUT_PREFIX="x/y")

    assert passed["OutputPrefix"] == "x/y"


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


RELEASES_RULE = "ReleasesComeWithTheirRecords"
ASSERTIONS = constraints.template()["Rules"][RELEASES_RULE]["Assertions"]
# The descriptions of the rule's assertions on ReleaseApproval and on ReleaseAccountIds.
APPROVAL, SHARING = (
    next(
        a["AssertDescription"].rstrip(".")
        for a in ASSERTIONS
        if constraints.references(a["Assert"]) == {name}
    )
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
def test_bad_environments_or_env_are_refused_naming_the_key_and_fix(
    tmp_path: Path, text: str, env: str, message: str
) -> None:
    said = refused(tmp_path, text, GITHUB_REPO="o/usp-model", ENV=env)

    assert said.startswith(message.format(path=tmp_path / "model-settings.yml")), said
    assert "\n" not in said


# Each assertion of the template's rule, and variables that break it (no settings file, no environments): the
# refusal is the assertion's own description, naming the variables.
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
def test_the_templates_releases_rule_is_evaluated(tmp_path: Path, n: int) -> None:
    variables, shown = BREAKING[n]
    said = refused(tmp_path, **GOOD, **variables)

    assert len(ASSERTIONS) == len(BREAKING), "a case breaking each of the rule's assertions"
    description = ASSERTIONS[n]["AssertDescription"].rstrip(".")
    assert said == f"{shown}: {description} (the template's rule {RELEASES_RULE})"


# A case breaking each rule of the template, each refused with the message settings.py has of its own for it
# or the rule's AssertDescription: no deploy reaches CloudFormation to fail there.
RULES = {
    "AthenaNeedsItsResultLocation": {"ATHENA_WORKGROUP": "usp-analysts"},
    "ResultLocationNeedsAthena": {
        "ATHENA_RESULTS_BUCKET": "hotel-athena-results", "ATHENA_RESULTS_PREFIX": "usp",
    },
    "QueryResultsApartFromTheData": {
        "ATHENA_WORKGROUP": "usp-analysts", "ATHENA_RESULTS_BUCKET": "hotel-out",
        "ATHENA_RESULTS_PREFIX": "usp",
    },
    "ValidationNeverWhereConsumersRead": {"VALIDATION_PREFIX": "daily"},
    "SecretsNeedTheirNames": {"SECRET_ARNS": "arn:aws:ssm:eu-west-1:123456789012:parameter/usp/token"},
    "ReleasesComeWithTheirRecords": {"RELEASES_FROM_REPOSITORY": STAGING_REPOSITORY},
}  # fmt: skip


@pytest.mark.parametrize("rule", RULES)
def test_every_rule_of_the_template_is_evaluated(tmp_path: Path, rule: str) -> None:
    assert set(RULES) == set(constraints.template()["Rules"]), "a case breaking each rule of the template"
    assert f"the template's rule {rule}" in refused(tmp_path, **GOOD, **RULES[rule])


def test_settings_that_keep_the_rule_deploy_a_production_stack(tmp_path: Path) -> None:
    passed = merged(tmp_path, **GOOD, **RELEASES_FROM, RELEASE_APPROVAL="none")

    assert (passed["ReleasesFromRepository"], passed["ReleaseApproval"]) == (STAGING_REPOSITORY, "none")


def test_the_shipped_settings_files_environments_example_deploys_each_environment(tmp_path: Path) -> None:
    """Commented out (make deploy without ENV deploys the one stack), the example is a valid environments:
    block, within the shipped platform's bounds; and the releases keys name their variables."""
    text = SETTINGS.read_text()
    example = text.split("\n# environments:\n", 1)[1]
    block = "environments:\n" + "\n".join(line.removeprefix("# ") for line in example.splitlines())
    path = write(tmp_path, f"{text}\n{block}\n")

    passed = {
        env: settings.merged({"GITHUB_REPO": "o/r", "SETTINGS_FILE": path, "ENV": env}, REPO).parameters
        for env in ("staging", "production")
    }
    assert passed["production"]["ReleasesFromRepository"].startswith("arn:aws:ecr:")
    assert passed["staging"]["ReleasesFromRepository"] == ""
