"""The API as ComfyUI users script it (``urllib`` + ``websocket-client``), against a real ``main.py`` server:
upload media, queue a workflow, follow ``executing`` until ``node`` is null, fetch outputs through
``history`` and ``view``; then a battery of bad requests, each refused clearly while the server keeps serving."""

from __future__ import annotations

import io
import json
import struct
import time
import uuid
from typing import Any

import numpy as np
import pytest
import websocket  # websocket-client, as in ComfyUI's script examples

from tests.test_server_support import (ROOT, TEST_WORKFLOW, PackInstall, ServerProcess, follow, png_bytes, request,
                                       upload, wait_history, wav_bytes)

UPLOAD_LIMIT_MB = 2
RENDER_WORKFLOW = ROOT / "workflows" / "render_avatar.api.json"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, monkeypatch_module: Any) -> Any:
    pack = PackInstall()
    monkeypatch_module.setenv("AVATARGRAPH_MAX_UPLOAD_MB", str(UPLOAD_LIMIT_MB))
    proc = ServerProcess(tmp_path_factory.mktemp("api") / "data", pack.name)
    try:
        yield proc.start()
    finally:
        proc.stop()
        pack.remove()


@pytest.fixture(scope="module")
def monkeypatch_module() -> Any:
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def connect(server: ServerProcess, client_id: str | None = None, origin: str | None = None,
            host: str | None = None) -> websocket.WebSocket:
    ws = websocket.WebSocket()
    url = f"ws://127.0.0.1:{server.port}/ws" + (f"?clientId={client_id}" if client_id else "")
    options = {k: v for k, v in (("origin", origin), ("host", host)) if v is not None}
    ws.connect(url, timeout=10, **options)
    return ws


def queue(server: ServerProcess, prompt: dict[str, Any], client_id: str | None = None, **extra: Any) -> str:
    status, body = request(server.url, "POST", "/prompt", {"prompt": prompt, "client_id": client_id, **extra})
    assert status == 200, body
    assert body["node_errors"] == {} and isinstance(body["number"], int | float)
    return body["prompt_id"]


def alive(server: ServerProcess) -> None:
    status, body = request(server.url, "GET", "/api/system_stats")
    argv = body["system"]["argv"] if status == 200 else []
    assert argv[:2] == ["main.py", "--port"] and str(server.port) in argv, (status, body)  # the real command line


