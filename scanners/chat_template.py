"""Static analysis of Jinja chat templates (GGUF metadata today; any tokenizer config could use it).

Loaders render a model's chat template with Jinja in the host Python process, so a template is code: one
that reaches Python internals (``''.__class__.__mro__[1].__subclasses__()``, ``cycler.__init__.__globals__``)
runs commands. CVE-2024-34359 (llama-cpp-python rendering GGUF templates outside a sandbox) was exactly
that. The template is parsed with the environment the loaders use (``ImmutableSandboxedEnvironment``,
loop controls and transformers' ``{% generation %}`` tag) and never rendered; the syntax tree is walked:
dunder or frame/code attributes, reached by attribute, item, ``attr`` filter or string argument, are
``malicious``; calls, filters and tests outside what real chat templates use, template loading, and keys
built from strings at render time are ``suspicious``. A template that does not parse is ``suspicious``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from jinja2 import nodes
from jinja2.exceptions import TemplateSyntaxError
from jinja2.ext import Extension, do, loopcontrols
from jinja2.filters import FILTERS
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.tests import TESTS

from scanners.report import Verdict

SAFE_GLOBALS = frozenset(
    ["raise_exception", "strftime_now", "namespace", "dict", "range", "cycler", "joiner", "lipsum", "caller"]
)
"""Functions a chat template may call: Jinja's defaults plus the helpers transformers and llama.cpp add."""

SAFE_METHODS = frozenset(
    [
        "strip", "lstrip", "rstrip", "split", "rsplit", "splitlines", "startswith", "endswith", "lower",
        "upper", "title", "capitalize", "replace", "find", "rfind", "count", "join", "isdigit", "isalpha",
        "isalnum", "isspace", "items", "keys", "values", "get", "append", "extend", "fromkeys", "cycle",
        "changed",
    ]
)  # fmt: skip
"""Methods real chat templates call on strings, lists, dicts and ``loop``."""

SAFE_FILTERS = frozenset(FILTERS) - {"attr"}
SAFE_TESTS = frozenset(TESTS)

UNSAFE_ATTRS = frozenset(
    [
        "mro", "gi_frame", "gi_code", "gi_yieldfrom", "cr_frame", "cr_code", "cr_await", "ag_frame", "ag_code",
        "f_globals", "f_locals", "f_builtins", "f_back", "f_code", "tb_frame", "tb_next", "co_code",
        "func_globals", "func_code", "im_func", "im_self", "im_class",
    ]
)  # fmt: skip
"""Attributes that lead from any object to frames, code or globals (besides every dunder)."""

_DUNDER = re.compile(r"__\w+__")
_FRAGMENT = re.compile(r"__\w*[A-Za-z0-9]\w*|\w*[A-Za-z0-9]\w*__")  # a dunder name or a piece of one
_FORMAT_LOOKUP = re.compile(r"\{[^{}]*[.\[][^{}]*\}")  # a str.format field that reads an attribute or item
_MAX_REPEAT = 1000


class _GenerationTag(Extension):
    """transformers' ``{% generation %}...{% endgeneration %}`` block, parsed as its body."""

    tags = {"generation"}

    def parse(self, parser: Parser) -> nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.Scope(body, lineno=lineno)


def _environment() -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols, do, _GenerationTag]
    )


def unsafe_attr(name: str) -> Verdict:
    """How bad reaching attribute ``name`` from a template value is."""
    if _DUNDER.fullmatch(name) or name in UNSAFE_ATTRS:
        return Verdict.MALICIOUS
    return Verdict.SUSPICIOUS if name.startswith("_") else Verdict.CLEAN


