"""Validate a prompt before anything runs, reporting every problem at once.

Each problem names the node id, the input and the reason. The ComfyUI shape of the report
(``node_errors``) is what ``POST /prompt`` returns with a 400.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from engine import types as T
from engine.node import Node
from engine.prompt import Link, Prompt
from engine.registry import NodeRegistry


@dataclass(frozen=True)
class ValidationIssue:
    node_id: str | None
    class_type: str | None
    input_name: str | None
    type: str  # unknown_class, not_available, required_input_missing, wrong_type, value_invalid, ...
    message: str

    def __str__(self) -> str:
        where = f"node {self.node_id}" if self.node_id else "workflow"
        if self.class_type:
            where += f" ({self.class_type})"
        if self.input_name:
            where += f", input '{self.input_name}'"
        return f"{where}: {self.message}"


@dataclass
class ValidationReport:
    issues: list[ValidationIssue] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)  # output node ids that will run
    values: dict[str, dict[str, Any]] = field(default_factory=dict)  # coerced widget values per node
    graph: nx.DiGraph | None = None  # the link graph (parent -> child), for the executor's ordering

    @property
    def ok(self) -> bool:
        return not self.issues

    def __str__(self) -> str:
        return "\n".join(str(i) for i in self.issues) or "valid"

    def comfy_response(self) -> dict[str, Any]:
        """The body ComfyUI returns with a 400: ``{error, node_errors}``."""
        node_errors: dict[str, Any] = {}
        general = [i for i in self.issues if i.node_id is None]
        for issue in self.issues:
            if issue.node_id is None:
                continue
            entry = node_errors.setdefault(issue.node_id, {"errors": [], "dependent_outputs": [],
                                                           "class_type": issue.class_type})
            entry["errors"].append({"type": issue.type, "message": issue.message,
                                    "details": f"{issue.input_name}: {issue.message}" if issue.input_name
                                    else issue.message,
                                    "extra_info": {"input_name": issue.input_name}})
        head = general[0] if general else (self.issues[0] if self.issues else None)
        error = {"type": head.type if general else "prompt_outputs_failed_validation",
                 "message": head.message if general else "Prompt outputs failed validation",
                 "details": "\n".join(str(i) for i in self.issues), "extra_info": {}}
        return {"error": error, "node_errors": node_errors}


class PromptInvalid(Exception):
    def __init__(self, report: ValidationReport):
        super().__init__(str(report))
        self.report = report


def validate(prompt: Prompt, registry: NodeRegistry, targets: Iterable[str] | None = None) -> ValidationReport:
    """Check ``prompt`` against ``registry``. ``targets`` restricts the output nodes (partial execution)."""
    report = ValidationReport()
    add = report.issues.append
    classes: dict[str, type[Node]] = {}

    for node in prompt.nodes.values():
        cls = registry.nodes.get(node.class_type)
        if cls is None:
            add(ValidationIssue(node.id, node.class_type, None, "unknown_class",
                                f"unknown node type '{node.class_type}': install or enable the pack that "
                                "provides it, or remove the node"))
            continue
        classes[node.id] = cls
        if cls.UNAVAILABLE:
            add(ValidationIssue(node.id, node.class_type, None, "not_available",
                                f"{node.class_type} is not yet available: {cls.UNAVAILABLE}"))

    for node_id, cls in classes.items():
        node = prompt.nodes[node_id]
        widget_values: dict[str, Any] = {}
        received_types: dict[str, str] = {}
        own_link_check = getattr(cls, "VALIDATES_LINK_TYPES", False)  # ComfyUI: VALIDATE_INPUTS(input_types)
        for spec in cls.INPUTS:
            if spec.hidden:
                continue
            value = node.inputs.get(spec.name)
            if value is None and spec.is_widget and spec.default_value() is not None:
                value = spec.default_value()  # headless API users may leave widgets at their defaults
            if value is None:
                if spec.required:
                    add(ValidationIssue(node_id, cls.TYPE, spec.name, "required_input_missing",
                                        f"required input is missing: connect a {spec.type} output"
                                        if not spec.is_widget else "required value is missing"))
                continue
            if isinstance(value, Link):
                expected = T.ANY if own_link_check else spec.type
                _check_link(prompt, classes, node_id, cls, spec.name, expected, value, add)
                src_cls = classes.get(value.node_id)
                if src_cls is not None and 0 <= value.output < len(src_cls.OUTPUTS):
                    received_types[spec.name] = src_cls.OUTPUTS[value.output].type
            elif not spec.is_widget and spec.type not in (T.ANY,):
                add(ValidationIssue(node_id, cls.TYPE, spec.name, "wrong_type",
                                    f"expects a link from a {spec.type} output, got the value {value!r}"))
            else:
                widget_values[spec.name] = value
        coerced, errors = cls.validate_widgets(widget_values)
        for name, reason in errors:
            add(ValidationIssue(node_id, cls.TYPE, name, "value_invalid", reason))
        try:
            extra = cls.check_inputs({**coerced, "__input_types__": received_types} if own_link_check else coerced)
        except Exception as exc:  # a pack's VALIDATE_INPUTS may raise
            extra = [(None, f"input check failed: {exc}")]
        for name, reason in extra:
            add(ValidationIssue(node_id, cls.TYPE, name, "value_invalid", reason))
        report.values[node_id] = coerced
        # Links on inputs the node does not declare (ComfyUI ignores unknown values; links must resolve).
        for name, link in node.links():
            if cls.input_spec(name) is None and not getattr(cls, "ACCEPTS_ANY_INPUT", False):
                add(ValidationIssue(node_id, cls.TYPE, name, "unknown_input",
                                    f"{cls.TYPE} has no input '{name}': remove the link"))

    graph = report.graph = prompt.graph()
    if not nx.is_directed_acyclic_graph(graph):
        for cycle in nx.simple_cycles(graph):
            path = " -> ".join(cycle + cycle[:1])
            add(ValidationIssue(cycle[0], prompt.nodes[cycle[0]].class_type, None, "dependency_cycle",
                                f"the workflow has a cycle: {path}; break it"))
            break

    outputs = [nid for nid, cls in classes.items() if cls.OUTPUT_NODE]
    if targets is not None:
        wanted = [str(t) for t in targets]
        missing = [t for t in wanted if t not in prompt.nodes]
        for t in missing:
            add(ValidationIssue(t, None, None, "unknown_target", f"target node {t} is not in the workflow"))
        outputs = [t for t in wanted if t in classes]
    if not outputs:
        add(ValidationIssue(None, None, None, "prompt_no_outputs",
                            "the workflow has no output node: add one (e.g. VideoOut or SaveText)"))
    report.outputs = outputs
    return report


def _check_link(prompt: Prompt, classes: dict[str, type[Node]], node_id: str, cls: type[Node], name: str,
                expected: str, link: Link, add: Any) -> None:
    src = prompt.nodes.get(link.node_id)
    if src is None:
        add(ValidationIssue(node_id, cls.TYPE, name, "dangling_link",
                            f"linked to node {link.node_id}, which is not in the workflow"))
        return
    src_cls = classes.get(link.node_id)
    if src_cls is None:
        return  # the unknown class is reported on its own node
    if not 0 <= link.output < len(src_cls.OUTPUTS):
        add(ValidationIssue(node_id, cls.TYPE, name, "dangling_link",
                            f"linked to output {link.output} of node {link.node_id} ({src_cls.TYPE}), which has "
                            f"{len(src_cls.OUTPUTS)} output(s)"))
        return
    got = src_cls.OUTPUTS[link.output].type
    if not T.types_compatible(got, expected):
        add(ValidationIssue(node_id, cls.TYPE, name, "return_type_mismatch",
                            f"expects {expected}, but node {link.node_id} ({src_cls.TYPE}) output "
                            f"{link.output} gives {got}"))
