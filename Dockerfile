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

# Three users. `runner` (10001) runs the trusted step; `notebook` (10002) runs the kernel, every process it
# starts and the check, with a home made for each run; `reader` (10003) parses the checked copy's Parquet
# files for the runner while the check runs, out of the check's reach (runner/processes.py). The runner's
# home is the image's, root's and empty: nothing the notebook writes is ever configuration the runner reads.
RUN groupadd --gid 10001 runner \
    && useradd --uid 10001 --gid runner --no-create-home --home-dir /home/runner --shell /usr/sbin/nologin runner \
    && groupadd --gid 10002 notebook \
    && useradd --uid 10002 --gid notebook --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin notebook \
    && groupadd --gid 10003 reader \
    && useradd --uid 10003 --gid reader --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin reader \
    && install -d -o root -g root -m 0755 /home/runner

# The platform's Python packages, in one layer (a hard link, a deletion or a stripped file saves space only
# within the layer that made the file). Each trim below says what it saves (issue 20: 525 MB -> 415 MB on
# the stand-in base; `make bench` measures both):
#
# - The runner's own environment (papermill, nbconvert, boto3, PyIceberg), locked, is the runner's alone,
#   made without pip: pip and setuptools run from a throwaway environment (/tmp/pip, gone with this layer).
#   `venv` used to put them in the runner's environment, in a layer of their own: 21 MB no run used. The
#   kernel's stack (IPython, its debugger and completion) is left out of it.
# - The kernel's packages (ipykernel and boto3, pinned to the runner's lock) in /opt/notebook-runner/kernel,
#   which the notebook's environment finds through a .pth file (the `runner` stage). Left out of them:
#   debugpy (15 MB), the debugger a front end attaches to, which a run never does, and which cost each
#   kernel's start 0.25 s to import (the runner's kernel spec says there is no debugger); jedi and
#   parso (34 MB), completion, which a run never asks for (IPython completes without them). A model that
#   wants them lists them in its requirements.
# - The output table's library (PyIceberg and what it needs) trimmed of what a run never loads: zstandard's
#   second (cffi) backend, the Hive catalog's Thrift client, SQLAlchemy's dialects but SQLite's, PyIceberg's
#   command line. pyarrow trimmed of what only a C++ or Cython build against it reads (headers, .pxd, .pyx,
#   .pxi and C++ sources: 9 MB; the image has no compiler). Test suites that wheels ship, everywhere.
# - Every compiled module stripped of its symbol table (binutils' strip, removed again in this layer):
#   pyarrow's libraries lose 33 MB, the rest 3 MB; the dynamic symbols they link by stay.
# - A file the two environments share (the same locked version: botocore, pygments, tornado, pyzmq and the
#   rest of the kernel's stack) is stored once, as hard links (util-linux's hardlink): 34 MB, and 11 MB of
#   their bytecode; pyarrow's three copies of each libarrow_python library, once: 4 MB. Every file stays
#   root's and read-only to both users, and each environment finds each file at its own path: the runner
#   imports exactly what it did, and a requirement's build that writes to a shared file (as root, in the
#   recipe's model-env stage) changes only that stage's copy, never the image. pyarrow is shared the same
#   way: /opt/notebook-runner/shared holds it as hard links, on the notebook's path unless the notebook's
#   requirements install another pyarrow.
# - Bytecode compiled here, for both environments, the runner's own modules (below) and the interpreter's
#   library (the official image ships it without; the stand-in has it): no user may write beside the
#   modules, so Python compiled each module it imported at every start, each run: the kernel's imports took
#   0.35 s instead of 0.13 s, PyIceberg's 1.1 s instead of 0.4 s (`make bench`'s import table). Each tree
#   is compiled with its own folder stripped from the recorded path (Python records the real one as it
#   loads a module), so that a module both environments share compiles to the same bytes, stored once
#   (above). 44 MB of bytecode in all, 21 MB more than before.
# No file keeps a setuid or setgid bit: nothing in the container can gain privileges.
COPY runner/requirements.txt /opt/notebook-runner/runner/requirements.txt
RUN apt-get update \
    && apt-get install --yes --no-install-recommends binutils=2.40-2 \
    && python3 -m venv /tmp/pip \
    && python3 -m venv --without-pip /opt/notebook-runner/venv \
    && /tmp/pip/bin/pip --python /opt/notebook-runner/venv/bin/python install --no-cache-dir --no-compile --quiet \
        -r /opt/notebook-runner/runner/requirements.txt \
    && /tmp/pip/bin/pip --python /opt/notebook-runner/venv/bin/python uninstall --yes --quiet ipykernel ipython \
        ipython_pygments_lexers jedi parso debugpy matplotlib-inline comm stack_data executing asttokens pure_eval \
        prompt_toolkit wcwidth decorator pexpect ptyprocess \
    && /tmp/pip/bin/pip --python /opt/notebook-runner/venv/bin/python check \
    && /tmp/pip/bin/pip install --no-cache-dir --no-compile --quiet --target /opt/notebook-runner/kernel \
        -c /opt/notebook-runner/runner/requirements.txt ipykernel boto3 \
    && kernel=/opt/notebook-runner/kernel \
    && rm -rf /tmp/pip "${kernel:?}"/bin "${kernel:?}"/debugpy "${kernel:?}"/debugpy-*.dist-info "${kernel:?}"/jedi \
        "${kernel:?}"/jedi-*.dist-info "${kernel:?}"/parso "${kernel:?}"/parso-*.dist-info \
    && site=$(echo /opt/notebook-runner/venv/lib/python3*/site-packages) \
    && find "$site" "$kernel" -depth -type d \( -name tests -o -name test -o -name __pycache__ \) -exec rm -rf {} + \
    && rm -rf "$site"/hive_metastore "$site"/zstandard/_cffi.*.so "$site"/sqlalchemy/dialects/postgresql \
        "$site"/sqlalchemy/dialects/mysql "$site"/sqlalchemy/dialects/oracle "$site"/sqlalchemy/dialects/mssql \
        "$site"/pyiceberg/cli /opt/notebook-runner/venv/bin/pyiceberg "$site"/pyarrow/include "$site"/pyarrow/src \
    && find "$site"/pyarrow -type f \( -name '*.pxd' -o -name '*.pyx' -o -name '*.pxi' -o -name '*.h' -o -name '*.cc' \
        -o -name '*.cpp' \) -delete \
    && find "$site" "$kernel" -type f \( -name '*.so' -o -name '*.so.*' \) -exec strip --strip-unneeded {} + \
    && hardlink --ignore-time --quiet "$site" "$kernel" \
    && python3 -m compileall -q -j 0 -s "$site" "$site" \
    && python3 -m compileall -q -j 0 -s "$kernel" "$kernel" \
    && python3 -m compileall -q -j 0 -x '/(test|tests|idlelib|tkinter|turtledemo|ensurepip|lib2to3|site-packages|dist-packages)/' \
        "$(python3 -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')" \
    && hardlink --ignore-time --quiet "$site" "$kernel" \
    && mkdir /opt/notebook-runner/shared \
    && cp -al "$site"/pyarrow "$site"/pyarrow-*.dist-info /opt/notebook-runner/shared/ \
    && apt-get purge --yes --auto-remove binutils \
    && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log \
    && find / -xdev -perm /6000 -type f -exec chmod ug-s {} +

