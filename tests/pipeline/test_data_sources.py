"""The notebook's data sources in template/pipeline.yaml (Athena, Glue, OpenSearch, secrets), read as
CloudFormation would for given parameter values: each is off until its parameter is set; once set it grants
exactly its actions on exactly its resources, to the notebook's two roles only (the secrets: to the task
execution role only, which ECS injects them with); both task definitions hand the container the same
secrets, in order; every new parameter's pattern refuses the wrong kind of value; cfn-lint and checkov are
clean with each source on; and a real OpenSearch client's signed requests are what the notebook role
allows (searches) and refuses (writes, other domains, the source off)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import botocore.credentials
import cfn
import iam
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from cfn import TEMPLATE, defaults, exists, load, resolve, statements
from opensearchpy import AWSV4SignerAuth, OpenSearch, RequestsHttpConnection
from support import REPO, http_server

TEMPLATE_DOC = load()
RESOURCES = TEMPLATE_DOC["Resources"]
PARAMETERS = TEMPLATE_DOC["Parameters"]
REGION, ACCOUNT = "eu-west-1", "123456789012"
DATA_LAKE = "hotel-data-lake"
# What CloudFormation resolves the template's references to, for a stack in eu-west-1 (the data sources'
# parameters are added per case; every parameter not given here is at its default).
STACK = {
    "AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::Partition": "aws",
    "AWS::StackName": "notebook-pipeline-usp", "DataLakeBucket": DATA_LAKE, "DataLakePrefix": "snapshots",
    "OutputBucket": "hotel-output", "OutputPrefix": "daily", "ValidationPrefix": "validation",
    "ValidationDate": "2019-08-01", "StagingBucket": "hotel-staging",
    "StagingBucket.Arn": "arn:aws:s3:::hotel-staging", "TableDatabase": "notebook_pipeline_usp",
}  # fmt: skip
SOURCE_PARAMETERS = (
    "AthenaWorkGroup", "AthenaResultsBucket", "AthenaResultsPrefix", "GlueDatabases", "OpenSearchDomainArns",
    "SecretNames", "SecretArns", "SecretKmsKeyArns",
)  # fmt: skip
NOTEBOOK_ROLES = ("NotebookRole", "ValidationNotebookRole")
# The runner's roles (the daily run's and the validation's trusted steps), the projects' and promotion's.
RUNNER_ROLES = ("TaskRole", "ValidationTaskRole", "ValidateRole", "PromoteRole", "BuildRole")

KMS_KEY_1 = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0a1b2c3d-0a1b-0a1b-0a1b-0a1b2c3d4e5f"
KMS_KEY_2 = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/9f8e7d6c-9f8e-9f8e-9f8e-9f8e7d6c5b4a"
SECRET_ARNS_5 = [
    f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:hadoop-AbCdEf",
    f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/usp/hive-keytab",
    f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:usp/reviews-api_token-9zY8xW",
    f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/usp/db.password",
    f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:kerberos+principal=x@y.z-Q1w2E3",
]
SECRET_NAMES_5 = ["HADOOP_PASSWORD", "HIVE_KEYTAB", "REVIEWS_API_TOKEN", "DB_PASSWORD", "_KRB_PRINCIPAL"]
REVIEWS_DOMAIN = f"arn:aws:es:{REGION}:{ACCOUNT}:domain/reviews-domain"
HOTELS_DOMAIN = f"arn:aws:es:{REGION}:{ACCOUNT}:domain/hotels"

ATHENA = {
    "AthenaWorkGroup": "usp-analysts",
    "AthenaResultsBucket": "hotel-athena-results",
    "AthenaResultsPrefix": "athena-results/usp",
}
GLUE_ONE = {"GlueDatabases": "hotel_lake"}
GLUE_TWO = {"GlueDatabases": "hotel_lake,reviews"}
GLUE_THREE = {"GlueDatabases": "hotel_lake,reviews,bookings-raw"}
OPENSEARCH = {"OpenSearchDomainArns": f"{REVIEWS_DOMAIN},{HOTELS_DOMAIN}"}
SECRETS = {"SecretNames": ",".join(SECRET_NAMES_5[:2]), "SecretArns": ",".join(SECRET_ARNS_5[:2])}
SECRETS_KMS = {**SECRETS, "SecretKmsKeyArns": f"{KMS_KEY_1},{KMS_KEY_2}"}
EVERYTHING = {**ATHENA, **GLUE_THREE, **OPENSEARCH, **SECRETS_KMS}
VARIANTS = {
    "athena and glue": {**ATHENA, **GLUE_ONE},
    "glue alone, one database": GLUE_ONE,
    "glue alone, two databases": GLUE_TWO,
    "glue alone, three databases": GLUE_THREE,
    "opensearch": OPENSEARCH,
    "secrets without kms keys": SECRETS,
    "secrets with kms keys": SECRETS_KMS,
    "everything": EVERYTHING,
}

ATHENA_ACTIONS = (
    "athena:StartQueryExecution", "athena:GetQueryExecution", "athena:GetQueryResults",
    "athena:StopQueryExecution", "athena:GetWorkGroup",
)  # fmt: skip
GLUE_ACTIONS = (
    "glue:GetDatabase", "glue:GetTable", "glue:GetTables", "glue:GetPartition", "glue:GetPartitions",
)  # fmt: skip
SEARCH_ACTIONS = ("es:ESHttpGet", "es:ESHttpHead", "es:ESHttpPost")
# What only a data source may grant: a role that is not the notebook's (or, for secrets, the execution
# role) never holds one of these.
SOURCE_ACTIONS = re.compile(r"^(athena|glue|es|secretsmanager):|^ssm:GetParameters$|^kms:Decrypt$")

Grant = tuple[str, str, str, str]  # effect, action, resource, condition (JSON, '' for none)


def values(parameters: dict[str, str]) -> dict[str, Any]:
    """The stack's values with these parameters, every other parameter at its default."""
    return {**defaults(), **STACK, **parameters}


