"""Concurrent commits: N clients each pushing small versions through the real SDK against a real registry.

Usage: python bench/load_bench.py [--db postgres|sqlite] [--workers 2] [--clients 16] [--seconds 20]
                                  [--warmup 5] [--count N] [--files 1] [--file-bytes 4096] [--scan-workers 1]
                                  [--rate R] [--no-inline] [--url URL --token TOKEN] [--py-spy DIR]

Starts ``--workers`` API processes (each a real ``mir serve`` on its own loopback port, sharing one database
and blob directory: the API-replica shape of docker-compose.yml), or targets ``--url``. Each client is its own
process with its own ``MirClient``, pushing fresh versions (unique random files, so every push opens, uploads
and commits) to its own artifact, for ``--seconds`` or ``--count`` versions. Prints committed versions/s,
p50/p99 latency per route and for the whole push, and errors by HTTP status. Afterwards every committed version
is pulled with the real client (which verifies every digest), its manifest digest is compared with what the
client hashed, the audit log is verified end to end (signed head, entries recompute the root) and every
``version.committed`` entry is checked: exactly one per version, after its ``version.opened``, with a valid
inclusion proof against the signed tree head.

By default the clients are a closed loop (each pushes again as soon as its last push returns): the figure is
the most versions/s the registry sustains, and the latency is what 16 always-busy clients see. ``--rate R``
makes them an open loop offering R versions/s in all (each client one push every ``clients / R`` seconds, the
clients staggered): the latency of a push is counted from the moment it was due, not from when the client got
round to sending it, so a server that falls behind shows its queue in the p99 (as wrk2 measures).

The first ``--warmup`` seconds of pushing are not counted (their count and latency are printed apart): fresh
API processes open their database connections and fill their statement caches then, and a registry serves
for days. The p99 of each 2-second window is printed too, so a tail that comes from one moment shows.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from registry.client.http import MirClient, MirError
from signing.hashing import hash_directory
from tests.support.databases import database_url
from tests.support.server import MIR, free_port

# The SDK calls a push makes, one HTTP request each, timed around the public MirClient methods. A version of
# small files is opened, stored and committed by its open request (inline contents); ``--no-inline`` makes
# the client take the three steps.
ROUTES = {"open_version": "POST open version", "upload_blob": "PUT blob", "commit": "POST commit"}
PUSH = "push (open+upload+commit)"


Timing = tuple[str, float, float]  # what, when it started (or was due; wall clock), seconds it took


def _timed(client: MirClient, method: str, timings: list[Timing], statuses: Counter[str]) -> None:
    """Wrap ``client.<method>`` to record its latency and its HTTP status (``transport`` when none came back)."""
    label, call = ROUTES[method], getattr(client, method)

    def timed(*args: Any, **kwargs: Any) -> Any:
        at, t0 = time.time(), time.perf_counter()
        try:
            result = call(*args, **kwargs)
        except MirError as exc:
            statuses[f"{label}: {exc.status or 'transport'}"] += 1
            raise
        timings.append((label, at, time.perf_counter() - t0))
        statuses[f"{label}: 200"] += 1
        return result

    setattr(client, method, timed)


# -- servers -----------------------------------------------------------------------------------------------


@dataclass
class Servers:
    urls: list[str]
    token: str
    pids: list[int] = field(default_factory=list)


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mir serve exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"mir serve did not become healthy:\n{log.read_text()[-4000:]}")


@contextmanager
def start_servers(
    db_url: str, workdir: Path, workers: int, scan_workers: int, py_spy: Path | None
) -> Iterator[Servers]:
    """``workers`` API processes on one database and blob directory; the first one migrates and makes the token."""
    procs: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    base_env = {
        **os.environ, "MIR_DATA_DIR": str(workdir / "mir-data"), "MIR_DATABASE_URL": db_url,
        "MIR_CONFIG_DIR": str(workdir / "server-config"), "MIR_HOST": "127.0.0.1", "MIR_LOG_LEVEL": "warning",
    }
    try:
        for i in range(workers):
            port = free_port()
            env = {**base_env, "MIR_PORT": str(port), "MIR_EMBEDDED_WORKERS": str(scan_workers if i == 0 else 0)}
            command = [*MIR, "serve"]
            if py_spy is not None:
                py_spy.mkdir(parents=True, exist_ok=True)
                spy = Path(sys.executable).parent / "py-spy"
                command = [str(spy), "record", "--idle", "--format", "speedscope", "-r", "100",
                           "-o", str(py_spy / f"api-{i}.speedscope.json"), "--", *command]
            log = workdir / f"server-{i}.log"
            with open(log, "wb") as fh:
                proc = subprocess.Popen(command, env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            procs.append(proc)
            urls.append(f"http://127.0.0.1:{port}")
            _wait_healthy(urls[-1], proc, log)  # one at a time: the first migrates the schema
        creds = json.loads((workdir / "server-config" / "credentials.json").read_text())
        # Under py-spy the API process is py-spy's child: account CPU to it, not to the profiler.
        pids = [_direct_children(p.pid)[0] if py_spy is not None else p.pid for p in procs]
        yield Servers(urls, creds["token"], pids)
    finally:
        for proc in procs:
            proc.send_signal(2)  # SIGINT: uvicorn shuts down cleanly and py-spy writes its profile
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# -- clients -----------------------------------------------------------------------------------------------


def _client(idx: int, url: str, token: str, start: Any, finish: Any, ready: Any, seconds: float, count: int | None,
            files: int, file_bytes: int, workdir: str, results: Any, inline: bool, interval: float | None,
            offset: float) -> None:
    """One client process: push fresh small versions until the deadline (or ``count``), timing every request.

    With ``interval`` (open loop) push ``n`` is due at ``offset + n * interval`` after the start, and its
    latency counts from then; no push is due after the deadline. A client that is done waits for ``finish``
    before it exits, so no process teardown competes for the CPU with pushes still under way."""
    timings: list[Timing] = []
    statuses: Counter[str] = Counter()
    committed: list[tuple[str, str]] = []
    errors: list[str] = []
    src = Path(workdir) / f"client-{idx}"
    with MirClient(url, token) as client:
        for method in ROUTES:
            _timed(client, method, timings, statuses)
        ready.put(idx)
        start.wait()  # every client imported and connected: they start together
        cpu0 = _own_cpu()
        began, began_wall = time.perf_counter(), time.time()
        deadline = began_wall + seconds
        n = 0
        while (count is not None and n < count) or (count is None and (
                time.time() < deadline if interval is None else offset + n * interval < seconds)):
            shutil.rmtree(src, ignore_errors=True)
            src.mkdir(parents=True)
            for f in range(files):
                (src / f"part-{f}.bin").write_bytes(os.urandom(file_bytes))
            manifest = hash_directory(src)
            ref = f"load/c{idx:02d}@v{n}"
            if interval is None:
                t0 = time.perf_counter()
            else:
                t0 = began + offset + n * interval  # when this push is due, even if the last one ran late
                time.sleep(max(0.0, t0 - time.perf_counter()))
            n += 1
            try:
                result = client.push(src, ref, manifest=manifest, parallel_uploads=1, inline_small_files=inline)
            except MirError as exc:
                errors.append(f"{ref}: {exc}")
                continue
            timings.append((PUSH, began_wall + (t0 - began), time.perf_counter() - t0))
            if result.get("manifest_digest") != manifest.digest():
                errors.append(f"{ref}: server manifest {result.get('manifest_digest')} != {manifest.digest()}")
            committed.append((ref, manifest.digest()))
    shutil.rmtree(src, ignore_errors=True)
    results.put({"timings": timings, "statuses": dict(statuses), "committed": committed, "errors": errors,
                 "ended": time.time(), "cpu": _own_cpu() - cpu0})
    finish.wait()


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- CPU accounting ----------------------------------------------------------------------------------------

TICK = os.sysconf("SC_CLK_TCK")


def _direct_children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with suppress(OSError):
            found.extend(int(c) for c in (task / "children").read_text().split())
    return found


def _tree(pid: int) -> list[int]:
    """``pid`` and its live descendants (the API process's scan worker and the worker's scanner children)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(_direct_children(current))
    return found


