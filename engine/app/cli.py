"""Headless commands behind ``main.py``: run, validate, nodes, models.

They print for a person at a terminal; library code elsewhere only logs.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from engine.graph.events import Event
from engine.graph.executor import ExecutionResult, Executor
from engine.files.folders import folders
from engine.graph.prompt import Link, Prompt, PromptFormatError
from engine.graph.registry import NodeRegistry
from engine.graph.validation import PromptInvalid, validate


class CliError(Exception):
    """A problem the user can fix; printed without a traceback."""


def load_workflow(path: Path, registry: NodeRegistry) -> Prompt:
    """Read a workflow file in API form, or in the editor's form (converted to API form)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CliError(f"{path}: no such workflow file") from None
    except json.JSONDecodeError as exc:
        raise CliError(f"{path}: not valid JSON ({exc})") from None
    if isinstance(data, dict) and "nodes" in data and isinstance(data.get("nodes"), list):
        from engine.comfy.ui_format import ui_to_api
        data = ui_to_api(data, registry)
    elif isinstance(data, dict) and isinstance(data.get("prompt"), dict):  # a saved POST /prompt body
        data = data["prompt"]
    try:
        return Prompt.from_api(data)
    except PromptFormatError as exc:
        raise CliError(f"{path}: {exc}") from None


def parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def import_input_file(source: Path) -> str:
    """Copy a file into the input folder under a content-addressed name; returns that name."""
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    name = f"{source.stem}-{digest}{source.suffix.lower()}"
    target = folders.get("input") / name
    if not target.exists():
        shutil.copyfile(source, target)
    return name


def apply_sets(prompt: Prompt, registry: NodeRegistry, sets: list[str]) -> None:
    """``NODE.input=value`` or a bare ``input=value`` (the single node that has that input)."""
    for item in sets:
        if "=" not in item:
            raise CliError(f"--set {item!r}: expected NODE.input=value or input=value")
        target, raw = item.split("=", 1)
        if "." in target and target.split(".", 1)[0] in prompt.nodes:
            node_id, name = target.split(".", 1)
        else:
            name = target
            holders = [n.id for n in prompt.nodes.values()  # nodes where the input is a value, not a link
                       if not isinstance(n.inputs.get(name), Link)
                       and (name in n.inputs or (n.class_type in registry
                                                 and registry.get(n.class_type).input_spec(name)))]
            if not holders:
                raise CliError(f"--set {item!r}: no node has an input called {name!r}")
            if len(holders) > 1:
                raise CliError(f"--set {item!r}: nodes {', '.join(holders)} all have {name!r}; "
                               f"say which, e.g. --set {holders[0]}.{name}=...")
            node_id = holders[0]
        value: Any = parse_value(raw)
        cls = registry.nodes.get(prompt.nodes[node_id].class_type)
        spec = cls.input_spec(name) if cls else None
        if spec is not None and spec.upload and isinstance(value, str) and Path(value).is_file():
            value = import_input_file(Path(value))
        prompt.set_input(node_id, name, value)


def output_files(result: ExecutionResult) -> list[Path]:
    files: list[Path] = []
    for ui in result.outputs.values():
        for key in ("gifs", "images", "audio", "video"):
            for entry in ui.get(key, []) if isinstance(ui.get(key), list) else []:
                if isinstance(entry, dict) and "filename" in entry:
                    path = folders.resolve(entry.get("type", "output"), entry["filename"], entry.get("subfolder", ""))
                    if path not in files:
                        files.append(path)
    return files


async def run_workflow(executor: Executor, prompt: Prompt, show_progress: bool = True) -> ExecutionResult:
    bars: dict[str, tqdm] = {}
    overall = tqdm(total=len(prompt.nodes), desc="nodes", unit="node", disable=not show_progress, file=sys.stderr)

    def on_event(event: Event) -> None:
        data = event.data
        if event.type == "execution_cached":
            overall.update(len(data.get("nodes", [])))
        elif event.type == "executing" and data.get("node") is not None:
            overall.set_postfix_str(f"{data['node']} {prompt.nodes[data['node']].class_type}")
        elif event.type == "progress":
            node = str(data["node"])
            bar = bars.get(node)
            if bar is None:
                bar = bars[node] = tqdm(total=data["max"], desc=f"{node} {prompt.nodes[node].class_type}",
                                        leave=False, disable=not show_progress, file=sys.stderr)
            bar.total = data["max"]
            bar.n = data["value"]
            bar.refresh()
        elif event.type == "executed":
            overall.update(1)

    try:
        return await executor.execute(prompt, on_event=on_event)
    finally:
        for bar in bars.values():
            bar.close()
        overall.close()


def cmd_run(executor: Executor, workflow: Path, sets: list[str], output: Path | None, quiet: bool = False) -> int:
    registry = executor.registry
    prompt = load_workflow(workflow, registry)
    apply_sets(prompt, registry, sets)
    try:
        result = asyncio.run(run_workflow(executor, prompt, show_progress=not quiet))
    except PromptInvalid as exc:
        raise CliError(f"{workflow} is not valid:\n{exc.report}") from None
    if not result.ok:
        error = result.error or {}
        message = error.get("exception_message", result.status)
        raise CliError(f"the workflow stopped ({result.status}): {message}")
    files = output_files(result)
    if output is not None:
        if not files:
            raise CliError("the workflow produced no output file to copy to --output")
        output.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(files[0], output)
        files = [output]
    for path in files:
        print(path)
    if not files:
        print(json.dumps(result.outputs, indent=2, default=str))
    return 0


def cmd_validate(registry: NodeRegistry, workflow: Path) -> int:
    prompt = load_workflow(workflow, registry)
    report = validate(prompt, registry)
    if report.ok:
        print(f"{workflow}: valid ({len(prompt.nodes)} nodes, outputs: {', '.join(report.outputs)})")
        return 0
    print(f"{workflow}: {len(report.issues)} problem(s)")
    for issue in report.issues:
        print(f"  - {issue}")
    return 1


def cmd_nodes(registry: NodeRegistry) -> int:
    rows = sorted(registry, key=lambda c: (c.CATEGORY, c.TYPE))
    width = max((len(c.TYPE) for c in rows), default=10)
    for cls in rows:
        status = f"  [not yet available: {cls.UNAVAILABLE}]" if cls.UNAVAILABLE else ""
        ins = ", ".join(f"{i.name}:{i.type}" for i in cls.INPUTS if not i.hidden)
        outs = ", ".join(f"{o.name}:{o.type}" for o in cls.OUTPUTS)
        print(f"{cls.TYPE:<{width}}  {cls.CATEGORY:<16} ({ins}) -> ({outs}){status}")
    return 0

