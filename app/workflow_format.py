"""Graph file formats: ComfyUI UI ("workflow", schema 0.4 / 1) <-> API ("prompt"), and reading graph files.

The UI -> API rules follow the frontend's `graphToPrompt` for the common cases (spec 3.3): muted (mode 2)
nodes are dropped, bypassed (mode 4) nodes are rewired (an output is fed by the node's first input of the
same type), `Reroute` is followed, `PrimitiveNode` values are inlined, notes are skipped, widget values
are taken in declaration order skipping the UI-only extras (`control_after_generate` mode, upload button).
No torch here: node definitions come from a callable (normally `registry.get(name).INPUT_TYPES`).
"""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["GraphFormatError", "is_ui_workflow", "ui_to_api", "api_to_ui", "load_graph_file",
           "widget_names"]

InputTypes = Callable[[str], Mapping[str, Any] | None]

WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})
CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize"})
VIRTUAL_NODES = frozenset({"Reroute", "PrimitiveNode", "Note", "MarkdownNote"})
MODE_MUTED, MODE_BYPASS = 2, 4
DYNAMIC_COMBO = "COMFY_DYNAMICCOMBO_V3"


class GraphFormatError(ValueError):
    """A graph file that is neither API nor UI format, or a UI graph that cannot be converted."""


def is_ui_workflow(data: Any) -> bool:
    """Whether `data` looks like a UI-format workflow (has `nodes` and `links` lists)."""
    return isinstance(data, dict) and isinstance(data.get("nodes"), list) and "links" in data


def _spec_is_widget(spec: Any) -> bool:
    if not isinstance(spec, (list, tuple)) or not spec:
        return False
    type_ = spec[0]
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], Mapping) else {}
    if options.get("forceInput"):
        return False
    return isinstance(type_, (list, tuple)) or type_ in WIDGET_TYPES


def widget_names(input_types: Mapping[str, Any]) -> list[tuple[str, bool, bool]]:
    """Widget inputs in order: (name, has control_after_generate, has an upload button)."""
    out = []
    for category in ("required", "optional"):
        for name, spec in (input_types.get(category) or {}).items():
            if not _spec_is_widget(spec):
                continue
            options = spec[1] if len(spec) > 1 and isinstance(spec[1], Mapping) else {}
            out.append((name, bool(options.get("control_after_generate")),
                        bool(options.get("image_upload") or options.get("upload"))))
    return out


def _dynamic_combo_inputs(spec: Any, key: Any) -> Mapping[str, Any] | None:
    """The chosen option's input sections of a DynamicCombo spec (None when ``spec`` is not one or no option
    has ``key``)."""
    if not isinstance(spec, (list, tuple)) or not spec or spec[0] != DYNAMIC_COMBO:
        return None
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], Mapping) else {}
    for option in options.get("options") or []:
        if isinstance(option, Mapping) and option.get("key") == key:
            inputs: Mapping[str, Any] = option.get("inputs") or {}
            return inputs
    return None


def _take_widgets(types: Mapping[str, Any], prefix: str, values: list[Any], pos: int, inputs: dict[str, Any]) -> int:
    """Assign positional ``widgets_values`` to ``types``' widgets from ``pos`` on; returns the next position.

    A DynamicCombo widget (``COMFY_DYNAMICCOMBO_V3``) takes one value, its option key, and the chosen option's
    widgets follow it, named ``<combo>.<input>`` (the order the editor writes them in)."""
    for category in ("required", "optional"):
        for name, spec in (types.get(category) or {}).items():
            if pos >= len(values):
                return pos
            if isinstance(spec, (list, tuple)) and spec and spec[0] == DYNAMIC_COMBO:
                inputs[prefix + name] = _wrap(values[pos])
                chosen = _dynamic_combo_inputs(spec, values[pos])
                pos += 1
                if chosen is not None:
                    pos = _take_widgets(chosen, f"{prefix}{name}.", values, pos, inputs)
                continue
            if not _spec_is_widget(spec):
                continue
            options = spec[1] if len(spec) > 1 and isinstance(spec[1], Mapping) else {}
            inputs[prefix + name] = _wrap(values[pos])
            pos += 1
            if options.get("control_after_generate") and pos < len(values) and values[pos] in CONTROL_VALUES:
                pos += 1
            if (options.get("image_upload") or options.get("upload")) and pos < len(values) and \
                    isinstance(values[pos], str) and values[pos] in ("image", "audio", "video"):
                pos += 1
    return pos


