"""The lineage and quarantine commands of `mir`, and the lineage options of `mir push`.

The walk is fetched whole (every page) and drawn here: a tree for people, JSON for programs, DOT for
Graphviz, PROV-JSON or OpenLineage (one event per line) for other lineage tools.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from registry.client.http import MirClient, MirError
from registry.core.names import InvalidNameError, parse_ref
from registry.core.parent_specs import EDGE_TYPES, parse_parent_spec
from registry.policy.synthetic_limits import one_line

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

PARENT_HELP = (
    "TYPE:PARENT, repeatable. TYPE is one of " + ", ".join(EDGE_TYPES) + ". PARENT is ns/name@version "
    "(an alias is pinned to the version it names now), hf:org/name@<40-hex commit> (hf:datasets/... for "
    "datasets), or https://host/file#sha256=<hex>. Example: --parent trained_on:acme/corpus@2"
)
LINEAGE_FILE_HELP = (
    'JSON file with a list of edges: [{"type": "trained_on", "parent": "acme/corpus@2", '
    '"attributes": {"split": "train", "mixture_fraction": 0.8}}]; "parent" is a string as for --parent, '
    'or {"ref": ...} / {"external": {...}} as in the API'
)


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(code)


def _client_call(fn: Any) -> Any:
    """Run one client call, turning registry errors into one clear line and exit status 1."""
    try:
        with MirClient() as client:
            return fn(client)
    except MirError as exc:
        err.print(f"[red]error:[/red] {escape(exc.message)} [dim]({exc.code})[/dim]")
        raise typer.Exit(1) from exc
    except InvalidNameError as exc:
        raise _fail(str(exc)) from exc


def _synthetic_url(reference: str) -> str:
    ref = parse_ref(reference)
    return f"/v1/artifacts/{ref.repo}/versions/{quote(ref.ref or 'latest', safe='')}/synthetic"


# -- push options -----------------------------------------------------------------------------------------------


def parse_parent_option(text: str) -> dict[str, Any]:
    """``TYPE:PARENT`` from ``--parent`` as a declaration; ValueError names what is wrong."""
    edge_type, sep, spec = text.partition(":")
    if not sep or edge_type not in EDGE_TYPES:
        raise ValueError(f"--parent {text!r}: expected TYPE:PARENT with TYPE one of {', '.join(EDGE_TYPES)}")
    return {"type": edge_type, "parent": parse_parent_spec(spec), "attributes": {}}


def declarations_from_options(lineage_file: Path | None, parents: list[str] | None) -> list[dict[str, Any]]:
    """The ``lineage`` body of a push from ``--lineage FILE`` and ``--parent`` options (server re-validates)."""
    decls: list[dict[str, Any]] = []
    if lineage_file is not None:
        try:
            loaded = json.loads(lineage_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"--lineage {lineage_file}: not a readable JSON file ({exc})") from exc
        if not isinstance(loaded, list) or not all(isinstance(d, dict) for d in loaded):
            raise ValueError(f"--lineage {lineage_file}: expected a JSON list of edge objects")
        for item in loaded:
            if isinstance(item.get("parent"), str):
                item = {**item, "parent": parse_parent_spec(item["parent"])}
            decls.append(item)
    decls.extend(parse_parent_option(p) for p in parents or [])
    return decls


# -- drawing ----------------------------------------------------------------------------------------------------


def _node_label(key: str, nodes: dict[str, Any]) -> str:
    node = nodes.get(key, {})
    if node.get("type") == "hidden" or key.startswith("hidden:"):
        return "[dim](a version you cannot read)[/dim]"
    if node.get("type") == "external":
        return f"[cyan]{escape(key)}[/cyan] [dim]{node.get('kind')}[/dim]"
    return f"[bold]{escape(key)}[/bold] [dim]{node.get('kind', '')}[/dim]"


def _edge_label(edge: dict[str, Any]) -> str:
    attrs = ", ".join(f"{k}={v}" for k, v in edge["attributes"].items())
    later = "" if edge["at_push"] else " [dim](added later)[/dim]"
    recorded = " [dim](recorded)[/dim]" if edge["origin"] == "recorded" else ""
    return f"[magenta]{edge['type']}[/magenta]" + (f" [dim]{escape(attrs)}[/dim]" if attrs else "") + later + recorded


def render_tree(data: dict[str, Any]) -> Tree:
    """The walk as a tree from the root; a node reached twice (a diamond) is drawn once and then referenced."""
    up = data["direction"] == "up"
    children: dict[str, list[tuple[dict[str, Any], str]]] = {}
    for edge in data["edges"]:
        near, far = (edge["child"], edge["parent"]) if up else (edge["parent"], edge["child"])
        children.setdefault(near, []).append((edge, far))
    nodes = data["nodes"]
    tree = Tree(_node_label(data["root"], nodes))
    drawn = {data["root"]}
    stack: list[tuple[Tree, str]] = [(tree, data["root"])]
    while stack:
        branch, key = stack.pop()
        for edge, far in reversed(children.get(key, [])):
            label = f"{_edge_label(edge)} {'→' if up else '←'} {_node_label(far, nodes)}"
            if far in drawn and far in children:
                branch.add(label + " [dim](see above)[/dim]")
                continue
            drawn.add(far)
            stack.append((branch.add(label), far))
    return tree


def _dot_id(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_dot(data: dict[str, Any]) -> str:
    """Graphviz: arrows from a version to what it derives from (as PROV draws wasDerivedFrom)."""
    lines = ["digraph lineage {", "  rankdir=BT;", '  node [shape=box, fontname="Helvetica"];']
    for key, node in sorted(data["nodes"].items()):
        shape = "ellipse" if node.get("type") == "external" else "box"
        label = key if node.get("type") != "hidden" else "hidden"
        kind = node.get("kind", "")
        lines.append(f"  {_dot_id(key)} [label={_dot_id(label + (chr(10) + kind if kind else ''))}, shape={shape}];")
    for edge in data["edges"]:
        attrs = ", ".join(f"{k}={v}" for k, v in edge["attributes"].items())
        label = edge["type"] + (f"\n{attrs}" if attrs else "")
        style = "" if edge["at_push"] else ", style=dashed"
        lines.append(f"  {_dot_id(edge['child'])} -> {_dot_id(edge['parent'])} [label={_dot_id(label)}{style}];")
    lines.append("}")
    return "\n".join(lines)


def _parse_attr(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ValueError(f"--attr {text!r}: expected KEY=VALUE")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value


# -- commands ---------------------------------------------------------------------------------------------------


def register(app: typer.Typer) -> None:
    """Add the lineage and quarantine commands to the ``mir`` app."""

    @app.command("lineage")
    def lineage_cmd(
        reference: Annotated[str, typer.Argument(help="namespace/name@version-or-alias")],
        up: Annotated[bool, typer.Option("--up/--down", help="ancestors (default) or descendants")] = True,
        depth: Annotated[int, typer.Option(min=1, max=100, help="how many hops to walk")] = 10,
        fmt: Annotated[str, typer.Option("--format", help="tree, json or dot")] = "tree",
        impact: Annotated[bool, typer.Option("--impact", help="every descendant and the aliases on them")] = False,
        path_to: Annotated[str | None, typer.Option("--path-to", help="a shortest path to this version")] = None,
        export: Annotated[
            str | None, typer.Option("--export", help="prov (W3C PROV-JSON) or openlineage (one event per line)")
        ] = None,
    ) -> None:
        """Walk a version's lineage: what it came from (--up), what came from it (--down), the path to another
        version (--path-to), everything affected if it is bad (--impact), or export it (--export)."""
        try:
            parse_ref(reference)
        except InvalidNameError as exc:
            raise _fail(str(exc)) from exc
        if fmt not in ("tree", "json", "dot"):
            raise _fail(f"--format {fmt!r}: use tree, json or dot")
        if export is not None:
            if export not in ("prov", "openlineage"):
                raise _fail(f"--export {export!r}: use prov or openlineage")
            data = _client_call(
                lambda c: c.export_lineage(reference, export, direction="up" if up else "down", depth=depth)
            )
            if export == "prov":
                print(json.dumps(data, indent=2))
            else:
                for event in data:
                    print(json.dumps(event, separators=(",", ":")))
            return
        if path_to is not None:
            _print_path(_client_call(lambda c: c.lineage_path(reference, path_to)), fmt)
            return
        if impact:
            _print_impact(_client_call(lambda c: c.impact(reference)), fmt)
            return
        data = _client_call(lambda c: c.lineage(reference, direction="up" if up else "down", depth=depth))
        if fmt != "dot":  # the root's synthetic share: histogram by recursion depth, unknown share
            data["synthetic"] = _client_call(lambda c: c.json("GET", _synthetic_url(reference)))
        if fmt == "json":
            print(json.dumps(data, indent=2))
        elif fmt == "dot":
            print(render_dot(data))
        else:
            out.print(render_tree(data))
            if not data["edges"]:
                out.print(f"[dim]no {'ancestors' if up else 'descendants'} recorded[/dim]")
            out.print(f"synthetic: {escape(one_line(data['synthetic']))}")

    @app.command("lineage-add")
    def lineage_add(
        reference: Annotated[str, typer.Argument(help="the child: namespace/name@version (exact, committed)")],
        edge_type: Annotated[str, typer.Argument(metavar="TYPE", help=", ".join(EDGE_TYPES))],
        parent: Annotated[str, typer.Argument(help="ns/name@version, hf:org/name@<sha>, or URL#sha256=<hex>")],
        attr: Annotated[
            list[str] | None, typer.Option("--attr", help="KEY=VALUE, repeatable; VALUE is JSON if it parses")
        ] = None,
    ) -> None:
        """Add a lineage edge to an existing version (append-only and audited; cycles are refused)."""
        try:
            attributes = dict(_parse_attr(a) for a in attr or [])
        except ValueError as exc:
            raise _fail(str(exc)) from exc
        edge = _client_call(lambda c: c.add_lineage(reference, edge_type, parent, attributes))
        out.print(f"added [magenta]{edge['type']}[/magenta] edge {escape(edge['child'])} → {escape(edge['parent'])}")

    @app.command("quarantine")
    def quarantine_cmd(
        reference: Annotated[str, typer.Argument(help="namespace/name@version")],
        reason: Annotated[str, typer.Option(help="why (recorded and shown to everyone who pulls)")],
    ) -> None:
        """Quarantine a version (admin): pulls are refused and every descendant is marked affected."""
        result = _client_call(lambda c: c.quarantine(reference, reason))
        impact = result["impact"]
        out.print(f"[red]quarantined[/red] {escape(result['version'])}: {escape(reason)}")
        out.print(f"{impact['total_versions']} descendant version(s) are now affected")
        named = [a["alias"] for a in impact["aliases"] if a.get("alias")]
        if named:
            out.print("aliases on it or on affected versions: " + ", ".join(escape(a) for a in named))

    @app.command("unquarantine")
    def unquarantine_cmd(
        reference: Annotated[str, typer.Argument(help="namespace/name@version")],
        reason: Annotated[str, typer.Option(help="why the quarantine is lifted (recorded)")],
    ) -> None:
        """Lift a version's quarantine (admin)."""
        result = _client_call(lambda c: c.unquarantine(reference, reason))
        out.print(f"[green]lifted[/green] the quarantine of {escape(result['version'])}")

    @app.command("quarantines")
    def quarantines_cmd(
        all_: Annotated[bool, typer.Option("--all", help="include lifted quarantines")] = False,
    ) -> None:
        """List quarantines (admin)."""
        rows = _client_call(lambda c: c.list_quarantines(active=not all_))
        table = Table("version", "reason", "by", "at", "lifted")
        for q in rows:
            table.add_row(q["version"], q["reason"], q["by"] or "", (q["at"] or "")[:19], (q["lifted_at"] or "")[:19])
        out.print(table)


