"""Pull, push and server-stream speed of mir against curl, curl -T, snapshot_download and cp, in one run.

Usage: .venv/bin/python bench/transfer_bench.py [--size-gib 1] [--files 8] [--multi-factor 4] [--repeat 1]
                                                [--workdir /tmp/mir-transfer-bench] [--only single|multi]

Two versions are measured: one file of ``--size-gib`` GiB, and ``--files`` files
totalling ``--multi-factor`` times that (the issue's 1 GiB and 4 GiB-of-8-files).
Every row is a separate process timed from outside (start-up and imports
included: ``python start-up`` says how much that is), against a server on
loopback (SQLite, local blobs) whose blob files are warm in the page cache. Before
each row (untimed) as many bytes as the row may write are written to a scratch
file and deleted, so every row finds page-cache memory the VM has backed, and
dirty pages are flushed.

- cp / cp+sync: copying the source files (page cache only, and made durable).
- curl / curl+sync: ``curl`` of every file from mir's ``/v1 ... /files`` route to
  disk (``-Z`` parallel for several files); +sync adds an fsync of each file,
  which is what ``mir pull`` does before it renames a file into place.
- snapshot_download: ``huggingface_hub`` from mir's HF route (8 workers; it
  checks sizes, not digests).
- mir pull: the real CLI (progress bar rendered: FORCE_COLOR), sha256 of every
  byte checked, each file fsynced then renamed into place.
- mir push: the real CLI: hash, open, upload what is missing, commit; files of
  8 MiB or more start uploading while they are hashed.
- push, hash then upload: the Python API with that off (``upload_while_hashing=False``).
- curl -T: the same bytes uploaded with ``curl -T`` to the blob route of a
  version opened beforehand (on a second, empty server, so nothing is reused).
- server stream checked: curl to /dev/null from mir (each chunk checked
  against the chunk list as it goes out); unchecked: the same blob files
  sent by a bare Python server with ``sendfile`` (zero copy) and with
  plain 8 MiB buffered reads, no hashing.

Peak RSS of the server and of the mir client processes is printed at the end.
Everything generated is deleted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from registry.client.http import MirClient  # noqa: E402
from signing.hashing import hash_directory  # noqa: E402
from tests.support.server import MIR, LiveServer, free_port, live_server  # noqa: E402

MiB = 1 << 20
GiB = 1 << 30

# The HF client in a subprocess; the environment keeps it away from the public hub.
HF_SCRIPT = textwrap.dedent(
    """
    import sys
    from huggingface_hub import snapshot_download
    snapshot_download(sys.argv[1], revision=sys.argv[2], cache_dir=sys.argv[3], max_workers=8)
    """
)

# A bare file server for the "unchecked stream" rows: GET /sendfile/<path> or /read/<path>, no checks at all.
PLAIN_SERVER = textwrap.dedent(
    """
    import os, sys, socketserver
    from http.server import BaseHTTPRequestHandler
    from urllib.parse import unquote
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def log_message(self, *a): pass
        def do_GET(self):
            mode, _, path = self.path.lstrip("/").partition("/")
            path = unquote(path)
            size = os.stat(path).st_size
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            self.wfile.flush()
            with open(path, "rb") as fh:
                if mode == "sendfile":
                    offset = 0
                    while offset < size:
                        offset += os.sendfile(self.connection.fileno(), fh.fileno(), offset, size - offset)
                else:
                    buf = bytearray(8 << 20)
                    view = memoryview(buf)
                    while n := fh.readinto(buf):
                        self.connection.sendall(view[:n])
    class S(socketserver.ThreadingMixIn, socketserver.TCPServer):
        daemon_threads = True
        allow_reuse_address = True
    with S(("127.0.0.1", int(sys.argv[1])), H) as s:
        print("ready", flush=True)
        s.serve_forever()
    """
)


@dataclass
class Scenario:
    label: str
    name: str  # artifact name
    files: list[tuple[str, int]]
    src: Path = field(default_factory=Path)

    @property
    def total(self) -> int:
        return sum(size for _p, size in self.files)


@dataclass
class Row:
    name: str
    seconds: float
    client_cpu: float  # user+sys seconds of the measured process (and its children)
    server_cpu: float  # user+sys seconds the serving process used meanwhile (all threads)


def make_files(root: Path, files: list[tuple[str, int]]) -> None:
    """Incompressible files, written fast: one random MiB rotated per MiB (every MiB differs)."""
    block = os.urandom(MiB)
    salt = os.urandom(16)
    for rel, size in files:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            for i in range(size // MiB):
                k = (i * 4099 + hash((rel, salt)) % 1000) % MiB
                fh.write(block[k:] + block[:k])
            fh.write(block[: size % MiB])


# Memory each row may write into the page cache; ``flush`` touches that much just before the row.
PREFAULT = {"bytes": 0, "dir": Path(tempfile.gettempdir())}


def flush() -> None:
    """Before every timed row: flush dirty pages, then give the row page-cache memory that is already backed.

    On a VM whose host reclaims the guest's free memory (free page reporting), the first process to
    write 1 GiB into fresh pages pays 1-3 s of system time faulting them in, the next one almost none:
    whichever row came first after a quiet spell looked slow (curl by 3x, on the day it was found).
    Writing and deleting a scratch file of the scenario's size, on the same file system, right before each
    row makes every row start alike. (Touching as much anonymous memory, or a file in /dev/shm, does not:
    measured, the next 1 GiB write stays at 1.1-1.4 s against 0.28 s after a file of its own file system.)
    The scratch file is written after the sync, so a large one may leave a little writeback behind; every
    row gets the same."""
    subprocess.run(["sync"], check=True)
    size = PREFAULT["bytes"]
    if size:  # last, and quickly: pages freed for about a second are cold again
        scratch = PREFAULT["dir"] / ".prefault"
        block = bytes(8 * MiB)
        fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            for _ in range(-(-size // len(block))):
                os.write(fd, block)
        finally:
            os.close(fd)
            scratch.unlink()


LAST_RSS_MIB = [0.0]


def cpu_seconds(pid: int | None) -> float:
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(name: str, cmd: Sequence[str], env: dict[str, str] | None = None, server: int | None = None) -> Row:
    """Wall and CPU time of one process (after flushing dirty pages); its peak RSS goes to ``LAST_RSS_MIB``.

    ``server``: the pid whose CPU time meanwhile is charged to this row. CPU seconds stay meaningful on a
    shared machine where wall time does not.
    """
    flush()
    with tempfile.TemporaryFile() as log:
        server_before = cpu_seconds(server)
        start = time.perf_counter()
        proc = subprocess.Popen(list(cmd), env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        _pid, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        server_used = cpu_seconds(server) - server_before
        proc.returncode = os.waitstatus_to_exitcode(status)
        LAST_RSS_MIB[0] = usage.ru_maxrss / 1024
        if proc.returncode != 0:
            log.seek(0)
            raise SystemExit(f"{' '.join(cmd[:4])} ... failed ({proc.returncode}):\n"
                             f"{log.read()[-4000:].decode(errors='replace')}")
    return Row(name, elapsed, usage.ru_utime + usage.ru_stime, server_used)


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(8 * MiB):
            h.update(chunk)
    return h.hexdigest()


def curl_get(urls_and_outputs: list[tuple[str, str]], token: str | None, parallel: bool) -> list[str]:
    cmd = ["curl", "-sSf", "--http1.1"]
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    if parallel and len(urls_and_outputs) > 1:
        cmd += ["-Z", "--parallel-max", "8"]
    for url, out in urls_and_outputs:
        cmd += ["-o", out, url]
    return cmd


# The Python client, timed inside its process: the transfer without the CLI's start-up (imports).
API_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time
    from registry.client.http import MirClient
    url, token, op, a, b = sys.argv[1:6]
    with MirClient(url, token) as client:
        t0, c0 = time.perf_counter(), os.times()
        if op == "pull":
            client.pull(a, b)
        else:
            client.push(a, b, upload_while_hashing=op == "push")
        t1, c1 = time.perf_counter(), os.times()
    print(json.dumps({"wall": t1 - t0, "cpu": c1.user - c0.user + c1.system - c0.system}))
    """
)