def _links_table(workflow: Mapping[str, Any]) -> dict[int, tuple[int, int, int, int, Any]]:
    table: dict[int, tuple[int, int, int, int, Any]] = {}
    for link in workflow.get("links") or []:
        if isinstance(link, list) and len(link) >= 5:
            table[int(link[0])] = (int(link[1]), int(link[2]), int(link[3]), int(link[4]),
                                   link[5] if len(link) > 5 else None)
        elif isinstance(link, dict):
            table[int(link["id"])] = (int(link["origin_id"]), int(link["origin_slot"]), int(link["target_id"]),
                                      int(link["target_slot"]), link.get("type"))
    return table


class _Converter:
    def __init__(self, workflow: Mapping[str, Any], input_types: InputTypes) -> None:
        self.nodes = {int(n["id"]): n for n in workflow["nodes"]}
        self.links = _links_table(workflow)
        self.input_types = input_types

    def _input_link(self, node: Mapping[str, Any], slot_or_name: int | str) -> int | None:
        for i, inp in enumerate(node.get("inputs") or []):
            if (i == slot_or_name or inp.get("name") == slot_or_name) and inp.get("link") is not None:
                return int(inp["link"])
        return None

    def resolve(self, link_id: int, depth: int = 0) -> tuple[str, int] | Any | None:
        """Follow a link to its real source: (node id, slot), a literal (from a PrimitiveNode), or None."""
        if depth > 64 or link_id not in self.links:
            return None
        origin, slot, _, _, type_ = self.links[link_id]
        node = self.nodes.get(origin)
        if node is None or node.get("mode") == MODE_MUTED:
            return None
        kind = node.get("type")
        if kind == "Reroute":
            upstream = self._input_link(node, 0)
            return None if upstream is None else self.resolve(upstream, depth + 1)
        if kind == "PrimitiveNode":
            values = node.get("widgets_values") or []
            return _Literal(values[0]) if values else None
        if node.get("mode") == MODE_BYPASS:
            out_type = None
            outputs = node.get("outputs") or []
            if slot < len(outputs):
                out_type = outputs[slot].get("type")
            for inp in node.get("inputs") or []:
                if inp.get("link") is not None and (inp.get("type") == out_type or out_type is None
                                                     or type_ == inp.get("type")):
                    return self.resolve(int(inp["link"]), depth + 1)
            return None
        return (str(origin), slot)

    def node_inputs(self, node: Mapping[str, Any]) -> dict[str, Any]:
        kind = node["type"]
        types = self.input_types(kind)
        inputs: dict[str, Any] = {}
        values = node.get("widgets_values")
        if types is not None:
            widgets = widget_names(types)
            if isinstance(values, Mapping):
                for name, _, _ in widgets:
                    if name in values:
                        inputs[name] = _wrap(values[name])
            elif isinstance(values, list):
                _take_widgets(types, "", values, 0, inputs)
        for inp in node.get("inputs") or []:
            if inp.get("link") is None:
                continue
            source = self.resolve(int(inp["link"]))
            if source is None:
                continue
            widget = inp.get("widget")
            name = str((widget.get("name") if isinstance(widget, dict) else None) or inp["name"])
            inputs[name] = _wrap(source.value) if isinstance(source, _Literal) else [source[0], source[1]]
        return inputs

    def convert(self) -> dict[str, Any]:
        prompt: dict[str, Any] = {}
        for node_id, node in self.nodes.items():
            kind = node.get("type")
            if kind in VIRTUAL_NODES or node.get("mode") in (MODE_MUTED, MODE_BYPASS):
                continue
            if self.input_types(kind) is None:
                raise GraphFormatError(
                    f"UI workflow node {node_id} has type {kind!r}, which is not a registered node (a missing "
                    "custom node pack, or a frontend subgraph, which this converter does not expand)")
            entry: dict[str, Any] = {"class_type": kind, "inputs": self.node_inputs(node)}
            title = node.get("title")
            entry["_meta"] = {"title": title or kind}
            prompt[str(node_id)] = entry
        return prompt


class _Literal:
    def __init__(self, value: Any) -> None:
        self.value = value


def _wrap(value: Any) -> Any:
    return {"__value__": value} if isinstance(value, list) else value


def ui_to_api(workflow: Mapping[str, Any], input_types: InputTypes) -> dict[str, Any]:
    """Convert a UI-format workflow to an API prompt; `input_types(class)` gives INPUT_TYPES or None."""
    if not is_ui_workflow(workflow):
        raise GraphFormatError("not a UI-format workflow: expected top-level 'nodes' and 'links' lists")
    if (workflow.get("definitions") or {}).get("subgraphs"):
        raise GraphFormatError("UI workflow uses frontend subgraphs, which this converter does not expand; "
                               "export it in API format from the editor instead")
    return _Converter(workflow, input_types).convert()


