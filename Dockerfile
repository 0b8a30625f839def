# The notebook runner image: a data scientist's notebook, its check and their requirements, run by
# run_notebook.sh (papermill -> check -> publish). Generic: any repository with a notebook, a check script
# and a requirements.txt builds with this file unchanged. Layers go from the least to the most often
# changed, so a notebook-only change rebuilds just the last COPY.
#
#   docker build --build-arg NOTEBOOK=usp.ipynb -t notebook-runner .
#
# BASE_IMAGE: ECR Public's mirror of the official image avoids Docker Hub's pull limits in CodeBuild.
ARG BASE_IMAGE=public.ecr.aws/docker/library/python:3.11-slim-bookworm
# checkov:skip=CKV_DOCKER_7: the base is BASE_IMAGE, whose default above is a versioned tag, not latest
FROM ${BASE_IMAGE}

LABEL org.opencontainers.image.title="notebook-runner" \
      org.opencontainers.image.description="Runs a parameterised Jupyter notebook, checks and publishes its output"

ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PROJECT_DIR=/app

# A fixed, non-root user: the image never runs notebooks as root.
RUN useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin runner \
    && python3 -m venv /opt/notebook-runner/venv \
    && python3 -m venv /opt/venv

# Two Python environments. The runner's own (papermill, nbconvert, boto3), locked, is the runner's alone:
# nothing the notebook's requirements install can replace its packages or run inside it (a package's .pth
# file runs at every start of its interpreter). The notebook's (/opt/venv, on PATH) holds the kernel and
# boto3, pinned to the runner's lock, and the notebook's requirements; its kernel spec is where the runner's
# jupyter_client finds it, so the notebook runs there whatever kernel it was saved with.
COPY runner/requirements.txt /opt/notebook-runner/runner/requirements.txt
# The kernel's own stack (IPython, its debugger and completion) runs in /opt/venv only: it leaves the runner's.
# pyarrow, which the runner writes the output table with, goes into both at the lock's version, and each
# identical file is stored once (a hard link): a notebook that pins the same pyarrow costs nothing more.
# The output table's library (PyIceberg and what it needs) is trimmed of what a run never loads: the
# debug symbols of its compiled modules (binutils' strip, removed again in this layer), zstandard's second
# (cffi) backend, the Hive catalog's Thrift client, SQLAlchemy's dialects but SQLite's, PyIceberg's
# command line, and bytecode caches; `make bench` measures the growth.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends binutils=2.40-2 \
    && /opt/notebook-runner/venv/bin/pip install --no-cache-dir -r /opt/notebook-runner/runner/requirements.txt \
    && pip install --no-cache-dir -c /opt/notebook-runner/runner/requirements.txt ipykernel boto3 pyarrow \
    && /opt/notebook-runner/venv/bin/pip uninstall --yes --quiet ipykernel ipython ipython_pygments_lexers jedi parso \
        debugpy matplotlib-inline comm stack_data executing asttokens pure_eval prompt_toolkit wcwidth decorator \
        pexpect ptyprocess \
    && /opt/notebook-runner/venv/bin/pip check \
    && /opt/notebook-runner/venv/bin/pip uninstall --yes --quiet pip \
    && python -m ipykernel install --prefix /opt/notebook-runner/venv --name python3 --display-name "Python 3 (notebook)" \
    && find /opt/venv/lib /opt/notebook-runner/venv/lib -depth -type d -path '*/site-packages/*' \( -name tests -o -name test \) -exec rm -rf {} + \
    && site=$(echo /opt/notebook-runner/venv/lib/python3*/site-packages) \
    && rm -rf "$site"/hive_metastore "$site"/zstandard/_cffi.*.so "$site"/sqlalchemy/dialects/postgresql \
        "$site"/sqlalchemy/dialects/mysql "$site"/sqlalchemy/dialects/oracle "$site"/sqlalchemy/dialects/mssql \
        "$site"/pyiceberg/cli /opt/notebook-runner/venv/bin/pyiceberg \
    && find "$site"/pyiceberg "$site"/sqlalchemy "$site"/zstandard "$site"/pydantic_core "$site"/pyroaring* "$site"/mmh3* \
        -name '*.so' -exec strip --strip-unneeded {} + \
    && find "$site"/pyiceberg "$site"/sqlalchemy "$site"/pydantic "$site"/pydantic_core "$site"/rich "$site"/fsspec \
        "$site"/strictyaml "$site"/pyparsing "$site"/markdown_it -depth -name __pycache__ -exec rm -rf {} + \
    && python3 -I -c 'import filecmp, os, sys; a, b = sys.argv[1:]; [(os.unlink(q), os.link(p, q)) for r, _, fs in os.walk(a) for p in (os.path.join(r, f) for f in fs) for q in [os.path.join(b, os.path.relpath(p, a))] if os.path.isfile(q) and not os.path.islink(q) and filecmp.cmp(p, q, shallow=False)]' \
        "$site/pyarrow" "$(echo /opt/venv/lib/python3*/site-packages/pyarrow)" \
    && apt-get purge --yes --auto-remove binutils \
    && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log

# The notebook's own requirements: rebuilt only when requirements.txt changes.
# Test suites that wheels ship are never imported by a run: they go in the same layer.
COPY requirements.txt /app/requirements.txt
RUN pip install --no-cache-dir -r /app/requirements.txt \
    && find /opt/venv/lib -depth -type d -path '*/site-packages/*' \( -name tests -o -name test \) -exec rm -rf {} +

COPY run_notebook.sh /opt/notebook-runner/run_notebook.sh
COPY runner/*.py /opt/notebook-runner/runner/

# The project itself (notebook, check script, the files they read); .dockerignore keeps the rest out.
# Owned by root and read-only for the runner: the image's code cannot be changed by the notebook.
COPY . /app

ARG NOTEBOOK=usp.ipynb
ARG IMAGE_NAME=notebook-runner
ARG GIT_COMMIT=dev
ENV NOTEBOOK=${NOTEBOOK} \
    RUNNER_IMAGE=${IMAGE_NAME}:${GIT_COMMIT} \
    RUNNER_COMMIT=${GIT_COMMIT}
LABEL org.opencontainers.image.revision=${GIT_COMMIT}

# The run's scratch space. On Fargate the task mounts task storage here over a read-only root; ECS
# gives such a mount the image's permissions only for a path declared VOLUME (root-owned 0755 otherwise,
# which the non-root user could not write), so /tmp keeps its sticky, world-writable mode.
VOLUME ["/tmp"]

USER 10001:10001
WORKDIR /app
# A batch job, not a service: there is nothing to probe while it runs.
HEALTHCHECK NONE
ENTRYPOINT ["/opt/notebook-runner/run_notebook.sh"]
