"""Child-process entry point of the sandboxed scan: ``python -I -m scanners.worker [opts] PATH``.

(``scanners.sandbox`` starts it with ``-I -c`` and an explicit ``sys.path`` entry, same effect.)

It lowers its own resource limits (CPU seconds, address space, file size, no core
dumps) before it opens the file, scans it, and prints the report as one JSON
object on stdout. Setting the limits here rather than in a ``preexec_fn`` keeps
the parent safe to call from threaded servers.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys

from scanners.limits import Limits


def _lower(which: int, value: int) -> None:
    _soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(which, (value, value if hard == resource.RLIM_INFINITY else hard))


def apply_limits(cpu_seconds: int, memory_bytes: int, file_bytes: int) -> None:
    _lower(resource.RLIMIT_CORE, 0)
    _lower(resource.RLIMIT_CPU, cpu_seconds)
    if memory_bytes > 0:
        _lower(resource.RLIMIT_AS, memory_bytes)
    _lower(resource.RLIMIT_FSIZE, file_bytes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scanners.worker")
    parser.add_argument("--cpu-seconds", type=int, default=300)
    parser.add_argument("--memory-bytes", type=int, default=4 << 30)
    parser.add_argument("--limits-json", default="{}", help="overrides of scanners.limits.Limits fields")
    parser.add_argument("path")
    args = parser.parse_args(argv)
    overrides = json.loads(args.limits_json)
    if "extra_safe_globals" in overrides:
        overrides["extra_safe_globals"] = frozenset(overrides["extra_safe_globals"])
    limits = Limits(**overrides)
    apply_limits(args.cpu_seconds, args.memory_bytes, limits.max_spool)
    from scanners.api import scan_path

    report = scan_path(args.path, limits=limits)
    sys.stdout.write(json.dumps(report.to_dict()))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