def grants(role: str, parameters: dict[str, str]) -> set[Grant]:
    """Every (effect, action, resource, condition) a role's policies hold, resolved for these values."""
    given = values(parameters)
    found = set()
    for statement in statements(RESOURCES, role, given).values():
        resolved = resolve(statement, given)
        condition = json.dumps(resolved["Condition"], sort_keys=True) if "Condition" in resolved else ""
        # A NotAction statement's actions are marked: it names every action but those.
        actions = (
            listed(resolved["Action"])
            if "Action" in resolved
            else [f"not {a}" for a in listed(resolved["NotAction"])]
        )
        for action in actions:
            for resource in listed(resolved["Resource"]):
                found.add((resolved["Effect"], action, resource, condition))
    return found


def listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def allow(actions: tuple[str, ...] | list[str], resources: list[str], condition: str = "") -> set[Grant]:
    return {("Allow", a, r, condition) for a in actions for r in resources}


def items(text: str) -> list[str]:
    return text.split(",") if text else []


def notebook_sources(parameters: dict[str, str]) -> set[Grant]:
    """What the notebook's roles should get for these parameters, written out from AWS's ARN formats."""
    expected: set[Grant] = set()
    if parameters.get("AthenaWorkGroup"):
        bucket = f"arn:aws:s3:::{parameters['AthenaResultsBucket']}"
        expected |= allow(
            ATHENA_ACTIONS, [f"arn:aws:athena:{REGION}:{ACCOUNT}:workgroup/{parameters['AthenaWorkGroup']}"]
        )
        prefix = parameters["AthenaResultsPrefix"]
        expected |= allow(["s3:GetBucketLocation", "s3:ListBucketMultipartUploads"], [bucket])
        under_prefix = {"StringLike": {"s3:prefix": [prefix, f"{prefix}/*"]}}
        expected |= allow(["s3:ListBucket"], [bucket], json.dumps(under_prefix, sort_keys=True))
        expected |= allow(
            ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
            [f"{bucket}/{parameters['AthenaResultsPrefix']}/*"],
        )
        expected |= allow(["s3:GetBucketLocation"], [f"arn:aws:s3:::{DATA_LAKE}"])
    databases = items(parameters.get("GlueDatabases", ""))
    if databases:
        glue = f"arn:aws:glue:{REGION}:{ACCOUNT}"
        resources = [f"{glue}:catalog"]
        for database in databases:
            resources += [f"{glue}:database/{database}", f"{glue}:table/{database}/*"]
        expected |= allow(GLUE_ACTIONS, resources)
    domains = items(parameters.get("OpenSearchDomainArns", ""))
    expected |= allow(SEARCH_ACTIONS, [f"{domain}/*" for domain in domains])
    return expected


