# notebook-pipeline: build and run the notebook runner image, test and lint it.
# `make` alone lists the targets.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --warn-undefined-variables --no-builtin-rules

IMAGE      ?= notebook-runner:local
NOTEBOOK   ?= usp.ipynb
RUN_DATE   ?= 2019-08-01
DATA_DIR   ?= sample/lake
OUTPUT_DIR ?= output
DATE       ?=
SNAPSHOT   ?=
OUTPUT_TABLE ?=
PYTHON     ?= python3
VENV       := .venv
BIN        := $(VENV)/bin
GIT_COMMIT := $(shell git rev-parse --short HEAD 2>/dev/null || echo dev)
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
	@echo "  variables: IMAGE=$(IMAGE) NOTEBOOK=$(NOTEBOOK) RUN_DATE=$(RUN_DATE) DATA_DIR=$(DATA_DIR) OUTPUT_DIR=$(OUTPUT_DIR) DATE= SNAPSHOT= OUTPUT_TABLE= (default notebooks.<notebook>)"

.PHONY: docker
docker: ## make sure a Docker engine answers (installs and starts one as root on Debian)
	@scripts/ensure-docker.sh

.PHONY: build
build: docker ## build the runner image (on a stand-in base when no registry answers)
	@base=$$(scripts/base-image.sh) && echo "building $(IMAGE) on $$base" && \
	docker build --build-arg BASE_IMAGE="$$base" --build-arg NOTEBOOK=$(NOTEBOOK) \
		--build-arg IMAGE_NAME=$(firstword $(subst :, ,$(IMAGE))) --build-arg GIT_COMMIT=$(GIT_COMMIT) -t $(IMAGE) .

# The output folder is mounted at its own path, so the table's files (whose metadata names them by absolute
# path) read the same on this machine as in the container: pandas, DuckDB or PyIceberg here open it as is.
OUTPUT_ABS := $(abspath $(OUTPUT_DIR))
TABLE_DOCKER = docker run --rm $(FARGATE) $(RUNNER_USER) -v "$(OUTPUT_ABS)":"$(OUTPUT_ABS)" -e OUTPUT_URI="$(OUTPUT_ABS)" \
	-e NOTEBOOK=$(NOTEBOOK) $(if $(OUTPUT_TABLE),-e OUTPUT_TABLE=$(OUTPUT_TABLE))

.PHONY: run
run: build ## run NOTEBOOK for RUN_DATE on DATA_DIR (the bundled sample) into the table in OUTPUT_DIR
	@mkdir -p $(OUTPUT_DIR)
	@$(if $(RUNNER_USER),,chown 10001 $(OUTPUT_DIR) &&) echo "running $(NOTEBOOK) for $(RUN_DATE) on $(DATA_DIR)"
	@rc=0; $(TABLE_DOCKER) -v "$(abspath $(DATA_DIR))":/data/lake:ro \
		-e DATA_URI=/data/lake -e RUN_DATE=$(RUN_DATE) $(IMAGE) || rc=$$?; \
	echo; echo "table:   $(OUTPUT_DIR)/ (catalog $(OUTPUT_DIR)/_catalog/iceberg.db; its day $(RUN_DATE) changes only if the check passed)"; \
	echo "history: make history DATE=$(RUN_DATE)"; \
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
test: venv ## run the test suite (builds the image, starts moto and a local registry; needs Docker)
	@scripts/ensure-docker.sh --registry
	@BASE_IMAGE=$$(scripts/base-image.sh) $(BIN)/pytest

.PHONY: lint
lint: lint-hadolint lint-shellcheck lint-ruff lint-cfn lint-checkov lint-taskcat ## run every linter

.PHONY: lint-hadolint
lint-hadolint: venv ## lint the Dockerfile
	$(BIN)/hadolint Dockerfile

