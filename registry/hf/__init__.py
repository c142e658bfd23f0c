"""A Hugging Face Hub-compatible endpoint on the registry (``HF_ENDPOINT=<registry URL>``).

Repo ids are ``namespace/name`` artifacts; revisions are versions, aliases,
``main`` (= ``@latest``) or commit ids derived from the version; every file is
served LFS-style with its sha256 as ETag. The write side turns HF commits into
versions through the same service functions as ``mir push``. Routes live at the
root, next to ``/v1`` and ``/docs``; see :mod:`registry.hf.read` and
:mod:`registry.hf.write`. Imports stay lazy so ``mir import hf`` does not load
the web stack.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import APIRouter, FastAPI


def routers() -> list[APIRouter]:
    """The HF routers, in the order they must be matched."""
    from registry.hf import read, write

    return [read.router, write.router]


def install(app: FastAPI) -> None:
    """Add the HF routes; call after the ``/v1`` routers so those match first."""
    for router in routers():
        app.include_router(router)


def streamed_paths() -> re.Pattern[str]:
    """Paths whose bodies stream to the blob store (exempt from the JSON body cap): ``/v1`` blobs and LFS uploads."""
    from registry.hf.uploads import STREAMED_PATH
    from registry.limits import _STREAMED as V1_STREAMED

    return re.compile(f"(?:{V1_STREAMED.pattern})|(?:{STREAMED_PATH.pattern})")
