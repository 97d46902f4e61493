"""The editor's UI workflow (litegraph JSON) <-> ComfyUI's API prompt, given our node registry.

``ui_to_api`` does what the ComfyUI frontend's ``graphToPrompt`` does, from the saved JSON alone:

- schema 0.4 (links as ``[id, origin_id, origin_slot, target_id, target_slot, type]``) and schema 1
  (links as objects, ``definitions.subgraphs`` expanded into ``"<instance>:<inner>"`` node ids);
- ``widgets_values`` (a list, or a dict keyed by widget name as some packs save) mapped onto the class's
  widget inputs in the frontend's widget order (required, then optional), skipping the values of the
  frontend-only widgets: ``control_after_generate`` after an INT whose options say so (or, with no
  option, an INT named ``seed`` / ``noise_seed``), control + filter list after a COMBO with
  ``control_after_generate``, and the upload button after an ``*_upload`` input;
- a linked input (also a widget converted to a socket) becomes ``[origin_id, origin_slot]``;
- bypassed nodes (mode 4) are linked through: the output is replaced by the bypassed node's input in the
  same slot if its type fits, else the first input of the exact type, else the first compatible one;
- muted nodes (mode 2) are dropped, and so are inputs linked to them;
- ``Reroute`` passes its input through; ``PrimitiveNode`` gives its value to the widgets it feeds;
  ``Note`` / ``MarkdownNote`` are ignored; group nodes (``workflow>...``) are refused with a clear error;
- list widget values are wrapped as ``{"__value__": [...]}``; a node's title becomes ``_meta.title``.

``api_to_ui`` lays an API prompt out as a schema-0.4 workflow (columns by topological depth) so both
forms of a workflow can be shipped, and ``workflows_agree`` lists the differences between the two forms.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from engine.graph import types as T
from engine.graph.node import Input, Node
from engine.graph.prompt import Prompt, is_link
from engine.graph.registry import NodeRegistry

log = logging.getLogger(__name__)

MODE_ALWAYS = 0
MODE_NEVER = 2  # "muted"
MODE_BYPASS = 4

REROUTE = "Reroute"
PRIMITIVE = "PrimitiveNode"
VIRTUAL_TYPES = frozenset({REROUTE, PRIMITIVE, "Note", "MarkdownNote"})

_CONTROL = object()  # a frontend-only widget value (control_after_generate, control_filter_list, upload)
_FRONTEND_DEFAULTS: dict[str, Any] = {T.INT: 0, T.FLOAT: 0.0, T.STRING: "", T.BOOLEAN: False}


class UIWorkflowError(ValueError):
    """The UI workflow cannot be converted; the message names the node and what to do."""


def is_ui_workflow(data: Any) -> bool:
    """A UI workflow has ``nodes`` (a list) and ``links``; an API prompt maps ids to ``class_type``."""
    return isinstance(data, dict) and isinstance(data.get("nodes"), list)


# Widgets ----------------------------------------------------------------------------------------------------
def widget_inputs(cls: type[Node], include_forced: bool = False) -> list[Input]:
    """The inputs the frontend makes widgets for, in its order: required first, then optional."""
    specs = [s for s in cls.INPUTS if not s.hidden and s.type in T.WIDGET_TYPES
             and (include_forced or not s.force_input)]
    return [s for s in specs if s.required] + [s for s in specs if not s.required]


def _control_values(spec: Input) -> int:
    """How many frontend-only values follow this widget's value in ``widgets_values``."""
    options = dict(spec.extra)
    control = options.get("control_after_generate")
    if spec.type == T.INT and (control if control is not None else spec.name in ("seed", "noise_seed")):
        return 1
    if spec.type == T.COMBO and control:
        return 2  # control_after_generate + control_filter_list
    return 0


def widget_layout(cls: type[Node], controls: bool = True, uploads: bool = True,
                  include_forced: bool = False) -> list[Input | object]:
    layout: list[Input | object] = []
    for spec in widget_inputs(cls, include_forced):
        layout.append(spec)
        if controls:
            layout.extend([_CONTROL] * _control_values(spec))
        if uploads and spec.upload:
            layout.append(_CONTROL)
    return layout


