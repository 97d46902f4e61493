"""Server pieces in-process: the object_info shape, the security policy and token, upload checks, jobs,
WebSocket preview frames, userdata and templates (through Starlette's TestClient on a fresh runtime)."""

from __future__ import annotations

import io
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.graph import types as T
from engine.graph.node import Input, Node, Output
from engine.graph.registry import NodeRegistry
from engine.app.runtime import Runtime, RuntimeConfig
from server.api_system import redacted_argv
from server.node_info import node_info, object_info
from server.security import SecurityPolicy, is_loopback
from server.uploads import UploadRejected, clean_stem, detect
from server.ws import encode_preview
from tests.test_server_nodes import NODES
from tests.test_server_support import png_bytes, wav_bytes


class Widgets(Node):
    CATEGORY = "avatar/test"
    DISPLAY_NAME = "All the widgets"
    DESCRIPTION = "declares one of each"
    OUTPUT_NODE = True
    INPUTS = (Input.integer("count", 3, min=1, max=9, tooltip="how many"),
              Input.number("gain", 0.5, min=0.0, max=2.0, step=0.05),
              Input.string("text", "hi", multiline=True),
              Input.boolean("on", True),
              Input.combo("mode", ["a", "b"], default="b"),
              Input.file("clip", "audio", ["x.wav"]),
              Input.file("film", "video", ["y.mp4"]),
              Input.socket("frames", T.FRAME_STREAM),
              Input.socket("voice", T.VOICE, required=False),
              Input.string("seed_text", force_input=True, extra=(("dynamicPrompts", False),)),
              Input("unique", "UNIQUE_ID", required=False, hidden=True))
    OUTPUTS = (Output("audio", T.AUDIO_STREAM, tooltip="the sound"),)


def test_node_info_has_comfyui_shape_and_widget_metadata() -> None:
    info = node_info(Widgets)
    required, optional = info["input"]["required"], info["input"]["optional"]
    assert required["count"] == ["INT", {"default": 3, "min": 1, "max": 9, "step": 1, "tooltip": "how many"}] or \
        required["count"] == ("INT", {"default": 3, "min": 1, "max": 9, "step": 1, "tooltip": "how many"})
    assert list(required["gain"])[1] == {"default": 0.5, "min": 0.0, "max": 2.0, "step": 0.05}
    assert list(required["text"])[1]["multiline"] is True
    assert list(required["mode"])[0] == ["a", "b"] and list(required["mode"])[1]["default"] == "b"
    assert list(required["clip"])[1]["audio_upload"] is True and list(required["film"])[1]["video_upload"] is True
    assert list(required["frames"])[0] == "FRAME_STREAM"
    assert list(required["seed_text"])[1] == {"default": "", "forceInput": True, "dynamicPrompts": False}
    assert list(optional["voice"])[0] == "VOICE"
    assert info["input"]["hidden"] == {"unique": "UNIQUE_ID"}
    assert info["input_order"]["required"][:3] == ["count", "gain", "text"]
    assert info["output"] == ["AUDIO_STREAM"] and info["output_name"] == ["audio"]
    assert info["output_is_list"] == [False] and info["output_tooltips"] == ["the sound"]
    assert (info["name"], info["display_name"], info["category"], info["output_node"]) == \
        ("Widgets", "All the widgets", "avatar/test", True)
    assert info["streaming"] is True and info["socket_colours"]["FRAME_STREAM"] == T.TYPE_COLOURS["FRAME_STREAM"]
    for key in ("description", "python_module"):
        assert isinstance(info[key], str)


def test_object_info_leaves_out_a_broken_node_and_keeps_the_rest() -> None:
    class Broken(Node):
        INPUTS = (Input.combo("x", lambda: 1 / 0),)

    reg = NodeRegistry()
    reg.register(Widgets)
    reg.register(Broken)
    assert list(object_info(reg)) == ["Widgets"]


