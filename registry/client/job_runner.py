"""Run the job after ``mir run --verify``: signals passed on, exit status kept, the verified copy read-only.

File modes (0400/0500) stop a job running as an ordinary user from changing the copy. Root ignores file modes,
so when the runner is root on Linux the job starts in its own mount namespace in which the copy is bind-mounted
read-only: a write fails with EROFS there, and nothing outside the namespace sees the mount. Where the kernel
refuses (no CAP_SYS_ADMIN in a container), the job runs without it and the runner says so.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

_CLONE_NEWNS = 0x00020000
_MS_RDONLY = 0x1
_MS_REMOUNT = 0x20
_MS_BIND = 0x1000
_MS_REC = 0x4000
_MS_PRIVATE = 0x40000
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)


def readonly_view(path: Path) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes ``path`` read-only for the child only (Linux, as root), else None."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return None
    target = os.fsencode(path)

    def enter() -> None:  # runs in the forked child, before exec: only async-signal-safe calls via libc
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(_CLONE_NEWNS) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS) refused")
        steps = (
            (None, b"/", _MS_REC | _MS_PRIVATE),  # our mounts must not propagate back to the host
            (target, target, _MS_BIND),
            (None, target, _MS_BIND | _MS_REMOUNT | _MS_RDONLY),
        )
        for source, where, flags in steps:
            if libc.mount(source, where, None, flags, None) != 0:
                raise OSError(ctypes.get_errno(), f"mount {where!r} refused")

    return enter


def run_job(command: Sequence[str], env: dict[str, str], *, readonly: Path | None = None,
            note: Callable[[str], None] = lambda _text: None) -> int:
    """Run ``command`` to its end and return its exit status (128+N when a signal N ended it).

    SIGTERM, SIGINT, SIGHUP and SIGQUIT sent to the runner are passed to the job, so the runner outlives it and
    can clean up after it.
    """
    preexec = readonly_view(readonly) if readonly is not None else None
    try:
        process = subprocess.Popen(list(command), env=env, preexec_fn=preexec)
    except subprocess.SubprocessError:
        if preexec is None:
            raise
        note("could not mount the verified copy read-only here (no mount namespace); it stays in a 0700 "
             "directory only this user can enter, but a job running as root could still change it")
        process = subprocess.Popen(list(command), env=env)

    def forward(signum: int, _frame: FrameType | None) -> None:
        process.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in _FORWARDED}
    try:
        code = process.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 128 - code if code < 0 else code