def api_row(name: str, op: str, server: LiveServer, a: str, b: str, token: str | None = None) -> Row:
    flush()
    before = cpu_seconds(server.process.pid)
    done = subprocess.run([sys.executable, "-c", API_SCRIPT, server.url, token or server.admin_token, op, a, b],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, cwd=Path.cwd())
    used = cpu_seconds(server.process.pid) - before
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    return Row(name, measured["wall"], measured["cpu"], used)


def file_url(server: LiveServer, scenario: Scenario, version: str, rel: str) -> str:
    return f"{server.url}/v1/artifacts/bench/{scenario.name}/versions/{version}/files/{quote(rel)}"


def measure(scenario: Scenario, work: Path) -> tuple[list[Row], dict[str, float]]:
    rows: list[Row] = []
    rss: dict[str, float] = {}
    src = scenario.src
    out = work / "out"

    def clean() -> None:
        shutil.rmtree(out, ignore_errors=True)

    # -- cp
    clean()
    out.mkdir()
    rows.append(timed("cp", ["cp", "-r", f"{src}/.", str(out)]))
    clean()
    out.mkdir()
    files_out = [str(out / rel) for rel, _s in scenario.files]
    rows.append(timed("cp+sync", ["sh", "-c", f'cp -r "{src}/." "{out}" && sync ' + " ".join(
        f'"{p}"' for p in files_out)]))
    clean()

    (work / "srv").mkdir()
    with live_server(f"sqlite:///{work / 'mir.db'}", work / "srv") as server:
        base_rss = peak_rss_mib(server.process.pid)
        version = "1"
        ref = f"bench/{scenario.name}@{version}"
        env = server.env(FORCE_COLOR="1")
        # -- mir push (the first upload of these bytes to this server)
        pid = server.process.pid
        rows.append(timed("mir push", [*MIR, "push", str(src), ref], env=env, server=pid))
        rss["mir push client"] = LAST_RSS_MIB[0]
        # -- downloads
        pairs = [(file_url(server, scenario, version, rel), str(out / rel)) for rel, _s in scenario.files]
        for rel, _s in scenario.files:
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
        rows.append(timed("curl", curl_get(pairs, server.admin_token, parallel=True), server=pid))
        clean()
        for rel, _s in scenario.files:
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
        curl_cmd = curl_get(pairs, server.admin_token, parallel=True)
        script = " ".join(f"'{a}'" for a in curl_cmd) + " && sync " + " ".join(f"'{p}'" for _u, p in pairs)
        rows.append(timed("curl+sync", ["sh", "-c", script], server=pid))
        clean()
        hf_env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
        hf_env.update(HF_ENDPOINT=server.url, HF_TOKEN=server.admin_token, HF_HUB_DISABLE_TELEMETRY="1",
                      HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HOME=str(work / "hf-home"))
        rows.append(timed("snapshot_download",
                          [sys.executable, "-c", HF_SCRIPT, f"bench/{scenario.name}", version, str(out)],
                          env=hf_env, server=pid))
        clean()
        rows.append(timed("mir pull", [*MIR, "pull", ref, str(out)], env=env, server=pid))
        rss["mir pull client"] = LAST_RSS_MIB[0]
        clean()
        rows.append(api_row("mir pull (python API)", "pull", server, ref, str(out)))
        got = {rel: sha256_file(out / rel) for rel, _s in scenario.files[:1]}
        want = {rel: sha256_file(src / rel) for rel, _s in scenario.files[:1]}
        assert got == want, "mir pull wrote different bytes"
        clean()
        # -- the server stream, checked (mir) against unchecked (bare sendfile / buffered server)
        sink = [(file_url(server, scenario, version, rel), "/dev/null") for rel, _s in scenario.files]
        rows.append(timed("stream checked (mir)", curl_get(sink, server.admin_token, parallel=True), server=pid))
        with MirClient(server.url, server.admin_token) as client:
            shown = client.show_version(ref)
        blob_paths = [str(server.data_dir / "blobs" / "sha256" / f["digest"][7:9] / f["digest"][9:11] / f["digest"][7:])
                      for f in shown["files"]]
        if not Path(blob_paths[0]).exists():  # the store layout differs: find the files by digest
            found = {p.name: str(p) for p in server.data_dir.rglob("*") if p.is_file()}
            blob_paths = [found[f["digest"][7:]] for f in shown["files"]]
        port = free_port()
        plain = subprocess.Popen([sys.executable, "-c", PLAIN_SERVER, str(port)], stdout=subprocess.PIPE,
                                 stdin=subprocess.DEVNULL)
        try:
            assert plain.stdout is not None and plain.stdout.readline().strip() == b"ready"
            for mode in ("sendfile", "read"):
                urls = [(f"http://127.0.0.1:{port}/{mode}/{quote(p)}", "/dev/null") for p in blob_paths]
                label = "stream unchecked sendfile" if mode == "sendfile" else "stream unchecked 8MiB reads"
                rows.append(timed(label, curl_get(urls, None, parallel=True), server=plain.pid))
        finally:
            plain.terminate()
            plain.wait()
        rss["server"] = peak_rss_mib(server.process.pid) - base_rss

    # -- curl -T, into a second, empty server (so the bytes are new to it, as they were for mir push)
    shutil.rmtree(work / "srv", ignore_errors=True)
    manifest = hash_directory(src)
    (work / "srv2").mkdir()
    with live_server(f"sqlite:///{work / 'mir2.db'}", work / "srv2") as server:
        ref = f"bench/{scenario.name}@1"
        with MirClient(server.url, server.admin_token) as client:
            opened = client.open_version(ref, manifest)
        assert len(opened["missing"]) == len({f.digest for f in manifest.files})
        cmd = ["curl", "-sSf", "--http1.1", "-H", f"Authorization: Bearer {server.admin_token}",
               "-H", "Content-Type: application/octet-stream"]
        if len(manifest.files) > 1:
            cmd += ["-Z", "--parallel-max", "4"]  # mir push uploads 4 at a time
        for entry in manifest.files:
            url = f"{server.url}/v1/artifacts/bench/{scenario.name}/versions/1/blobs/{entry.digest}"
            cmd += ["-T", str(src / entry.path), "-o", "/dev/null", url]
        rows.append(timed("curl -T", cmd, server=server.process.pid))
        with MirClient(server.url, server.admin_token) as client:
            client.commit(ref)  # proves curl -T stored every blob whole
    shutil.rmtree(work / "srv2", ignore_errors=True)
    # -- the Python client's push alone (no CLI start-up), into a third server (no scans, which would compete
    # for the cores): as mir push does it, then hashing everything before the first byte goes out (each into a
    # namespace that holds nothing, by a token that cannot read the other, so nothing is mounted from it)
    (work / "srv3").mkdir()
    with live_server(f"sqlite:///{work / 'mir3.db'}", work / "srv3", env={"MIR_EMBEDDED_WORKERS": "0"}) as server:
        rows.append(api_row("mir push (python API)", "push", server, str(src), f"bench/{scenario.name}@1"))
        with MirClient(server.url, server.admin_token) as client:  # may not read bench/ (where the bytes are)
            token = client.create_token("bench-seq", ["write:bench-seq"])["token"]
        rows.append(api_row("push, hash then upload", "push-hash-first", server, str(src),
                            f"bench-seq/{scenario.name}@1", token))
    shutil.rmtree(work / "srv3", ignore_errors=True)
    for leftover in ("mir.db", "mir2.db", "mir3.db"):
        for p in work.glob(leftover + "*"):
            p.unlink()
    return rows, rss