VIA_SERVICES = [f"secretsmanager.{REGION}.amazonaws.com", f"ssm.{REGION}.amazonaws.com"]
VIA_SECRETS_MANAGER_OR_SSM = json.dumps({"StringEquals": {"kms:ViaService": VIA_SERVICES}}, sort_keys=True)


def execution_role_sources(parameters: dict[str, str]) -> set[Grant]:
    """What the task execution role should get: read each listed secret, decrypt with each listed key."""
    arns = items(parameters.get("SecretArns", ""))
    keys = items(parameters.get("SecretKmsKeyArns", ""))
    return allow(["secretsmanager:GetSecretValue", "ssm:GetParameters"], arns) | allow(
        ["kms:Decrypt"], keys, VIA_SECRETS_MANAGER_OR_SSM
    )


# --- a: every source off ------------------------------------------------------------------------------


@pytest.mark.parametrize("role", NOTEBOOK_ROLES)
def test_with_every_source_off_the_notebook_roles_get_no_athena_glue_or_opensearch(role: str) -> None:
    held = grants(role, {})

    assert {a for _, a, _, _ in held if SOURCE_ACTIONS.match(a)} == set()
    assert not [g for g in held if "athena" in g[2] or ":glue:" in g[2] or ":es:" in g[2]]
    assert not exists(RESOURCES["NotebookDataSourcesPolicy"], {})
    assert "data-sources" not in {p["PolicyName"] for p in RESOURCES[role]["Properties"]["Policies"]}


def test_with_every_source_off_the_execution_role_reads_no_secret_and_decrypts_nothing() -> None:
    held = grants("TaskExecutionRole", {})

    assert {a for _, a, _, _ in held if SOURCE_ACTIONS.match(a)} == set()
    assert {a for _, a, _, _ in held} == {
        "ecr:GetAuthorizationToken", "ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer", "logs:CreateLogStream", "logs:PutLogEvents",
    }  # fmt: skip
    assert not exists(RESOURCES["TaskExecutionRoleReadsSecrets"], {})


# --- b: each source on ----------------------------------------------------------------------------------


@pytest.mark.parametrize("role", NOTEBOOK_ROLES)
@pytest.mark.parametrize("parameters", VARIANTS.values(), ids=VARIANTS.keys())
def test_a_source_on_grants_the_notebook_roles_exactly_its_actions_on_exactly_its_resources(
    role: str, parameters: dict[str, str]
) -> None:
    off, on = grants(role, {}), grants(role, parameters)
    expected = notebook_sources(parameters)

    assert off - on == set(), "a data source took away one of the role's own grants"
    assert on - off == expected
    # the secrets are never the notebook's: ECS injects them with the execution role
    assert not [g for g in on if g[1].startswith(("secretsmanager:", "ssm:", "kms:"))]
    assert exists(RESOURCES["NotebookDataSourcesPolicy"], values(parameters)) == bool(expected)


def test_glue_grants_each_of_three_databases_its_database_and_tables_and_nothing_for_unused_slots() -> None:
    """The grant's ARNs for 1, 2 and 3 databases: one pair per database, never an empty database/ or
    table//* from a slot the list does not fill."""
    glue = f"arn:aws:glue:{REGION}:{ACCOUNT}"
    for databases in (GLUE_ONE, GLUE_TWO, GLUE_THREE):
        resources = {r for _, a, r, _ in grants("NotebookRole", databases) if a.startswith("glue:")}
        names = databases["GlueDatabases"].split(",")

        assert resources == {
            f"{glue}:catalog",
            *(f"{glue}:database/{n}" for n in names),
            *(f"{glue}:table/{n}/*" for n in names),
        }
        assert len(resources) == 1 + 2 * len(names)


@pytest.mark.parametrize("parameters", VARIANTS.values(), ids=VARIANTS.keys())
def test_secrets_on_let_the_execution_role_read_exactly_those_arns_and_decrypt_with_exactly_those_keys(
    parameters: dict[str, str],
) -> None:
    off, on = grants("TaskExecutionRole", {}), grants("TaskExecutionRole", parameters)

    assert off - on == set()
    assert on - off == execution_role_sources(parameters)
    assert exists(RESOURCES["TaskExecutionRoleReadsSecrets"], values(parameters)) == bool(
        parameters.get("SecretArns")
    )


def other_roles() -> list[str]:
    roles = [n for n, r in RESOURCES.items() if r["Type"] == "AWS::IAM::Role"]
    return [r for r in roles if r not in (*NOTEBOOK_ROLES, "TaskExecutionRole")]


