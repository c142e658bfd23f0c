"""mir as a multi-host service: PostgreSQL, an S3 server, two API replicas and two scan workers, each on its own
network namespace, started with the commands docker-compose.yml runs (tests/support/topology.py).

Against those hosts: push through one replica and pull through the other, download straight from the store,
``kill -9`` a replica mid-push and finish through the other, ``kill -9`` a worker mid-scan and let the other
finish when the lease runs out; then every committed version pulls and verifies and the audit log verifies.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import httpx
import pytest
from sqlalchemy import create_engine, text

from registry.client.http import MirClient
from tests.support import topology
from tests.support.netns import Host, NamespaceUnavailable, Network, kill_hard
from tests.support.trees import make_tree

MiB = 1 << 20
BUCKET = "mir-multi"
PG_BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "mir-multi", "AWS_SECRET_ACCESS_KEY": "mir-multi-secret",
               "AWS_DEFAULT_REGION": "us-east-1"}
SHARED = {"MIR_SIGNING_PASSPHRASE": "multi-host-passphrase", "MIR_HF_URL_SECRET": "multi-host-url-secret-" + "y" * 32}
LEASE_S = 8


def argv(command: tuple[str, ...]) -> list[str]:
    """A topology command (``mir ...``) as this checkout runs it."""
    assert command in topology.COMMANDS
    return [sys.executable, "-m", "registry.main", *command[1:]]


@dataclass
class Cluster:
    work: Path
    pg: Host
    s3: Host
    apis: list[Host]
    workers: list[Host]
    admin_token: str
    service_url: str  # the service role's connection (what replicas and workers use)
    env_base: dict[str, str]
    api_processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    worker_processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def api_url(self, i: int) -> str:
        return f"http://{self.apis[i].address}:8470"

    def cli(self, i: int, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "MIR_URL": self.api_url(i), "MIR_TOKEN": self.admin_token,
               "MIR_CONFIG_DIR": str(self.work / "cli-config"), "COLUMNS": "300", "NO_PROXY": "*"}
        env.pop("MIR_DATABASE_URL", None)
        return subprocess.run([sys.executable, "-m", "registry.main", *args], env=env, capture_output=True,
                              text=True, timeout=600, stdin=subprocess.DEVNULL)

    def start_api(self, i: int) -> subprocess.Popen[bytes]:
        host = self.apis[i]
        env = {**self.env_base, "MIR_HOST": host.address, "MIR_PORT": "8470", "MIR_PUBLIC_URL": self.api_url(i),
               **topology.API_FIXED, "MIR_S3_PUBLIC_ENDPOINT_URL": self.env_base["MIR_S3_ENDPOINT_URL"],
               "MIR_BLOB_DOWNLOADS": "redirect", "MIR_DATA_DIR": str(self.work / f"api{i}"),
               "MIR_CONFIG_DIR": str(self.work / f"api{i}-config")}
        assert set(topology.API_ENV) <= set(env)
        log = self.work / f"api{i}-{len(self.api_processes)}.log"
        process = host.start(argv(topology.SERVE), env, log)
        wait_for(lambda: _healthy(self.api_url(i)), 120,
                 lambda: f"api{i} did not become healthy:\n" + log.read_text(errors="replace")[-6000:])
        return process

    def start_worker(self, i: int) -> subprocess.Popen[bytes]:
        env = {**self.env_base, **topology.WORKER_FIXED, "MIR_DATA_DIR": str(self.work / f"worker{i}"),
               "MIR_SCAN_LEASE_S": str(LEASE_S)}
        assert set(topology.WORKER_ENV) <= set(env)
        return self.workers[i].start(argv(topology.WORKER), env, self.work / f"worker{i}.log")

    def sql(self, query: str, **params: object) -> list[tuple[object, ...]]:
        engine = create_engine(self.service_url)
        try:
            with engine.connect() as conn:
                return [tuple(row) for row in conn.execute(text(query), params)]
        finally:
            engine.dispose()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/v1/ready", timeout=2, trust_env=False).status_code == 200
    except httpx.TransportError:
        return False


def wait_for(check: Callable[[], bool], timeout: float, message: str | Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(message() if callable(message) else message)


def start_postgres(host: Host, data: Path, subnet: str) -> str:
    """A fresh PostgreSQL cluster on ``host``: owner and service roles, database ``mir``; returns the base URL."""
    if not PG_BIN:
        pytest.fail("PostgreSQL server binaries are missing (/usr/lib/postgresql/*/bin); `make test` installs them")
    bin_dir = PG_BIN[-1]
    shutil.chown(data, "postgres", "postgres")
    run = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*run, str(bin_dir / "initdb"), "-D", str(data / "db"), "-A", "trust", "-U", "postgres",
                    "--no-sync"], check=True, capture_output=True, timeout=120)
    with open(data / "db" / "pg_hba.conf", "a") as hba:
        hba.write(f"host all all {subnet}.0/24 trust\n")
    host.start([*run, str(bin_dir / "postgres"), "-D", str(data / "db"), "-c", f"listen_addresses={host.address}",
                "-c", f"unix_socket_directories={data}", "-c", "fsync=off", "-c", "max_connections=200"],
               dict(os.environ), data / "postgres.log")
    base = f"postgresql+psycopg://postgres@{host.address}:5432"

    def accepting() -> bool:
        try:
            engine = create_engine(f"{base}/postgres", connect_args={"connect_timeout": 2})
            with engine.connect():
                pass
            engine.dispose()
            return True
        except Exception:
            return False

    wait_for(accepting, 60, "PostgreSQL did not start:\n" + (data / "postgres.log").read_text(errors="replace"))
    admin = create_engine(f"{base}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("CREATE ROLE mir_owner LOGIN"))
        conn.execute(text("CREATE ROLE mir_app LOGIN"))
        conn.execute(text("CREATE DATABASE mir OWNER mir_owner"))
    admin.dispose()
    return f"postgresql+psycopg://%s@{host.address}:5432/mir"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    work = Path(tempfile.mkdtemp(prefix="mir-multi-"))
    os.chmod(work, 0o755)
    try:
        with Network() as net:
            pg, s3 = net.host("pg"), net.host("s3")
            apis = [net.host("api1"), net.host("api2")]
            workers = [net.host("worker1"), net.host("worker2")]
            pg_dir = work / "pg"
            pg_dir.mkdir()
            url = start_postgres(pg, pg_dir, net.subnet)
            s3.start([str(Path(sys.executable).with_name("moto_server")), "-H", s3.address, "-p", "5000"],
                     {**os.environ, **CREDENTIALS}, work / "s3.log")
            s3_url = f"http://{s3.address}:5000"
            wait_for(lambda: _answers(s3_url), 60, "moto server did not start")
            boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1",
                         aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                         aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"]).create_bucket(Bucket=BUCKET)
            env_base = {k: v for k, v in os.environ.items() if not k.startswith(("MIR_", "AWS_"))}
            env_base.update({**CREDENTIALS, **SHARED, "MIR_DATABASE_URL": url % "mir_app", "MIR_AUTO_MIGRATE": "false",
                             "MIR_BLOB_STORE": f"s3://{BUCKET}/blobs", "MIR_S3_ENDPOINT_URL": s3_url, "NO_PROXY": "*"})
            migrate_env = {**env_base, "MIR_MIGRATION_DATABASE_URL": url % "mir_owner",
                           "MIR_DATA_DIR": str(work / "migrate")}
            assert set(topology.MIGRATE_ENV) <= set(migrate_env)
            done = subprocess.run(["ip", "netns", "exec", apis[0].namespace, *argv(topology.MIGRATE)],
                                  env=migrate_env, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stdout + done.stderr
            cluster = Cluster(work, pg, s3, apis, workers, "", url % "mir_app", env_base)
            cluster.api_processes = [cluster.start_api(0)]
            creds = json.loads((work / "api0-config" / "credentials.json").read_text())
            cluster.admin_token = creds["token"]
            cluster.api_processes.append(cluster.start_api(1))
            cluster.worker_processes = [cluster.start_worker(0), cluster.start_worker(1)]
            yield cluster
    except NamespaceUnavailable as exc:
        pytest.fail(f"cannot build the test hosts: {exc}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=2, trust_env=False)
        return True
    except httpx.TransportError:
        return False


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_push_on_one_replica_pull_on_the_other_and_straight_from_the_store(cluster: Cluster) -> None:
    files = {"model.bin": os.urandom(20 * MiB + 3), "config.json": b'{"hosts": 6}'}
    src = make_tree(cluster.work / "src-a", files)
    pushed = cluster.cli(0, "push", str(src), "acme/multi@1")
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    out = cluster.work / "pull-a"
    pulled = cluster.cli(1, "pull", "acme/multi@1", str(out))
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    assert all((out / name).read_bytes() == data for name, data in files.items())
    answer = httpx.get(f"{cluster.api_url(1)}/v1/artifacts/acme/multi/versions/1/files/model.bin",
                       headers={"Authorization": f"Bearer {cluster.admin_token}"}, trust_env=False, timeout=60)
    assert answer.status_code == 302 and answer.headers["location"].startswith(f"http://{cluster.s3.address}:5000/")
    direct = httpx.get(answer.headers["location"], trust_env=False, timeout=120)
    assert sha(direct.content) == sha(files["model.bin"])


def test_a_replica_killed_mid_push_the_push_finishes_through_the_other(cluster: Cluster) -> None:
    files = {f"shard-{i}.bin": os.urandom(24 * MiB) for i in range(4)}
    src = make_tree(cluster.work / "src-b", files)
    env = {**os.environ, "MIR_URL": cluster.api_url(0), "MIR_TOKEN": cluster.admin_token,
           "MIR_CONFIG_DIR": str(cluster.work / "cli-config"), "NO_PROXY": "*"}
    digests = ["sha256:" + sha(d) for d in files.values()]

    def some_recorded() -> bool:  # stored in the bucket and recorded as held by the namespace
        return bool(cluster.sql("SELECT 1 FROM namespace_blobs WHERE namespace = 'acme' AND digest = ANY(:d)",
                                d=digests))

    # 96 MiB at 160 Mbit/s take about 5 s: the kill lands mid-push on a machine of any speed
    with cluster.apis[0].slow_link(160):
        pusher = subprocess.Popen([sys.executable, "-m", "registry.main", "push", str(src), "acme/killed@1"],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_for(some_recorded, 180, "no blob of the push was recorded")
            kill_hard(cluster.api_processes[0])
            output = pusher.communicate(timeout=300)[0].decode(errors="replace")
        finally:
            if pusher.poll() is None:
                pusher.kill()
    try:
        assert pusher.returncode != 0, output
        assert not cluster.sql("SELECT 1 FROM versions v JOIN artifacts a ON a.id = v.artifact_id "
                               "WHERE a.name = 'killed' AND v.state = 'committed'"), "the killed replica committed it"

        resumed = cluster.cli(1, "push", str(src), "acme/killed@1")
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert " 0 already stored" not in resumed.stdout, resumed.stdout  # what arrived before the kill is kept
        out = cluster.work / "pull-b"
        assert cluster.cli(1, "pull", "acme/killed@1", str(out)).returncode == 0
        assert all(sha((out / n).read_bytes()) == sha(d) for n, d in files.items())
    finally:
        cluster.api_processes[0] = cluster.start_api(0)  # the replica comes back on the same host


def test_a_worker_killed_mid_scan_the_other_finishes_after_the_lease(cluster: Cluster) -> None:
    # Many blobs, so the job stays running for seconds while the poll below looks (a scan takes milliseconds).
    # A fixed head: about 1 random file in 250 starts like a pickle or ONNX file and scans as error (malformed)
    files = {f"part-{i:03d}.npy": b"not a model: " + os.urandom(32 * 1024) for i in range(300)}
    src = make_tree(cluster.work / "src-c", files)
    victim, survivor = cluster.worker_processes
    os.kill(survivor.pid, signal.SIGSTOP)  # so the victim is the one that takes the job
    try:
        pushed = cluster.cli(1, "push", str(src), "acme/scanme@1")
        assert pushed.returncode == 0, pushed.stdout + pushed.stderr

        def victim_scanning() -> bool:
            rows = cluster.sql("SELECT j.claimed_by FROM scan_jobs j JOIN versions v ON v.id = j.version_id "
                               "JOIN artifacts a ON a.id = v.artifact_id "
                               "WHERE a.name = 'scanme' AND j.state = 'running'")
            return any(str(who).endswith(f":{victim.pid}") for (who,) in rows)

        wait_for(victim_scanning, 120, lambda: "the worker did not take the scan job:\n" + worker_logs(cluster))
        kill_hard(victim)
    finally:
        os.kill(survivor.pid, signal.SIGCONT)
    with MirClient(cluster.api_url(1), cluster.admin_token) as client:
        deadline = time.monotonic() + LEASE_S + 240
        status = None
        while time.monotonic() < deadline and status in (None, "pending"):
            status = client.show_version("acme/scanme@1")["scan_status"]
            time.sleep(0.5)
    # unknown binary: suspicious (never an error from the crash, never left pending)
    assert status == "suspicious", f"{status}\n{scan_errors(cluster, 'scanme')}\n{worker_logs(cluster)}"
    cluster.worker_processes[0] = cluster.start_worker(0)


def scan_errors(cluster: Cluster, artifact: str) -> str:
    """The artifact's scan jobs and their tasks that failed: what a failing test needs to say why."""
    rows = cluster.sql("SELECT j.id, j.state, j.attempts, j.error, t.blob_digest, t.attempts, t.claimed_by, t.error "
                       "FROM scan_jobs j JOIN versions v ON v.id = j.version_id "
                       "JOIN artifacts a ON a.id = v.artifact_id LEFT JOIN scan_tasks t ON t.job_id = j.id "
                       "AND t.error IS NOT NULL WHERE a.name = :name ORDER BY j.id", name=artifact)
    return "\n".join(" ".join(str(value) for value in row) for row in rows)