def _print_path(data: dict[str, Any], fmt: str) -> None:
    if fmt == "json":
        print(json.dumps(data, indent=2))
        return
    if data["path"] is None:
        out.print(f"no lineage path between {escape(data['from'])} and {escape(data['to'])}")
        raise typer.Exit(1)
    out.print(escape(data["path"][0]["child"]))
    for edge in data["path"]:
        out.print(f"  └─ {_edge_label(edge)} → {escape(edge['parent'])}")


def _print_impact(data: dict[str, Any], fmt: str) -> None:
    if fmt == "json":
        print(json.dumps(data, indent=2))
        return
    out.print(f"{data['total_versions']} version(s) descend from {escape(data['root'])}")
    table = Table("version", "kind", "depth", "aliases")
    for v in data["versions"]:
        if v["type"] == "hidden":
            table.add_row("(a version you cannot read)", "", str(v["depth"]), "")
        else:
            table.add_row(v["ref"], v["kind"], str(v["depth"]), ", ".join(f"@{a}" for a in v["aliases"]))
    out.print(table)
    named = [a["alias"] for a in data["aliases"] if a.get("alias")]
    if named:
        out.print("aliases affected: " + ", ".join(escape(a) for a in named))


def warn_if_flagged(version: dict[str, Any]) -> None:
    """After a pull: say loudly that the version is affected by (or, overridden, is under) a quarantine."""
    flagged = version.get("quarantine")
    if not flagged:
        return
    label = f"{version['artifact']}@{version['version']}"
    for source in flagged["sources"]:
        if source.get("hidden"):
            err.print(f"[yellow]warning:[/yellow] {escape(label)} descends from a quarantined version you cannot read")
        elif source["depth"] == 0:
            err.print(
                f"[red]warning:[/red] {escape(label)} is QUARANTINED ({escape(str(source['reason']))}); "
                "pulled with --override-quarantine, which was audited"
            )
        else:
            err.print(
                f"[yellow]warning:[/yellow] {escape(label)} is affected: it descends from quarantined "
                f"{escape(source['version'])} ({escape(str(source['reason']))}, by {escape(str(source['by']))})"
            )