def map_widget_values(cls: type[Node], values: Any, node_label: str = "") -> dict[str, Any]:
    """Widget input name -> value from a node's saved ``widgets_values``."""
    specs = widget_inputs(cls)
    if values is None:
        return {s.name: s.default_value() for s in specs if s.default_value() is not None}
    if isinstance(values, dict):
        return {s.name: values[s.name] for s in widget_inputs(cls, include_forced=True) if s.name in values}
    if not isinstance(values, list):
        raise UIWorkflowError(f"{node_label}: widgets_values must be a list or an object, got {type(values).__name__}")
    candidates = [widget_layout(cls), widget_layout(cls, uploads=False), widget_layout(cls, controls=False),
                  widget_layout(cls, controls=False, uploads=False), widget_layout(cls, include_forced=True),
                  widget_layout(cls, uploads=False, include_forced=True)]
    layout = next((c for c in candidates if len(c) == len(values)), None)
    if layout is None:
        layout = candidates[0]
        log.warning("%s: %d widget value(s) saved but %s declares %d widget slot(s); mapping them in order",
                    node_label, len(values), cls.TYPE, len(layout))
    out: dict[str, Any] = {}
    for slot, value in zip(layout, values):
        if isinstance(slot, Input):
            out[slot.name] = value
    return out


def _wrap(value: Any) -> Any:
    return {"__value__": value} if isinstance(value, list) else value


def _types_match(a: Any, b: Any) -> bool:
    """litegraph's ``isValidConnection``: empty or ``*`` matches anything; ``A,B`` unions; case-insensitive."""
    a = "" if a in (None, "*", 0) else str(a)
    b = "" if b in (None, "*", 0) else str(b)
    if not a or not b or a == b:
        return True
    sa = {t.strip().lower() for t in a.split(",")}
    sb = {t.strip().lower() for t in b.split(",")}
    return bool(sa & sb)


# Graph model ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Link:
    id: int
    origin_id: str
    origin_slot: int
    target_id: str
    target_slot: int
    type: Any


def _links(raw: Iterable[Any] | None) -> dict[int, _Link]:
    links: dict[int, _Link] = {}
    for item in raw or []:
        if item is None:  # litegraph leaves nulls behind for deleted links in some versions
            continue
        if isinstance(item, list | tuple):
            lid, oid, oslot, tid, tslot, typ = (list(item) + [None] * 6)[:6]
        elif isinstance(item, dict):
            lid, oid, oslot, tid, tslot, typ = (item.get("id"), item.get("origin_id"), item.get("origin_slot"),
                                                item.get("target_id"), item.get("target_slot"), item.get("type"))
        else:
            raise UIWorkflowError(f"a link must be an array or an object, got {item!r}")
        links[int(lid)] = _Link(int(lid), str(oid), int(oslot), str(tid), int(tslot), typ)
    return links


@dataclass
class _Graph:
    nodes: dict[str, dict[str, Any]]
    links: dict[int, _Link]
    input_node_id: str | None = None  # subgraph definitions only
    output_node_id: str | None = None
    definition: dict[str, Any] | None = None


@dataclass
class _Dto:
    exec_id: str
    node: dict[str, Any]
    graph: _Graph
    path: tuple[str, ...]
    instance: _Dto | None = None  # the subgraph node this one sits in
    subgraph: _Graph | None = None  # set when this node is a subgraph instance

    @property
    def label(self) -> str:
        title = self.node.get("title")
        return f"node {self.exec_id} ({self.node.get('type')}{f', {title!r}' if title else ''})"

    @property
    def mode(self) -> int:
        return int(self.node.get("mode") or 0)

    @property
    def inputs(self) -> list[dict[str, Any]]:
        return list(self.node.get("inputs") or [])

    @property
    def outputs(self) -> list[dict[str, Any]]:
        return list(self.node.get("outputs") or [])


@dataclass
class _Resolved:
    kind: str  # "link" | "value" | "muted"
    origin: str = ""
    slot: int = 0
    value: Any = None