def test_the_runners_roles_are_among_the_roles_held_to_no_data_source() -> None:
    assert set(RUNNER_ROLES) < set(other_roles())


@pytest.mark.parametrize("role", other_roles())
@pytest.mark.parametrize("parameters", VARIANTS.values(), ids=VARIANTS.keys())
def test_no_other_role_gets_a_data_source(role: str, parameters: dict[str, str]) -> None:
    """The runner's roles (TaskRole, ValidationTaskRole), the projects' and promotion's, and every other:
    their grants are the same with the source on as off, and none is a data source's."""
    on = grants(role, parameters)
    sources = {(a, r) for _, a, r, _ in notebook_sources(parameters) | execution_role_sources(parameters)}

    assert on == grants(role, {})
    # The run's own table (test_table_template.py) is in the catalog too: Glue authorizes every table request
    # on the catalog as well as the database and the table, so the catalog alone opens no source's database.
    own = re.compile(rf":(catalog|database/{STACK['TableDatabase']}|table/{STACK['TableDatabase']}/[a-z_]+)$")
    assert not [g for g in on if (g[1], g[2]) in sources and not own.search(g[2])]
    assert not [
        g for g in on if SOURCE_ACTIONS.match(g[1]) and not g[1].startswith("kms:") and not own.search(g[2])
    ]


# --- c: the containers' secrets -------------------------------------------------------------------------

TASK_DEFINITIONS = ("TaskDefinition", "ValidationTaskDefinition")


def container(task_definition: str) -> dict[str, Any]:
    (runner,) = RESOURCES[task_definition]["Properties"]["ContainerDefinitions"]
    return runner


def environment(task_definition: str, parameters: dict[str, str]) -> dict[str, str]:
    return {
        e["Name"]: resolve(e["Value"], values(parameters)) for e in container(task_definition)["Environment"]
    }


@pytest.mark.parametrize("count", [1, 3, 5])
def test_both_task_definitions_inject_the_secrets_as_their_names_in_order(count: int) -> None:
    names, arns = SECRET_NAMES_5[:count], SECRET_ARNS_5[:count]
    names, arns = names[::-1], arns[::-1]  # not in alphabetical order: the order given is kept
    parameters = {"SecretNames": ",".join(names), "SecretArns": ",".join(arns)}
    expected = [{"Name": n, "ValueFrom": a} for n, a in zip(names, arns, strict=True)]

    injected = {td: resolve(container(td)["Secrets"], values(parameters)) for td in TASK_DEFINITIONS}

    assert injected["TaskDefinition"] == expected
    assert injected["ValidationTaskDefinition"] == injected["TaskDefinition"]
    for td in TASK_DEFINITIONS:
        assert environment(td, parameters)["NOTEBOOK_SECRETS"] == ",".join(names)
        # ECS reads the secrets with the execution role, the one the secrets' grant goes to
        assert resolve(RESOURCES[td]["Properties"]["ExecutionRoleArn"], {"TaskExecutionRole.Arn": "X"}) == "X"


def test_without_secrets_the_containers_get_none_and_an_empty_notebook_secrets() -> None:
    for td in TASK_DEFINITIONS:
        assert resolve(container(td)["Secrets"], values({})) == []
        assert environment(td, {})["NOTEBOOK_SECRETS"] == ""


# --- d: the parameters' patterns --------------------------------------------------------------------------

