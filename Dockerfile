# The notebook runner image: a data scientist's notebook, its check and their requirements, run by
# run_notebook.sh (papermill -> check -> publish). Generic: any repository with a notebook, a check script
# and a requirements.txt builds with this file unchanged. Layers go from the least to the most often
# changed, so a notebook-only change rebuilds just the last steps.
#
#   docker build --build-arg NOTEBOOK=usp.ipynb -t notebook-runner .
#
# Three stages. `platform`: the two users and the runner's own locked Python environment. `notebook-env`:
# the notebook's environment, /opt/venv, where its requirements install; whatever a requirement runs while
# it builds (as root, in that stage) stays in that stage. The image: the platform, /opt/venv copied from
# that stage and nothing else of it, the runner's code and the project in /app.
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

# --- the notebook's environment: untrusted builds happen here, and stay here --------------------------
FROM platform AS notebook-env
ENV PATH=/opt/venv/bin:$PATH
# The kernel and boto3, pinned to the runner's lock; pyarrow from the platform's shared folder.
RUN python3 -m venv /opt/venv \
    && echo /opt/notebook-runner/shared > "$(echo /opt/venv/lib/python3*/site-packages)/notebook-runner-shared.pth" \
    && pip install --no-cache-dir -c /opt/notebook-runner/runner/requirements.txt ipykernel boto3 \
    && find /opt/venv/lib -depth -type d -path '*/site-packages/*' \( -name tests -o -name test \) -exec rm -rf {} +
# The notebook's own requirements: rebuilt only when requirements.txt changes. Test suites that wheels ship
# are never imported by a run.
COPY requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir -r /tmp/requirements.txt \
    && find /opt/venv/lib -depth -type d -path '*/site-packages/*' \( -name tests -o -name test \) -exec rm -rf {} +

# --- the image ---------------------------------------------------------------------------------------------
FROM platform
# /opt/venv alone, owned by root: nothing else a requirement's build did reaches the image.
COPY --from=notebook-env --chown=0:0 /opt/venv /opt/venv
COPY run_notebook.sh /opt/notebook-runner/run_notebook.sh
COPY runner/*.py /opt/notebook-runner/runner/

# The project itself (notebook, check script, the files they read); .dockerignore keeps the rest out.
# Owned by root and read-only for both users: the image's code cannot be changed by the notebook. A setuid
# or setgid bit that came with /opt/venv or the project is dropped. This stage runs, as root, only programs
# named by their absolute path (/opt/venv/bin holds what the requirements installed).
COPY . /app
RUN ["/usr/bin/find", "/opt/venv", "/app", "-xdev", "-perm", "/6000", "-type", "f", "-exec", "/bin/chmod", "ug-s", "{}", "+"]

ARG NOTEBOOK=usp.ipynb
ARG IMAGE_NAME=notebook-runner
ARG GIT_COMMIT=dev
ENV NOTEBOOK=${NOTEBOOK} \
    RUNNER_IMAGE=${IMAGE_NAME}:${GIT_COMMIT} \
    RUNNER_COMMIT=${GIT_COMMIT}
LABEL org.opencontainers.image.revision=${GIT_COMMIT}

# The run's scratch space. On Fargate the task mounts task storage here over a read-only root; ECS
# gives such a mount the image's permissions only for a path declared VOLUME (root-owned 0755 otherwise,
# which the non-root users could not write), so /tmp keeps its sticky, world-writable mode.
VOLUME ["/tmp"]

# The container starts as root only to drop it: run_notebook.sh hands over at once to the runner user,
# keeping SETUID, SETGID and KILL (to start and stop the notebook's user) and nothing else.
# checkov:skip=CKV_DOCKER_3: the entrypoint drops root before any code of the run starts (setpriv to the runner user, no_new_privs)
WORKDIR /app
# A batch job, not a service: there is nothing to probe while it runs.
HEALTHCHECK NONE
ENTRYPOINT ["/opt/notebook-runner/run_notebook.sh"]