def best(runs: list[list[Row]]) -> list[Row]:
    """Per row, the run with the least wall time (a shared machine only ever makes things slower)."""
    return [min((run[i] for run in runs), key=lambda r: r.seconds) for i in range(len(runs[0]))]


def report(scenario: Scenario, rows: list[Row], rss: dict[str, float], repeat: int) -> None:
    by = {r.name: r for r in rows}
    mb = scenario.total / 1e6
    gib = scenario.total / GiB

    def ratio(a: str, b: str) -> str:
        return f"{by[a].seconds / by[b].seconds:5.2f}x"

    print(f"\n== {scenario.label}: {len(scenario.files)} file(s), {gib:.2f} GiB (best of {repeat}) ==")
    print(f"  {'':<28} {'wall':>9} {'':>13}   CPU s/GiB: {'client':>7} {'server':>7}")
    for r in rows:
        print(f"  {r.name:<28} {r.seconds:7.2f} s {mb / r.seconds:7.0f} MB/s   {'':>10} {r.client_cpu / gib:7.2f} "
              f"{r.server_cpu / gib:7.2f}")
    print("  ratios of wall time (lower is faster for the first):")
    lines: list[tuple[str, str, str]] = [
        ("mir pull", "curl", "goal <= 1.25"),
        ("mir pull", "curl+sync", "same durability (fsync)"),
        ("mir pull", "snapshot_download", "goal < 1"),
        ("mir pull", "cp", ""),
        ("mir pull", "cp+sync", ""),
        ("mir pull (python API)", "curl", "without the CLI's start-up"),
        ("mir pull (python API)", "curl+sync", ""),
        ("mir push", "curl -T", "goal <= 1.25"),
        ("mir push (python API)", "curl -T", "without the CLI's start-up"),
        ("push, hash then upload", "curl -T", "Python API, large files not sent while hashed"),
        ("mir push", "cp", ""),
        ("stream checked (mir)", "stream unchecked sendfile", "cost of the served-bytes check"),
        ("stream checked (mir)", "stream unchecked 8MiB reads", ""),
    ]
    for a, b, note in lines:
        print(f"    {a + ' / ' + b:<58} {ratio(a, b)}   {note}")
    server_check = by["stream checked (mir)"].server_cpu / max(by["stream unchecked 8MiB reads"].server_cpu, 1e-9)
    print(f"    server CPU, checked / unchecked 8MiB reads{'':<16} {server_check:5.2f}x")
    print("  peak RSS: " + ", ".join(f"{k} {v:.0f} MiB" for k, v in rss.items()) + " (server: growth)")


