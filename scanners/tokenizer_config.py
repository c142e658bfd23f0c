"""Chat templates inside JSON configs (``tokenizer_config.json``, ``processor_config.json``, ...).

Hugging Face repos carry the model's chat template as the ``chat_template`` key of ``tokenizer_config.json``:
one Jinja string, or a list of ``{"name": ..., "template": ...}`` objects. Front ends render it in-process, so
it is code and goes through :mod:`scanners.chat_template`, as GGUF metadata templates do. Blobs are scanned by
content, not by name, so any JSON object with that key is checked; other JSON stays plain data.
"""

from __future__ import annotations

import json

from scanners.context import Context
from scanners.report import Verdict

KEY = "chat_template"
_QUOTED_KEY = f'"{KEY}"'
_SPACE = "\ufeff \t\r\n"


class TextKeeper:
    """Collects a text file's contents while it may be a JSON object small enough to parse (bounded memory)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[str] = []
        self.size = 0
        self.alive = True
        self.started = False  # seen the first character that is not white space
        self.too_big = False  # a JSON object over the limit: only watched for the key
        self.too_big_with_key = False
        self._tail = ""

    def add(self, text: str) -> None:
        if self.too_big:
            self._watch(text)
        if not self.alive:
            return
        self.size += len(text)
        if self.size > self.limit:
            self.too_big = True
            self._watch("".join(self.parts) + text)
            self._give_up()
            return
        self.parts.append(text)
        if not self.started:
            head = "".join(self.parts).lstrip(_SPACE)
            if head:
                self.started = True
                if not head.startswith("{"):
                    self._give_up()

    def _watch(self, text: str) -> None:
        window = self._tail + text
        self.too_big_with_key = self.too_big_with_key or _QUOTED_KEY in window
        self._tail = window[-len(_QUOTED_KEY):]

    def _give_up(self) -> None:
        self.alive = False
        self.parts.clear()

    def text(self) -> str | None:
        return "".join(self.parts) if self.alive and self.started else None


def check(ctx: Context, keeper: TextKeeper, member: str) -> None:
    """Analyse every chat template a JSON object's ``chat_template`` key holds (nothing else is parsed for)."""
    if keeper.too_big_with_key:
        ctx.add(Verdict.SUSPICIOUS, f"a JSON object over {keeper.limit} characters names {KEY}: too large to "
                "analyse its templates", member=member, symbol=KEY)
        return
    text = keeper.text()
    if text is None or _QUOTED_KEY not in text:
        return
    try:
        config = json.loads(text.lstrip(_SPACE))
    except (ValueError, RecursionError):
        return  # not JSON a loader could read either: plain text
    if not isinstance(config, dict) or KEY not in config:
        return
    value = config[KEY]
    if isinstance(value, str):
        _analyse(ctx, KEY, value, member)
        return
    if isinstance(value, list) and all(isinstance(t, dict) and isinstance(t.get("template"), str) for t in value):
        for item in value:
            _analyse(ctx, f"{KEY}[{str(item.get('name'))[:100]!r}]", item["template"], member)
        return
    if value is not None:
        ctx.add(Verdict.SUSPICIOUS, f"{KEY} is neither a template string nor a list of named templates "
                f"({type(value).__name__}); loaders may still try to render it", member=member, symbol=KEY)


def _analyse(ctx: Context, key: str, template: str, member: str) -> None:
    from scanners import chat_template  # jinja2: imported only where a template is found

    for verdict, message in chat_template.analyse(template):
        ctx.add(verdict, f"chat template {key}: {message}", member=member, symbol=key)