.PHONY: lint-shellcheck
lint-shellcheck: venv ## lint the shell scripts
	$(BIN)/shellcheck -x run_notebook.sh scripts/*.sh .ci/run

.PHONY: lint-cfn
lint-cfn: venv ## lint the CloudFormation templates (settings in .cfnlintrc)
	$(BIN)/cfn-lint

# checkov and taskcat each get a venv of their own: their pins clash with the test tools'.
.venv-%/.installed: scripts/requirements-%.txt
	@test -x .venv-$*/bin/python || $(PYTHON) -m venv .venv-$*
	@.venv-$*/bin/python -m pip install --quiet --disable-pip-version-check -r $<
	@touch $@

.PHONY: lint-checkov
lint-checkov: .venv-checkov/.installed ## scan the template and the Dockerfile (skips are on their resources)
	BC_SKIP_MAPPING=TRUE .venv-checkov/bin/checkov --quiet --compact --framework cloudformation dockerfile \
		-f template/pipeline.yaml -f Dockerfile

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
bench: venv build ## measure image size, build times, the runner's overhead and the pipeline stages (figures for README)
	@BASE_IMAGE=$$(scripts/base-image.sh) $(BIN)/python bench/bench.py

.PHONY: lock
lock: docker ## re-pin runner/requirements.txt from runner/requirements.in, in the base image's Python
	@base=$$(scripts/base-image.sh) && docker run --rm -v "$(CURDIR)/runner":/runner:ro "$$base" sh -c \
		'python3 -m venv /tmp/v && /tmp/v/bin/pip install -q -r /runner/requirements.in >&2 && /tmp/v/bin/pip freeze' \
		| { sed -n 1p runner/requirements.txt; cat; } > runner/requirements.txt.new
	@mv runner/requirements.txt.new runner/requirements.txt && echo "runner/requirements.txt re-pinned"

# --- the CI/CD pipeline in AWS (template/pipeline.yaml) ---------------------------------------------
# The model's settings come from settings.yml (SETTINGS_FILE= for another), read with the venv's PyYAML.
.PHONY: deploy
deploy: venv ## deploy or update the pipeline and its daily run with settings.yml: GITHUB_REPO=owner/name [SETTINGS_FILE=path; a variable such as DATA_LAKE_BUCKET= OUTPUT_BUCKET= SCHEDULE= TASK_MEMORY= SUBNETS= overrides the file's value]
	@SETTINGS_PYTHON=$(BIN)/python scripts/pipeline.sh deploy

.PHONY: deploy-plan
deploy-plan: venv ## the change set `make deploy` would execute, created but not executed (same settings and variables)
	@SETTINGS_PYTHON=$(BIN)/python scripts/pipeline.sh plan

.PHONY: status
status: ## the stack's status and the pipeline's last execution (GITHUB_REPO= or STACK_NAME=)
	@scripts/pipeline.sh status

.PHONY: run-remote
run-remote: ## start one run on AWS now, for DATE=YYYY-MM-DD (GITHUB_REPO= or STACK_NAME=); prints where it writes
	@scripts/runs.sh run-remote

.PHONY: backfill
backfill: ## one run per day FROM=YYYY-MM-DD TO=YYYY-MM-DD [PARALLEL=1], waiting for each; reports failed days
	@scripts/runs.sh backfill

.PHONY: pause
pause: ## pause the daily schedule (GITHUB_REPO= or STACK_NAME=); nothing else changes
	@scripts/pipeline.sh pause

.PHONY: resume
resume: ## resume the daily schedule (GITHUB_REPO= or STACK_NAME=)
	@scripts/pipeline.sh resume

.PHONY: delete
delete: ## delete the pipeline stack (GITHUB_REPO= or STACK_NAME=); the artifact bucket is kept
	@scripts/pipeline.sh delete

# What a notebook left in a local staging folder belongs to the notebook's user (10002): the image removes it.
.PHONY: clean
clean: ## remove the output folder, the venv and the local image
	@test ! -d $(OUTPUT_DIR) || rm -rf $(OUTPUT_DIR) 2>/dev/null || docker run --rm -v "$(OUTPUT_ABS)":/output \
		--entrypoint /bin/rm $(IMAGE) -rf /output/_runs
	rm -rf $(OUTPUT_DIR) $(VENV) .venv-checkov .venv-taskcat .pytest_cache .ruff_cache
	-docker image rm $(IMAGE) 2>/dev/null
