"""``mir worker``: the scan worker loop (also started by ``mir serve`` as a child process)."""

from __future__ import annotations

import logging
import signal
import threading

from registry.context import RegistryContext
from registry.scans import run_once
from registry.settings import Settings

log = logging.getLogger("mir.worker")


def run(settings: Settings, *, poll_s: float = 0.5, once: bool = False) -> None:
    """Process scan jobs until stopped (SIGTERM/SIGINT); ``once`` drains the queue and returns."""
    ctx = RegistryContext.create(settings)
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    while not stop.is_set():
        try:
            worked = run_once(ctx)
        except Exception:
            log.exception("scan worker loop error")
            worked = False
        if not worked:
            if once:
                return
            stop.wait(poll_s)
