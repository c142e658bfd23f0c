"""How lineage is spelled on a command line: the edge types, and a parent written as one string.

Shared by the API's request bodies (registry.core.schemas) and the client, which must not import those: the
pydantic models take ~0.1 s to build, and every `mir push` or `mir pull` paid that before sending a byte.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

EdgeType = Literal[
    "trained_on",
    "evaluated_on",
    "fine_tuned_from",
    "adapter_of",
    "merged_from",
    "quantized_from",
    "distilled_from",
    "converted_from",
    "derived_from",
    "generated_by",
    "imported_from",
]
EDGE_TYPES: tuple[str, ...] = get_args(EdgeType)


def parse_parent_spec(text: str) -> dict[str, Any]:
    """The command-line spelling of a parent, as a ``LineageParent`` body.

    ``ns/name@version`` (a registry version or alias), ``hf:org/name@<commit>`` (``hf:datasets/...`` and
    ``hf:spaces/...`` for other repo types), or ``https://host/file#sha256=<hex>`` (pip's hash fragment).
    """
    text = text.strip()
    if text.startswith(("hf:", "hf://")):
        rest = text.removeprefix("hf://") if text.startswith("hf://") else text.removeprefix("hf:")
        repo, sep, revision = rest.rpartition("@")
        if not sep:
            raise ValueError(f"{text!r}: pin a commit, e.g. hf:org/name@<40-hex sha>")
        repo_type = "model"
        for prefix, kind in (("datasets/", "dataset"), ("spaces/", "space"), ("models/", "model")):
            if repo.startswith(prefix):
                repo, repo_type = repo.removeprefix(prefix), kind
                break
        return {"external": {"kind": "huggingface", "repo": repo, "revision": revision, "repo_type": repo_type}}
    if "://" in text:
        url, sep, fragment = text.partition("#")
        algorithm, eq, hexdigest = fragment.partition("=")
        if not sep or not eq:
            raise ValueError(f"{text!r}: pin the content with a digest fragment, e.g. {url}#sha256=<64 hex>")
        return {"external": {"kind": "url", "url": url, "digest": f"{algorithm}:{hexdigest}"}}
    return {"ref": text}
