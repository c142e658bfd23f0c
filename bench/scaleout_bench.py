"""Scale-out figures in one run: object store against local disk, presigned downloads against proxied ones,
boto3 against obstore, one API replica against two, one scan worker against two.

Usage: python bench/scaleout_bench.py [--size-mib 256] [--load-seconds 15] [--skip-load] [--skip-scan]

The S3 server is moto's standalone server (``moto_server``, a separate process): it speaks the real S3 HTTP
protocol but keeps objects in Python memory, so S3 figures here measure mir's overhead against a slow store,
not what MinIO or AWS would deliver. Every registry is the real ``mir serve`` on loopback over PostgreSQL;
pushes and pulls go through the real SDK (which hashes everything it receives).

1. push and pull of one ``--size-mib`` file: S3 store vs local store; pull from the S3 store via a presigned
   redirect vs proxied through the API (two replicas on the same database and bucket).
2. raw client throughput against the same S3 server: boto3 (what mir uses) vs obstore (Rust), PUT and GET.
3. ``bench/load_bench.py`` with 16 clients against one replica, then two (on 2 cores: overhead, mostly).
4. ``bench/scan_workers_bench.py``: a 20-file version's scan with one worker, then two.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import boto3
import httpx
from botocore.config import Config

from registry.client.http import MirClient
from tests.support.databases import database_url
from tests.support.server import free_port, live_server

MiB = 1 << 20
BUCKET = "mir-bench"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret", "AWS_DEFAULT_REGION": "us-east-1"}
SHARED = {"MIR_SIGNING_PASSPHRASE": "bench-passphrase", "MIR_HF_URL_SECRET": "bench-url-secret-" + "z" * 32,
          "MIR_EMBEDDED_WORKERS": "0"}


@contextmanager
def moto_server(workdir: Path) -> Iterator[str]:
    port = free_port()
    log = open(workdir / "moto.log", "wb")  # noqa: SIM115 (closed below)
    process = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p",
                                str(port)], stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **CREDENTIALS})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(url, timeout=1, trust_env=False)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        boto3.client("s3", endpoint_url=url, **_boto_credentials()).create_bucket(Bucket=BUCKET)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _boto_credentials() -> dict[str, str]:
    return {"aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"], "region_name": "us-east-1"}


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def rate(size: int, seconds: float) -> str:
    return f"{size / MiB / seconds:7.1f} MiB/s ({seconds:6.2f} s)"


def transfers(args: argparse.Namespace, workdir: Path) -> None:
    size = args.size_mib * MiB
    src = workdir / "src"
    src.mkdir()
    with open(src / "weights.bin", "wb") as fh:
        for _ in range(args.size_mib):
            fh.write(os.urandom(MiB))
    with ExitStack() as stack:
        s3_url = stack.enter_context(moto_server(workdir))
        store = {**CREDENTIALS, **SHARED, "MIR_BLOB_STORE": f"s3://{BUCKET}/blobs", "MIR_S3_ENDPOINT_URL": s3_url}
        s3_db = stack.enter_context(database_url("postgresql", workdir))
        local_db = stack.enter_context(database_url("postgresql", workdir))
        for name in ("redirect", "proxy", "local"):
            (workdir / name).mkdir()
        redirect = stack.enter_context(live_server(s3_db, workdir / "redirect", env=store))
        (workdir / "proxy" / "config").mkdir()
        shutil.copy(redirect.config_dir / "credentials.json", workdir / "proxy" / "config" / "credentials.json")
        proxy = stack.enter_context(live_server(s3_db, workdir / "proxy", env={**store, "MIR_BLOB_DOWNLOADS": "proxy"}))
        local = stack.enter_context(live_server(local_db, workdir / "local", env=SHARED))

        def push(server: object, ref: str) -> float:
            with MirClient(server.url, server.admin_token) as client:  # type: ignore[attr-defined]
                return timed(lambda: client.push(src, ref))

        def pull(server: object, ref: str, out: str) -> float:
            target = workdir / out
            with MirClient(server.url, server.admin_token) as client:  # type: ignore[attr-defined]
                seconds = timed(lambda: client.pull(ref, target))
            digest = hashlib.sha256((target / "weights.bin").read_bytes()).hexdigest()
            assert digest == hashlib.sha256((src / "weights.bin").read_bytes()).hexdigest()
            shutil.rmtree(target)
            return seconds

        push_s3, push_local = push(redirect, "bench/w@1"), push(local, "bench/w@1")
        pull_redirect = min(pull(redirect, "bench/w@1", f"r{i}") for i in range(args.repeat))
        pull_proxy = min(pull(proxy, "bench/w@1", f"p{i}") for i in range(args.repeat))
        pull_local = min(pull(local, "bench/w@1", f"l{i}") for i in range(args.repeat))
        print(f"\n1. one {args.size_mib} MiB file, real SDK, {os.cpu_count()} CPUs (S3 = moto_server)")
        print(f"   push to S3 store        {rate(size, push_s3)}")
        print(f"   push to local store     {rate(size, push_local)}   S3/local time {push_s3 / push_local:.2f}x")
        print(f"   pull, presigned direct  {rate(size, pull_redirect)}")
        print(f"   pull, proxied by API    {rate(size, pull_proxy)}   direct/proxied time "
              f"{pull_redirect / pull_proxy:.2f}x")
        print(f"   pull from local store   {rate(size, pull_local)}   S3 direct/local time "
              f"{pull_redirect / pull_local:.2f}x, S3 proxied/local {pull_proxy / pull_local:.2f}x")
        clients(args, s3_url, src / "weights.bin", size)


def clients(args: argparse.Namespace, s3_url: str, path: Path, size: int) -> None:
    """The calls mir makes (one PUT, one streamed GET read in 1 MiB pieces) with each library, same server."""
    data = path.read_bytes()
    s3 = boto3.client("s3", endpoint_url=s3_url, config=Config(s3={"addressing_style": "path"}),
                      **_boto_credentials())

    def boto_get() -> int:
        body, n = s3.get_object(Bucket=BUCKET, Key="raw/boto3")["Body"], 0
        while piece := body.read(MiB):
            n += len(piece)
        return n

    def boto_multipart(part: int = 16 * MiB) -> None:  # what mir's writer sends, without the registry around it
        upload = s3.create_multipart_upload(Bucket=BUCKET, Key="raw/multipart")["UploadId"]
        parts = []
        for number, offset in enumerate(range(0, len(data), part), start=1):
            answer = s3.upload_part(Bucket=BUCKET, Key="raw/multipart", UploadId=upload, PartNumber=number,
                                    Body=data[offset:offset + part])
            parts.append({"PartNumber": number, "ETag": answer["ETag"]})
        s3.complete_multipart_upload(Bucket=BUCKET, Key="raw/multipart", UploadId=upload,
                                     MultipartUpload={"Parts": parts})

    put_boto = min(timed(lambda: s3.put_object(Bucket=BUCKET, Key="raw/boto3", Body=data)) for _ in range(2))
    multipart = min(timed(boto_multipart) for _ in range(2))
    get_boto = min(timed(boto_get) for _ in range(3))
    print("\n2. raw S3 client against the same server, same file: one PUT, one streamed GET")
    print(f"   boto3    PUT {rate(size, put_boto)}   GET {rate(size, get_boto)}")
    print(f"   boto3    multipart PUT, 16 MiB parts one at a time (mir's shape) {rate(size, multipart)}")
    try:
        import obstore
        from obstore.store import S3Store
    except ImportError:
        print("   obstore  not installed (pip install '.[bench]')")
        return
    store = S3Store(BUCKET, endpoint=s3_url, access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                    secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"], region="us-east-1",
                    client_options={"allow_http": True})

    def obstore_get() -> int:
        return sum(len(piece) for piece in obstore.get(store, "raw/obstore").stream(min_chunk_size=MiB))

    put_obs = min(timed(lambda: obstore.put(store, "raw/obstore", data)) for _ in range(2))
    get_obs = min(timed(obstore_get) for _ in range(3))
    print(f"   obstore  PUT {rate(size, put_obs)}   GET {rate(size, get_obs)}   "
          f"(obstore/boto3 time: PUT {put_obs / put_boto:.2f}x, GET {get_obs / get_boto:.2f}x)")


def load(args: argparse.Namespace) -> None:
    print(f"\n3. {args.clients} clients pushing small versions (bench/load_bench.py, PostgreSQL, "
          f"{args.load_seconds:.0f} s each)")
    rates: dict[int, float] = {}
    for replicas in (1, 2):
        done = subprocess.run([sys.executable, str(Path(__file__).with_name("load_bench.py")), "--db", "postgres",
                               "--workers", str(replicas), "--clients", str(args.clients), "--seconds",
                               str(args.load_seconds)], capture_output=True, text=True, timeout=1800)
        found = re.search(r"= ([0-9.]+) versions/s", done.stdout)
        push_line = next((line for line in done.stdout.splitlines() if line.startswith("push")), "")
        errors = next((line for line in done.stdout.splitlines() if line.startswith("errors by status")), "")
        check = next((line for line in done.stdout.splitlines() if line.startswith("check: audit")), "")
        if found is None:
            print(f"   {replicas} replica(s): load_bench failed ({done.returncode})\n{done.stdout}\n{done.stderr}")
            return
        rates[replicas] = float(found[1])
        print(f"   {replicas} replica(s): {rates[replicas]:6.1f} versions/s   whole push: {push_line[28:].strip()}"
              f"   {errors}; {check}")
    print(f"   two replicas / one: {rates[2] / rates[1]:.2f}x versions/s")


def scan(_args: argparse.Namespace) -> None:
    print("\n4. scan of a 20-file version (bench/scan_workers_bench.py, PostgreSQL)")
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("scan_workers_bench.py"))],
                          capture_output=True, text=True, timeout=1800)
    for line in done.stdout.splitlines():
        if line.strip():
            print(f"   {line.strip()}")
    if done.returncode != 0:
        print(f"   scan_workers_bench failed ({done.returncode}): {done.stderr[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=2, help="pulls per row; the fastest is shown")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--load-seconds", type=float, default=15.0)
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--skip-scan", action="store_true")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="mir-scaleout-"))
    try:
        transfers(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if not args.skip_load:
        load(args)
    if not args.skip_scan:
        scan(args)


if __name__ == "__main__":
    main()
