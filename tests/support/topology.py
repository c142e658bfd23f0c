"""The multi-host shape of mir: which processes run and what each must be told.

One definition shared by the check of ``docker-compose.yml`` (tests/registry/test_compose_file.py) and the
multi-host test, so the compose file shows exactly the processes the suite runs as separate hosts.
"""

from __future__ import annotations

from typing import Final

# The only mir invocations a deployment runs (compose `command:` lists, subprocess argv in the multi-host test).
MIGRATE: Final = ("mir", "migrate")  # one-shot, as the schema's owner; grants the service role its rights
SERVE: Final = ("mir", "serve")  # an API replica
WORKER: Final = ("mir", "worker")  # a scan worker
COMMANDS: Final = (MIGRATE, SERVE, WORKER)

# Environment variable names each process needs (values are the deployment's).
MIGRATE_ENV: Final = (
    "MIR_MIGRATION_DATABASE_URL",  # the owner role: creates and alters tables
    "MIR_DATABASE_URL",  # its user is the service role `mir migrate` grants rights to
)
# Reaching the shared state: PostgreSQL as the service role, blobs in the S3-compatible store. boto3 reads the
# region from AWS_DEFAULT_REGION (AWS_REGION only inside AWS Lambda).
STORE_ENV: Final = (
    "MIR_DATABASE_URL",
    "MIR_BLOB_STORE",
    "MIR_S3_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
)
WORKER_ENV: Final = (*STORE_ENV, "MIR_AUTO_MIGRATE")
API_ENV: Final = (
    *STORE_ENV,
    "MIR_AUTO_MIGRATE",  # "false": only `mir migrate` changes the schema
    "MIR_EMBEDDED_WORKERS",  # "0": scans run in the worker hosts, never beside the API
    "MIR_HOST",
    "MIR_PUBLIC_URL",  # the proxy's address: every replica builds the same URLs
    "MIR_S3_PUBLIC_ENDPOINT_URL",  # the store as clients reach it, for presigned download URLs
    "MIR_BLOB_DOWNLOADS",
    "MIR_SIGNING_PASSPHRASE",  # every replica decrypts the one registry key stored in the database
    "MIR_HF_URL_SECRET",  # an HF upload URL issued by one replica is honoured by the others
)
# Values that make a process one part of several rather than a whole registry.
API_FIXED: Final = {"MIR_EMBEDDED_WORKERS": "0", "MIR_AUTO_MIGRATE": "false"}
WORKER_FIXED: Final = {"MIR_AUTO_MIGRATE": "false"}

# Health endpoints a load balancer may probe on an API replica.
HEALTH_PATHS: Final = ("/v1/health", "/v1/ready")
