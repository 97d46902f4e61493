"""Choosing and opening a chat backend.

``auto`` uses an Ollama server when one answers within a fraction of a second and has the requested model (or
``llama3.2``), otherwise the in-process llama.cpp backend on a GGUF in ``models/llm/``. Defaults come from the
environment, so one variable switches the whole app:

* ``AVATARGRAPH_LLM_BACKEND``: auto | ollama | openai | llamacpp
* ``AVATARGRAPH_LLM_MODEL``: an Ollama model name, a server's model name, or a GGUF (a path, a file name under
  ``models/llm/`` or a model folder name there)
* ``AVATARGRAPH_LLM_URL``: the server URL (else ``OLLAMA_HOST`` / ``OPENAI_BASE_URL`` / the usual local ports)
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from engine.files.folders import folders
from nodes.think.backends.base import ChatBackend, ModelMissing

log = logging.getLogger(__name__)

BACKENDS = ("auto", "ollama", "openai", "llamacpp")
# GGUFs preferred when no model is named, best first (substrings of the file or folder name, lower case).
PREFERRED_GGUF = ("qwen2.5-coder-1.5b", "qwen2.5-1.5b", "qwen2.5-coder-0.5b", "smollm2")
PROBE_TIMEOUT_S = 0.3


@dataclass(frozen=True)
class BackendConfig:
    backend: str = "auto"
    model: str = ""
    url: str = ""
    n_ctx: int = 2048

    def with_env_defaults(self) -> BackendConfig:
        return BackendConfig(
            backend=self.backend if self.backend != "auto" else os.environ.get("AVATARGRAPH_LLM_BACKEND", "auto"),
            model=self.model or os.environ.get("AVATARGRAPH_LLM_MODEL", ""),
            url=self.url or os.environ.get("AVATARGRAPH_LLM_URL", ""),
            n_ctx=self.n_ctx)


def llm_models_dir() -> Path:
    return folders.models("llm")


def list_ggufs(root: Path | None = None) -> list[Path]:
    root = root or llm_models_dir()
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*.gguf") if p.is_file() and not p.name.endswith(".part"))


def find_gguf(model: str = "", root: Path | None = None) -> Path:
    """The GGUF that ``model`` names (a path, a file name or a folder under ``models/llm/``), or the preferred
    installed one when ``model`` is empty."""
    root = root or llm_models_dir()
    found = list_ggufs(root)
    if model:
        direct = Path(model).expanduser()
        if direct.is_file():
            return direct
        key = model.lower()
        for path in found:
            rel = path.relative_to(root).as_posix().lower()
            if key in (rel, path.name.lower(), path.stem.lower(), path.parent.name.lower()):
                return path
        raise ModelMissing(f"no GGUF named '{model}' in {root} (found: {', '.join(p.name for p in found) or 'none'}"
                           f"); copy the file there or give its path")
    for key in PREFERRED_GGUF:
        for path in found:
            if key in path.relative_to(root).as_posix().lower():
                return path
    if found:
        return found[0]
    raise ModelMissing(f"no GGUF chat model in {root}: run `python main.py models install "
                       f"qwen2.5-coder-1.5b-instruct-q4km` to assemble the default Qwen2.5-Coder-1.5B-Instruct, "
                       f"copy a GGUF there, or start Ollama "
                       f"(`ollama serve` and `ollama pull llama3.2`)")


def ollama_models(host: str, timeout: float = PROBE_TIMEOUT_S) -> list[str] | None:
    """The models of the Ollama server at ``host``, or None when it does not answer within ``timeout``."""
    import httpx

    try:
        response = httpx.get(f"{host.rstrip('/')}/api/tags", timeout=timeout)
        response.raise_for_status()
        return [m.get("name") or m.get("model") for m in response.json().get("models", [])]
    except (httpx.HTTPError, ValueError):
        return None


def _ollama_has(models: list[str], wanted: str) -> str | None:
    for name in models:
        if name == wanted or name.split(":")[0] == wanted or name == f"{wanted}:latest":
            return name
    return None


def open_backend(config: BackendConfig) -> ChatBackend:
    """A backend for ``config`` (blocking for at most the probe timeout; models load on first use)."""
    config = config.with_env_defaults()
    kind = config.backend
    if kind not in BACKENDS:
        raise ValueError(f"unknown LLM backend {kind!r}; choose one of {', '.join(BACKENDS)}")
    if kind == "ollama":
        from nodes.think.backends.ollama import OllamaBackend
        return OllamaBackend(config.model, config.url)
    if kind == "openai":
        from nodes.think.backends.openai import OpenAIBackend
        return OpenAIBackend(config.model, config.url)
    if kind == "auto" and not _looks_like_gguf(config.model):
        from nodes.think.backends.ollama import DEFAULT_MODEL, OllamaBackend, ollama_host
        host = ollama_host(config.url)
        available = ollama_models(host)
        if available is not None:
            name = _ollama_has(available, config.model or DEFAULT_MODEL)
            if name:
                log.info("LLM: Ollama at %s with %s", host, name)
                return OllamaBackend(name, host)
            log.info("LLM: Ollama at %s answers but has no %s; using the in-process model", host,
                     config.model or DEFAULT_MODEL)
    from nodes.think.backends.llamacpp import LlamaCppBackend
    gguf_name = config.model if _looks_like_gguf(config.model) or kind == "llamacpp" else ""
    path = find_gguf(gguf_name)
    log.info("LLM: in-process llama.cpp on %s", path)
    return LlamaCppBackend(path, n_ctx=config.n_ctx)


def _looks_like_gguf(model: str) -> bool:
    if not model:
        return False
    if model.lower().endswith(".gguf") or "/" in model or os.sep in model:
        return True
    root = llm_models_dir()
    return any(model.lower() in (p.stem.lower(), p.parent.name.lower()) for p in list_ggufs(root))
