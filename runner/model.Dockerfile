# The recipe of every model image, the platform's and never a model's: the runner image, by digest, with the
# model's requirements in /opt/venv and the model's files in /app, nothing else. It travels inside the runner
# (/opt/notebook-runner/model.Dockerfile), so a runner version and its recipe never disagree; the pipeline's
# build and `make build MODEL_DIR=...` read it from there. The build context is the model's repository:
#
#   docker run --rm --entrypoint /bin/cat RUNNER /opt/notebook-runner/model.Dockerfile \
#     | docker build -f - --build-arg RUNNER=RUNNER --build-arg NOTEBOOK=model.ipynb -t model MODEL_DIR
#
# The validation checks what this builds before it promotes it: the runner's layers exactly, then layers
# that add or change files under /opt/venv and /app only (its layer check).
ARG RUNNER=notebook-runner:local
# checkov:skip=CKV_DOCKER_7: RUNNER is the platform's runner by digest in every pipeline build
# checkov:skip=CKV_DOCKER_2: the runner's HEALTHCHECK NONE holds (a batch job: nothing to probe); the validation checks it is unchanged
# checkov:skip=CKV_DOCKER_3: the runner's entrypoint drops root at once (setpriv to the runner's user); a model image keeps it, which the validation checks
FROM ${RUNNER} AS runner

# --- the model's requirements: an untrusted build, which stays in this stage ---------------------------------
# Whatever a requirement runs while it installs (as root, here) reaches the image only as what it left in
# /opt/venv. pip runs from a throwaway environment of this stage's, into /opt/venv's interpreter; the
# kernel's packages and pyarrow, on that interpreter's path, count as installed (a requirement that needs
# what the runner leaves out of them, IPython's completion or ipykernel's debugger, gets it here). pip
# compiles what it installs: the notebook's user could not write that bytecode at run time. Test suites
# that wheels ship are never imported by a run.
FROM runner AS model-env
COPY requirements.txt /tmp/requirements.txt
RUN python3 -m venv /tmp/pip \
    && /tmp/pip/bin/pip --python /opt/venv/bin/python install --no-cache-dir --disable-pip-version-check \
        --no-warn-script-location -r /tmp/requirements.txt \
    && find /opt/venv/lib -depth -type d -path '*/site-packages/*' \( -name tests -o -name test \) -exec rm -rf {} +

# --- the model image -------------------------------------------------------------------------------------------
FROM runner
# /opt/venv alone, owned by root: nothing else a requirement's build did reaches the image.
COPY --from=model-env --chown=0:0 /opt/venv /opt/venv
# The model itself (notebook, check script, the files they read); its .dockerignore keeps the rest out.
# Owned by root and read-only for both users. A setuid or setgid bit that came with /opt/venv or the model is
# dropped; this stage runs, as root, only programs named by their absolute path.
COPY . /app
RUN ["/usr/bin/find", "/opt/venv", "/app", "-xdev", "-perm", "/6000", "-type", "f", "-exec", "/bin/chmod", "ug-s", "{}", "+"]

ARG RUNNER
ARG NOTEBOOK=usp.ipynb
ARG IMAGE_NAME=notebook-model
ARG GIT_COMMIT=dev
ENV NOTEBOOK=${NOTEBOOK} \
    RUNNER_IMAGE=${IMAGE_NAME}:${GIT_COMMIT} \
    RUNNER_COMMIT=${GIT_COMMIT}
LABEL org.opencontainers.image.revision=${GIT_COMMIT} \
      io.notebook-pipeline.runner=${RUNNER}
