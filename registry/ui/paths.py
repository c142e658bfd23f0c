"""Path parameters of the web interface's routes, with the API's naming rules (a bad name is a 400 page)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

from registry.core.names import SEGMENT_MAX, SEGMENT_PATTERN, VERSION_MAX, VERSION_PATTERN

Namespace = Annotated[str, Path(pattern=SEGMENT_PATTERN, max_length=SEGMENT_MAX)]
Name = Annotated[str, Path(pattern=SEGMENT_PATTERN, max_length=SEGMENT_MAX)]
Ref = Annotated[str, Path(pattern=VERSION_PATTERN, max_length=VERSION_MAX)]
UI_VERSION = "/ui/artifacts/{namespace}/{name}/versions/{ref}"