def fold(node: nodes.Node) -> str | None:
    """The string an expression always evaluates to, if it is built from constants only."""
    if isinstance(node, nodes.Const):
        return node.value if isinstance(node.value, str) else None
    if isinstance(node, nodes.Concat):
        parts = [fold(n) for n in node.nodes]
        return None if any(p is None for p in parts) else "".join(p for p in parts if p is not None)
    if isinstance(node, nodes.Add):
        left, right = fold(node.left), fold(node.right)
        return left + right if left is not None and right is not None else None
    if isinstance(node, nodes.Mul):
        text, times = fold(node.left), node.right
        if text is not None and isinstance(times, nodes.Const) and isinstance(times.value, int):
            return text * min(max(times.value, 0), _MAX_REPEAT)
        return None
    if isinstance(node, nodes.Filter) and node.name == "join" and isinstance(node.node, nodes.List | nodes.Tuple):
        items = [fold(n) for n in node.node.items]
        sep = fold(node.args[0]) if node.args else ""
        if sep is None or any(i is None for i in items):
            return None
        return sep.join(i for i in items if i is not None)
    return None


def _builds_string(node: nodes.Node) -> bool:
    """A key computed at render time from strings: how a dunder name is smuggled past a reader."""
    if isinstance(node, nodes.Concat | nodes.Filter | nodes.Mod):
        return True
    if isinstance(node, nodes.Add | nodes.Mul):
        return any(isinstance(n, nodes.Const) and isinstance(n.value, str) for n in (node.left, node.right))
    return False


