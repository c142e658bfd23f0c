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
    loop = ScanLoop(ctx)
    try:
        while not stop.is_set():
            if parent_pid is not None and os.getppid() != parent_pid:
                log.info("parent mir serve (pid %s) is gone; worker exiting", parent_pid)
                return
            if not loop.step():
                if once:
                    return
                stop.wait(poll_s)
    finally:
        loop.close()


class ScanLoop:
    """One worker's loop: its id, and the claimed work the database failed to take back (handed back on the
    next steps, and once more when the loop ends; what is still owed then waits for its lease)."""

    def __init__(self, ctx: RegistryContext, worker: str | None = None) -> None:
        self.ctx, self.worker = ctx, worker or default_worker_id()
        self.owed: list[NotHandedBack] = []

    def step(self) -> bool:
        """Hand back what is owed, then do one unit of work; False when there was nothing to do (or it failed)."""
        self.owed = hand_back(self.ctx, self.owed, self.worker)
        try:
            return run_once(self.ctx, self.worker)
        except NotHandedBack as exc:
            log.exception("scan worker loop error")
            self.owed.append(exc)
            return True  # work was done and may remain: a --once run goes on (and hands it back next step)
        except Exception:
            log.exception("scan worker loop error")
            return False

    def close(self) -> None:
        if self.owed:
            self.owed = hand_back(self.ctx, self.owed, self.worker)
        if self.owed:
            log.warning("%d claimed scan task(s) or job(s) left to their leases", len(self.owed))