@dataclass
class _Converter:
    registry: NodeRegistry
    virtual_types: frozenset[str] = VIRTUAL_TYPES
    dtos: dict[str, _Dto] = field(default_factory=dict)
    definitions: dict[str, dict[str, Any]] = field(default_factory=dict)

    # Building ---------------------------------------------------------------------------------------------
    def collect_definitions(self, holder: dict[str, Any]) -> None:
        for sub in ((holder.get("definitions") or {}).get("subgraphs") or []):
            self.definitions[str(sub["id"])] = sub
            self.collect_definitions(sub)

    def add_graph(self, graph: _Graph, path: tuple[str, ...], instance: _Dto | None, depth: int = 0) -> None:
        if depth > 32:
            raise UIWorkflowError("subgraphs are nested more than 32 deep (a subgraph containing itself?)")
        for nid, node in graph.nodes.items():
            exec_id = ":".join((*path, nid))
            dto = _Dto(exec_id, node, graph, path, instance)
            self.dtos[exec_id] = dto
            definition = self.definitions.get(str(node.get("type")))
            if definition is not None:
                dto.subgraph = _graph_of(definition)
                self.add_graph(dto.subgraph, (*path, nid), dto, depth + 1)

    # Resolution (after the frontend's ExecutableNodeDTO) --------------------------------------------------
    def resolve_input(self, dto: _Dto, slot: int, visited: set[str], type_hint: Any = None) -> _Resolved | None:
        key = f"{dto.exec_id}[I]{slot}"
        if key in visited:
            raise UIWorkflowError(f"{dto.label}: circular link through input {slot}; remove the loop")
        visited.add(key)
        inputs = dto.inputs
        if slot >= len(inputs):
            raise UIWorkflowError(f"{dto.label} has no input slot {slot}; the workflow file is inconsistent")
        link_id = inputs[slot].get("link")
        if link_id is None:
            return None
        link = dto.graph.links.get(int(link_id))
        if link is None:
            raise UIWorkflowError(f"{dto.label}, input '{inputs[slot].get('name')}': link {link_id} is not in "
                                  "the workflow's links; reconnect the input and save again")
        if dto.instance is not None and link.origin_id == dto.graph.input_node_id:
            outer = dto.instance
            if link.origin_slot >= len(outer.inputs) or outer.inputs[link.origin_slot].get("link") is None:
                return None  # unconnected subgraph input: the inner widget keeps its own value
            return self.resolve_input(outer, link.origin_slot, visited)
        origin = self.dtos.get(":".join((*dto.path, link.origin_id)))
        if origin is None:
            raise UIWorkflowError(f"{dto.label}, input '{inputs[slot].get('name')}': linked to node "
                                  f"{link.origin_id}, which is not in the workflow")
        return self.resolve_output(origin, link.origin_slot, type_hint or inputs[slot].get("type"), visited)

    def resolve_output(self, dto: _Dto, slot: int, type_: Any, visited: set[str]) -> _Resolved | None:
        key = f"{dto.exec_id}[O]{slot}"
        if key in visited:
            raise UIWorkflowError(f"{dto.label}: circular link through output {slot}; remove the loop")
        visited.add(key)
        node_type = dto.node.get("type")
        if node_type == PRIMITIVE:
            values = dto.node.get("widgets_values") or []
            if isinstance(values, dict):
                values = list(values.values())
            return _Resolved("value", value=values[0]) if values else None
        if dto.mode == MODE_BYPASS:
            index = self._bypass_slot(dto, slot, type_)
            if index < 0:
                log.warning("%s is bypassed but has no input matching type %s; the link is dropped", dto.label,
                            type_)
                return None
            return self.resolve_input(dto, index, visited)
        if dto.subgraph is not None:
            return self._resolve_subgraph_output(dto, slot, type_, visited)
        if node_type in self.virtual_types:
            if slot < len(dto.inputs):
                return self.resolve_input(dto, slot, visited, type_)
            return None
        if dto.mode == MODE_NEVER:
            return _Resolved("muted", dto.exec_id, slot)
        return _Resolved("link", dto.exec_id, slot)

    def _bypass_slot(self, dto: _Dto, slot: int, type_: Any) -> int:
        inputs = dto.inputs
        if not inputs:
            return -1
        if type_ in ("*", "", None):
            return slot if len(inputs) > slot else 0
        outputs = dto.outputs
        output_type = outputs[slot].get("type") if slot < len(outputs) else type_
        if slot < len(inputs):
            opposite = inputs[slot].get("type")
            if _types_match(opposite, output_type) and _types_match(opposite, type_):
                return slot
        for i, inp in enumerate(inputs):
            if inp.get("type") == type_:
                return i
        for i, inp in enumerate(inputs):
            if _types_match(inp.get("type"), output_type) and _types_match(inp.get("type"), type_):
                return i
        return -1

    def _resolve_subgraph_output(self, dto: _Dto, slot: int, type_: Any, visited: set[str]) -> _Resolved | None:
        graph = dto.subgraph
        assert graph is not None and graph.definition is not None
        outputs = graph.definition.get("outputs") or []
        if slot >= len(outputs):
            raise UIWorkflowError(f"{dto.label}: subgraph has no output {slot}")
        link_ids = outputs[slot].get("linkIds") or []
        inner_link = next((graph.links[i] for i in link_ids if i in graph.links), None)
        if inner_link is None:  # fall back to the link that targets the output node's slot
            inner_link = next((lk for lk in graph.links.values()
                               if lk.target_id == graph.output_node_id and lk.target_slot == slot), None)
        if inner_link is None:
            return None
        if inner_link.origin_id == graph.input_node_id:  # straight through the subgraph
            return self.resolve_input(dto, inner_link.origin_slot, visited)
        inner = self.dtos.get(":".join((*dto.path, str(dto.node.get("id")), inner_link.origin_id)))
        if inner is None:
            raise UIWorkflowError(f"{dto.label}: subgraph output {slot} comes from missing node "
                                  f"{inner_link.origin_id}")
        return self.resolve_output(inner, inner_link.origin_slot, type_, visited)

    # Conversion -------------------------------------------------------------------------------------------
    def convert(self) -> dict[str, Any]:
        output: dict[str, Any] = {}
        for dto in self.dtos.values():
            node_type = str(dto.node.get("type"))
            if node_type in self.virtual_types or dto.subgraph is not None or dto.mode in (MODE_NEVER, MODE_BYPASS):
                continue
            if dto.instance is not None and dto.instance.mode in (MODE_NEVER, MODE_BYPASS):
                continue
            cls = self.registry.nodes.get(node_type)
            inputs: dict[str, Any] = {}
            if cls is not None:
                for name, value in map_widget_values(cls, dto.node.get("widgets_values"), dto.label).items():
                    inputs[name] = _wrap(value)
            elif dto.node.get("widgets_values"):
                log.warning("%s: unknown node type, its widget values cannot be mapped; install or enable "
                            "the pack that provides it", dto.label)
            for slot, inp in enumerate(dto.inputs):
                resolved = self.resolve_input(dto, slot, set())
                if resolved is None:
                    continue
                name = str(inp.get("name"))
                if resolved.kind == "value":
                    inputs[name] = _wrap(resolved.value)
                else:  # "muted" links are removed below, as the frontend does
                    inputs[name] = [resolved.origin, resolved.slot]
            title = dto.node.get("title") or (cls.DISPLAY_NAME if cls is not None else node_type)
            output[dto.exec_id] = {"inputs": inputs, "class_type": node_type, "_meta": {"title": title}}
        for body in output.values():
            for name in [n for n, v in body["inputs"].items() if is_link(v) and str(v[0]) not in output]:
                del body["inputs"][name]
        return output


