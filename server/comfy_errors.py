"""Errors in the shapes and types ComfyUI's frontend understands.

The engine names its validation problems in its own words (``value_invalid``, ``unknown_class``, ...); the
frontend shows a specific message, on the right node and widget, only for ComfyUI's own error types
(``value_not_in_list``, ``required_input_missing``, ``value_bigger_than_max``, ...) and otherwise a generic
"validation error ComfyUI does not recognize". This module translates at the HTTP/WebSocket boundary:
``prompt_error_body`` for ``POST /prompt``'s 400, ``clean_traceback`` for ``execution_error`` messages and
history (each frame once, as ComfyUI lists them).
"""

from __future__ import annotations

import re
from typing import Any

# engine issue type -> ComfyUI's
ISSUE_TYPES = {
    "unknown_class": "missing_node_type",
    "not_available": "custom_validation_failed",
    "wrong_type": "invalid_input_type",
    "dangling_link": "bad_linked_input",
    "unknown_input": "bad_linked_input",
    "unknown_target": "invalid_prompt",
}
NOT_IN_LIST = re.compile(r"^(file|value) .* is not among the choices")
TOO_SMALL = re.compile(r"greater than( or equal to)? ")
TOO_LARGE = re.compile(r"less than( or equal to)? ")
WRONG_TYPE = re.compile(r"should be a valid |unable to parse|Input should be")


def comfy_type(issue: Any) -> str:
    """ComfyUI's error type for one engine ``ValidationIssue``."""
    kind = str(issue.type)
    if kind in ISSUE_TYPES:
        return ISSUE_TYPES[kind]
    if kind != "value_invalid":
        return kind  # required_input_missing, return_type_mismatch, dependency_cycle, prompt_no_outputs: the same
    message = str(issue.message)
    if NOT_IN_LIST.search(message):
        return "value_not_in_list"
    if message.startswith("input check failed"):
        return "exception_during_validation"
    if TOO_SMALL.search(message):
        return "value_smaller_than_min"
    if TOO_LARGE.search(message):
        return "value_bigger_than_max"
    if WRONG_TYPE.search(message):
        return "invalid_input_type"
    return "custom_validation_failed"


def _input_config(registry: Any, class_type: str | None, input_name: str | None) -> list[Any] | None:
    """The input's definition as ``/object_info`` gives it (what ComfyUI puts in ``extra_info``)."""
    if registry is None or not class_type or not input_name:
        return None
    cls = registry.nodes.get(class_type)
    spec = cls.input_spec(input_name) if cls is not None else None
    if spec is None:
        return None
    try:
        choices = spec.current_choices()
    except Exception:
        choices = None
    return [choices if choices is not None else spec.type, {"tooltip": getattr(spec, "tooltip", "")}]


def prompt_error_body(report: Any, prompt: Any = None, registry: Any = None) -> dict[str, Any]:
    """``{error, node_errors}`` for a prompt that failed validation, with ComfyUI's error types."""
    nodes = prompt if isinstance(prompt, dict) else {}
    node_errors: dict[str, Any] = {}
    general = [i for i in report.issues if i.node_id is None or i.type == "unknown_target"]
    for issue in report.issues:
        if issue in general:
            continue
        kind = comfy_type(issue)
        extra: dict[str, Any] = {"input_name": issue.input_name}
        if issue.input_name:
            node = nodes.get(issue.node_id) if isinstance(nodes.get(issue.node_id), dict) else {}
            inputs = node.get("inputs") if isinstance(node.get("inputs"), dict) else {}
            if issue.input_name in inputs:
                extra["received_value"] = inputs[issue.input_name]
            config = _input_config(registry, issue.class_type, issue.input_name)
            if config is not None:
                extra["input_config"] = config
        if kind == "missing_node_type":
            extra.update({"node_id": issue.node_id, "class_type": issue.class_type})
        entry = node_errors.setdefault(str(issue.node_id), {"errors": [], "dependent_outputs": [],
                                                            "class_type": issue.class_type})
        message = _SHORT.get(kind, issue.message)
        entry["errors"].append({"type": kind, "message": message,
                                "details": f"{issue.input_name}: {issue.message}" if issue.input_name
                                else issue.message, "extra_info": extra})
    for entry in node_errors.values():
        entry["dependent_outputs"] = list(getattr(report, "outputs", []) or [])
    missing = [i for i in report.issues if i.type == "unknown_class"]
    if missing:  # as ComfyUI answers a prompt naming a node type it does not have
        head = missing[0]
        error = {"type": "missing_node_type",
                 "message": f"Node '{head.class_type}' not found. The custom node may not be installed.",
                 "details": "\n".join(str(i) for i in report.issues),
                 "extra_info": {"node_id": head.node_id, "class_type": head.class_type, "node_title": head.class_type}}
    elif general:
        head = general[0]
        kind = comfy_type(head)
        error = {"type": kind, "message": head.message, "details": "\n".join(str(i) for i in general),
                 "extra_info": {}}
    else:
        error = {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
                 "details": "\n".join(str(i) for i in report.issues), "extra_info": {}}
    return {"error": error, "node_errors": node_errors}