# --- the runner image ---------------------------------------------------------------------------------
FROM platform AS runner
# The notebook's environment, /opt/venv: a virtual environment without pip or any package of its own. Its
# .pth file puts the kernel's packages (/opt/notebook-runner/kernel) and the platform's pyarrow
# (/opt/notebook-runner/shared) on its path, after its own site-packages: a model's requirements install
# into /opt/venv and win over both, and a model image carries only what its requirements added.
RUN python3 -m venv --without-pip /opt/venv \
    && printf '%s\n' /opt/notebook-runner/kernel /opt/notebook-runner/shared \
        > "$(echo /opt/venv/lib/python3*/site-packages)/notebook-runner.pth" \
    && find /opt/venv -xdev -perm /6000 -type f -exec chmod ug-s {} +

COPY run_notebook.sh /opt/notebook-runner/run_notebook.sh
COPY runner/*.py /opt/notebook-runner/runner/
# the report page's cells (runner/page.py): JupyterLab's markup, no script
COPY runner/templates /opt/notebook-runner/runner/templates/
# The recipe of every model image, and the runner's version (VERSION, the one place it is written; the
# build argument that labels the image must agree with it).
COPY runner/model.Dockerfile VERSION /opt/notebook-runner/
ARG RUNNER_VERSION=unset
# The runner's own modules compiled here too (its user may not write beside them).
RUN { test "$(cat /opt/notebook-runner/VERSION)" = "$RUNNER_VERSION" \
    || { echo "RUNNER_VERSION=${RUNNER_VERSION} is not VERSION's $(cat /opt/notebook-runner/VERSION): build with --build-arg RUNNER_VERSION=\$(cat VERSION)" >&2; exit 1; }; } \
    && python3 -m compileall -q /opt/notebook-runner/runner
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