def test_security_policy() -> None:
    local = SecurityPolicy("127.0.0.1")
    assert local.host_allowed("127.0.0.1:8188") and local.host_allowed("localhost:1") and local.host_allowed("[::1]:5")
    assert not local.host_allowed("evil.example:8188") and not local.host_allowed(None)
    assert local.origin_allowed(None, "127.0.0.1:8188", None)
    assert local.origin_allowed("http://127.0.0.1:8188", "127.0.0.1:8188", "same-origin")
    assert not local.origin_allowed("http://127.0.0.1:9999", "127.0.0.1:8188", None)
    assert not local.origin_allowed("http://evil.example", "127.0.0.1:8188", None)
    assert not local.origin_allowed("null", "127.0.0.1:8188", None)
    assert not local.origin_allowed(None, "127.0.0.1:8188", "cross-site")
    public = SecurityPolicy("0.0.0.0", token="s3cret")
    assert public.host_allowed("avatar.lan:8188") and public.origin_allowed("http://avatar.lan:8188",
                                                                              "avatar.lan:8188", None)
    assert public.token_ok("s3cret") and not public.token_ok("guess") and not public.token_ok(None)
    assert is_loopback("127.0.0.2") and not is_loopback("192.168.1.2")


def test_uploads_are_judged_by_content() -> None:
    assert detect(png_bytes()).extension == ".png"
    assert detect(wav_bytes()).kind == "audio"
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="JPEG")
    assert detect(buf.getvalue()).extension == ".jpg"
    for junk in (b"", b"GIF89a but not really", b"RIFF\x00\x00\x00\x00WAVEjunk", b"<svg onload=alert(1)>"):
        with pytest.raises(UploadRejected):
            detect(junk)
    assert clean_stem("../../etc/pa ss:wd.png") == "pa_ss_wd" and clean_stem("") == "upload"


def test_video_upload_is_recognised(tmp_path: Path) -> None:
    import av

    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as c:
        stream = c.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i * 40, np.uint8), format="rgb24")
            c.mux(stream.encode(frame))
        c.mux(stream.encode())
    detected = detect(path.read_bytes())
    assert (detected.kind, detected.extension) == ("video", ".mp4")


def test_preview_frame_layout() -> None:
    frame = encode_preview("png", b"\x89PNGdata")
    assert struct.unpack(">II", frame[:8]) == (1, 2) and frame[8:] == b"\x89PNGdata"
    assert struct.unpack(">II", encode_preview("jpeg", b"x")[:8]) == (1, 1)


@pytest.fixture
def client(tmp_path: Path):
    from starlette.testclient import TestClient

    from server.app import ServerConfig, create_app

    reg = NodeRegistry()
    for cls in NODES:
        reg.register(cls, "agtest")
    runtime = Runtime(RuntimeConfig(data_dir=tmp_path / "data", builtin_packages=()), registry=reg)
    app = create_app(runtime, ServerConfig(token=None, serve_frontend=False))
    with TestClient(app, base_url="http://127.0.0.1:8188") as c:
        yield c


def test_routes_are_served_with_and_without_api_prefix(client) -> None:
    for path in ("/object_info", "/api/object_info", "/system_stats", "/api/system_stats", "/api/users",
                 "/api/settings", "/api/extensions", "/api/embeddings", "/api/features", "/api/i18n",
                 "/api/global_subgraphs", "/api/experiment/models", "/api/models", "/api/workflow_templates",
                 "/api/jobs?status=in_progress,pending&limit=200&offset=0", "/queue", "/api/history",
                 "/api/userdata?dir=workflows&recurse=true&split=false&full_info=true", "/api/prompt",
                 "/api/avatargraph/info", "/user.css", "/api/userdata/user.css", "/templates/index.json"):
        assert client.get(path).status_code == 200, path
    assert client.get("/api/users").json() == {"storage": "server", "migrated": True}
    assert "/extensions/avatargraph/avatargraph.js" in client.get("/api/extensions").json()
    assert client.get("/extensions/avatargraph/avatargraph.js").status_code == 200
    stats = client.get("/api/system_stats").json()
    assert stats["system"]["ram_total"] > 0 and stats["devices"][0]["vram_total"] > 0
    assert stats["system"]["argv"] == redacted_argv(sys.argv)  # the real command line, token hidden
    assert stats["system"]["comfyui_version"].endswith("-emulated") and stats["system"]["app"] == "AvatarGraph"
    settings = client.get("/api/settings").json()  # nothing leaves the machine unless the user turns it on
    assert settings["Comfy.Notification.ShowVersionUpdates"] is False
    assert settings["Comfy.Manager.ShowMissingPacks"] is False
    info = client.get("/api/avatargraph/info").json()
    assert info["socket_colours"] == T.TYPE_COLOURS and info["talk_url"] == "/talk"
    assert client.get("/talk", follow_redirects=False).status_code in (200, 307)  # the Talk button's target
    assert client.get("/api/talk/options").status_code == 200