# ComfyUI's short messages for the types whose details carry the specifics
_SHORT = {
    "value_not_in_list": "Value not in list",
    "required_input_missing": "Required input is missing",
    "value_smaller_than_min": "Value smaller than min",
    "value_bigger_than_max": "Value bigger than max",
    "invalid_input_type": "Failed to convert an input value",
    "return_type_mismatch": "Return type mismatch between linked nodes",
    "bad_linked_input": "Bad linked input, must be a length-2 list of [node_id, slot_index]",
    "exception_during_validation": "Exception when validating node",
}


def clean_traceback(lines: Any) -> list[str]:
    """A formatted traceback with each frame once (chained exceptions repeat the frames they share) and the
    ``During handling...`` / ``The above exception...`` separators dropped; the last exception line kept."""
    if not isinstance(lines, list):
        return []
    out: list[str] = []
    seen: set[str] = set()
    for chunk in lines:
        text = str(chunk)
        if text.startswith("Traceback (most recent call last)") or "exception occurred" in text \
                or "direct cause of the following exception" in text:
            continue
        if text.lstrip().startswith("File ") or text.startswith("  File "):
            if text in seen:
                continue
            seen.add(text)
        out.append(text)
    return ["Traceback (most recent call last):\n", *out] if out else []


# Nodes that only run inside a live session (the Talk page): class_type -> (input, value) that makes them live,
# or None when they always are. A prompt queued over HTTP has no session, so it is refused at once with an
# error on the node, instead of failing at run time.
LIVE_ONLY: dict[str, tuple[str, str] | None] = {"MicInput": ("source", "session"), "VideoOutLive": None}


def live_only_errors(prompt: Any, registry: Any) -> dict[str, Any] | None:
    """The 400 body for a prompt with live-session nodes, or None."""
    if not isinstance(prompt, dict):
        return None
    node_errors: dict[str, Any] = {}
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or node.get("class_type") not in LIVE_ONLY:
            continue
        class_type = node["class_type"]
        condition = LIVE_ONLY[class_type]
        inputs = node.get("inputs") if isinstance(node.get("inputs"), dict) else {}
        if condition is not None:
            name, value = condition
            cls = registry.nodes.get(class_type) if registry is not None else None
            spec = cls.input_spec(name) if cls is not None else None
            current = inputs.get(name, spec.default if spec is not None else value)
            if current != value:
                continue
        input_name = condition[0] if condition else None
        details = (f"{class_type} works inside a live conversation: open the Talk page (the Talk button at the "
                   "bottom of the editor) to run this workflow live"
                   + (f", or set '{input_name}' to 'file' to run it once on a recording" if input_name else ""))
        node_errors[str(node_id)] = {"errors": [{"type": "custom_validation_failed",
                                                 "message": "Runs only on the Talk page", "details": details,
                                                 "extra_info": {"input_name": input_name}}],
                                     "dependent_outputs": [], "class_type": class_type}
    if not node_errors:
        return None
    return {"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
                      "details": "this workflow is a live conversation: run it from the Talk page",
                      "extra_info": {}}, "node_errors": node_errors}