# The script ----------------------------------------------------------------------------------------------
def test_upload_queue_follow_history_view(server: ServerProcess) -> None:
    client_id = uuid.uuid4().hex
    ws = connect(server, client_id)
    hello = json.loads(ws.recv())
    assert hello["type"] == "status" and hello["data"]["sid"] == client_id
    assert hello["data"]["status"]["exec_info"]["queue_remaining"] == 0

    image = png_bytes(64, 48)
    status, up_image = upload(server.url, "portrait.png", image, "image/png", overwrite="true")
    assert status == 200, up_image
    assert up_image["type"] == "input" and up_image["name"].startswith("portrait-") and up_image["name"].endswith(".png")
    status, up_again = upload(server.url, "portrait.png", image, "image/png")
    assert up_again["name"] == up_image["name"]  # content-addressed: same bytes, same name
    status, up_audio = upload(server.url, "speech.wav", wav_bytes(0.5), "audio/wav")
    assert status == 200 and up_audio["name"].endswith(".wav") and up_audio["kind"] == "audio", up_audio

    prompt = {
        "1": {"class_type": "AGTestLoadImage", "inputs": {"image": up_image["name"]}},
        "2": {"class_type": "AGTestLoadAudio", "inputs": {"audio": up_audio["name"]}},
        "3": {"class_type": "AGTestCompose", "inputs": {"image": ["1", 0], "audio": ["2", 0], "gain": 0.5,
                                                        "steps": 4, "delay": 0.4, "fail": False,
                                                        "filename_prefix": "script"}},
    }
    prompt_id = queue(server, prompt, client_id)
    messages = follow(ws, prompt_id)
    ws.close()

    types = [m["type"] for m in messages]
    order = [t for t in types if t in ("execution_start", "execution_cached", "executing", "executed",
                                       "execution_success")]
    assert order[:2] == ["execution_start", "execution_cached"], types
    assert order[-3:] == ["executed", "execution_success", "executing"], types
    executing = [m["data"]["node"] for m in messages if m["type"] == "executing"]
    assert executing[-1] is None and set(executing[:-1]) == {"1", "2", "3"}
    progress = [(m["data"]["value"], m["data"]["max"]) for m in messages if m["type"] == "progress"]
    assert progress == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert any(m["type"] == "status" and m["data"]["status"]["exec_info"]["queue_remaining"] == 1 for m in messages)
    previews = [m["data"] for m in messages if m["type"] == "<binary>"]
    assert previews, "no binary preview frame"
    event, image_type = struct.unpack(">II", previews[0][:8])
    assert (event, image_type) == (1, 2) and previews[0][8:16] == b"\x89PNG\r\n\x1a\n"

    entry = wait_history(server.url, prompt_id)
    assert entry["status"]["status_str"] == "success" and entry["status"]["completed"] is True
    assert entry["prompt"][1] == prompt_id and entry["prompt"][2] == prompt
    outputs = entry["outputs"]["3"]
    from PIL import Image
    import soundfile

    image_ref, audio_ref = outputs["images"][0], outputs["audio"][0]
    status, png = request(server.url, "GET", "/view?" + _query(image_ref))
    assert status == 200 and png[:8] == b"\x89PNG\r\n\x1a\n"
    out_img = np.asarray(Image.open(io.BytesIO(png)))
    assert out_img.shape == (48, 64, 3)
    assert np.array_equal(out_img[:, 16:], np.asarray(Image.open(io.BytesIO(image)))[:, 16:])  # the upload
    status, wav = request(server.url, "GET", "/api/view?" + _query(audio_ref))
    samples, rate = soundfile.read(io.BytesIO(wav))
    assert status == 200 and rate == 16000 and len(samples) == 8000
    assert 0.15 < np.abs(samples).max() < 0.25  # 0.4 amplitude at gain 0.5

    status, q = request(server.url, "GET", "/queue")
    assert q == {"queue_running": [], "queue_pending": []}
    status, jobs = request(server.url, "GET", "/api/jobs?status=completed,failed,cancelled&limit=10&offset=0")
    job = next(j for j in jobs["jobs"] if j["id"] == prompt_id)
    assert job["status"] == "completed" and job["outputs_count"] == 3  # png, wav, mp4 and job["preview_output"]["nodeId"] == "3"
    status, detail = request(server.url, "GET", f"/api/jobs/{prompt_id}")
    assert detail["outputs"] == entry["outputs"] and detail["workflow"]["prompt"] == prompt


def _query(ref: dict[str, str]) -> str:
    from urllib.parse import urlencode

    return urlencode({"filename": ref["filename"], "subfolder": ref["subfolder"], "type": ref["type"]})


