"""The private copy ``mir run --verify`` runs a job on, attacked by someone who can write DIR or the copy root.

- A file of DIR swapped after the listing (for a symlink, a FIFO) or grown while it is copied is refused: the
  copy never follows it elsewhere, never blocks on it, never fills the RAM-backed copy root.
- A copy root (or a folder above it) that others may rename in without the sticky bit is refused before
  anything is copied: whoever could rename the copy could put their own files under its name.
- The stale-copy sweep and ``remove_copy`` never follow a symlink named like a copy out of the root.
- SIGTERM before the job starts still removes the copy and exits 128+15.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from registry.client.private_copy import (
    COPY_PREFIX,
    UnsafeCopyRoot,
    _copy_one,
    make_private_copy,
    remove_copy,
    sweep_stale_copies,
)
from signing.tree import TreeError, list_files
from tests.support.trees import make_tree


def _private_root(path: Path) -> Path:
    path.mkdir(mode=0o700)
    return path


def test_a_file_changed_after_the_listing_is_refused(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "dir", {"a.bin": b"A" * 100, "b.bin": b"B" * 100, "c.bin": b"C" * 100})
    outside = make_tree(tmp_path / "elsewhere", {"secret": b"S" * 100})
    target = _private_root(tmp_path / "copy")
    listed = {f.path: f for f in list_files(src)}

    with (src / "a.bin").open("ab") as grow:  # grows while it is copied: never read past the listed size
        grow.write(b"more")
    with pytest.raises(TreeError, match="grew past the 100 bytes"):
        _copy_one(listed["a.bin"], target, "sha256")

    (src / "b.bin").unlink()  # swapped for a symlink out of DIR: not followed
    (src / "b.bin").symlink_to(outside / "secret")
    with pytest.raises(TreeError, match="changed while it was being copied"):
        _copy_one(listed["b.bin"], target, "sha256")
    assert not (target / "b.bin").exists()

    (src / "c.bin").unlink()  # swapped for a FIFO: refused at once, never a blocked read
    os.mkfifo(src / "c.bin")
    writer = threading.Thread(target=_feed_fifo, args=(src / "c.bin",), daemon=True)
    writer.start()
    try:
        with pytest.raises(TreeError, match="no longer a regular file"):
            _copy_one(listed["c.bin"], target, "sha256")
    finally:
        while writer.is_alive():  # a writer still waiting for a reader is let go
            _release_fifo(src / "c.bin")
            writer.join(timeout=0.05)


def _feed_fifo(path: Path) -> None:
    """A writer that gives the old code bytes to copy (instead of leaving it blocked), then goes away."""
    try:
        with path.open("wb") as fifo:
            fifo.write(b"F" * 10)
    except OSError:
        pass


def _release_fifo(path: Path) -> None:
    """Open the read end once, so a writer still waiting in ``open`` returns."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    os.close(fd)


def test_a_copy_root_others_may_rename_in_is_refused(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "dir", {"w.bin": b"weights"})
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # no sticky bit: anyone may rename our copy and put theirs in its place
    with pytest.raises(UnsafeCopyRoot, match="others may rename"):
        make_private_copy(src, root=shared)
    assert list(shared.iterdir()) == []
    below = shared / "mine"
    below.mkdir(mode=0o700)  # ours, but a folder above it is not safe
    with pytest.raises(UnsafeCopyRoot):
        make_private_copy(src, root=below)
    assert list(below.iterdir()) == []

    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)  # like /tmp and /dev/shm: others may not rename what is ours
    copy = make_private_copy(src, root=sticky)
    try:
        assert (copy.root / "w.bin").read_bytes() == b"weights"
        assert copy.manifest.files[0].size == 7
    finally:
        remove_copy(copy.root)


def test_sweep_and_remove_never_follow_a_symlink_out_of_the_root(tmp_path: Path) -> None:
    root = _private_root(tmp_path / "root")
    victim = make_tree(tmp_path / "victim", {"keep/file": b"precious"})
    (victim / "keep").chmod(0o500)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    link = root / f"{COPY_PREFIX}{dead.pid}-planted"
    link.symlink_to(victim)
    stale = root / f"{COPY_PREFIX}{dead.pid}-stale"
    (stale / "sub").mkdir(parents=True)
    (stale / "sub" / "w").write_bytes(b"x")
    (stale / "sub").chmod(0o500)
    live = root / f"{COPY_PREFIX}{os.getpid()}-live"
    live.mkdir()
    try:
        assert sweep_stale_copies(root) == [stale]
        remove_copy(link)  # a copy's path that someone replaced by a symlink: left alone, nothing followed
        assert link.is_symlink() and live.is_dir() and not stale.exists()
        assert (victim / "keep" / "file").read_bytes() == b"precious"
        assert stat.S_IMODE((victim / "keep").stat().st_mode) == 0o500
    finally:
        (victim / "keep").chmod(0o700)


def test_sigterm_before_the_job_removes_the_copy(tmp_path: Path) -> None:
    """The registry never answers (a socket that listens and says nothing), so ``mir run`` waits in
    verification with its copy made; SIGTERM then must leave no copy behind and exit 128+15."""
    src = make_tree(tmp_path / "dir", {"w.bin": b"weights"})
    root = _private_root(tmp_path / "copies")
    marker = tmp_path / "job-ran"
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        env = {**os.environ, "MIR_URL": f"http://127.0.0.1:{silent.getsockname()[1]}", "MIR_TOKEN": "mir_x",
               "MIR_CONFIG_DIR": str(tmp_path / "config")}
        run = subprocess.Popen(
            [sys.executable, "-m", "registry.main", "run", "--verify", "acme/m@1", str(src), "--copy-dir",
             str(root), "--", "touch", str(marker)],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        try:
            while not list(root.iterdir()) and run.poll() is None:
                time.sleep(0.02)
            run.send_signal(signal.SIGTERM)
            _out, err = run.communicate(timeout=120)
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
    assert run.returncode == 128 + signal.SIGTERM, err.decode(errors="replace")
    assert list(root.iterdir()) == [] and not marker.exists()
    assert b"Traceback" not in err


def test_mir_run_refuses_an_unsafe_copy_dir_before_anything_runs(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "dir", {"w.bin": b"weights"})
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    marker = tmp_path / "job-ran"
    env = {**os.environ, "MIR_URL": "http://127.0.0.1:9", "MIR_TOKEN": "mir_x",
           "MIR_CONFIG_DIR": str(tmp_path / "config"), "COLUMNS": "400"}
    result = subprocess.run(
        [sys.executable, "-m", "registry.main", "run", "--verify", "acme/m@1", str(src), "--copy-dir", str(shared),
         "--", "touch", str(marker)],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert "others may rename" in result.stderr and "not running the job" in result.stderr
    assert not marker.exists() and list(shared.iterdir()) == []
