# The runner image: the platform's trusted step (run_notebook.sh and runner/, its own locked Python
# environment), the kernel's packages, and the recipe every model image is built with. Versioned (VERSION)
# and published by the platform (make publish-runner); a model's image never comes from this file but from
# the recipe inside the runner (runner/model.Dockerfile, at /opt/notebook-runner/model.Dockerfile), which
# builds FROM the runner by digest and adds only /opt/venv (the model's requirements) and /app (its files).
#
#   docker build --target runner --build-arg RUNNER_VERSION=$(cat VERSION) -t notebook-runner:$(cat VERSION) .
#
# Two stages. `platform`: the two users and the runner's own locked Python environment. `runner`: the
# notebook's environment skeleton (/opt/venv, no package of its own: the kernel's packages and pyarrow are
# read-only folders of the platform it finds through a .pth file), the runner's code and the recipe.
#
# BASE_IMAGE: ECR Public's mirror of the official image avoids Docker Hub's pull limits in CodeBuild.
ARG BASE_IMAGE=public.ecr.aws/docker/library/python:3.11-slim-bookworm
# checkov:skip=CKV_DOCKER_7: the base is BASE_IMAGE, whose default above is a versioned tag, not latest
FROM ${BASE_IMAGE} AS platform

LABEL org.opencontainers.image.title="notebook-runner" \
      org.opencontainers.image.description="Runs a parameterised Jupyter notebook, checks and publishes its output"

# The notebook's environment, /opt/venv, is on the PATH of the notebook's processes only (the runner puts it
# there): its bin/ holds what the notebook's requirements installed, which nothing else may run by name.
ENV VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PROJECT_DIR=/app

# Two users. `runner` (10001) runs the trusted step; `notebook` (10002) runs the kernel, every process it
# starts and the check, with a home made for each run. The runner's home is the image's, root's and
# empty: nothing the notebook writes is ever configuration the runner reads.
RUN groupadd --gid 10001 runner \
    && useradd --uid 10001 --gid runner --no-create-home --home-dir /home/runner --shell /usr/sbin/nologin runner \
    && groupadd --gid 10002 notebook \
    && useradd --uid 10002 --gid notebook --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin notebook \
    && install -d -o root -g root -m 0755 /home/runner \
    && python3 -m venv /opt/notebook-runner/venv

# The runner's own environment (papermill, nbconvert, boto3, PyIceberg), locked, is the runner's alone.
# The kernel's stack (IPython, its debugger and completion) is left out of it: the kernel runs in
# /opt/venv. The output table's library (PyIceberg and what it needs) is trimmed of what a run never
# loads: the debug symbols of its compiled modules (binutils' strip, removed again in this layer),
# zstandard's second (cffi) backend, the Hive catalog's Thrift client, SQLAlchemy's dialects but SQLite's,
# PyIceberg's command line, and bytecode caches; `make bench` measures the growth. Its pyarrow is shared
# with the notebook's environment, read-only: /opt/notebook-runner/shared holds it as hard links (stored
# once), and /opt/venv finds it there unless the notebook's requirements install another pyarrow.
# No file keeps a setuid or setgid bit: nothing in the container can gain privileges.
COPY runner/requirements.txt /opt/notebook-runner/runner/requirements.txt
RUN apt-get update \
    && apt-get install --yes --no-install-recommends binutils=2.40-2 \
    && /opt/notebook-runner/venv/bin/pip install --no-cache-dir -r /opt/notebook-runner/runner/requirements.txt \
    && /opt/notebook-runner/venv/bin/pip uninstall --yes --quiet ipykernel ipython ipython_pygments_lexers jedi parso \
        debugpy matplotlib-inline comm stack_data executing asttokens pure_eval prompt_toolkit wcwidth decorator \
        pexpect ptyprocess \
    && /opt/notebook-runner/venv/bin/pip check \
    && /opt/notebook-runner/venv/bin/pip uninstall --yes --quiet pip \
    && find /opt/notebook-runner/venv/lib -depth -type d -path '*/site-packages/*' \( -name tests -o -name test \) -exec rm -rf {} + \
    && site=$(echo /opt/notebook-runner/venv/lib/python3*/site-packages) \
    && rm -rf "$site"/hive_metastore "$site"/zstandard/_cffi.*.so "$site"/sqlalchemy/dialects/postgresql \
        "$site"/sqlalchemy/dialects/mysql "$site"/sqlalchemy/dialects/oracle "$site"/sqlalchemy/dialects/mssql \
        "$site"/pyiceberg/cli /opt/notebook-runner/venv/bin/pyiceberg "$site"/distutils-precedence.pth \
    && find "$site"/pyiceberg "$site"/sqlalchemy "$site"/zstandard "$site"/pydantic_core "$site"/pyroaring* "$site"/mmh3* \
        -name '*.so' -exec strip --strip-unneeded {} + \
    && find "$site"/pyiceberg "$site"/sqlalchemy "$site"/pydantic "$site"/pydantic_core "$site"/rich "$site"/fsspec \
        "$site"/strictyaml "$site"/pyparsing "$site"/markdown_it -depth -name __pycache__ -exec rm -rf {} + \
    && mkdir /opt/notebook-runner/shared \
    && cp -al "$site"/pyarrow "$site"/pyarrow-*.dist-info /opt/notebook-runner/shared/ \
    && apt-get purge --yes --auto-remove binutils \
    && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log \
    && find / -xdev -perm /6000 -type f -exec chmod ug-s {} +