def test_userdata_save_list_move_delete(client) -> None:
    workflow = b'{"nodes": [], "links": []}'
    r = client.post("/api/userdata/workflows%2Fmine.json?overwrite=false&full_info=true", content=workflow)
    assert r.status_code == 200 and r.json()["path"] == "workflows/mine.json" and r.json()["size"] == len(workflow)
    assert client.post("/api/userdata/workflows%2Fmine.json?overwrite=false", content=b"{}").status_code == 409
    assert client.get("/api/userdata/workflows%2Fmine.json").content == workflow
    listed = client.get("/api/userdata?dir=workflows&recurse=true&split=false&full_info=true").json()
    assert [e["path"] for e in listed] == ["mine.json"]
    assert client.get("/api/userdata?dir=workflows&split=true").json() == [["mine.json", "mine.json"]]
    r = client.post("/api/userdata/workflows%2Fmine.json/move/workflows%2Fsub%2Fyours.json?full_info=true")
    assert r.status_code == 200 and r.json()["path"] == "workflows/sub/yours.json"
    assert client.get("/api/userdata?dir=workflows&recurse=true").json() == ["sub/yours.json"]
    assert client.delete("/api/userdata/workflows%2Fsub%2Fyours.json").status_code == 204
    assert client.get("/api/userdata/workflows%2Fsub%2Fyours.json").status_code == 404