class _Walker:
    def __init__(self, tree: nodes.Template) -> None:
        self.tree = tree
        self.macros = {m.name for m in tree.find_all(nodes.Macro)}
        self.found: dict[str, Verdict] = {}
        self.explained: set[int] = set()  # constants already reported as part of a malicious lookup

    def flag(self, verdict: Verdict, node: nodes.Node, message: str) -> None:
        if verdict is not Verdict.CLEAN:
            self.found.setdefault(f"line {node.lineno}: {message}", verdict)

    def attr(self, node: nodes.Node, name: str, how: str, key: nodes.Node | None = None) -> None:
        verdict = unsafe_attr(name)
        what = "reaches Python internals" if verdict is Verdict.MALICIOUS else "reads a private attribute"
        self.flag(verdict, node, f"{what} through {how} {name!r}")
        if key is not None and verdict is Verdict.MALICIOUS:
            self.explain(key)

    def explain(self, key: nodes.Node) -> None:
        self.explained.update(id(n) for n in (key, *key.find_all(nodes.Const)))

    def string_arg(self, node: nodes.Node, arg: nodes.Node, where: str) -> None:
        text = fold(arg)
        if text is not None:
            for part in text.split("."):
                if unsafe_attr(part) is Verdict.MALICIOUS:
                    self.flag(Verdict.MALICIOUS, node, f"passes {part!r} to {where}, which can look it up")
                    self.explain(arg)

    def arguments(self, node: nodes.Call | nodes.Filter | nodes.Test, where: str) -> None:
        for arg in node.args:
            self.string_arg(node, arg, where)
        for kw in node.kwargs:
            self.string_arg(node, kw.value, where)
            key = str(kw.key)
            if key.startswith("_"):
                verdict = Verdict.MALICIOUS if _DUNDER.fullmatch(key) else Verdict.SUSPICIOUS
                self.flag(verdict, node, f"passes keyword argument {key!r} to {where}")

    def call(self, node: nodes.Call) -> None:
        target = node.node
        if isinstance(target, nodes.Name):
            where = f"{target.name}()"
            if target.name not in SAFE_GLOBALS and target.name not in self.macros:
                self.flag(Verdict.SUSPICIOUS, node, f"calls {where}, which chat templates do not use")
        elif isinstance(target, nodes.Getattr):
            where = f".{target.attr}()"
            if target.attr in ("format", "format_map"):
                self.format(node, target)
            elif target.attr not in SAFE_METHODS and unsafe_attr(target.attr) is Verdict.CLEAN:
                self.flag(Verdict.SUSPICIOUS, node, f"calls method {where}, which chat templates do not use")
        else:
            where = "a computed callable"
            self.flag(Verdict.SUSPICIOUS, node, "calls the result of an expression")
        self.arguments(node, where)

    def format(self, node: nodes.Call, target: nodes.Getattr) -> None:
        """``str.format`` on a constant with plain fields is harmless; ``{0.__class__}`` fields are not."""
        receiver = fold(target.node)
        if receiver is None:
            self.flag(Verdict.SUSPICIOUS, node, f"calls .{target.attr}() on a string built at render time")
        elif _FORMAT_LOOKUP.search(receiver):
            dunder = _DUNDER.search(receiver) is not None
            verdict = Verdict.MALICIOUS if dunder else Verdict.SUSPICIOUS
            self.flag(verdict, node, f"formats {receiver[:80]!r}, whose fields read attributes or items")
            self.explain(target.node)

    def visit(self, node: nodes.Node) -> None:
        if isinstance(node, nodes.Getattr):
            self.attr(node, node.attr, "attribute")
        elif isinstance(node, nodes.NSRef):
            self.attr(node, node.attr, "namespace attribute")
        elif isinstance(node, nodes.Getitem):
            key = fold(node.arg)
            if key is not None and unsafe_attr(key) is Verdict.MALICIOUS:  # plain '_keys' are ordinary dict keys
                self.attr(node, key, "item", node.arg)
            elif _builds_string(node.arg):
                self.flag(Verdict.SUSPICIOUS, node, "looks up an item by a string built at render time")
        elif isinstance(node, nodes.Call):
            self.call(node)
        elif isinstance(node, nodes.Filter):
            if node.name not in SAFE_FILTERS:
                self.flag(Verdict.SUSPICIOUS, node, f"uses filter {node.name!r}, which chat templates do not use")
            self.arguments(node, f"filter {node.name!r}")
        elif isinstance(node, nodes.Test):
            if node.name not in SAFE_TESTS:
                self.flag(Verdict.SUSPICIOUS, node, f"uses test {node.name!r}, which chat templates do not use")
            self.arguments(node, f"test {node.name!r}")
        elif isinstance(node, nodes.Import | nodes.FromImport | nodes.Include | nodes.Extends):
            self.flag(Verdict.SUSPICIOUS, node, f"loads another template ({type(node).__name__.lower()})")
        elif isinstance(node, nodes.Name) and _DUNDER.fullmatch(node.name):
            self.flag(Verdict.SUSPICIOUS, node, f"refers to variable {node.name!r}")
        elif isinstance(node, nodes.Const):
            self.const(node)

    def const(self, node: nodes.Const) -> None:
        """A bare dunder name (or a piece of one) not already reported as part of a lookup."""
        value = node.value
        if isinstance(value, str) and _FRAGMENT.fullmatch(value) and id(node) not in self.explained:
            self.flag(Verdict.SUSPICIOUS, node, f"string constant names Python internals ({value!r})")

    def run(self) -> list[tuple[Verdict, str]]:
        for node in _walk(self.tree):
            self.visit(node)
        return [(verdict, message) for message, verdict in self.found.items()]


def _walk(tree: nodes.Node) -> Iterator[nodes.Node]:
    """Every node, without recursion (a parsed template can be nested as deep as the parser allows)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(list(node.iter_child_nodes())))


def analyse(source: str) -> list[tuple[Verdict, str]]:
    """Findings for one template (an empty list: nothing a real chat template would not do)."""
    try:
        tree = _environment().parse(source)
    except TemplateSyntaxError as exc:
        return [(Verdict.SUSPICIOUS, f"does not parse as Jinja (line {exc.lineno}: {exc.message})")]
    except RecursionError:
        return [(Verdict.SUSPICIOUS, "nested too deeply to parse as Jinja")]
    except Exception as exc:  # the parser's own failures on hostile input: unanalysed, not clean
        return [(Verdict.SUSPICIOUS, f"does not parse as Jinja ({type(exc).__name__}: {str(exc)[:200]})")]
    return _Walker(tree).run()