def test_render_avatar_workflow(server: ServerProcess) -> None:
    """The shipped render workflow through the API, once it exists; its nodes must then be available."""
    if not RENDER_WORKFLOW.exists():
        pytest.skip("workflows/render_avatar.api.json is not there yet")
    prompt = json.loads(RENDER_WORKFLOW.read_text())
    status, info = request(server.url, "GET", "/api/object_info")
    missing = {n["class_type"]: info.get(n["class_type"], {}).get("unavailable", "not registered")
               for n in prompt.values() if n["class_type"] not in info or "unavailable" in info[n["class_type"]]}
    assert not missing, f"render_avatar.api.json exists but its nodes are not available: {missing}"
    from PIL import Image
    from skimage import data as skimage_data

    buf = io.BytesIO()
    Image.fromarray(skimage_data.astronaut()).save(buf, format="PNG")  # a real face
    uploads = {"image_upload": upload(server.url, "portrait.png", buf.getvalue(), "image/png")[1]["name"],
               "audio_upload": upload(server.url, "speech.wav", wav_bytes(1.0), "audio/wav")[1]["name"]}
    for node in prompt.values():
        for name, spec in info[node["class_type"]]["input"].get("required", {}).items():
            options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            for flag, filename in uploads.items():
                if options.get(flag):
                    node["inputs"][name] = filename
    client_id = uuid.uuid4().hex
    ws = connect(server, client_id)
    prompt_id = queue(server, prompt, client_id)
    messages = follow(ws, prompt_id, timeout=600)
    ws.close()
    assert "execution_success" in [m["type"] for m in messages], [m for m in messages if m["type"] == "execution_error"]
    entry = wait_history(server.url, prompt_id)
    files = [f for ui in entry["outputs"].values() for key in ("images", "gifs", "video") for f in ui.get(key, [])]
    videos = [f for f in files if f["filename"].endswith((".mp4", ".webm"))]
    assert videos, entry["outputs"]
    status, data = request(server.url, "GET", "/view?" + _query(videos[0]), timeout=60)
    assert status == 200 and len(data) > 1000
    import av

    with av.open(io.BytesIO(data)) as container:
        assert container.streams.video and next(container.decode(video=0)) is not None


# Bad requests ----------------------------------------------------------------------------------------------
def _prompt_with(**changes: Any) -> dict[str, Any]:
    prompt = json.loads(json.dumps(TEST_WORKFLOW))
    prompt["3"]["inputs"]["delay"] = 0.0
    for key, value in changes.items():
        node, name = key.split("__")
        prompt[node]["inputs"][name] = value
    return prompt


BAD_PROMPTS: list[tuple[str, Any, str]] = [
    ("malformed JSON", b"{\"prompt\": {", "invalid_json"),
    ("body is a list", [1, 2], "invalid_request"),
    ("no prompt", {"client_id": "x"}, "no_prompt"),
    ("prompt is a string", {"prompt": "hello"}, "invalid_prompt"),
    ("node without class_type", {"prompt": {"1": {"inputs": {}}}}, "invalid_prompt"),
    ("unknown class", {"prompt": {**_prompt_with(), "9": {"class_type": "NoSuchNode", "inputs": {}}}},
     "missing_node_type"),
    ("widget of the wrong type", {"prompt": _prompt_with(**{"1__width": "wide"})}, "invalid_input_type"),
    ("widget out of range", {"prompt": _prompt_with(**{"1__width": 2})}, "value_smaller_than_min"),
    ("combo value not among the choices", {"prompt": _prompt_with(**{"1__colour": "pink"})}, "value_not_in_list"),
    ("link to a missing node", {"prompt": _prompt_with(**{"3__image": ["42", 0]})}, None),
    ("link of the wrong type", {"prompt": _prompt_with(**{"3__image": ["2", 0]})}, None),
    ("value where a link belongs", {"prompt": _prompt_with(**{"3__audio": 5})}, "invalid_input_type"),
    ("cycle", {"prompt": {"1": {"class_type": "AGTestInvert", "inputs": {"image": ["2", 0]}},
                          "2": {"class_type": "AGTestInvert", "inputs": {"image": ["1", 0]}},
                          "3": {"class_type": "AGTestTone", "inputs": {}},
                          "4": {"class_type": "AGTestCompose", "inputs": {"image": ["2", 0], "audio": ["3", 0]}}}},
     "dependency_cycle"),
    ("no output node", {"prompt": {"1": {"class_type": "AGTestSolidImage", "inputs": {}}}}, "prompt_no_outputs"),
    ("missing upload", {"prompt": {**_prompt_with(**{"3__image": ["5", 0]}),
                                   "5": {"class_type": "AGTestLoadImage", "inputs": {"image": "nope.png"}}}},
     "value_not_in_list"),
    ("number of the wrong type", {"prompt": _prompt_with(), "number": "first"}, "invalid_request"),
    ("front of the wrong type", {"prompt": _prompt_with(), "front": "yes"}, "invalid_request"),
    ("unknown partial execution target", {"prompt": _prompt_with(), "partial_execution_targets": ["77"]},
     "invalid_prompt"),
]