def _graph_of(holder: dict[str, Any]) -> _Graph:
    nodes: dict[str, dict[str, Any]] = {}
    for node in holder.get("nodes") or []:
        if not isinstance(node, dict) or "id" not in node or "type" not in node:
            raise UIWorkflowError(f"a node must be an object with 'id' and 'type', got {node!r:.80}")
        nodes[str(node["id"])] = node
    graph = _Graph(nodes, _links(holder.get("links")))
    if "inputNode" in holder:
        graph.input_node_id = str((holder.get("inputNode") or {}).get("id", -10))
        graph.output_node_id = str((holder.get("outputNode") or {}).get("id", -20))
        graph.definition = holder
    return graph


def _check_group_nodes(workflow: dict[str, Any]) -> None:
    group_types = set(((workflow.get("extra") or {}).get("groupNodes") or {}).keys())
    for node in workflow.get("nodes") or []:
        node_type = str(node.get("type", ""))
        if node_type.startswith(("workflow>", "workflow/")) or node_type.split(">")[-1] in group_types:
            raise UIWorkflowError(
                f"node {node.get('id')} ({node_type}) is a group node, which is not supported: in the editor "
                "right-click it and choose 'Convert to nodes' (or convert it to a subgraph), then save again")


def ui_to_api(workflow: dict[str, Any], registry: NodeRegistry,
              extra_virtual_types: Iterable[str] = ()) -> dict[str, Any]:
    """Convert a UI workflow (schema 0.4 or 1) into an API prompt, as the frontend's graphToPrompt does.

    ``extra_virtual_types``: frontend-only node types of editor extensions (passed through like a Reroute
    when they have a matching input, otherwise ignored), besides Reroute, PrimitiveNode and notes.
    """
    if not is_ui_workflow(workflow):
        raise UIWorkflowError("not a UI workflow: expected an object with a 'nodes' list")
    _check_group_nodes(workflow)
    converter = _Converter(registry, VIRTUAL_TYPES | frozenset(extra_virtual_types))
    converter.collect_definitions(workflow)
    converter.add_graph(_graph_of(workflow), (), None)
    return converter.convert()


