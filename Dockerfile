# clusterd: one image for the API (`clusterd serve`, the default) and the worker (`clusterd worker`).
#
#   docker build -t clusterd .
#   docker run --rm -p 8000:8000 clusterd      # embedded mode: in-memory store, worker in-process;
#                                              # the admin key is printed once on stderr
#
# Production topology (MongoDB, Redis, MinIO, separate workers): see docker-compose.yml and
# docs/operations.md.

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /src

# Dependencies first, from pyproject.toml alone, so editing the code does not reinstall numpy,
# scikit-learn and pyarrow (all ship manylinux wheels: no compiler needed on slim).
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Then the project itself. README.m[d] is a glob (the package metadata reads README.md) that may
# match nothing; pyproject.toml in the same COPY keeps the classic builder from failing on that.
COPY pyproject.toml README.m[d] ./
COPY core ./core
COPY api ./api
COPY worker ./worker
RUN pip install . \
    && cd / && rm -rf /src

# Non-root. data_dir holds the local artifact directory when CLUSTERD_S3_BUCKET is unset.
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin clusterd \
    && mkdir -p /var/lib/clusterd \
    && chown clusterd:clusterd /var/lib/clusterd
ENV CLUSTERD_DATA_DIR=/var/lib/clusterd
# glibc's malloc on transparent huge pages (docs/operations.md: bulk uploads, as scripts/run.sh)
ENV GLIBC_TUNABLES=glibc.malloc.hugetlb=1
USER clusterd
WORKDIR /home/clusterd

EXPOSE 8000

# No HEALTHCHECK here: the worker runs from the same image and serves no HTTP. The API's
# health check (GET /v1/health) is declared in docker-compose.yml.
CMD ["clusterd", "serve", "--host", "0.0.0.0", "--port", "8000"]
