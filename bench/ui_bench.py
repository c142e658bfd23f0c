"""Time to interactive of the web interface in Debian's Chromium: the lineage page at 100 and 1,000 nodes, and
the version page.

Usage: python bench/ui_bench.py [--runs 5] [--database-url URL] [--screenshots DIR] [--no-scan]

Starts the real ``mir serve`` (SQLite in a temp dir unless a URL is given), pushes a lineage tree with the
real SDK (one dataset, 9 models trained on it, 10 fine-tunes of each, 10 quantizations of each fine-tune:
1,000 versions), then opens pages in headless Chromium (``/usr/bin/chromium`` under Playwright):

- lineage page of the dataset at depth 2 (100 nodes) and depth 3 (1,000 nodes): interactive when the graph is
  drawn and its pan/zoom/click handlers are attached (``#graph[data-ready]``, stamped with performance.now());
- version page of a fine-tune (parents, children, signatures, scans, policy): interactive at ``loadEventEnd``
  (its only script, the copy buttons, has run).

Prints the median and the spread over ``--runs`` loads of each, with the graph JSON's own fetch time.
``--no-scan`` starts the server without scan workers (versions stay "pending"; the pages are the same) so the
1,000 scans do not compete with the measurement on a small machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from registry.client.http import MirClient
from tests.support.browser import launched
from tests.support.gate import wait_scanned
from tests.support.server import live_server
from tests.support.trees import make_tree

FAN = (9, 10, 10)  # children per node at each level below the dataset
EDGE = ("trained_on", "fine_tuned_from", "quantized_from")


def push_tree(client: MirClient, work: Path) -> tuple[int, float]:
    """Push the dataset and every descendant level; returns (versions, seconds)."""
    started = time.perf_counter()
    client.push(make_tree(work / "root", {"data.jsonl": b'{"text": "root"}\n'}), "bench/data@1", kind="dataset")
    level = ["bench/data@1"]
    count = 1
    for depth, (fan, edge) in enumerate(zip(FAN, EDGE, strict=True), start=1):
        nxt = []
        for parent_index, parent in enumerate(level):
            for i in range(fan):
                name = f"m{depth}-{parent_index}-{i}"
                src = make_tree(work / name, {"config.json": f'{{"name": "{name}"}}'.encode()})
                ref = f"bench/{name}@1"
                client.push(src, ref, lineage=[{"type": edge, "parent": {"ref": parent}, "attributes": {}}])
                nxt.append(ref)
                count += 1
        level = nxt
        print(f"  level {depth}: {len(level)} versions pushed ({time.perf_counter() - started:.0f}s so far)",
              flush=True)
    return count, time.perf_counter() - started


def lineage_tti(page: Any, url: str) -> tuple[float, float, float, int]:
    """(interactive, HTML received, graph JSON fetch) in ms from navigation start, and the nodes drawn."""
    page.goto(url)
    page.wait_for_selector("#graph[data-ready='1']", timeout=120_000)
    ready = float(page.evaluate("Number(document.getElementById('graph').dataset.readyAt)"))
    html = float(page.evaluate("performance.getEntriesByType('navigation')[0].responseEnd"))
    fetch = float(page.evaluate(
        "performance.getEntriesByType('resource').filter(e => e.name.includes('lineage.json'))[0].duration"))
    nodes = int(page.evaluate("Number(document.getElementById('graph').dataset.nodes)"))
    return ready, html, fetch, nodes


def version_tti(page: Any, url: str) -> float:
    """``loadEventEnd`` in ms from navigation start: the page's script (copy buttons) has run."""
    page.goto(url, wait_until="load")
    return float(page.evaluate(
        "(() => { const n = performance.getEntriesByType('navigation')[0]; return n.loadEventEnd; })()"))


def summary(values: list[float]) -> str:
    return f"median {statistics.median(values):7.1f} ms   (min {min(values):.1f}, max {max(values):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--screenshots", type=Path, default=None)
    parser.add_argument("--no-scan", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mir-ui-bench-"))
    url = args.database_url or f"sqlite:///{work / 'mir.db'}"
    env = {"MIR_EMBEDDED_WORKERS": "0"} if args.no_scan else {}
    with live_server(url, work, env=env) as server:
        with MirClient(server.url, server.admin_token) as client:
            count, took = push_tree(client, work / "trees")
            print(f"pushed {count} versions in {took:.0f}s", flush=True)
            if not args.no_scan:
                print("waiting for the scans to finish", flush=True)
                wait_scanned(client, "bench/m3-89-9@1", timeout=1200)  # jobs run in order: the last is last
        with launched() as browser:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.goto(server.url + "/ui/login")
            page.fill("#token", server.admin_token)
            page.click("form[action='/ui/login'] button[type=submit]")
            page.wait_for_load_state()
            base = server.url + "/ui/artifacts/bench/data/versions/1/lineage?depth="
            for depth in (2, 3):
                lineage_tti(page, base + str(depth))  # warm-up: templates, statement caches
                results = [lineage_tti(page, base + str(depth)) for _ in range(args.runs)]
                nodes = results[0][3]
                if args.screenshots:
                    args.screenshots.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(args.screenshots / f"lineage-{nodes}.png"))
                print(f"lineage page, {nodes:5d} nodes: TTI {summary([r[0] for r in results])}\n"
                      f"    of which HTML received {summary([r[1] for r in results])}, "
                      f"graph JSON fetch {summary([r[2] for r in results])}")
            target = server.url + "/ui/artifacts/bench/m2-0-0/versions/1"
            version_tti(page, target)
            print(f"version page:              TTI {summary([version_tti(page, target) for _ in range(args.runs)])}")
            context.close()


if __name__ == "__main__":
    main()