# API -> UI --------------------------------------------------------------------------------------------------
_NODE_WIDTH = 320
_COLUMN_GAP = 80
_PREVIEW_HEIGHT = 260
_ROW_GAP = 40


def _frontend_default(spec: Input) -> Any:
    if spec.upload:  # a file picker: what the input folder holds here is no default for anyone else
        return spec.default
    value = spec.default_value()
    return value if value is not None else _FRONTEND_DEFAULTS.get(spec.type)


def _ui_id(node_id: str, numeric: bool) -> int | str:
    return int(node_id) if numeric else node_id


def api_to_ui(prompt: dict[str, Any], registry: NodeRegistry) -> dict[str, Any]:
    """A schema-0.4 UI workflow for an API prompt: nodes in columns by topological depth."""
    prompt = {str(k): v for k, v in prompt.items()}
    parsed = Prompt.from_api(prompt)
    numeric = all(nid.isdigit() for nid in parsed.nodes)
    graph = parsed.graph()
    if not nx.is_directed_acyclic_graph(graph):
        raise UIWorkflowError("the prompt has a cycle; it cannot be laid out")
    order = list(nx.topological_sort(graph))
    depth: dict[str, int] = {}
    for nid in order:
        depth[nid] = max((depth[p] + 1 for p in graph.predecessors(nid)), default=0)

    classes: dict[str, type[Node]] = {}
    for nid, node in parsed.nodes.items():
        cls = registry.nodes.get(node.class_type)
        if cls is None:
            raise UIWorkflowError(f"node {nid}: unknown node type '{node.class_type}'; install or enable the pack "
                                  "that provides it before converting")
        classes[nid] = cls

    links: list[list[Any]] = []
    ui_nodes: dict[str, dict[str, Any]] = {}
    out_links: dict[tuple[str, int], list[int]] = {}
    column_y: dict[int, float] = {}
    for index, nid in enumerate(order):
        node, cls = parsed.nodes[nid], classes[nid]
        raw = prompt[nid].get("inputs") or {}
        ui_inputs: list[dict[str, Any]] = []
        linked = {name: link for name, link in node.links()}

        def add_link(name: str, type_: str, widget: bool) -> None:
            link = linked[name]
            link_id = len(links) + 1
            src_cls = classes.get(link.node_id)
            link_type = src_cls.OUTPUTS[link.output].type if src_cls and link.output < len(src_cls.OUTPUTS) \
                else type_
            links.append([link_id, _ui_id(link.node_id, numeric), link.output, _ui_id(nid, numeric),
                          len(ui_inputs), link_type])
            out_links.setdefault((link.node_id, link.output), []).append(link_id)
            entry: dict[str, Any] = {"name": name, "type": type_, "link": link_id}
            if widget:
                entry["widget"] = {"name": name}
            ui_inputs.append(entry)

        declared = [s for s in cls.INPUTS if not s.hidden]
        for spec in [s for s in declared if s.required] + [s for s in declared if not s.required]:
            if spec.name in linked:
                add_link(spec.name, spec.type, spec.is_widget)
            elif not spec.is_widget:
                ui_inputs.append({"name": spec.name, "type": spec.type, "link": None})
        for name in linked:
            if cls.input_spec(name) is None:
                add_link(name, T.ANY, False)

        widgets_values: list[Any] = []
        for slot in widget_layout(cls):
            if isinstance(slot, Input):
                value = raw.get(slot.name) if slot.name in raw and slot.name not in linked else _frontend_default(slot)
                value = value["__value__"] if isinstance(value, dict) and set(value) == {"__value__"} else value
                widgets_values.append(value)
            else:
                widgets_values.append(None)
        # Frontend-only values: "fixed" keeps the API value, "" is an empty filter, the upload button's kind.
        _fill_controls(cls, widgets_values)

        n_widgets = len(widget_inputs(cls))
        height = 30 + 24 * max(len(ui_inputs), len(cls.OUTPUTS), 1) + 26 * n_widgets
        if any(spec.upload for spec in cls.INPUTS) or cls.OUTPUT_NODE:
            height += _PREVIEW_HEIGHT  # the editor shows an image/audio/video preview under these nodes
        col = depth[nid]
        y = column_y.get(col, 100.0)
        column_y[col] = y + height + _ROW_GAP
        entry = {
            "id": _ui_id(nid, numeric), "type": node.class_type,
            "pos": [100 + col * (_NODE_WIDTH + _COLUMN_GAP), y], "size": [_NODE_WIDTH, height],
            "flags": {}, "order": index, "mode": MODE_ALWAYS, "inputs": ui_inputs, "outputs": [],
            "properties": {"Node name for S&R": node.class_type}, "widgets_values": widgets_values,
        }
        if node.title and node.title != cls.DISPLAY_NAME:
            entry["title"] = node.title
        ui_nodes[nid] = entry
    for nid, entry in ui_nodes.items():
        entry["outputs"] = [{"name": out.name, "type": out.type, "links": out_links.get((nid, i), []),
                             "slot_index": i} | ({"shape": 6} if out.is_list else {})
                            for i, out in enumerate(classes[nid].OUTPUTS)]
    ids = [int(n) for n in parsed.nodes] if numeric else []
    return {
        "last_node_id": max(ids) if ids else len(parsed.nodes),
        "last_link_id": len(links),
        "nodes": list(ui_nodes.values()),
        "links": links,
        "groups": [],
        "config": {},
        "extra": {"ds": {"scale": 1, "offset": [0, 0]}},
        "version": 0.4,
    }


