"""Validate a prompt before anything runs, reporting every problem at once.

Each problem names the node id, the input and the reason (``server/comfy_errors.py`` turns a report into
ComfyUI's ``node_errors``). An output node runs when nothing it depends on has a problem, so a workflow with
one broken branch still runs its other outputs (``report.outputs``; ``report.runnable`` says whether any
can run). A node's own ``check_inputs`` may be a coroutine: it is awaited (in a helper thread when
validation is called from a running event loop).
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from engine.graph import types as T
from engine.graph.node import Node
from engine.graph.prompt import Link, Prompt, PromptNode
from engine.graph.registry import NodeRegistry

# Problems that stop the whole prompt, wherever they are (as in ComfyUI, an unknown node type anywhere).
_GLOBAL = frozenset({"unknown_class", "prompt_no_outputs", "unknown_target"})


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
    outputs: list[str] = field(default_factory=list)  # output node ids that will run (nothing they need is broken)
    failed_outputs: list[str] = field(default_factory=list)  # output nodes left out: something they need is broken
    values: dict[str, dict[str, Any]] = field(default_factory=dict)  # coerced typed-in values per node
    graph: nx.DiGraph | None = None  # the link graph (parent -> child), for the executor's ordering

    @property
    def ok(self) -> bool:
        """No problem anywhere."""
        return not self.issues

    @property
    def runnable(self) -> bool:
        """Some output can run (problems, if any, are confined to the outputs left out)."""
        return bool(self.outputs) and not any(i.type in _GLOBAL for i in self.issues)

    def __str__(self) -> str:
        return "\n".join(str(i) for i in self.issues) or "valid"


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

    def output_type(link: Link) -> tuple[str | None, str | None]:
        """(the type ``link`` delivers or None when not known, what is wrong with the link or None)."""
        if link.node_id not in prompt.nodes:
            return None, f"linked to node {link.node_id}, which is not in the workflow"
        src_cls = classes.get(link.node_id)
        if src_cls is None:
            return None, None  # the unknown class is reported on its own node
        if not 0 <= link.output < len(src_cls.OUTPUTS):
            return None, (f"linked to output {link.output} of node {link.node_id} ({src_cls.TYPE}), which has "
                          f"{len(src_cls.OUTPUTS)} output(s)")
        return src_cls.OUTPUTS[link.output].type, None

    for node_id, cls in classes.items():
        report.values[node_id], issues = check_node(prompt.nodes[node_id], cls, output_type)
        report.issues.extend(issues)

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
        for t in [t for t in wanted if t not in prompt.nodes]:
            add(ValidationIssue(t, None, None, "unknown_target", f"target node {t} is not in the workflow"))
        outputs = [t for t in wanted if t in classes]
    if not outputs:
        add(ValidationIssue(None, None, None, "prompt_no_outputs",
                            "the workflow has no output node: add one (e.g. VideoOut, SaveImage or PreviewAny)"))
    broken = {i.node_id for i in report.issues if i.node_id is not None}
    for output in outputs:
        if broken & nx.ancestors(graph, output) or output in broken:
            report.failed_outputs.append(output)
        else:
            report.outputs.append(output)
    return report


def check_node(node: PromptNode, cls: type[Node], output_type: Callable[[Link], tuple[str | None, str | None]],
               own_checks: bool = True) -> tuple[dict[str, Any], list[ValidationIssue]]:
    """One node's typed-in values (coerced) and its problems. ``output_type(link)`` is (the type the link
    delivers, None when not known; what is wrong with the link, None when nothing). ``own_checks``: run
    the node's ``check_inputs`` too (not for nodes an expansion adds, as in ComfyUI)."""
    issues: list[ValidationIssue] = []
    node_id = node.id

    def add(input_name: str | None, kind: str, message: str) -> None:
        issues.append(ValidationIssue(node_id, cls.TYPE, input_name, kind, message))

    typed: dict[str, Any] = {}
    received_types: dict[str, str] = {}
    own_link_check = cls.CHECKS_LINK_TYPES
    for spec in cls.INPUTS:
        if spec.hidden:
            continue
        value = node.inputs.get(spec.name)
        if value is None and spec.is_widget and spec.default_value() is not None:
            value = spec.default_value()  # headless API users may leave widgets at their defaults
        if value is None:
            if spec.required:
                add(spec.name, "required_input_missing", f"required input is missing: connect a {spec.type} output"
                    if not spec.is_widget else "required value is missing")
            continue
        if isinstance(value, Link):
            got, problem = output_type(value)
            if problem is not None:
                add(spec.name, "dangling_link", problem)
            elif got is not None:
                received_types[spec.name] = got
                if not own_link_check and not T.types_compatible(got, spec.type):
                    add(spec.name, "return_type_mismatch", f"expects {spec.type}, but node {value.node_id} output "
                                                           f"{value.output} gives {got}")
        elif not spec.accepts_literal:
            add(spec.name, "wrong_type", f"expects a link from a {spec.type} output, got the value {value!r}")
        else:
            typed[spec.name] = value
    coerced, errors = cls.validate_widgets(typed)
    for name, reason in errors:
        add(name, "value_invalid", reason)
    try:
        extra = [] if not own_checks else run_check(cls.check_inputs, {**coerced, "__input_types__": received_types} if own_link_check
                          else coerced)
    except Exception as exc:  # a pack's VALIDATE_INPUTS may raise
        extra = [(None, f"input check failed: {type(exc).__name__}: {exc}")]
    for name, reason in extra:
        add(name, "value_invalid", reason)
    for name, link in node.links():  # links on inputs the node does not declare
        if cls.input_spec(name) is not None:
            continue
        if not cls.ACCEPTS_UNDECLARED_INPUTS:
            add(name, "unknown_input", f"{cls.TYPE} has no input '{name}': remove the link")
        elif (problem := output_type(link)[1]) is not None:
            add(name, "dangling_link", problem)
    return coerced, issues


def run_check(check: Callable[[dict[str, Any]], Any], inputs: dict[str, Any]) -> list[tuple[str, str]]:
    """Call a ``check_inputs`` hook; a coroutine result is run to completion."""
    return run_to_completion(check(inputs))


def run_to_completion(value: Any) -> Any:
    """``value``, or what it resolves to when it is awaitable: on a loop of its own, in a helper thread when
    this thread already runs one (the server validates on its event loop)."""
    if not inspect.isawaitable(value):
        return value
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_awaited(value))
    box: dict[str, Any] = {}

    def worker() -> None:
        try:
            box["value"] = asyncio.run(_awaited(value))
        except BaseException as exc:  # handed to the caller
            box["error"] = exc

    thread = threading.Thread(target=worker, name="awaited-in-thread")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


async def _awaited(awaitable: Any) -> Any:
    return await awaitable