# --- the runner image ---------------------------------------------------------------------------------
FROM platform AS runner
# The notebook's environment, /opt/venv: a virtual environment without pip or any package of its own. Its
# .pth file puts the kernel's packages (ipykernel and boto3, pinned to the runner's lock, in
# /opt/notebook-runner/kernel) and the platform's pyarrow (/opt/notebook-runner/shared) on its path, after its
# own site-packages: a model's requirements install into /opt/venv and win over both, and a model image
# carries only what its requirements added. pip runs from a throwaway environment of this stage's.
RUN python3 -m venv --without-pip /opt/venv \
    && printf '%s\n' /opt/notebook-runner/kernel /opt/notebook-runner/shared \
        > "$(echo /opt/venv/lib/python3*/site-packages)/notebook-runner.pth" \
    && python3 -m venv /tmp/pip \
    && /tmp/pip/bin/pip install --no-cache-dir --quiet --target /opt/notebook-runner/kernel \
        -c /opt/notebook-runner/runner/requirements.txt ipykernel boto3 \
    && rm -rf /tmp/pip /opt/notebook-runner/kernel/bin \
    && find /opt/notebook-runner/kernel -depth -type d \( -name tests -o -name test -o -name __pycache__ \) -exec rm -rf {} + \
    && find /opt/notebook-runner/kernel /opt/venv -xdev -perm /6000 -type f -exec chmod ug-s {} +

COPY run_notebook.sh /opt/notebook-runner/run_notebook.sh
COPY runner/*.py /opt/notebook-runner/runner/
# the report page's cells (runner/page.py): JupyterLab's markup, no script
COPY runner/templates /opt/notebook-runner/runner/templates/
# The recipe of every model image, and the runner's version (VERSION, the one place it is written; the
# build argument that labels the image must agree with it).
COPY runner/model.Dockerfile VERSION /opt/notebook-runner/
ARG RUNNER_VERSION=unset
RUN test "$(cat /opt/notebook-runner/VERSION)" = "$RUNNER_VERSION" \
    || { echo "RUNNER_VERSION=${RUNNER_VERSION} is not VERSION's $(cat /opt/notebook-runner/VERSION): build with --build-arg RUNNER_VERSION=\$(cat VERSION)" >&2; exit 1; }
LABEL org.opencontainers.image.version=${RUNNER_VERSION}
ENV NOTEBOOK_RUNNER_VERSION=${RUNNER_VERSION}

# The run's scratch space. On Fargate the task mounts task storage here over a read-only root; ECS
# gives such a mount the image's permissions only for a path declared VOLUME (root-owned 0755 otherwise,
# which the non-root users could not write), so /tmp keeps its sticky, world-writable mode.
VOLUME ["/tmp"]

# The container starts as root only to drop it: run_notebook.sh hands over at once to the runner user,
# keeping SETUID, SETGID and KILL (to start and stop the notebook's user) and nothing else.
# checkov:skip=CKV_DOCKER_3: the entrypoint drops root before any code of the run starts (setpriv to the runner user, no_new_privs)
# /app, the model's files, is root's and empty here: the recipe copies the model into it.
WORKDIR /app
# A batch job, not a service: there is nothing to probe while it runs.
HEALTHCHECK NONE
ENTRYPOINT ["/opt/notebook-runner/run_notebook.sh"]