SECRET_ARN = SECRET_ARNS_5[0]
PATTERNS: dict[str, tuple[list[str], list[str]]] = {
    "AthenaWorkGroup": (["", "primary", "usp-analysts", "team.usp_2"], ["has space", "a/b", "x" * 129]),
    "AthenaResultsBucket": (
        ["", "hotel-athena-results", "a.b-c"],
        ["Athena-Results", "ATHENARESULTS", "s3://hotel-athena-results", "ab", "-bucket", "bucket-"],
    ),
    "AthenaResultsPrefix": (
        ["", "athena-results", "athena-results/usp"],
        ["/athena-results", "athena-results/", "a//b", "s3://b/p"],
    ),
    "GlueDatabases": (
        ["", "hotel_lake", "hotel_lake,reviews", "hotel_lake,reviews,bookings-raw"],
        ["a,b,c,d", "Hotel_Lake", "a, b", "a,", ",a", "a,,b", "hotel lake"],
    ),
    "OpenSearchDomainArns": (
        ["", REVIEWS_DOMAIN, f"{REVIEWS_DOMAIN},{HOTELS_DOMAIN}", ",".join([REVIEWS_DOMAIN] * 5),
         f"arn:aws-cn:es:cn-north-1:{ACCOUNT}:domain/reviews"],
        [SECRET_ARN, "arn:aws:s3:::hotel-data-lake", f"{REVIEWS_DOMAIN}/*", f"{REVIEWS_DOMAIN}/reviews",
         ",".join([REVIEWS_DOMAIN] * 6), f"arn:aws:es:{REGION}:{ACCOUNT}:domain/Reviews", "reviews-domain",
         f"arn:aws:es:{REGION}:1234:domain/reviews", f"{REVIEWS_DOMAIN}, {HOTELS_DOMAIN}"],
    ),
    "SecretNames": (
        ["", "HADOOP_PASSWORD", ",".join(SECRET_NAMES_5), "_X"],
        ["hadoop-password", "hadoop_password", "1PASSWORD", "HADOOP PASSWORD",
         ",".join([*SECRET_NAMES_5, "SIXTH"]), "A,"],
    ),
    "SecretArns": (
        ["", SECRET_ARN, ",".join(SECRET_ARNS_5), f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/usp/hive-keytab",
         f"arn:aws-us-gov:secretsmanager:us-gov-west-1:{ACCOUNT}:secret:hadoop-AbCdEf"],
        [f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:hadoop",  # without its 6-character suffix
         f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:hadoop-password",
         f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:hadoop-AbCdE",
         "arn:aws:s3:::hotel-secrets/hadoop.txt", REVIEWS_DOMAIN, KMS_KEY_1,
         f"{SECRET_ARN}:password::",  # ECS's JSON-key form: not an ARN the grant could name
         ",".join([*SECRET_ARNS_5, SECRET_ARN]), "hadoop-AbCdEf", f"{SECRET_ARN}, {SECRET_ARNS_5[1]}"],
    ),
    "SecretKmsKeyArns": (
        ["", KMS_KEY_1, f"{KMS_KEY_1},{KMS_KEY_2}", ",".join([KMS_KEY_1] * 5)],
        [f"arn:aws:kms:{REGION}:{ACCOUNT}:alias/aws/secretsmanager", "0a1b2c3d-0a1b-0a1b-0a1b-0a1b2c3d4e5f",
         SECRET_ARN, ",".join([KMS_KEY_1] * 6)],
    ),
}  # fmt: skip


