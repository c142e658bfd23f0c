"""``mir worker``: the scan worker loop (also started by ``mir serve`` as a child process)."""

from __future__ import annotations

import logging
import os
import signal
import threading

from registry.core.context import RegistryContext
from registry.core.heap import freeze_startup_objects
from registry.core.settings import Settings
from registry.scanning.results import queue_upgrade_rescans
from registry.scanning.tasks import NotHandedBack, default_worker_id, hand_back, run_once

log = logging.getLogger("mir.worker")


def run(settings: Settings, *, poll_s: float = 0.5, once: bool = False, parent_pid: int | None = None) -> None:
    """Process scan jobs until stopped (SIGTERM/SIGINT); ``once`` drains the queue and returns.

    On start it queues background rescans of versions scanned by an older scanner version.

    An embedded worker gets ``parent_pid`` (its ``mir serve``) and exits as soon as that process is gone, so a
    killed server never leaves workers behind.
    """
    ctx = RegistryContext.create(settings)
    try:
        queue_upgrade_rescans(ctx)
    except Exception:
        log.exception("could not queue rescans after a scanner upgrade; the next worker start retries")
    freeze_startup_objects()  # a long-running loop: its collections need not walk the start-up heap
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    worker = default_worker_id()
    owed: list[NotHandedBack] = []  # claimed work the database failed to take back; handed back when it answers
    while not stop.is_set():
        if parent_pid is not None and os.getppid() != parent_pid:
            log.info("parent mir serve (pid %s) is gone; worker exiting", parent_pid)
            return
        owed = hand_back(ctx, owed, worker)
        try:
            worked = run_once(ctx, worker)
        except NotHandedBack as exc:
            log.exception("scan worker loop error")
            owed.append(exc)
            worked = False
        except Exception:
            log.exception("scan worker loop error")
            worked = False
        if not worked:
            if once:
                return
            stop.wait(poll_s)