@pytest.mark.parametrize("what,body,error_type", BAD_PROMPTS, ids=[b[0] for b in BAD_PROMPTS])
def test_bad_prompt_is_refused(server: ServerProcess, what: str, body: Any, error_type: str | None) -> None:
    raw = body if isinstance(body, bytes) else None
    status, reply = request(server.url, "POST", "/api/prompt", None if raw else body, raw=raw,
                            headers={"Content-Type": "application/json"})
    assert status == 400, (what, status, reply)
    assert reply["error"]["message"] and isinstance(reply["node_errors"], dict)
    if error_type is not None:
        found = {reply["error"]["type"]} | {e["type"] for n in reply["node_errors"].values() for e in n["errors"]}
        assert error_type in found, (what, reply)
    if reply["node_errors"]:
        for node_id, node in reply["node_errors"].items():
            assert node["errors"][0]["message"], reply
    alive(server)


def _status(server: ServerProcess, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
    return request(server.url, method, path, body, **kw)


BAD_REQUESTS: list[tuple[str, str, str, Any, dict[str, str], int]] = [
    ("view traversal", "GET", "/view?filename=../../../etc/passwd&type=input", None, {}, 403),
    ("view absolute path", "GET", "/view?filename=/etc/passwd&type=output", None, {}, 403),
    ("view subfolder traversal", "GET", "/view?filename=passwd&subfolder=../../../../etc&type=output", None, {}, 403),
    ("view unknown type", "GET", "/view?filename=a.png&type=models", None, {}, 400),
    ("view missing file", "GET", "/view?filename=nothing-here.png&type=output", None, {}, 404),
    ("view without filename", "GET", "/view", None, {}, 400),
    ("userdata GET traversal", "GET", "/api/userdata/..%2F..%2F..%2Fetc%2Fpasswd", None, {}, 403),
    ("userdata POST traversal", "POST", "/api/userdata/..%2Fevil.json", {"x": 1}, {}, 403),
    ("userdata list traversal", "GET", "/api/userdata?dir=../../", None, {}, 403),
    ("userdata move traversal", "POST", "/api/userdata/workflows%2Fa.json/move/..%2F..%2Fa.json", None, {}, 403),
    ("userdata DELETE missing", "DELETE", "/api/userdata/workflows%2Fnot-there.json", None, {}, 404),
    ("foreign Origin on POST /prompt", "POST", "/api/prompt", {"prompt": {}},
     {"Origin": "http://evil.example"}, 403),
    ("Origin null on POST /queue", "POST", "/api/queue", {"clear": True}, {"Origin": "null"}, 403),
    ("cross-site fetch", "POST", "/api/interrupt", {}, {"Sec-Fetch-Site": "cross-site"}, 403),
    ("DNS rebinding Host", "GET", "/api/history", None, {"Host": "evil.example:8188"}, 403),
    ("queue body without clear/delete", "POST", "/api/queue", {"remove": 1}, {}, 400),
    ("queue delete of a non-list", "POST", "/api/queue", {"delete": "abc"}, {}, 400),
    ("history body is a list", "POST", "/api/history", [1], {}, 400),
    ("unknown node class info", "GET", "/api/object_info/NoSuchNode", None, {}, 404),
    ("jobs with an unknown status", "GET", "/api/jobs?status=bogus", None, {}, 400),
    ("history max_items not a number", "GET", "/api/history?max_items=lots", None, {}, 400),
    ("interrupt body is a list", "POST", "/api/interrupt", [1], {}, 400),
    ("interrupt unknown session", "POST", "/api/interrupt", {"session_id": "nope"}, {}, 404),
    ("settings value not JSON", "POST", "/api/settings/Comfy.X", b"{oops", {}, 400),
    ("create a user in single-user mode", "POST", "/api/users", {"username": "x"}, {}, 400),
]


@pytest.mark.parametrize("what,method,path,body,headers,expected", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_request_is_refused(server: ServerProcess, what: str, method: str, path: str, body: Any,
                                headers: dict[str, str], expected: int) -> None:
    raw = body if isinstance(body, bytes) else None
    status, reply = request(server.url, method, path, None if raw else body, raw=raw,
                            headers={"Content-Type": "application/json", **headers})
    assert status == expected, (what, status, reply)
    assert isinstance(reply, dict) and reply["error"]["message"], reply
    alive(server)


def test_bad_uploads_are_refused(server: ServerProcess) -> None:
    cases = [
        ("a text file", upload(server.url, "notes.png", b"just some text, not an image\n" * 20, "image/png"), 415),
        ("an empty file", upload(server.url, "empty.wav", b"", "audio/wav"), 415),
        ("a truncated PNG", upload(server.url, "cut.png", png_bytes()[:60], "image/png"), 415),
        ("HTML", upload(server.url, "page.png", b"<html><script>alert(1)</script></html>", "text/html"), 415),
        ("an oversized upload", upload(server.url, "big.wav", b"\0" * (UPLOAD_LIMIT_MB * 2**20 + 100_000)), 413),
        ("type outside the folders", upload(server.url, "a.png", png_bytes(), "image/png", type="../x"), 400),
        ("subfolder traversal", upload(server.url, "a.png", png_bytes(), "image/png", subfolder="../../etc"), 400),
        ("no file field", request(server.url, "POST", "/upload/image", raw=b"--x--\r\n",
                                  headers={"Content-Type": "multipart/form-data; boundary=x"}), 400),
        ("not multipart", request(server.url, "POST", "/upload/image", {"image": "x"}), 400),
    ]
    for what, (status, reply), expected in cases:
        assert status == expected, (what, status, reply)
        assert reply["error"]["message"], (what, reply)
        alive(server)
    names = [p.name for p in (server.data_dir / "input").iterdir()] if (server.data_dir / "input").exists() else []
    assert not any(n.startswith(("notes", "empty", "cut", "page", "big")) for n in names), names


def test_foreign_origin_websocket_is_refused(server: ServerProcess) -> None:
    with pytest.raises(websocket.WebSocketBadStatusException) as caught:
        connect(server, "x", origin="http://evil.example")
    assert caught.value.status_code == 403
    with pytest.raises(websocket.WebSocketBadStatusException):
        connect(server, "x", host="rebound.example")
    ws = connect(server, "x", origin=f"http://127.0.0.1:{server.port}")  # the editor's own page is fine
    assert json.loads(ws.recv())["type"] == "status"
    ws.close()
    alive(server)


def test_garbage_ws_frames_get_error_events(server: ServerProcess) -> None:
    ws = connect(server)
    sid = json.loads(ws.recv())["data"]["sid"]
    for frame in ("not json at all", "[1, 2, 3]", json.dumps({"type": "launch_missiles"}), "{\"type\": 5}"):
        ws.send(frame)
        reply = json.loads(ws.recv())
        assert reply["type"] == "error" and reply["data"]["message"], reply
    ws.send_binary(b"\x00\x01garbage")
    assert json.loads(ws.recv())["type"] == "error"
    ws.send(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
    reply = json.loads(ws.recv())
    assert reply["type"] == "feature_flags" and reply["data"]["max_upload_size"] == UPLOAD_LIMIT_MB * 2**20
    ws.close()
    assert sid
    alive(server)


def test_failing_node_sends_error_event_then_executing_null(server: ServerProcess) -> None:
    client_id = uuid.uuid4().hex
    ws = connect(server, client_id)
    prompt_id = queue(server, _prompt_with(**{"3__fail": True}), client_id)
    messages = follow(ws, prompt_id)
    ws.close()
    errors = [m["data"] for m in messages if m["type"] == "execution_error"]
    assert len(errors) == 1 and errors[0]["node_id"] == "3" and "fail" in errors[0]["exception_message"]
    entry = wait_history(server.url, prompt_id)
    assert entry["status"]["status_str"] == "error"
    status, jobs = request(server.url, "GET", "/api/jobs?status=failed")
    assert any(j["id"] == prompt_id and j["execution_error"]["node_id"] == "3" for j in jobs["jobs"])


def test_interrupt_one_prompt(server: ServerProcess) -> None:
    client_id = uuid.uuid4().hex
    ws = connect(server, client_id)
    prompt_id = queue(server, _prompt_with(**{"3__delay": 20.0, "3__steps": 40}), client_id)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait until it runs
        message = json.loads(ws.recv())
        if message["type"] == "progress":
            break
    status, reply = request(server.url, "POST", "/api/interrupt", {"prompt_id": "someone-else"})
    assert reply == {"interrupted": False}
    status, reply = request(server.url, "POST", "/api/interrupt", {"prompt_id": prompt_id})
    assert status == 200 and reply == {"interrupted": True}
    messages = follow(ws, prompt_id, timeout=30)
    ws.close()
    assert "execution_interrupted" in [m["type"] for m in messages]
    status_info = wait_history(server.url, prompt_id)["status"]
    # ComfyUI lists an interrupted prompt as an error whose messages say it was interrupted
    assert status_info["status_str"] == "error" and status_info["completed"] is False
    assert "execution_interrupted" in [m[0] for m in status_info["messages"]]
    status, jobs = request(server.url, "GET", "/api/jobs?status=cancelled")
    assert prompt_id in [j["id"] for j in jobs["jobs"]]


def test_client_vanishing_mid_run(server: ServerProcess) -> None:
    client_id = uuid.uuid4().hex
    ws = connect(server, client_id)
    prompt_id = queue(server, _prompt_with(**{"3__delay": 1.5, "3__steps": 6}), client_id)
    while json.loads(ws.recv())["type"] != "execution_start":
        pass
    ws.close()  # gone while its prompt runs
    alive(server)
    entry = wait_history(server.url, prompt_id, timeout=30)
    assert entry["status"]["status_str"] == "success" and entry["outputs"]["3"]["images"]
    ws2 = connect(server, client_id)  # coming back under the same id works
    assert json.loads(ws2.recv())["type"] == "status"
    ws2.close()


def test_queue_and_history_management(server: ServerProcess) -> None:
    blocker = queue(server, _prompt_with(**{"3__delay": 3.0, "3__steps": 10}))
    pending = [queue(server, _prompt_with(**{"1__width": 10 + i})) for i in range(3)]
    status, q = request(server.url, "GET", "/api/queue")
    assert [i[1] for i in q["queue_pending"]][-3:] == pending
    status, info = request(server.url, "GET", "/api/prompt")
    assert info["exec_info"]["queue_remaining"] >= 3
    status, reply = request(server.url, "POST", "/api/queue", {"delete": [pending[0]]})
    assert reply["deleted"] == 1
    status, jobs = request(server.url, "GET", "/api/jobs?status=in_progress,pending&limit=200&offset=0")
    assert {j["id"] for j in jobs["jobs"]} >= set(pending[1:]) and pending[0] not in {j["id"] for j in jobs["jobs"]}
    status, reply = request(server.url, "POST", "/api/queue", {"clear": True})
    status, q = request(server.url, "GET", "/api/queue")
    assert q["queue_pending"] == []
    request(server.url, "POST", "/api/interrupt", {})
    wait_history(server.url, blocker)
    status, reply = request(server.url, "POST", "/api/history", {"delete": [blocker]})
    assert reply["deleted"] == 1
    assert request(server.url, "GET", f"/api/history/{blocker}")[1] == {}
    status, settings = request(server.url, "POST", "/api/settings/Comfy.Test", {"a": [1, 2]})
    assert status == 200 and request(server.url, "GET", "/api/settings/Comfy.Test")[1] == {"a": [1, 2]}
    assert request(server.url, "GET", "/api/settings")[1]["Comfy.Test"] == {"a": [1, 2]}
