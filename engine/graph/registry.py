"""The node registry: which class_type names exist and which class implements each.

The engine never imports ``nodes/`` or packs by name: ``main.py`` (or a test) tells the registry which
packages to discover, and packs are loaded by ``engine.app.packs``.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import pkgutil
from collections.abc import Iterator
from dataclasses import dataclass, field

from engine.graph.node import Node

log = logging.getLogger(__name__)


class UnknownNodeType(KeyError):
    pass


@dataclass
class NodeRegistry:
    nodes: dict[str, type[Node]] = field(default_factory=dict)
    # Where each node came from ("builtin", or the pack's name) and packs that failed to import.
    origins: dict[str, str] = field(default_factory=dict)
    failed_packs: dict[str, str] = field(default_factory=dict)
    web_directories: dict[str, str] = field(default_factory=dict)  # pack name -> folder of JS extensions

    def register(self, cls: type[Node], origin: str = "builtin") -> type[Node]:
        if not (isinstance(cls, type) and issubclass(cls, Node)):
            raise TypeError(f"{cls!r} is not a Node subclass")
        existing = self.nodes.get(cls.TYPE)
        if existing is not None and existing is not cls:
            log.warning("node type %s from %s replaces the one from %s", cls.TYPE, origin,
                        self.origins.get(cls.TYPE))
        if not cls.PYTHON_MODULE:
            cls.PYTHON_MODULE = "nodes" if origin == "builtin" else f"custom_nodes.{origin}"
        self.nodes[cls.TYPE] = cls
        self.origins[cls.TYPE] = origin
        return cls

    def get(self, class_type: str) -> type[Node]:
        try:
            return self.nodes[class_type]
        except KeyError:
            raise UnknownNodeType(class_type) from None

    def __contains__(self, class_type: object) -> bool:
        return class_type in self.nodes

    def __iter__(self) -> Iterator[type[Node]]:
        return iter(self.nodes.values())

    def __len__(self) -> int:
        return len(self.nodes)

    def register_module(self, module: object, origin: str = "builtin") -> int:
        """Register the Node subclasses a module defines (or lists in ``NODES``)."""
        listed = getattr(module, "NODES", None)
        if listed is not None:
            classes = list(listed)
        else:
            classes = [obj for _, obj in inspect.getmembers(module, inspect.isclass)
                       if issubclass(obj, Node) and obj is not Node and obj.__module__ == module.__name__
                       and not inspect.isabstract(obj) and not obj.__name__.startswith("_")]
        for cls in classes:
            self.register(cls, origin)
        return len(classes)

    def discover(self, package: str, origin: str = "builtin") -> int:
        """Import ``package`` and every module below it, registering the node classes they define."""
        pkg = importlib.import_module(package)
        count = self.register_module(pkg, origin) if not hasattr(pkg, "__path__") else 0
        for info in pkgutil.walk_packages(getattr(pkg, "__path__", []), prefix=f"{package}."):
            if info.name.rsplit(".", 1)[-1].startswith("_"):
                continue
            module = importlib.import_module(info.name)
            count += self.register_module(module, origin)
        return count


registry = NodeRegistry()
"""The process-wide registry (registries are the one kind of global state we keep)."""