def worker_logs(cluster: Cluster) -> str:
    return "\n".join(path.read_text(errors="replace")[-2000:] for path in sorted(cluster.work.glob("worker*.log")))


def test_afterwards_every_version_pulls_and_verifies_and_the_log_verifies(cluster: Cluster) -> None:
    with MirClient(cluster.api_url(0), cluster.admin_token) as client:
        names = sorted(a["artifact"] for a in client.json("GET", "/v1/artifacts")["items"])
        committed = [f"{repo}@{client.show_version(f'{repo}@latest')['version']}" for repo in names]
    assert committed == ["acme/killed@1", "acme/multi@1", "acme/scanme@1"], committed
    for i, ref in enumerate(committed):
        out = cluster.work / "verify" / ref.replace("/", "_").replace("@", "_")
        pulled = cluster.cli(i % 2, "pull", ref, str(out))  # hashed against the manifest as it arrives
        assert pulled.returncode == 0, pulled.stdout + pulled.stderr
        # through the other replica: the same registry key countersigned it (no signer keys here: unsigned)
        checked = cluster.cli(1 - i % 2, "verify", ref, str(out)).stdout
        assert "ok   files:" in checked and "ok   registry countersignature" in checked, checked
        assert [line for line in checked.splitlines() if line.startswith("FAIL")] == [
            "FAIL signature: no trusted signer keys on this machine: pass --key PUB.pem or add keys to the trust store"
        ], checked
    audit = cluster.cli(1, "audit", "verify")
    assert audit.returncode == 0, audit.stdout + audit.stderr
