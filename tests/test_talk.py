"""The Talk WebSocket and its session orchestration, end to end over a real loopback server, with the test-double
nodes of tests/test_live_doubles.py (the real models are exercised by test_talk_browser.py and the benchmarks)."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

import numpy as np
import pytest

from server.talk import talk_connections
from tests.test_live_doubles import double_registry, double_workflow, frames_of, tone
from tests.test_talk_harness import TalkClient, serve_talk

SILENCE = np.zeros(int(0.5 * 16000), dtype=np.float32)


def utterance(freq: float, seconds: float = 0.6) -> list[bytes]:
    return frames_of(np.concatenate([tone(freq, seconds), SILENCE]))


@pytest.fixture
def workflows():
    return {"double_chat": double_workflow(),
            "slow_chat": double_workflow(llm_sentences=30, tts_rtf=0.5),
            "idle_chat": double_workflow(idle_frames=50)}


async def test_options_list_chat_workflows_voices_and_photos(tmp_path, monkeypatch, workflows):
    async with serve_talk(tmp_path, double_registry(), workflows, monkeypatch) as srv:
        body = await asyncio.to_thread(lambda: json.load(urllib.request.urlopen(srv.url + "/api/talk/options")))
    assert set(body["workflows"]) == {"double_chat", "slow_chat", "idle_chat"}
    assert body["voices"] == ["low", "high"]
    assert "default portrait" in body["photos"]
    assert body["defaults"]["workflow"] in body["workflows"]
    assert body["defaults"]["voice"] == "low"


async def test_spoken_turn_is_transcribed_answered_and_traced(tmp_path, monkeypatch, workflows):
    async with serve_talk(tmp_path, double_registry(), workflows, monkeypatch) as srv:
        client = await TalkClient.connect(srv.ws_url)
        ready = await client.start("double_chat", voice="high")
        assert ready["type"] == "ready", ready
        await client.speak(utterance(440))
        user = await client.wait_for(lambda m: m["type"] == "transcript" and m["role"] == "user" and m["final"])
        assert user["text"] == "hello" and user["turn"] == 1
        reply = await client.wait_for(lambda m: m["type"] == "transcript" and m["role"] == "avatar" and m["final"])
        assert reply["text"] == "You said hello. Sentence 2 about hello."
        assert reply["turn"] == 1
        frames = await client.wait_packets(lambda p: p.kind == 1 and p.turn == 1, count=5)
        audio = await client.wait_packets(lambda p: p.kind == 2 and p.turn == 1, count=5)
        assert frames[0].payload[:2] == b"\xff\xd8"  # JPEG
        await client.wait_for(lambda m: m["type"] == "state" and m["state"] == "listening", start=2, timeout=15)
        # The whole reply arrived as 24 kHz PCM16: the TTS double speaks 0.04 s per character.
        spoken = sum(len(p.payload) for p in client.packets if p.kind == 2 and p.turn == 1) / 2 / 24000
        expected = 0.04 * (len("You said hello.") + len("Sentence 2 about hello."))
        assert abs(spoken - expected) < 0.05, (spoken, expected)
        pcm = np.frombuffer(b"".join(p.payload for p in audio), dtype="<i2").astype(np.float32)
        peak_hz = np.fft.rfftfreq(len(pcm), 1 / 24000)[int(np.argmax(np.abs(np.fft.rfft(pcm))))]
        assert abs(peak_hz - 600) < 10  # the "high" voice the page chose reached the TTS node
        stamps: dict[str, float] = {}
        for m in client.of_type("latency"):
            if m["turn"] == 1:
                stamps.update(m["stamps"])
        order = ["end_of_speech", "asr_final", "llm_first_sentence", "tts_first_chunk", "first_frame_sent"]
        assert all(k in stamps for k in order + ["llm_first_token"]), stamps
        assert [stamps[k] for k in order] == sorted(stamps[k] for k in order)
        now_ms = time.time() * 1000
        await client.send({"type": "played", "turn": 1, "first_audio_played": now_ms})
        await client.send({"type": "played", "turn": 1, "first_frame_played": now_ms + 5})
        for _ in range(100):
            traces = srv.runtime.store.traces(ready["session_id"])
            if traces:
                break
            await asyncio.sleep(0.02)
        assert traces and traces[0]["turn_id"] == 1
        assert traces[0]["stamps"]["first_frame_played"] == pytest.approx(now_ms + 5)
        assert set(order) <= set(traces[0]["stamps"])
        await client.close()


async def test_typed_message_is_a_turn(tmp_path, monkeypatch, workflows):
    async with serve_talk(tmp_path, double_registry(), workflows, monkeypatch) as srv:
        client = await TalkClient.connect(srv.ws_url)
        await client.start("double_chat", photo="default portrait")
        # before any reply the page shows the chosen photo (a turn-0 frame, drawn at once)
        (still,) = await client.wait_packets(lambda p: p.kind == 1 and p.turn == 0)
        assert still.payload[:2] == b"\xff\xd8" and len(still.payload) > 10_000
        await client.send({"type": "text", "text": "  how   are you  "})
        user = await client.wait_for(lambda m: m["type"] == "transcript" and m["role"] == "user" and m["final"])
        assert user["text"] == "how are you"
        reply = await client.wait_for(lambda m: m["type"] == "transcript" and m["role"] == "avatar" and m["final"])
        assert reply["text"].startswith("You said how are you.")
        await client.wait_packets(lambda p: p.kind == 1 and p.turn == 1, count=3)
        await client.close()


async def test_two_sessions_at_once_do_not_cross_talk(tmp_path, monkeypatch, workflows):
    async with serve_talk(tmp_path, double_registry(), workflows, monkeypatch) as srv:
        a, b = await TalkClient.connect(srv.ws_url), await TalkClient.connect(srv.ws_url)
        await asyncio.gather(a.start("double_chat", voice="low"), b.start("double_chat", voice="high"))
        for turn in (1, 2):  # two turns each, spoken at the same time
            await asyncio.gather(a.speak(utterance(440)), b.speak(utterance(660)))
            await asyncio.gather(*(c.wait_for(lambda m, t=turn: m["type"] == "transcript" and m["role"] == "avatar"
                                              and m["final"] and m["turn"] == t) for c in (a, b)))
            await asyncio.sleep(1.8)  # let the reply play out: no barge-in in this test
        for client, word in ((a, "hello"), (b, "goodbye")):
            replies = []
            for turn in (1, 2):
                replies.append(await client.wait_for(lambda m, t=turn: m["type"] == "transcript"
                                                     and m["role"] == "avatar" and m["final"] and m["turn"] == t))
            users = [m["text"] for m in client.of_type("transcript") if m["role"] == "user"]
            assert users == [word, word]
            assert all(r["text"] == f"You said {word}. Sentence 2 about {word}." for r in replies)
        for client, hz in ((a, 300), (b, 600)):
            await client.wait_packets(lambda p: p.kind == 2 and p.turn == 2, count=3)
            # every turn's media timeline starts at 0 (the page plays each turn from its start)
            assert min(p.pts for p in client.packets if p.turn == 2) == 0.0
            pcm = np.frombuffer(b"".join(p.payload for p in client.packets if p.kind == 2), "<i2").astype(float)
            peak = np.fft.rfftfreq(len(pcm), 1 / 24000)[int(np.argmax(np.abs(np.fft.rfft(pcm))))]
            assert abs(peak - hz) < 10, (hz, peak)
        await a.close()
        await b.close()


async def test_barge_in_stops_the_reply_within_200_ms_and_answers_the_new_utterance(tmp_path, monkeypatch,
                                                                                   workflows):
    async with serve_talk(tmp_path, double_registry(), workflows, monkeypatch) as srv:
        client = await TalkClient.connect(srv.ws_url)
        await client.start("slow_chat")
        await client.speak(utterance(440))
        await client.wait_for(lambda m: m["type"] == "state" and m["state"] == "speaking")
        await client.wait_packets(lambda p: p.kind == 1 and p.turn == 1, count=10)
        began = time.perf_counter()
        await client.speak(utterance(880))  # the user talks over the avatar
        flush = await client.wait_for(lambda m: m["type"] == "flush")
        assert flush["turn"] == 1
        (connection,) = talk_connections(srv.app)
        barge = connection.barge_ins[0]
        assert barge.reason == "speech"
        assert barge.since_speech_ms < 200, f"the reply took {barge.since_speech_ms:.0f} ms to stop"
        assert {"5", "7", "9", "10"} <= set(barge.nodes)  # LLM, TTS, face and sink were running and cancelled
        late = [p for p in client.packets if p.turn == 1 and p.at > flush["_at"]]
        assert not late, f"{len(late)} packets of the interrupted turn arrived after the flush"
        # The restarted graph heard the whole new utterance (the rewound mic chunks) and answers it.
        user = await client.wait_for(lambda m: m["type"] == "transcript" and m["role"] == "user" and m["final"]
                                     and m["turn"] == 2)
        assert user["text"] == "weather"
        await client.wait_packets(lambda p: p.kind == 1 and p.turn == 2, count=3)
        print(f"barge-in: graph stopped {barge.since_speech_ms:.1f} ms after speech_start "
              f"({barge.stopped_ms:.1f} ms after the interrupt); flush sent after "
              f"{barge.flushed_ms:.1f} ms; client saw the flush {1000 * (flush['_at'] - began):.0f} ms after the "
              "new utterance began")
        await client.close()


async def test_stop_button_interrupts_without_replaying_the_mic(tmp_path, monkeypatch, workflows):
    async with serve_talk(tmp_path, double_registry(), workflows, monkeypatch) as srv:
        client = await TalkClient.connect(srv.ws_url)
        await client.start("slow_chat")
        await client.send({"type": "text", "text": "tell me a story"})
        await client.wait_packets(lambda p: p.kind == 1 and p.turn == 1, count=5)
        await client.send({"type": "interrupt"})
        await client.wait_for(lambda m: m["type"] == "flush")
        await client.wait_for(lambda m: m["type"] == "state" and m["state"] == "listening",
                              start=len(client.messages) - 2)
        await client.send({"type": "text", "text": "again"})
        reply = await client.wait_for(lambda m: m["type"] == "transcript" and m["role"] == "user" and m["turn"] == 2)
        assert reply["text"] == "again"
        await client.close()


async def test_bad_input_is_reported_and_the_connection_stays_usable(tmp_path, monkeypatch, workflows):
    async with serve_talk(tmp_path, double_registry(), workflows, monkeypatch) as srv:
        client = await TalkClient.connect(srv.ws_url)
        await client.send(b"\x01\x02\x03\x04")  # mic audio before start
        assert "start" in (await client.wait_for(lambda m: m["type"] == "error"))["message"]
        await client.send("this is not json")
        await client.send(json.dumps({"type": "dance"}))
        await client.send(json.dumps({"type": "start", "workflow": "double_chat", "sample_rate": 48000}))
        errors = [m["message"] for m in client.of_type("error")]
        for _ in range(100):
            errors = [m["message"] for m in client.of_type("error")]
            if len(errors) == 4:
                break
            await asyncio.sleep(0.02)
        assert len(errors) == 4, errors
        assert "48000" in errors[3] and "16000" in errors[3]
        await client.send(json.dumps({"type": "start", "workflow": "nope", "sample_rate": 16000}))
        assert "unknown workflow" in (await client.wait_for(lambda m: m["type"] == "error", start=4))["message"]
        ready = await client.start("double_chat")  # still usable
        assert ready["type"] == "ready"
        await client.send(b"\x01\x02\x03")  # odd length: not PCM16
        await client.send(bytes(200_000))  # more than a second in one frame
        await asyncio.sleep(0.2)
        assert sum("mic frame" in m["message"] for m in client.of_type("error")) == 2
        await client.send({"type": "text", "text": "still there?"})
        await client.wait_for(lambda m: m["type"] == "transcript" and m["role"] == "avatar" and m["final"])
        await client.close()


async def test_a_client_that_keeps_sending_garbage_is_disconnected(tmp_path, monkeypatch, workflows):
    async with serve_talk(tmp_path, double_registry(), workflows, monkeypatch) as srv:
        client = await TalkClient.connect(srv.ws_url)
        for _ in range(60):
            if client.closed:
                break
            await client.send("garbage")
        for _ in range(100):
            if client.closed:
                break
            await asyncio.sleep(0.02)
        assert client.closed and client.ws.close_code == 1008


async def test_client_leaving_mid_reply_frees_the_session(tmp_path, monkeypatch, workflows):
    async with serve_talk(tmp_path, double_registry(), workflows, monkeypatch) as srv:
        client = await TalkClient.connect(srv.ws_url)
        ready = await client.start("slow_chat")
        await client.send({"type": "text", "text": "a long story please"})
        await client.wait_packets(lambda p: p.kind == 1 and p.turn == 1, count=5)
        assert ready["session_id"] in srv.runtime.sessions
        await client.ws.close()
        for _ in range(200):
            if not srv.runtime.sessions and not talk_connections(srv.app):
                break
            await asyncio.sleep(0.01)
        assert not srv.runtime.sessions
        assert not talk_connections(srv.app)
        record = srv.runtime.store.get_session(ready["session_id"])
        assert record is not None and record.status == "closed"
        listeners = [f for f in srv.runtime.listeners if getattr(f, "__self__", None).__class__.__name__
                     == "TalkConnection"]
        assert not listeners


async def test_ten_clients_connecting_at_once(tmp_path, monkeypatch, workflows):
    async with serve_talk(tmp_path, double_registry(), workflows, monkeypatch) as srv:
        clients = await asyncio.gather(*(TalkClient.connect(srv.ws_url) for _ in range(10)))
        readies = await asyncio.gather(*(c.start("double_chat") for c in clients))
        assert all(r["type"] == "ready" for r in readies)
        assert len({r["session_id"] for r in readies}) == 10
        await asyncio.gather(*(c.send({"type": "text", "text": f"client {i}"}) for i, c in enumerate(clients)))
        replies = await asyncio.gather(*(c.wait_for(lambda m: m["type"] == "transcript" and m["role"] == "avatar"
                                                    and m["final"], timeout=30) for c in clients))
        assert [r["text"].split(".")[0] for r in replies] == [f"You said client {i}" for i in range(10)]
        await asyncio.gather(*(c.close() for c in clients))
        for _ in range(200):
            if not srv.runtime.sessions:
                break
            await asyncio.sleep(0.01)
        assert not srv.runtime.sessions


async def test_websocket_security_origin_and_token(tmp_path, monkeypatch, workflows):
    import websockets

    async with serve_talk(tmp_path, double_registry(), workflows, monkeypatch) as srv:
        with pytest.raises(websockets.exceptions.InvalidStatus):  # a cross-site page may not open the socket
            client = await TalkClient.connect(srv.ws_url, origin="http://evil.example")
            await client.wait_for(lambda m: False, timeout=1)
        ok = await TalkClient.connect(srv.ws_url, origin=srv.url)
        assert (await ok.start("double_chat"))["type"] == "ready"
        await ok.close()
    async with serve_talk(tmp_path, double_registry(), workflows, monkeypatch, token="s3cret") as srv:
        refused = await _refused(srv.ws_url)
        assert refused
        client = await TalkClient.connect(srv.ws_url + "?token=s3cret")
        assert (await client.start("double_chat"))["type"] == "ready"
        await client.close()


async def _refused(url: str) -> bool:
    import websockets

    try:
        client = await TalkClient.connect(url)
    except websockets.exceptions.InvalidStatus:
        return True
    await asyncio.sleep(0.3)
    return client.closed


async def test_the_built_page_is_served_at_talk(tmp_path, monkeypatch, workflows):
    from server.talk import PAGE_DIR

    if not (PAGE_DIR / "index.html").is_file():
        pytest.skip("ui/talk/dist is not built")
    async with serve_talk(tmp_path, double_registry(), workflows, monkeypatch) as srv:
        page = await asyncio.to_thread(lambda: urllib.request.urlopen(srv.url + "/talk/").read().decode())
        assert "<div id=\"root\">" in page or "root" in page
        worklet = await asyncio.to_thread(lambda: urllib.request.urlopen(srv.url + "/talk/worklets/mic.js").read())
        assert b"registerProcessor" in worklet
        with pytest.raises(urllib.error.HTTPError):
            await asyncio.to_thread(lambda: urllib.request.urlopen(srv.url + "/talk/..%2f..%2fpytest.ini"))


async def test_idle_frames_go_out_as_turn_zero_and_the_avatar_returns_to_listening(tmp_path, monkeypatch, workflows):
    async with serve_talk(tmp_path, double_registry(), workflows, monkeypatch) as srv:
        client = await TalkClient.connect(srv.ws_url)
        await client.start("idle_chat")
        await client.send({"type": "text", "text": "hi"})
        await client.wait_for(lambda m: m["type"] == "state" and m["state"] == "speaking")
        idle = await client.wait_packets(lambda p: p.kind == 1 and p.turn == 0 and p.payload[:2] == b"\xff\xd8",
                                         count=5, timeout=15)
        assert all(p.pts == 0.0 for p in idle)
        assert not [p for p in client.packets if p.kind == 2 and p.turn == 0]  # idle frames carry no audio
        await client.wait_for(lambda m: m["type"] == "state" and m["state"] == "listening", start=3)
        assert len(idle) <= 2 + 50  # throttled, never more than the face produced (plus the still photo)
        await client.close()