def _cache_bytecode(work: Path) -> str:
    """Every process of the run (servers, CLIs, clients) keeps compiled bytecode, as on a user's machine.

    Where ``PYTHONDONTWRITEBYTECODE`` is set (this project's sandboxes set it), a source checkout's modules are
    compiled afresh by every process: 0.1-0.2 s more start-up in every mir row than a user pays, and nothing
    curl pays. The cache goes under the run's folder and is deleted with it."""
    if not os.environ.pop("PYTHONDONTWRITEBYTECODE", None):
        return ""
    os.environ["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    return "; bytecode cached for this run (PYTHONDONTWRITEBYTECODE was set)"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-gib", type=float, default=1.0, help="the single file's size (default 1)")
    parser.add_argument("--files", type=int, default=8, help="files in the multi-file version (default 8)")
    parser.add_argument("--multi-factor", type=float, default=4.0, help="multi-file total / single (default 4)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per row; the fastest is shown (default 1)")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a fresh folder under /tmp")
    parser.add_argument("--only", choices=("single", "multi"), default=None)
    args = parser.parse_args(argv)
    single = int(args.size_gib * GiB)
    multi_each = int(args.size_gib * args.multi_factor * GiB) // args.files
    scenarios = [
        Scenario("single file", "single", [("model.safetensors", single)]),
        Scenario("multi file", "multi",
                 [(f"model-{i:05d}-of-{args.files:05d}.safetensors", multi_each) for i in range(1, args.files + 1)]),
    ]
    if args.only:
        scenarios = [s for s in scenarios if s.name == args.only]
    need = max(s.total for s in scenarios) * 4
    work = args.workdir or Path(tempfile.mkdtemp(prefix="mir-transfer-bench-"))
    free = shutil.disk_usage(work if work.exists() else work.parent).free
    if free < need:
        raise SystemExit(f"needs about {need / GiB:.1f} GiB free under {work}, has {free / GiB:.1f}")
    bytecode = _cache_bytecode(work)
    timed("start-up", [*MIR, "--help"])  # compiles and caches the bytecode, as a first run on a user's machine
    startup = timed("start-up", [*MIR, "--help"]).seconds
    print(f"loopback, SQLite + local blobs, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          f"python start-up of the mir CLI {startup:.2f} s (in every mir row){bytecode}")
    try:
        for scenario in scenarios:
            work.mkdir(parents=True, exist_ok=True)
            scenario.src = work / f"src-{scenario.name}"
            make_files(scenario.src, scenario.files)
            PREFAULT.update(bytes=scenario.total, dir=work)
            runs: list[list[Row]] = []
            try:
                for _ in range(max(1, args.repeat)):
                    rows, rss = measure(scenario, work)
                    runs.append(rows)
            finally:
                shutil.rmtree(scenario.src, ignore_errors=True)
            report(scenario, best(runs), rss, len(runs))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
