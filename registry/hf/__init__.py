"""A Hugging Face Hub-compatible endpoint on the registry (``HF_ENDPOINT=<registry URL>``).

Repo ids are ``namespace/name`` artifacts; revisions are versions, aliases,
``main`` (= ``@latest``) or commit ids derived from the version; every file is
served LFS-style with its sha256 as ETag. The write side turns HF commits into
versions through the same push flow as ``mir push``. Routes live at the root,
next to ``/v1`` and ``/docs``: :mod:`registry.hf.read` and :mod:`registry.hf.write`;
the server mounts them after the ``/v1`` routers.
"""
