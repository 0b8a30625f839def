# notebook-pipeline: build and run the notebook runner image, test and lint it.
# `make` alone lists the targets.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --warn-undefined-variables --no-builtin-rules
# This checkout, the platform's, wherever make runs from (make -f .../Makefile).
PLATFORM_DIR := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))

# The model: this repository's example (usp), or MODEL_DIR=../a-model (make new-model writes one). Its
# notebook is its settings.yml's `notebook:` unless NOTEBOOK= is given.
MODEL_DIR  ?= .
# The model's files are untrusted: its notebook's name is read, and checked, by scripts/build.sh only.
MODEL_NOTEBOOK := $(shell "$(PLATFORM_DIR)/scripts/build.sh" notebook "$(MODEL_DIR)" || echo INVALID)
ifeq ($(MODEL_NOTEBOOK),INVALID)
$(error MODEL_DIR=$(MODEL_DIR): its settings.yml names no notebook make can use (the reason is above))
endif
NOTEBOOK   ?= $(or $(MODEL_NOTEBOOK),usp.ipynb)
MODEL_NAME := $(basename $(notdir $(NOTEBOOK)))
# The runner: this checkout's version (VERSION), built locally; RUNNER= names another (e.g. a published digest).
VERSION    := $(shell cat VERSION)
RUNNER     ?= notebook-runner:$(VERSION)
IMAGE      ?= notebook-model:$(MODEL_NAME)
RUN_DATE   ?= 2019-08-01
MODEL_PATH := $(if $(filter .,$(MODEL_DIR)),,$(MODEL_DIR)/)
DATA_DIR   ?= $(if $(wildcard $(MODEL_PATH)sample/lake),$(MODEL_PATH)sample/lake,sample/lake)
OUTPUT_DIR ?= $(MODEL_PATH)output
DATE       ?=
DIR        ?=
SNAPSHOT   ?=
OUTPUT_TABLE ?=
PYTHON     ?= python3
# make test's workers (pytest-xdist, one test module to a worker at a time): the machine's cores, at most 4
# (each worker builds, runs containers and emulates AWS of its own); 0 runs the suite in one process.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); echo $$(( n < 4 ? n : 4 )))
WORKERS     = $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile)
VENV       := .venv
BIN        := $(VENV)/bin
GIT_COMMIT := $(shell git -C "$(MODEL_DIR)" rev-parse --short HEAD 2>/dev/null || echo dev)
# The container starts as root and drops at once to the runner's user, which writes ./output as you (root
# keeps the image's own runner user, 10001); the notebook runs as a user of its own (10002), which cannot.
UID_GID    := $(shell echo "$$(id -u):$$(id -g)")
RUNNER_USER := $(if $(filter 0:%,$(UID_GID)),,-e RUNNER_USER=$(UID_GID))
# As the Fargate task runs: read-only root, /tmp the image's volume, no capability but the three the runner
# keeps to run the notebook as its own user.
FARGATE    := --read-only --cap-drop ALL --cap-add SETUID --cap-add SETGID --cap-add KILL

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  \033[1m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  variables: MODEL_DIR=$(MODEL_DIR) NOTEBOOK=$(NOTEBOOK) RUNNER=$(RUNNER) IMAGE=$(IMAGE) RUN_DATE=$(RUN_DATE) DATA_DIR=$(DATA_DIR)"
	@echo "             OUTPUT_DIR=$(OUTPUT_DIR) DATE= SNAPSHOT= OUTPUT_TABLE= (default notebooks.<notebook>) DIR= (new-model)"
	@echo "             TEST_WORKERS=$(TEST_WORKERS) (test, test-fast: parallel workers; 0: one process)"
	@echo "             in AWS: GITHUB_REPO= or STACK_NAME=, TO= ACCEPT= (rollback, promote), RELEASE= COMMENT= (approve, reject)"
	@echo "             ENV=staging|production: the environment's stack, settings.yml environments.<ENV> (deploy, deploy-plan,"
	@echo "             status, runs, versions, rollback, promote, approve, reject, run-remote, backfill, pause, resume, delete)"

.PHONY: docker
docker: ## make sure a Docker engine answers (installs and starts one as root on Debian)
	@scripts/ensure-docker.sh

.PHONY: runner
runner: docker ## build the runner image RUNNER (this checkout's VERSION) from the runner's own files
	@echo "building the runner $(RUNNER)" && scripts/build.sh runner $(RUNNER)

.PHONY: build
build: runner ## build the model image IMAGE from MODEL_DIR with the runner's recipe (no file of the model's decides how)
	@echo "building $(IMAGE) from $(MODEL_DIR) on $(RUNNER)" && \
	NOTEBOOK=$(NOTEBOOK) GIT_COMMIT=$(GIT_COMMIT) scripts/build.sh model $(RUNNER) "$(MODEL_DIR)" $(IMAGE)

.PHONY: new-model
new-model: ## write a model repository, ready to run, into DIR=../my-model (make run MODEL_DIR=../my-model)
	@scripts/new-model.sh "$(DIR)"

# The output folder is mounted at its own path, so the table's files (whose metadata names them by absolute
# path) read the same on this machine as in the container: pandas, DuckDB or PyIceberg here open it as is.
OUTPUT_ABS := $(abspath $(OUTPUT_DIR))
TABLE_DOCKER = docker run --rm $(FARGATE) $(RUNNER_USER) -v "$(OUTPUT_ABS)":"$(OUTPUT_ABS)" -e OUTPUT_URI="$(OUTPUT_ABS)" \
	-e NOTEBOOK=$(NOTEBOOK) $(if $(OUTPUT_TABLE),-e OUTPUT_TABLE=$(OUTPUT_TABLE))

# The data: DATA_DIR, a local folder mounted read-only, or DATA_URI=s3://bucket/prefix (the model's own data
# lake), read with your AWS credentials from the environment (AWS_PROFILE is not read: export the keys).
DATA_URI   ?=
DATA_OPTIONS = $(if $(DATA_URI),-e DATA_URI=$(DATA_URI) -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY -e AWS_SESSION_TOKEN \
	-e AWS_REGION -e AWS_DEFAULT_REGION,-v "$(abspath $(DATA_DIR))":/data/lake:ro -e DATA_URI=/data/lake)

# A model's sample lake and output folder, when they are its own, must not lead out of it (symbolic links).
.PHONY: local-folders
local-folders: ## check that MODEL_DIR's sample lake and output lead nowhere outside it (make run does first)
	@scripts/build.sh local-folders "$(MODEL_DIR)" "$(DATA_DIR)" "$(OUTPUT_DIR)"

.PHONY: run
run: local-folders build ## run MODEL_DIR's notebook for RUN_DATE on DATA_DIR (the bundled sample) or DATA_URI into the table in OUTPUT_DIR
	@mkdir -p $(OUTPUT_DIR)
	@$(if $(RUNNER_USER),,chown -h 10001 $(OUTPUT_DIR) &&) echo "running $(NOTEBOOK) for $(RUN_DATE) on $(or $(DATA_URI),$(DATA_DIR))"
	@rc=0; $(TABLE_DOCKER) $(DATA_OPTIONS) -e RUN_DATE=$(RUN_DATE) $(IMAGE) || rc=$$?; \
	echo; echo "table:   $(OUTPUT_DIR)/ (catalog $(OUTPUT_DIR)/_catalog/iceberg.db; its day $(RUN_DATE) changes only if the check passed)"; \
	echo "history: make history DATE=$(RUN_DATE)$(if $(filter-out .,$(MODEL_DIR)), MODEL_DIR=$(MODEL_DIR))"; \
	echo "reports: $(OUTPUT_DIR)/_runs/date=$(RUN_DATE)/<run id>/ ($(basename $(NOTEBOOK)).html, manifest.json, check.txt)"; \
	exit $$rc

.PHONY: history
history: ## list the versions of DATE=YYYY-MM-DD in the table in OUTPUT_DIR, one per run (* = what it holds now)
	@test -n "$(DATE)" || { echo "make history: give the day, e.g. make history DATE=$(RUN_DATE)" >&2; exit 2; }
	@docker image inspect $(IMAGE) >/dev/null 2>&1 || $(MAKE) --no-print-directory build >&2
	@$(TABLE_DOCKER) $(IMAGE) history --date "$(DATE)"

.PHONY: restore
restore: ## put DATE's version SNAPSHOT= (from make history) back in the table in OUTPUT_DIR, as a new commit
	@test -n "$(DATE)" -a -n "$(SNAPSHOT)" || { echo "make restore: give DATE=YYYY-MM-DD and SNAPSHOT=<id from make history DATE=...>" >&2; exit 2; }
	@docker image inspect $(IMAGE) >/dev/null 2>&1 || $(MAKE) --no-print-directory build >&2
	@$(TABLE_DOCKER) $(IMAGE) restore --date "$(DATE)" --snapshot "$(SNAPSHOT)"

$(BIN)/.installed: requirements-dev.txt requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

.PHONY: venv
venv: $(BIN)/.installed ## create .venv with the pinned test and lint tools

.PHONY: test
test: venv .venv-awscli/.installed ## run the test suite (builds the images, starts moto and a local registry, reads reports in chromium; needs Docker)
	@scripts/ensure-docker.sh --registry
	@[ -n "$${CHROMIUM:-}" ] || scripts/ensure-chromium.sh
	@BASE_IMAGE=$$(scripts/base-image.sh) AWS_CLI=$(CURDIR)/.venv-awscli/bin/aws $(BIN)/pytest \
		$(WORKERS)

# The inner loop: the tests tests/conftest.py marks with none of docker, aws (a moto server), browser, lint.
.PHONY: test-fast
test-fast: venv .venv-awscli/.installed ## the fast lane: every test that needs no Docker, moto server, browser or linter (pytest --fast; no Docker needed)
	@AWS_CLI=$(CURDIR)/.venv-awscli/bin/aws $(BIN)/pytest --fast $(WORKERS)

.PHONY: lint
lint: lint-hadolint lint-shellcheck lint-ruff lint-cfn lint-checkov lint-taskcat ## run every linter

.PHONY: lint-hadolint
lint-hadolint: venv ## lint the Dockerfile
	$(BIN)/hadolint Dockerfile runner/model.Dockerfile

.PHONY: lint-shellcheck
lint-shellcheck: venv ## lint the shell scripts
	$(BIN)/shellcheck -x run_notebook.sh scripts/*.sh .ci/run

.PHONY: lint-cfn
lint-cfn: venv ## lint the CloudFormation templates (settings in .cfnlintrc)
	$(BIN)/cfn-lint

# checkov, taskcat and the AWS CLI each get a venv of their own: their pins clash with the test tools'.
.venv-%/.installed: scripts/requirements-%.txt
	@test -x .venv-$*/bin/python || $(PYTHON) -m venv .venv-$*
	@.venv-$*/bin/python -m pip install --quiet --disable-pip-version-check -r $<
	@touch $@

.PHONY: lint-checkov
lint-checkov: .venv-checkov/.installed ## scan the template and the Dockerfile (skips are on their resources)
	BC_SKIP_MAPPING=TRUE .venv-checkov/bin/checkov --quiet --compact --framework cloudformation dockerfile \
		-f template/pipeline.yaml -f template/platform.yaml -f Dockerfile -f runner/model.Dockerfile

.PHONY: lint-taskcat
lint-taskcat: .venv-taskcat/.installed ## taskcat's lint of the templates .taskcat.yml names
	.venv-taskcat/bin/taskcat lint

.PHONY: test-aws
test-aws: .venv-taskcat/.installed ## deploy the template in your AWS account with taskcat, then delete it
	.venv-taskcat/bin/taskcat test run

.PHONY: lint-ruff
lint-ruff: venv ## lint the Python code
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

.PHONY: bench
bench: venv docker ## image size and the runner's overhead, before (BENCH_BEFORE, default 8ebfa47) and after, with a run's timeline; ALL=1 adds build times, cost, publish and the pipeline stages (figures for README)
	@BASE_IMAGE=$$(scripts/base-image.sh) $(BIN)/python bench/bench.py $(if $(value ALL),--all)

.PHONY: lock
lock: docker ## re-pin runner/requirements.txt from runner/requirements.in, in the base image's Python
	@base=$$(scripts/base-image.sh) && docker run --rm -v "$(CURDIR)/runner":/runner:ro "$$base" sh -c \
		'python3 -m venv /tmp/v && /tmp/v/bin/pip install -q -r /runner/requirements.in >&2 && /tmp/v/bin/pip freeze' \
		| { sed -n 1p runner/requirements.txt; cat; } > runner/requirements.txt.new
	@mv runner/requirements.txt.new runner/requirements.txt && echo "runner/requirements.txt re-pinned"

# --- the CI/CD pipeline in AWS (template/pipeline.yaml) ---------------------------------------------
# The model's settings come from MODEL_DIR's settings.yml when MODEL_DIR= is given, else this checkout's
# (SETTINGS_FILE= for another), read with the venv's PyYAML and held to platform.yml's bounds (PLATFORM_FILE=
# for another). Only this checkout's code runs, by absolute path, whatever the current folder: a model's
# checkout is read as data, and its scripts, runner, .venv or Makefile never run. ENV=staging|production names
# one of the model's environments (settings.yml environments.<ENV>), its own stack, for every target below: make
# passes it, as every variable given on its command line, in the scripts' environment.
DEPLOY_VENV = $(MAKE) -s --no-print-directory -C "$(PLATFORM_DIR)" venv
DEPLOY = SETTINGS_PYTHON="$(PLATFORM_DIR)/$(BIN)/python" "$(PLATFORM_DIR)/scripts/pipeline.sh"
.PHONY: deploy
deploy: ## deploy or update a model's pipeline and daily run: GITHUB_REPO=owner/name [ENV=staging|production: the environment's stack, settings.yml environments.<ENV>; MODEL_DIR=../model (default: this checkout's settings.yml); SETTINGS_FILE=path; PLATFORM_FILE=path; a variable such as DATA_LAKE_BUCKET= OUTPUT_BUCKET= SCHEDULE= TASK_MEMORY= SUBNETS= overrides the file's value]
	@$(DEPLOY_VENV)
	@$(DEPLOY) deploy

.PHONY: deploy-plan
deploy-plan: ## the change set `make deploy` would execute, created but not executed (same settings and variables; PARAMETER_FILE=path keeps the parameters it passes)
	@$(DEPLOY_VENV)
	@$(DEPLOY) plan

.PHONY: status
status: ## the stack's status and the pipeline's last execution (GITHUB_REPO= [ENV=] or STACK_NAME=)
	@scripts/pipeline.sh status

.PHONY: run-remote
run-remote: ## start one run on AWS now, for DATE=YYYY-MM-DD (GITHUB_REPO= [ENV=] or STACK_NAME=); prints where it writes
	@scripts/runs.sh run-remote

.PHONY: backfill
backfill: ## one run per day FROM=YYYY-MM-DD TO=YYYY-MM-DD [PARALLEL=1], waiting for each; reports failed days
	@scripts/runs.sh backfill

.PHONY: runs
runs: ## list the runs, one line each (status, exit code, failing step, rows, duration, version, report), newest first by run date then start, from their manifests stored in the last DAYS=30 days (1-366; S3's LastModified, a file's mtime): GITHUB_REPO= [ENV=] or STACK_NAME=, or OUTPUT_URI=output|s3://... (its _runs/; REPORT_URI= for another)
	@scripts/runs.sh list

.PHONY: pause
pause: ## pause the daily schedule (GITHUB_REPO= [ENV=] or STACK_NAME=); nothing else changes
	@scripts/pipeline.sh pause

.PHONY: resume
resume: ## resume the daily schedule (GITHUB_REPO= [ENV=] or STACK_NAME=)
	@scripts/pipeline.sh resume

# --- a model's versions (template/pipeline.yaml's VersionsBucket and PromoteProject) ----------------
.PHONY: versions
versions: ## list the model's validated versions, newest first, * = the one the daily runs use (GITHUB_REPO= [ENV=] or STACK_NAME=)
	@scripts/releases.sh versions
.PHONY: rollback
rollback: ## make the daily runs use an earlier promoted version TO=<version, commit or digest>, through the promote project (mailed)
	@scripts/releases.sh rollback
.PHONY: promote
promote: ## make the daily runs use validated version TO=<version, commit or digest> [ACCEPT=figure,... its comparison crossed] (mailed)
	@scripts/releases.sh promote
.PHONY: approve
approve: ## approve version RELEASE=n, waiting for a person (promotion.approval: required) [COMMENT=...]; it is promoted
	@scripts/releases.sh approve
.PHONY: reject
reject: ## reject version RELEASE=n, waiting for a person [COMMENT=...]; nothing is promoted
	@scripts/releases.sh reject

.PHONY: delete
delete: ## delete the pipeline stack (GITHUB_REPO= [ENV=] or STACK_NAME=); the artifact bucket is kept
	@scripts/pipeline.sh delete

# --- the platform in AWS (template/platform.yaml): the versioned runner every model builds FROM -----
.PHONY: deploy-platform
deploy-platform: ## deploy or update the platform stack: GITHUB_REPO=owner/name of this repository [PLATFORM_STACK= NOTIFICATION_EMAILS=a@b,c@d CONNECTION_ARN=]
	@scripts/platform.sh deploy

.PHONY: publish-runner
publish-runner: docker ## build, smoke-run and publish the runner version in VERSION (refused if published: bump VERSION) [PLATFORM_STACK=]
	@scripts/platform.sh publish

.PHONY: models
models: ## list the platform's model stacks: repository, runner, promoted commit [PLATFORM_STACK=]
	@scripts/platform.sh models

# What a notebook left in a local staging folder belongs to the notebook's user (10002): the image removes it.
.PHONY: clean
clean: ## remove the output folder, the venvs and the local model and runner images
	@test ! -d $(OUTPUT_DIR) || rm -rf $(OUTPUT_DIR) 2>/dev/null || docker run --rm -v "$(OUTPUT_ABS)":/output \
		--entrypoint /bin/rm $(IMAGE) -rf /output/_runs
	rm -rf $(OUTPUT_DIR) $(VENV) .venv-checkov .venv-taskcat .venv-awscli .pytest_cache .ruff_cache
	-docker image rm $(IMAGE) $(RUNNER) 2>/dev/null
