# The mir image: one image for every process of a deployment. docker-compose.yml runs it as `mir migrate`,
# `mir serve` (API replicas) and `mir worker` (scan workers); `docker build -t mir .` builds it alone.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Only what the package is built from (see .dockerignore): the tests, benchmarks and any local .venv stay out.
WORKDIR /build
COPY pyproject.toml README.md ./
COPY signing/ signing/
COPY scanners/ scanners/
COPY registry/ registry/
COPY migrations/ migrations/
RUN pip install . && rm -rf /build

# Never root: the registry parses untrusted uploads. Its data directory holds only per-process scratch when
# the database and blobs live elsewhere (PostgreSQL, S3).
RUN useradd --system --uid 10001 --create-home --home-dir /home/mir mir \
    && install -d -o mir -g mir -m 0700 /var/lib/mir
USER mir
WORKDIR /var/lib/mir
ENV MIR_DATA_DIR=/var/lib/mir

EXPOSE 8470
CMD ["mir", "serve"]