def _cpu(pids: list[int], fields_from: int = 11, fields_to: int = 15) -> float:
    """CPU seconds of ``pids``: by default utime, stime, cutime and cstime; (12, 13) is system time alone."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[fields_from:fields_to])
    return total / TICK


def _postgres_pids() -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/comm"):
        try:
            if stat.read_text().strip() in ("postgres", "postmaster"):
                pids.append(int(stat.parent.name))
        except OSError:
            pass
    return pids


def _snapshot(server_pids: list[int]) -> dict[str, float]:
    """Cumulative CPU seconds of the API process trees and of every PostgreSQL process on this machine."""
    api = sum(_cpu([p]) for p in server_pids)
    trees = sum(_cpu(_tree(p)) for p in server_pids)
    api_system = sum(_cpu([p], 12, 13) for p in server_pids)
    return {"api": api, "api_system": api_system, "scan": trees - api, "postgres": _cpu(_postgres_pids())}


def pct(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


# -- the check afterwards ----------------------------------------------------------------------------------


def audit_entries(client: MirClient, *, after: int = -1, action: str | None = None) -> Iterator[dict[str, Any]]:
    """Every audit entry after index ``after`` (only ``action``'s, if given), a page of 1000 at a time."""
    while True:
        params: dict[str, Any] = {"after": after, "limit": 1000, **({"action": action} if action else {})}
        page = client.json("GET", "/v1/audit/entries", params=params)
        yield from page["items"]
        if page["next"] is None:
            return
        after = page["next"]


def scan_lag(url: str, token: str, committed: list[tuple[str, str]], load_ended: float,
             wait_s: float = 300.0) -> list[str]:
    """Wait until every committed version has its verdict, then print how long each waited for it after its
    commit (from the audit log's times): what a push's latency does not show, since scans run after it."""
    from datetime import datetime

    wanted = {ref for ref, _ in committed}
    done: dict[str, str] = {}
    with MirClient(url, token) as c:
        deadline, seen = time.time() + wait_s, {"scan.completed": -1, "scan.failed": -1}
        while len(done) < len(wanted) and time.time() < deadline:
            for action in seen:
                for item in audit_entries(c, after=seen[action], action=action):  # since the last look
                    if (label := f"{item['artifact']}@{item['version']}") in wanted:
                        done.setdefault(label, item["at"])
                    seen[action] = max(seen[action], item["index"])
            if len(done) < len(wanted):
                time.sleep(1.0)
        committed_at = {f"{i['artifact']}@{i['version']}": i["at"]
                        for i in audit_entries(c, action="version.committed")}
    lags = [(datetime.fromisoformat(done[r]) - datetime.fromisoformat(committed_at[r])).total_seconds() * 1000
            for r in done if r in committed_at]
    last = max((datetime.fromisoformat(t).timestamp() for t in done.values()), default=load_ended)
    print(f"scans: {len(done)}/{len(wanted)} committed versions have a verdict; from commit to verdict p50 "
          f"{pct(lags, 50):.0f} ms, p99 {pct(lags, 99):.0f} ms, max {max(lags, default=0):.0f} ms; the last verdict "
          f"{max(0.0, last - load_ended):.1f} s after the load ended")
    return [f"{r}: no scan verdict after {wait_s:.0f} s" for r in sorted(wanted - set(done))][:5]


def check(url: str, token: str, committed: list[tuple[str, str]], workdir: Path) -> list[str]:
    """Pull and verify every committed version; verify the audit log and every version's inclusion proof."""
    from registry.client import audit_verify
    from signing.merkle import leaf_hash, verify_inclusion
    from signing.tree_head import SignedTreeHead

    problems: list[str] = []
    pulls = workdir / "pulls"

    def pull(item: tuple[str, str]) -> str | None:
        ref, digest = item
        target = pulls / ref.replace("/", "_").replace("@", "_")
        try:
            with MirClient(url, token) as c:
                got = c.pull(ref, target, parallel_downloads=1)
            if got["manifest_digest"] != digest:
                return f"{ref}: pulled manifest {got['manifest_digest']} != pushed {digest}"
            return None
        except MirError as exc:
            return f"{ref}: pull failed: {exc}"
        finally:
            shutil.rmtree(target, ignore_errors=True)

    with ThreadPoolExecutor(4) as pool:
        problems.extend(p for p in pool.map(pull, committed) if p)
    print(f"check: {len(committed) - len(problems)}/{len(committed)} committed versions pulled and verified")

    os.environ["MIR_CONFIG_DIR"] = str(workdir / "check-config")  # fresh pin and checkpoint
    with MirClient(url, token) as c:
        report = audit_verify.verify(c, full=True)
        if not report.ok:
            problems.extend(f"audit verify: {p}" for p in report.problems)
        signed = SignedTreeHead.from_dict(c.json("GET", "/v1/audit/tree-head"))
        head = signed.head
        opened: dict[str, int] = {}
        commits: dict[str, list[tuple[int, str, str]]] = {}
        for item in audit_entries(c):
            label = f"{item['artifact']}@{item['version']}"
            if item["action"] == "version.opened":
                opened.setdefault(label, item["index"])
            elif item["action"] == "version.committed":
                commits.setdefault(label, []).append((item["index"], item["body"], item["leaf_hash"]))
        proven = 0
        for ref, _digest in committed:
            found = commits.get(ref, [])
            if len(found) != 1:
                problems.append(f"{ref}: {len(found)} version.committed entries in the log")
                continue
            index, body, leaf = found[0]
            if ref not in opened or opened[ref] > index:
                problems.append(f"{ref}: version.opened is missing or after version.committed")
            if index >= head.tree_size:
                problems.append(f"{ref}: committed entry {index} is outside the signed head ({head.tree_size})")
                continue
            proof = c.json("GET", "/v1/audit/proof/inclusion", params={"index": index, "tree_size": head.tree_size})
            path = [bytes.fromhex(h) for h in proof["proof"]]
            computed = leaf_hash(body.encode())
            ok = computed.hex() == leaf and verify_inclusion(computed, index, head.tree_size, path, head.root_hash)
            if ok:
                proven += 1
            else:
                problems.append(f"{ref}: inclusion proof of entry {index} does not verify")
    print(f"check: audit log {'verified' if report.ok else 'FAILED'} ({report.tree_size} entries); "
          f"{proven}/{len(committed)} version.committed entries proven included, each once, after its open")
    return problems


# -- main --------------------------------------------------------------------------------------------------


def run(args: argparse.Namespace, url_list: list[str], token: str, workdir: Path, server_pids: list[int]) -> int:
    ctx = mp.get_context("spawn")
    results, ready, start, finish = ctx.Queue(), ctx.Queue(), ctx.Event(), ctx.Event()
    interval = args.clients / args.rate if args.rate else None
    warm = args.warmup if args.count is None else 0.0
    procs = [
        ctx.Process(target=_client, args=(i, url_list[i % len(url_list)], token, start, finish, ready,
                                          args.seconds + warm, args.count, args.files, args.file_bytes, str(workdir),
                                          results,
                                          not args.no_inline, interval, (interval or 0.0) * i / args.clients))
        for i in range(args.clients)
    ]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get()
    started = time.time()
    start.set()
    time.sleep(warm)
    cpu_before, load_before = _snapshot(server_pids), os.getloadavg()[0]
    measured_from = started + warm
    outs = [results.get() for _ in procs]
    cpu_after, load_after = _snapshot(server_pids), os.getloadavg()[0]
    finish.set()
    for p in procs:
        p.join()
    elapsed = max(o["ended"] for o in outs) - measured_from
    timings: dict[str, list[float]] = {}
    warming: list[float] = []
    statuses: Counter[str] = Counter()
    committed: list[tuple[str, str]] = []
    errors: list[str] = []
    for o in outs:
        for label, at, seconds in o["timings"]:
            if at >= measured_from:
                timings.setdefault(label, []).append(seconds * 1000)
            elif label == PUSH:
                warming.append(seconds * 1000)
        statuses.update(o["statuses"])
        committed.extend(o["committed"])
        errors.extend(o["errors"])
    offered = f" (offered {args.rate:g}/s, open loop)" if args.rate else " (closed loop)"
    measured = len(timings.get(PUSH, []))
    print(f"committed versions: {measured} in {elapsed:.1f} s = {measured / elapsed:.1f} versions/s" + offered
          + (f", after {warm:g} s of warm-up ({len(warming)} more pushes, p50 {pct(warming, 50):.0f} ms, p99 "
             f"{pct(warming, 99):.0f} ms, not counted)" if warming else ""))
    print(f"{'route':<28} {'count':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for label in [*ROUTES.values(), PUSH]:
        values = timings.get(label, [])
        if values:
            print(f"{label:<28} {len(values):>7} {pct(values, 50):8.1f} {pct(values, 99):8.1f} {max(values):8.1f}")
    print("push p99 ms by 2-s window from the start: " + " ".join(_windows(outs, started, 2.0)))
    n = max(1, measured)
    api_ms, sys_ms, scan_ms, pg_ms = (
        (cpu_after[k] - cpu_before[k]) * 1000 / n for k in ("api", "api_system", "scan", "postgres")
    )
    client_ms = sum(o["cpu"] for o in outs) * 1000 / max(1, len(committed))
    print(f"CPU per committed version: API processes {api_ms:.1f} ms ({sys_ms:.1f} ms of it in the kernel), "
          f"their scan workers {scan_ms:.1f} ms, clients "
          f"{client_ms:.1f} ms, PostgreSQL (every backend on this machine) {pg_ms:.1f} ms; "
          f"load average {load_before:.1f} -> {load_after:.1f} on {os.cpu_count()} CPUs")
    bad = {k: v for k, v in statuses.items() if not k.endswith(": 200")}
    print("errors by status: " + (", ".join(f"{k} x{v}" for k, v in sorted(bad.items())) if bad else "none"))
    for e in errors[:10]:
        print(f"  {e}")
    load_ended = max(o["ended"] for o in outs)
    problems = [] if args.no_check or args.scan_workers == 0 else scan_lag(url_list[0], token, committed, load_ended)
    problems += [] if args.no_check else check(url_list[0], token, committed, workdir)
    for problem in problems[:20]:
        print(f"  PROBLEM: {problem}")
    return 1 if problems else 0


def _windows(outs: list[dict[str, Any]], started: float, width: float) -> list[str]:
    """The push p99 of each ``width``-second window (by when each push started or was due): where the tail is."""
    by_window: dict[int, list[float]] = {}
    for o in outs:
        for label, at, seconds in o["timings"]:
            if label == PUSH:
                by_window.setdefault(int((at - started) // width), []).append(seconds * 1000)
    return [f"{pct(by_window[w], 99):.0f}" for w in sorted(by_window)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["postgres", "postgresql", "sqlite"], default="postgres")
    parser.add_argument("--workers", type=int, default=2, help="API processes (mir serve replicas)")
    parser.add_argument("--scan-workers", type=int, default=1, help="scan worker processes (MIR_EMBEDDED_WORKERS)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--count", type=int, default=None, help="versions per client instead of --seconds")
    parser.add_argument("--rate", type=float, default=None,
                        help="open loop: offer this many versions/s in all, latency counted from when each was due")
    parser.add_argument("--warmup", type=float, default=5.0,
                        help="seconds the clients push before anything is counted (fresh processes fill their "
                             "connection pools and statement caches); those versions are still checked")
    parser.add_argument("--files", type=int, default=1, help="files per version")
    parser.add_argument("--file-bytes", type=int, default=4096)
    parser.add_argument("--url", help="target this running registry instead of starting one")
    parser.add_argument("--token", help="admin token for --url")
    parser.add_argument("--py-spy", type=Path, help="record a py-spy speedscope profile of each API process here")
    parser.add_argument("--no-check", action="store_true", help="skip the pull/verify/audit check afterwards")
    parser.add_argument("--no-inline", action="store_true",
                        help="push in three requests (open, upload, commit) even when the files are small")
    args = parser.parse_args()
    backend = "sqlite" if args.db == "sqlite" else "postgresql"
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mir-load-")))
        what = f"{args.clients} clients x {f'{args.count} versions' if args.count else f'{args.seconds:g} s'}"
        if not args.count and args.warmup:
            what += f" after {args.warmup:g} s of warm-up"
        if args.rate:
            what += f" at {args.rate:g} versions/s in all"
        if args.url:
            if not args.token:
                parser.error("--url needs --token")
            urls, token, pids = [args.url], args.token, []
            print(f"load: {what} against {args.url}")
        else:
            db = stack.enter_context(database_url(backend, workdir))
            servers = stack.enter_context(start_servers(db, workdir, args.workers, args.scan_workers, args.py_spy))
            urls, token, pids = servers.urls, servers.token, servers.pids
            print(f"load: {what}, {backend}, {args.workers} API process(es), {args.scan_workers} scan worker(s), "
                  f"{args.files} file(s) of {args.file_bytes} B per version, "
                  f"{'three requests' if args.no_inline else 'small files inline'}, {os.cpu_count()} CPUs")
        code = run(args, urls, token, workdir, pids)
    sys.exit(code)


if __name__ == "__main__":
    main()