def test_every_data_source_parameter_is_off_by_default_and_has_its_patterns_tested() -> None:
    assert set(PATTERNS) == set(SOURCE_PARAMETERS)
    group = [
        g["Parameters"]
        for g in TEMPLATE_DOC["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
        if g["Label"]["default"].startswith("Data sources")
    ]
    assert group == [list(SOURCE_PARAMETERS)]
    for name in SOURCE_PARAMETERS:
        assert (PARAMETERS[name]["Type"], PARAMETERS[name]["Default"]) == ("String", ""), name


@pytest.mark.parametrize("name", SOURCE_PARAMETERS)
def test_a_data_source_parameter_accepts_good_values_and_refuses_the_wrong_kind(name: str) -> None:
    pattern = PARAMETERS[name]["AllowedPattern"]
    good, bad = PATTERNS[name]

    for value in good:
        assert re.fullmatch(pattern, value), f"{name} refused {value!r}"
    for value in bad:
        assert not re.fullmatch(pattern, value), f"{name} accepted {value!r}"


# --- e: the linters with each source on ----------------------------------------------------------------
# The template as it is (every source off) is tests/test_lint.py's, through `make lint`; here, each variant
# of it with sources on, all in one run of each linter. taskcat's lint is cfn-lint again (the same pin, in
# eu-west-1, which .cfnlintrc's regions hold): the variants are linted by cfn-lint alone.

LINT_VARIANTS = {
    "athena and glue": {**ATHENA, **GLUE_THREE},
    "opensearch": OPENSEARCH,
    "secrets and kms keys": SECRETS_KMS,
    "everything": EVERYTHING,
}


def with_defaults(text: str, parameters: dict[str, str]) -> str:
    """The template's text with these parameters' `Default: ''` lines set to the values, nothing else."""
    for name, value in parameters.items():
        line = re.compile(rf"^(  {name}:\n    Type: String\n    Default: )''$", re.MULTILINE)
        text, count = line.subn(lambda m, value=value: f"{m.group(1)}'{value}'", text)
        assert count == 1, f"no `Default: ''` line under {name}"
    return text


@pytest.fixture(scope="module")
def variants(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each LINT_VARIANTS' template, written once: variant name -> its file."""
    folder = tmp_path_factory.mktemp("variants")
    original = TEMPLATE.read_text()
    written = {}
    for name, parameters in LINT_VARIANTS.items():
        written[name] = folder / f"{re.sub(r'[^a-z]+', '-', name)}.yaml"
        written[name].write_text(with_defaults(original, parameters))
    return written


@pytest.mark.parametrize("name", LINT_VARIANTS)
def test_a_variant_is_the_template_with_only_its_sources_defaults_set(
    variants: dict[str, Path], name: str
) -> None:
    parameters = LINT_VARIANTS[name]
    original, variant = TEMPLATE.read_text().splitlines(), variants[name].read_text().splitlines()

    changed = [b for a, b in zip(original, variant, strict=True) if a != b]

    assert changed == [f"    Default: '{v}'" for v in parameters.values()]
    assert {n: p["Default"] for n, p in load(variants[name])["Parameters"].items() if n in parameters} == (
        parameters
    )


def test_the_linters_are_clean_with_each_source_on(lint_tools: None, variants: dict[str, Path]) -> None:
    files = [str(path) for path in variants.values()]
    # the two at once (each takes seconds a file); cfn-lint reads the repository's .cfnlintrc (its regions)
    linters = {
        "cfn-lint": subprocess.Popen(
            [REPO / ".venv/bin/cfn-lint", *files], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        ),
        "checkov": subprocess.Popen(
            [REPO / ".venv-checkov/bin/checkov", "--quiet", "--compact", "--framework", "cloudformation",
             *(option for name in files for option in ("-f", name))],
            cwd=REPO, env={**os.environ, "BC_SKIP_MAPPING": "TRUE"}, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        ),
    }  # fmt: skip
    said = {name: p.communicate(timeout=600)[0].decode() for name, p in linters.items()}

    for name, process in linters.items():
        assert process.returncode == 0, f"{name} on {', '.join(files)}:\n{said[name]}"
    passed = re.search(r"Passed checks: (\d+), Failed checks: 0", said["checkov"])
    # checkov read each variant's resources (the template alone passes over 100 checks)
    assert passed and int(passed.group(1)) > 100 * len(files), said["checkov"]


# --- f: a real OpenSearch client's signed requests, held to the notebook role ------------------------------

ACCESS_KEY = "AKIAIOSFODNN7NOTEBOOK"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYNOTEBOOKKEY"
AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)"
    r"/aws4_request, SignedHeaders=(?P<signed>[^,]+), Signature=(?P<signature>[0-9a-f]{64})$"
)
SEARCH_REPLY = {
    "took": 1, "timed_out": False, "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
    "hits": {"total": {"value": 1, "relation": "eq"}, "max_score": 1.0,
             "hits": [{"_index": "reviews", "_id": "1", "_score": 1.0, "_source": {"stars": 5}}]},
}  # fmt: skip
WRITE_REPLY = {
    "_index": "reviews", "_id": "1", "_version": 1, "result": "created", "_seq_no": 0, "_primary_term": 1,
    "_shards": {"total": 1, "successful": 1, "failed": 0},
}  # fmt: skip


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@pytest.fixture
def opensearch() -> Iterator[tuple[str, list[Received]]]:
    """A stand-in OpenSearch domain endpoint on 127.0.0.1 that keeps every request it gets."""
    received: list[Received] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
            received.append(Received(self.command, self.path, dict(self.headers.items()), body))
            reply = json.dumps(
                SEARCH_REPLY if self.path.endswith("/_search")
                else {"acknowledged": True} if self.command == "DELETE"
                else WRITE_REPLY if self.command == "PUT"
                else {}
            ).encode()  # fmt: skip
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply)

        do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with http_server(Handler) as port:
        yield f"127.0.0.1:{port}", received


def client(endpoint: str, credentials: botocore.credentials.Credentials) -> OpenSearch:
    """What a notebook writes for a domain (there: use_ssl=True and the domain's endpoint)."""
    host, port = endpoint.split(":")
    return OpenSearch(
        hosts=[{"host": host, "port": int(port)}],
        http_auth=AWSV4SignerAuth(credentials, REGION, "es"),
        use_ssl=False,
        connection_class=RequestsHttpConnection,
    )