def test_userdata_refuses_a_symlink_leaving_the_folder(client, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    user = tmp_path / "data" / "user" / "default"
    user.mkdir(parents=True, exist_ok=True)
    (user / "link.txt").symlink_to(secret)
    assert client.get("/api/userdata/link.txt").status_code == 403
    (tmp_path / "data" / "output").mkdir(parents=True, exist_ok=True)
    (tmp_path / "data" / "output" / "out.txt").symlink_to(secret)
    assert client.get("/api/view?filename=out.txt&type=output").status_code == 403


def test_token_is_required_when_configured(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from server.app import ServerConfig, create_app

    runtime = Runtime(RuntimeConfig(data_dir=tmp_path / "data", builtin_packages=()), registry=NodeRegistry())
    with pytest.raises(ValueError):
        create_app(runtime, ServerConfig(host="0.0.0.0", token=None))
    app = create_app(runtime, ServerConfig(host="0.0.0.0", token="s3cret", serve_frontend=False))
    with TestClient(app, base_url="http://avatar.lan:8188") as c:
        assert c.get("/api/queue").status_code == 401
        assert c.get("/api/queue", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/api/queue", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        r = c.get("/api/queue?token=s3cret")
        assert r.status_code == 200 and "avatargraph_token=s3cret" in r.headers["set-cookie"]
        assert c.get("/api/queue").status_code == 200  # the cookie now carries it
        from starlette.websockets import WebSocketDisconnect

        with pytest.raises(WebSocketDisconnect):
            with c.websocket_connect("/ws?clientId=abc", headers={"cookie": ""}) as ws:
                ws.receive_json()
        with c.websocket_connect("/ws?clientId=abc", headers={"Authorization": "Bearer s3cret"}) as ws:
            assert ws.receive_json()["data"]["sid"] == "abc"


def test_chunked_upload_is_limited_without_a_content_length(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from server.app import ServerConfig, create_app
    from tests.test_server_support import multipart

    runtime = Runtime(RuntimeConfig(data_dir=tmp_path / "data", builtin_packages=()), registry=NodeRegistry())
    app = create_app(runtime, ServerConfig(serve_frontend=False, max_upload_bytes=100_000))
    body, ctype = multipart({}, {"image": ("a.png", b"\0" * 300_000, "image/png")})
    with TestClient(app, base_url="http://127.0.0.1:8188") as c:
        chunks = (body[i:i + 50_000] for i in range(0, len(body), 50_000))  # no Content-Length: chunked
        r = c.post("/upload/image", content=chunks, headers={"Content-Type": ctype})
        assert r.status_code == 413 and "limited" in r.json()["error"]["message"]
        good, ctype = multipart({"subfolder": "faces"}, {"image": ("me.png", png_bytes(), "image/png")})
        r = c.post("/upload/image", content=iter([good]), headers={"Content-Type": ctype})
        assert r.status_code == 200 and r.json()["subfolder"] == "faces"
        assert (tmp_path / "data" / "input" / "faces" / r.json()["name"]).is_file()


def test_argv_is_redacted() -> None:
    argv = ["main.py", "--token", "s3cret", "--token=abc", "--queue", "redis://:pw@host:6379/0", "x?token=q&a=1"]
    shown = redacted_argv(argv)
    assert shown == ["main.py", "--token", "***", "--token=***", "--queue", "redis://:***@host:6379/0",
                     "x?token=***&a=1"]
    assert not any(secret in " ".join(shown) for secret in ("s3cret", "abc", "pw@", "=q"))


def test_pages_get_a_policy_that_allows_this_server_only(client) -> None:
    page = client.get("/talk/")
    if page.status_code == 200:
        policy = page.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "connect-src 'self' ws://127.0.0.1:8188" in policy
    assert "content-security-policy" not in client.get("/api/system_stats").headers  # pages only


def test_traceback_frames_are_listed_once() -> None:
    import traceback

    from server.comfy_errors import clean_traceback

    def inner() -> None:
        raise ValueError("needs a live session")

    def outer() -> None:
        try:
            inner()
        except ValueError as exc:
            raise RuntimeError("node 3 failed") from exc
    try:
        outer()
    except RuntimeError as exc:
        lines = traceback.format_exception(exc)
    cleaned = clean_traceback(lines)
    frames = [line for line in cleaned if line.lstrip().startswith("File ")]
    assert len(frames) == len(set(frames)) and frames, cleaned
    assert cleaned[0].startswith("Traceback") and not any("direct cause" in line for line in cleaned)
    assert "RuntimeError: node 3 failed" in "".join(cleaned) and "ValueError" in "".join(cleaned)


def test_validation_errors_use_comfyui_types() -> None:
    from engine.graph.prompt import Prompt
    from engine.graph.validation import validate
    from server.comfy_errors import prompt_error_body

    registry = NodeRegistry()
    for cls in NODES:
        registry.register(cls)
    prompt = {"1": {"class_type": "AGTestSolidImage", "inputs": {"width": 99999, "height": 48, "colour": "pink"}},
              "2": {"class_type": "AGTestInvert", "inputs": {"image": ["1", 0]}},
              "3": {"class_type": "AGTestCompose", "inputs": {"image": ["2", 0]}}}
    body = prompt_error_body(validate(Prompt.from_api(prompt), registry), prompt, registry)
    found = {(node, e["type"], e["extra_info"].get("input_name")) for node, n in body["node_errors"].items()
             for e in n["errors"]}
    assert ("1", "value_not_in_list", "colour") in found and ("1", "value_bigger_than_max", "width") in found
    assert ("3", "required_input_missing", "audio") in found
    colour = next(e for e in body["node_errors"]["1"]["errors"] if e["type"] == "value_not_in_list")
    assert colour["extra_info"]["received_value"] == "pink" and "teal" in colour["extra_info"]["input_config"][0]


def test_partially_valid_prompt_runs_its_valid_outputs_and_reports_the_others(client) -> None:
    """As ComfyUI: a 200 for the outputs that can run, with the node_errors of the ones left out."""
    good = {"1": {"class_type": "AGTestSolidImage", "inputs": {"width": 16, "height": 16, "colour": "teal"}},
            "2": {"class_type": "AGTestTone", "inputs": {"seconds": 0.1, "frequency": 440}},
            "3": {"class_type": "AGTestCompose", "inputs": {"image": ["1", 0], "audio": ["2", 0]}}}
    broken = {"4": {"class_type": "AGTestSolidImage", "inputs": {"width": 16, "height": 16, "colour": "pink"}},
              "5": {"class_type": "AGTestCompose", "inputs": {"image": ["4", 0], "audio": ["2", 0]}}}
    answer = client.post("/prompt", json={"prompt": {**good, **broken}})
    assert answer.status_code == 200, answer.text
    errors = answer.json()["node_errors"]
    assert "4" in errors and errors["4"]["errors"][0]["type"] == "value_not_in_list"
    assert "1" not in errors and "3" not in errors
    assert client.post("/prompt", json={"prompt": good}).json()["node_errors"] == {}