def api_to_ui(prompt: Mapping[str, Any], input_types: InputTypes,
              outputs_of: Callable[[str], list[tuple[str, str]]]) -> dict[str, Any]:
    """Lay an API prompt out as a UI-format (0.4) workflow; `outputs_of(class)` gives (name, type) per slot."""
    ids = {nid: i + 1 for i, nid in enumerate(prompt)}
    for nid in prompt:
        if nid.isdigit():
            ids[nid] = int(nid)
    column = _depths(prompt)
    rows: dict[int, int] = {}
    nodes: list[dict[str, Any]] = []
    links: list[list[Any]] = []
    out_links: dict[tuple[str, int], list[int]] = {}
    for order, (nid, node) in enumerate(prompt.items()):
        col = column[nid]
        row = rows[col] = rows.get(col, -1) + 1
        kind = node["class_type"]
        types = input_types(kind) or {}
        inputs_ui: list[dict[str, Any]] = []
        declared = {**(types.get("required") or {}), **(types.get("optional") or {})}
        for name, spec in declared.items():
            value = node["inputs"].get(name)
            is_link = isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
            if _spec_is_widget(spec) and not is_link:
                continue
            type_ = spec[0] if isinstance(spec[0], str) else "COMBO"
            entry: dict[str, Any] = {"name": name, "type": type_, "link": None}
            if _spec_is_widget(spec):
                entry["widget"] = {"name": name}
            if is_link:
                link_id = len(links) + 1
                src, slot = value[0], int(value[1])
                src_types = outputs_of(prompt[src]["class_type"]) if src in prompt else []
                ltype = src_types[slot][1] if slot < len(src_types) else type_
                links.append([link_id, ids[src], slot, ids[nid], len(inputs_ui), ltype])
                out_links.setdefault((src, slot), []).append(link_id)
                entry["link"] = link_id
            inputs_ui.append(entry)
        widgets: list[Any] = []
        for name, control, upload in widget_names(types):
            value = node["inputs"].get(name)
            if isinstance(value, dict) and "__value__" in value:
                value = value["__value__"]
            widgets.append(value)
            if control:
                widgets.append("fixed")
            if upload:
                widgets.append("image")
        nodes.append({"id": ids[nid], "type": kind, "pos": [40 + 360 * col, 40 + 300 * row],
                      "size": [315, 120], "flags": {}, "order": order, "mode": 0, "inputs": inputs_ui,
                      "outputs": [], "properties": {"Node name for S&R": kind},
                      "widgets_values": widgets,
                      **({"title": node["_meta"]["title"]} if node.get("_meta", {}).get("title") not in
                         (None, kind) else {})})
    for node, (nid, entry) in zip(nodes, prompt.items(), strict=True):
        node["outputs"] = [{"name": name, "type": type_, "links": out_links.get((nid, slot), []),
                            "slot_index": slot}
                           for slot, (name, type_) in enumerate(outputs_of(entry["class_type"]))]
    return {"last_node_id": max(ids.values(), default=0), "last_link_id": len(links), "nodes": nodes,
            "links": links, "groups": [], "config": {}, "extra": {"ds": {"scale": 1.0, "offset": [0, 0]}},
            "version": 0.4}


def _depths(prompt: Mapping[str, Any]) -> dict[str, int]:
    """Longest link distance from a source node, for a left-to-right layout."""
    memo: dict[str, int] = {}

    def depth(nid: str, seen: frozenset[str]) -> int:
        if nid in memo:
            return memo[nid]
        parents = [v[0] for v in prompt[nid].get("inputs", {}).values()
                   if isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) and v[0] in prompt
                   and v[0] not in seen]
        memo[nid] = 1 + max((depth(p, seen | {nid}) for p in parents), default=-1)
        return memo[nid]

    return {nid: depth(nid, frozenset()) for nid in prompt}


def load_graph_file(path: str | Path) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Read a graph file: `(api_prompt, ui_workflow)` (either may be None) from JSON or a PNG's chunks."""
    p = Path(path)
    if not p.is_file():
        raise GraphFormatError(f"graph file not found: {p}")
    if p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n":
        from engine.png import read_graphs

        workflow, prompt = read_graphs(p)
        if workflow is None and prompt is None:
            raise GraphFormatError(f"{p}: the PNG carries no 'workflow' or 'prompt' text chunk")
        return prompt, workflow
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GraphFormatError(f"{p}: not valid JSON ({exc}); expected an API prompt or a UI workflow") from exc
    if is_ui_workflow(data):
        return None, data
    if isinstance(data, dict) and isinstance(data.get("prompt"), dict):  # a POST /prompt body
        workflow = ((data.get("extra_data") or {}).get("extra_pnginfo") or {}).get("workflow")
        return data["prompt"], workflow if isinstance(workflow, dict) else None
    if isinstance(data, dict) and data and all(isinstance(v, dict) and "class_type" in v for v in data.values()):
        return data, None
    raise GraphFormatError(f"{p}: neither an API prompt (node id -> {{class_type, inputs}}) nor a UI workflow")