def signature_of(request: Received, credentials: botocore.credentials.Credentials) -> tuple[str, str]:
    """The request's signature and signed headers as botocore computes them with this key, for 'es' in
    REGION, at the request's own X-Amz-Date."""
    signed = AUTHORIZATION.match(request.headers["Authorization"])
    assert signed, request.headers["Authorization"]
    names = signed["signed"].split(";")
    headers = {k: v for k, v in request.headers.items() if k.lower() in names}
    again = AWSRequest(
        method=request.method, url=f"http://{request.headers['Host']}{request.path}", data=request.body,
        headers=headers,
    )  # fmt: skip
    again.context["timestamp"] = request.headers["X-Amz-Date"]
    signer = SigV4Auth(credentials, "es", REGION)
    canonical = signer.canonical_request(again)
    return signer.signature(signer.string_to_sign(again, canonical), again), signer.signed_headers(
        signer.headers_to_sign(again)
    )


def es_check(domain: str, request: Received) -> iam.Check:
    """What OpenSearch Service authorizes a signed request on: es:ESHttp<Method> on domain/NAME/<path>."""
    return iam.Check(f"es:ESHttp{request.method.title()}", f"{domain}{request.path.split('?')[0]}")


def notebook_role(role: str, parameters: dict[str, str]) -> list[dict[str, Any]]:
    given = values(parameters)
    return [resolve(s, given) for s in statements(RESOURCES, role, given).values()]


@pytest.mark.parametrize("role", NOTEBOOK_ROLES)
def test_a_signed_opensearch_search_is_allowed_and_writes_other_domains_or_the_source_off_are_not(
    opensearch: tuple[str, list[Received]], role: str
) -> None:
    endpoint, received = opensearch
    credentials = botocore.credentials.Credentials(ACCESS_KEY, SECRET_KEY)
    search = client(endpoint, credentials)

    found = search.search(index="reviews", body={"query": {"match_all": {}}})
    there = search.indices.exists(index="reviews")
    search.index(index="reviews", id="1", body={"stars": 5})  # what the role must refuse: a write
    search.indices.delete(index="reviews")  # and a delete

    assert found["hits"]["hits"][0]["_source"] == {"stars": 5} and there is True
    assert [(r.method, r.path.split("?")[0]) for r in received] == [
        ("POST", "/reviews/_search"), ("HEAD", "/reviews"), ("PUT", "/reviews/_doc/1"),
        ("DELETE", "/reviews"),
    ]  # fmt: skip
    assert json.loads(received[0].body) == {"query": {"match_all": {}}}
    for request in received:
        signed = AUTHORIZATION.match(request.headers["Authorization"])
        assert signed, request.headers["Authorization"]
        assert (signed["key"], signed["region"], signed["service"]) == (ACCESS_KEY, REGION, "es")
        assert signed["date"] == request.headers["X-Amz-Date"][:8]
        assert request.headers["X-Amz-Content-SHA256"] == hashlib.sha256(request.body).hexdigest()
        # signed with this key's secret: botocore computes the same signature over what arrived
        assert signature_of(request, credentials) == (signed["signature"], signed["signed"])
        wrong = botocore.credentials.Credentials(ACCESS_KEY, SECRET_KEY.replace("K", "k"))
        assert signature_of(request, wrong)[0] != signed["signature"]

    reads, writes = received[:2], received[2:]
    on = notebook_role(role, {"OpenSearchDomainArns": REVIEWS_DOMAIN})
    both = notebook_role(role, {"OpenSearchDomainArns": f"{HOTELS_DOMAIN},{REVIEWS_DOMAIN}"})
    off = notebook_role(role, {})
    other_domain = f"arn:aws:es:{REGION}:{ACCOUNT}:domain/reviews-domain2"
    assert [es_check(REVIEWS_DOMAIN, r) for r in reads] == [
        iam.Check("es:ESHttpPost", f"{REVIEWS_DOMAIN}/reviews/_search"),
        iam.Check("es:ESHttpHead", f"{REVIEWS_DOMAIN}/reviews"),
    ]
    assert [es_check(REVIEWS_DOMAIN, r).action for r in writes] == ["es:ESHttpPut", "es:ESHttpDelete"]
    for request in reads:
        assert iam.allows(on, es_check(REVIEWS_DOMAIN, request), tags={})
        assert iam.allows(both, es_check(REVIEWS_DOMAIN, request), tags={})
        assert not iam.allows(off, es_check(REVIEWS_DOMAIN, request), tags={})
        assert not iam.allows(on, es_check(HOTELS_DOMAIN, request), tags={})
        assert not iam.allows(on, es_check(other_domain, request), tags={})
    for request in writes:
        assert not iam.allows(on, es_check(REVIEWS_DOMAIN, request), tags={})
        assert not iam.allows(both, es_check(REVIEWS_DOMAIN, request), tags={})
    # the runner's role never: its grants are the same with the domain on
    runner = {"NotebookRole": "TaskRole", "ValidationNotebookRole": "ValidationTaskRole"}[role]
    runner_on = notebook_role(runner, {"OpenSearchDomainArns": REVIEWS_DOMAIN})
    assert not iam.allows(runner_on, es_check(REVIEWS_DOMAIN, reads[0]), tags={})