def _fill_controls(cls: type[Node], values: list[Any]) -> None:
    i = 0
    for spec in widget_inputs(cls):
        i += 1
        n = _control_values(spec)
        if n >= 1:
            values[i] = "fixed"
        if n == 2:
            values[i + 1] = ""
        i += n
        if spec.upload:  # the upload button's value: "image" for images (LoadImage saves it), else null
            values[i] = "image" if spec.upload == "image" else None
            i += 1


# Agreement --------------------------------------------------------------------------------------------------
def _normalise(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"__value__"}:
        return _normalise(value["__value__"])
    if is_link(value):
        return ("link", str(value[0]), int(value[1]))
    if isinstance(value, list | tuple):
        return [_normalise(v) for v in value]
    return value


def workflows_agree(ui: dict[str, Any], api: dict[str, Any], registry: NodeRegistry) -> list[str]:
    """Differences between a UI workflow and an API prompt meant to be the same graph (empty: they agree).

    An input missing on one side agrees with the other side's value when that value is the declared default.
    """
    try:
        converted = ui_to_api(ui, registry)
    except UIWorkflowError as exc:
        return [f"the UI workflow cannot be converted: {exc}"]
    expected = {str(k): v for k, v in api.items()}
    diffs: list[str] = []
    for nid in sorted(set(converted) | set(expected), key=lambda s: (len(s), s)):
        got, want = converted.get(nid), expected.get(nid)
        if got is None:
            diffs.append(f"node {nid} ({want.get('class_type')}) is in the API prompt but not in the UI workflow")
            continue
        if want is None:
            diffs.append(f"node {nid} ({got['class_type']}) is in the UI workflow but not in the API prompt")
            continue
        if got["class_type"] != want.get("class_type"):
            diffs.append(f"node {nid}: UI has {got['class_type']}, API has {want.get('class_type')}")
            continue
        cls = registry.nodes.get(got["class_type"])
        got_inputs, want_inputs = got["inputs"], dict(want.get("inputs") or {})
        for name in sorted(set(got_inputs) | set(want_inputs)):
            a = _normalise(got_inputs.get(name))
            b = _normalise(want_inputs.get(name))
            if a == b:
                continue
            spec = cls.input_spec(name) if cls is not None else None
            default = _normalise(spec.default_value()) if spec is not None else None
            if (name not in got_inputs and b == default) or (name not in want_inputs and a == default):
                continue
            diffs.append(f"node {nid} ({got['class_type']}), input '{name}': UI gives "
                         f"{'nothing' if name not in got_inputs else repr(a)}, API gives "
                         f"{'nothing' if name not in want_inputs else repr(b)}")
    return diffs