def failed_rules(values: dict[str, str]) -> list[str]:
    """The template's Rules CloudFormation fails for these parameter values (the rest at their defaults)."""
    return cfn.failed_rules({**STACK, **values})


ATHENA_ON = {
    "AthenaWorkGroup": "usp",
    "AthenaResultsBucket": "hotel-athena-results",
    "AthenaResultsPrefix": "usp",
}
RULE_CASES = {
    "every source on": ({**ATHENA_ON, "SecretNames": "A_PASS", "SecretArns": SECRET_ARNS_5[0]}, []),
    "a workgroup without its result location": ({"AthenaWorkGroup": "usp"}, ["AthenaNeedsItsResultLocation"]),
    "a result location without a workgroup": (
        {"AthenaResultsBucket": "hotel-athena-results", "AthenaResultsPrefix": "usp"},
        ["ResultLocationNeedsAthena"],
    ),
    "query results in the output bucket": (
        {**ATHENA_ON, "AthenaResultsBucket": STACK["OutputBucket"]},
        ["QueryResultsApartFromTheData"],
    ),
    "query results in the lake": (
        {**ATHENA_ON, "AthenaResultsBucket": DATA_LAKE},
        ["QueryResultsApartFromTheData"],
    ),
    "secret arns without names": ({"SecretArns": SECRET_ARNS_5[0]}, ["SecretsNeedTheirNames"]),
}


@pytest.mark.parametrize(("values", "failed"), RULE_CASES.values(), ids=RULE_CASES.keys())
def test_the_templates_rules_refuse_a_source_half_given_or_query_results_where_the_data_is(
    values: dict[str, str], failed: list[str]
) -> None:
    assert failed_rules(values) == failed


def test_no_prefix_parameter_takes_an_iam_wildcard() -> None:
    """'*' in a prefix would widen every grant built from it (athena-results/* -> any key of the bucket)."""
    prefixes = [name for name in PARAMETERS if name.endswith("Prefix")]

    assert sorted(prefixes) == ["AthenaResultsPrefix", "DataLakePrefix", "OutputPrefix", "ValidationPrefix"]
    for name in prefixes:
        pattern = PARAMETERS[name]["AllowedPattern"]
        assert re.fullmatch(pattern, "usp/daily"), name
        assert not re.fullmatch(pattern, "*"), name
        assert not re.fullmatch(pattern, "usp/*"), name


def test_the_secret_names_pattern_refuses_every_name_the_runner_reserves() -> None:
    """ECS sets a secret's variable before the loader or the runner start (LD_PRELOAD would print the value
    at once): a console deploy meets the same refusal as make deploy and the runner (runner/redaction.py)."""
    from runner.config import SETTING_NAMES
    from runner.redaction import RESERVED_NAMES, RESERVED_PREFIXES, reserved

    pattern = PARAMETERS["SecretNames"]["AllowedPattern"]
    taken = [f"{prefix}X" for prefix in RESERVED_PREFIXES] + [*RESERVED_NAMES, *SETTING_NAMES]

    assert all(reserved(name) for name in taken)
    for name in taken:
        for listed in (name, f"HADOOP_PASSWORD,{name}", f"{name},HADOOP_PASSWORD"):
            assert not re.fullmatch(pattern, listed), listed
    for good in ("HADOOP_PASSWORD", "HIVE_KEYTAB,REVIEWS_TOKEN", "PATH_TO_KEYTAB", "DATA_URI_TOKEN", ""):
        assert re.fullmatch(pattern, good), good
