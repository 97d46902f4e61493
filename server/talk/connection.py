"""One Talk page WebSocket connection: the live session behind it (``TalkConnection``).

One WebSocket connection is one live session (``engine.live.session.Session``) running a chat workflow
(``workflows/avatar_chat``) as a long-lived graph. The protocol is written at the top of
``ui/talk/src/protocol.ts``:

client -> server  JSON ``start | text | mute | interrupt | played``; binary PCM16 LE mono 16 kHz mic frames.
server -> client  JSON ``ready | transcript | state | latency | flush | error``; binary media packets
                  ``[kind u8][turn u32 LE][pts f64 LE] + payload`` (kind 1 = JPEG frame, 2 = PCM16 24 kHz).

The connection's ``TalkConnection`` orchestrates the session: it numbers nothing itself (``UserTurns`` in the
graph numbers the turns) but follows the session events to keep the avatar's state (listening / thinking /
speaking), to collect each turn's latency stamps (stored with ``store.record_trace`` and sent to the page),
and to barge in: when the user starts speaking while the avatar thinks or speaks, the session is interrupted
(every node cancelled, stream buffers flushed), the last mic chunks are replayed to the restarted graph so the
start of the new utterance is not lost, and the page is told to ``flush`` what it has buffered.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pydantic
from fastapi import WebSocket, WebSocketDisconnect

from engine.graph.events import Event
from engine.files.folders import folders
from engine.live.latency import TurnStamps
from engine.app.runtime import Runtime
from engine.graph.validation import PromptInvalid
from server.talk.media import MediaEncoder, still_frame
from server.talk.memory import MemoryRelease, release_free_memory
from server.talk.options import DEFAULT_PHOTO, DEFAULT_WORKFLOW, default_portrait, load_workflow, personalise
from server.talk.protocol import (KIND_AUDIO, KIND_FRAME, MAX_MIC_FRAME_BYTES, MAX_PROTOCOL_ERRORS,
                                  MIC_RATE, ClientMessage, InterruptMessage, MuteMessage, PlayedMessage,
                                  ProtocolError, StartMessage, TextMessage, media_packet)

log = logging.getLogger(__name__)

OUTBOX_SIZE = 1024
MEDIA_LEAD_S = 1.0  # frames and audio go out at most this far ahead of real time (bounded client buffer)
REWIND_BEFORE_S = 0.8  # after a barge-in, mic audio from this long before speech_start is replayed to the graph
SPEAKING_TAIL_S = 0.3  # the avatar counts as speaking this long after its last sample is due
REPLY_SILENT_S = 5.0  # a finished reply that produced no more speech for this long: back to listening
MAX_GRAPH_RESTARTS = 5  # consecutive failures of the session graph before the connection gives up
IDLE_FPS = 10.0  # idle frames (turn 0) sent to the page at most this often
MIC_FEED_BYTES = 2 * 512 * 2  # mic audio goes to the graph in chunks of two Silero VAD windows (64 ms)
END_OF_SPEECH_EVENTS = frozenset({"speech_end", "end_of_speech", "turn_end"})


# One connection --------------------------------------------------------------------------------------------------
@dataclass
class BargeIn:
    turn: int
    reason: str
    requested_at: float  # perf_counter
    stopped_ms: float  # interrupt requested -> every node of the session graph stopped
    since_speech_ms: float  # the VAD's speech_start reached the server -> every node stopped (what the user feels)
    flushed_ms: float  # interrupt requested -> flush sent to the page, graph restarted
    nodes: list[str] = field(default_factory=list)


class TalkConnection:
    """The live session behind one Talk page WebSocket."""

    def __init__(self, websocket: WebSocket, runtime: Runtime, memory: MemoryRelease | None = None):
        self.ws = websocket
        self.runtime = runtime
        self.memory = memory  # hands freed memory back once after many sessions close (else: at each close)
        self.session: Any = None
        self.session_id = ""
        self.loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self.outbox: asyncio.Queue[str | tuple[int, bytes] | None] = asyncio.Queue(OUTBOX_SIZE)
        self.state = "connecting"
        self.muted = False
        self.turns: dict[int, TurnStamps] = {}
        self.current_turn = 0
        self.flushed_below = 0  # media of turns <= this was flushed (barge-in) and is dropped
        self.reply_text: dict[int, list[str]] = {}
        self.reply_done: dict[int, float] = {}  # turn -> monotonic time its last sentence left the LLM
        self.barge_ins: list[BargeIn] = []
        self.errors = 0
        self._pending_eos: float | None = None  # epoch s of the last end of speech not yet given to a turn
        self._pending_typed: float | None = None
        self._mic_arrivals: deque[float] = deque(maxlen=256)  # perf_counter of each fed mic chunk
        self._mic_buffer = bytearray()
        self._speech_started_at: float | None = None
        self._end_silence_s = 0.0  # the VAD's end-of-turn silence (from the workflow)
        self._turn_ended_at = 0.0  # perf_counter of the last end-of-speech event: older audio is a past turn
        self._turn_clock: dict[int, tuple[float, float]] = {}  # turn -> (monotonic time its pts 0 is due, stream pts)
        self._speaking_until = 0.0
        self._quiet_since = 0.0
        self._last_idle = 0.0
        self._encoder = MediaEncoder()
        self._graph_task: asyncio.Task[Any] | None = None
        self._graph_failures = 0
        self._barging = False
        self._tasks: list[asyncio.Task[Any]] = []
        self._writes: set[asyncio.Future[None]] = set()  # trace writes in flight (awaited on close)
        self._closed = False

    # Sending ----------------------------------------------------------------------------------------------
    def send_json(self, message: dict[str, Any]) -> None:
        self._offer(json.dumps(message, ensure_ascii=False))

    def _offer(self, item: str | tuple[int, bytes]) -> None:
        try:
            self.outbox.put_nowait(item)
        except asyncio.QueueFull:
            log.warning("talk %s: client is not reading; dropping a message", self.session_id)

    async def _sender(self) -> None:
        while True:
            item = await self.outbox.get()
            if item is None:
                return
            if isinstance(item, str):
                await self.ws.send_text(item)
                continue
            turn, packet = item
            if 0 < turn <= self.flushed_below:
                continue  # barge-in: media of an interrupted turn never reaches the page
            await self.ws.send_bytes(packet)
            if packet[0] == KIND_FRAME and turn > 0:
                self._mark(turn, "first_frame_sent", time.time() * 1000)

    def set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.send_json({"type": "state", "state": state})

    def error(self, message: str) -> None:
        self.send_json({"type": "error", "message": message})

    # Latency ----------------------------------------------------------------------------------------------
    def _turn(self, turn_id: int) -> TurnStamps:
        stamps = self.turns.get(turn_id)
        if stamps is None:
            stamps = self.turns[turn_id] = TurnStamps(turn_id)
            if len(self.turns) > 64:  # keep the connection's memory bounded over an hour of talk
                for old in sorted(self.turns)[:-64]:
                    self._record(self.turns.pop(old))
        return stamps

    def _mark(self, turn_id: int, stage: str, at_ms: float) -> None:
        if turn_id <= 0:
            return
        stamps = self._turn(turn_id)
        if stamps.mark(stage, at_ms):
            self.send_json({"type": "latency", "turn": turn_id, "stamps": {stage: at_ms}})
            if stamps.played and "first_frame_sent" in stamps.stamps:
                self._record(stamps)

    def _record(self, stamps: TurnStamps) -> None:
        """Store the turn's stamps (once) in the runtime's SQLite store, off the event loop."""
        if stamps.recorded or not stamps.stamps or self.runtime.store is None:
            return
        stamps.recorded = True
        write = asyncio.ensure_future(asyncio.to_thread(self._write_trace, stamps.turn_id, dict(stamps.stamps)))
        self._writes.add(write)
        write.add_done_callback(self._writes.discard)

    def _write_trace(self, turn_id: int, stamps: dict[str, float]) -> None:
        try:
            self.runtime.store.record_trace(self.session_id, turn_id, stamps)
        except Exception:
            log.exception("talk %s: could not store the trace of turn %s", self.session_id, turn_id)

    # Session events ----------------------------------------------------------------------------------------
    def on_runtime_event(self, event: Event) -> None:
        """Runtime listener (any thread): keep this session's events, handle them on the loop."""
        data = event.data
        if data.get("session_id") != self.session_id and not str(data.get("prompt_id", "")).startswith(
                f"{self.session_id}:"):
            return
        if threading.get_ident() == self._loop_thread:
            self._handle(event)
        else:
            self.loop.call_soon_threadsafe(self._handle, event)

    def _handle(self, event: Event) -> None:
        if self._closed:
            return
        try:
            self._dispatch(event)
        except Exception:
            log.exception("talk %s: handling %s failed", self.session_id, event.type)

    def _dispatch(self, event: Event) -> None:
        kind, data = event.type, event.data
        at_ms = float(data.get("t", time.time())) * 1000
        if kind == "speech_start":
            self._speech_started_at = time.perf_counter()
            if self.state in ("thinking", "speaking") and not self.muted and not self._barging:
                self._spawn(self.barge_in("speech"), "barge-in")
        elif kind in END_OF_SPEECH_EVENTS:
            self._turn_ended_at = time.perf_counter()
            end = data.get("speech_end_t")  # when the voice stopped, if the VAD says (epoch s)
            if isinstance(end, int | float):
                self._pending_eos = float(end) * 1000
            else:  # the VAD ends a turn after a fixed silence: the voice stopped that long ago
                self._pending_eos = at_ms - 1000 * self._end_silence_s
        elif kind in ("user_partial", "transcript_partial"):
            self.send_json({"type": "transcript", "role": "user", "text": data.get("text", ""), "final": False,
                            "turn": self.current_turn + 1})
        elif kind == "user_turn":
            turn = int(data.get("turn_id", 0))
            if turn <= 0:
                return
            self.current_turn = max(self.current_turn, turn)
            if data.get("source") == "text":
                origin, self._pending_typed = self._pending_typed or at_ms, None
                self._mark(turn, "end_of_speech", origin)
            else:
                if self._pending_eos is not None and at_ms - self._pending_eos < 60_000:
                    self._mark(turn, "end_of_speech", self._pending_eos)
                self._pending_eos = None
                self._mark(turn, "asr_final", at_ms)
            self.send_json({"type": "transcript", "role": "user", "text": data.get("text", ""), "final": True,
                            "turn": turn})
            self.set_state("thinking")
        elif kind == "turn_mark":
            stage = str(data.get("stage", ""))
            if stage:
                self._mark(int(data.get("turn_id", 0)) or self.current_turn, stage, at_ms)
        elif kind == "llm_reply":
            turn = int(data.get("turn_id", 0)) or self.current_turn
            first = data.get("first_token_s")
            stamps = self.turns.get(turn)
            if isinstance(first, int | float) and stamps is not None and "asr_final" in stamps.stamps:
                self._mark(turn, "llm_first_token", stamps.stamps["asr_final"] + first * 1000)
            elif isinstance(first, int | float) and stamps is not None and "end_of_speech" in stamps.stamps:
                self._mark(turn, "llm_first_token", stamps.stamps["end_of_speech"] + first * 1000)
        elif kind == "llm_first_token":
            self._mark(int(data.get("turn_id", 0)) or self.current_turn, "llm_first_token", at_ms)
        elif kind == "avatar_sentence":
            turn = int(data.get("turn_id", 0)) or self.current_turn
            if turn <= self.flushed_below:
                return
            text = str(data.get("text", "")).strip()
            parts = self.reply_text.setdefault(turn, [])
            if text:
                parts.append(text)
                self.send_json({"type": "transcript", "role": "avatar", "text": text, "final": False, "turn": turn})
            if data.get("final"):
                self.reply_done[turn] = time.monotonic()
                for old in [t for t in self.reply_done if t < turn - 8]:
                    del self.reply_done[old]
                self.send_json({"type": "transcript", "role": "avatar", "text": " ".join(parts), "final": True,
                                "turn": turn})
                self.reply_text.pop(turn, None)
        elif kind == "execution_error":
            message = data.get("exception_message") or "the conversation workflow failed"
            self.error(f"{message} - restarting the conversation")
            self._spawn(self._restart_after_failure(), "restart")

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=f"talk-{name}-{self.session_id}")
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    # Media from the graph ----------------------------------------------------------------------------------
    async def on_media(self, item: Any) -> None:
        """The session's media sink: a frame (with the audio that plays with it) or an audio chunk."""
        if self._closed:
            return
        image = getattr(item, "image", None)
        audio = getattr(item, "audio", None) if image is not None else getattr(item, "samples", None)
        raw_turn = int(getattr(item, "turn_id", 0) or 0)
        if raw_turn == 0 and image is not None and (audio is None or not np.any(audio)):
            await self._send_idle(image)  # an idle frame (blinks, breathing) while nobody speaks
            return
        turn = raw_turn or self.current_turn
        if turn <= self.flushed_below:
            return
        rate = int(getattr(item, "sample_rate", MIC_RATE) or MIC_RATE)
        stream_pts = float(getattr(item, "pts", getattr(item, "start", 0.0)) or 0.0)
        now = time.monotonic()
        clock = self._turn_clock.get(turn)
        if clock is None:  # the page plays each turn from 0: rebase the stream's timeline on the turn's first item
            clock = self._turn_clock[turn] = (now, stream_pts)
            for old in [t for t in self._turn_clock if t < turn]:
                del self._turn_clock[old]
        origin = clock[0]
        pts = max(0.0, stream_pts - clock[1])
        ahead = (origin + pts) - now - MEDIA_LEAD_S
        if ahead > 0:  # pace the graph to real time plus a bounded lead
            await asyncio.sleep(ahead)
        audio_bytes = b""
        if audio is not None and len(audio):
            audio_bytes = await asyncio.to_thread(self._encoder.audio, turn, audio, rate)
        jpeg = await asyncio.to_thread(MediaEncoder.jpeg, image) if image is not None else b""
        if turn <= self.flushed_below:
            return
        duration = len(audio) / rate if audio is not None and len(audio) else 0.04
        # the page plays this after what is queued (an underrun, when speech comes slower than real time, plays
        # silence and delays the rest): when the avatar will have finished speaking
        self._speaking_until = max(self._speaking_until, time.monotonic()) + duration
        if audio_bytes:
            self._offer((turn, media_packet(KIND_AUDIO, turn, pts, audio_bytes)))
        if jpeg:
            self._offer((turn, media_packet(KIND_FRAME, turn, pts, jpeg)))
        if turn == self.current_turn:
            self.set_state("speaking")

    async def _send_idle(self, image: np.ndarray) -> None:
        """Idle frames go out as turn 0 (the page draws them at once), at most IDLE_FPS, never over speech."""
        now = time.monotonic()
        if self.state == "speaking" or now - self._last_idle < 1.0 / IDLE_FPS:
            return
        self._last_idle = now
        jpeg = await asyncio.to_thread(MediaEncoder.jpeg, image)
        self._offer((0, media_packet(KIND_FRAME, 0, 0.0, jpeg)))

    async def _state_watch(self) -> None:
        """Speaking -> thinking (more of the reply to come) or listening once the last media has played."""
        while True:
            await asyncio.sleep(0.1)
            now = time.monotonic()
            if self.state == "speaking" and now > self._speaking_until + SPEAKING_TAIL_S:
                self._quiet_since = now
                self.set_state("listening" if self.current_turn in self.reply_done else "thinking")
            elif (self.state == "thinking" and self.current_turn in self.reply_done
                  and now > max(self._speaking_until, self._quiet_since,
                                self.reply_done[self.current_turn]) + REPLY_SILENT_S):
                self.set_state("listening")  # the reply ended without (more) speech, e.g. an empty answer

    # Control -----------------------------------------------------------------------------------------------
    async def start(self, msg: StartMessage) -> None:
        if self.session is not None:
            raise ProtocolError("this connection already has a session: open a new connection to change settings")
        if msg.sample_rate != MIC_RATE:
            raise ProtocolError(f"mic audio must be PCM16 mono at {MIC_RATE} Hz; the start message declared "
                                f"{msg.sample_rate} Hz (resample in the page's AudioContext)")
        name = msg.workflow or DEFAULT_WORKFLOW
        prompt = await asyncio.to_thread(load_workflow, name, self.runtime)
        prompt = await asyncio.to_thread(personalise, prompt, self.runtime, msg)
        session_id = uuid.uuid4().hex
        self.session_id = session_id
        try:
            session = self.runtime.open_session(prompt, session_id, on_media=self.on_media,
                                                meta={"client": "talk", "workflow": name, "persona": msg.persona,
                                                      "photo": msg.photo, "voice": msg.voice, "language": msg.language})
        except PromptInvalid as exc:
            self.session_id = ""
            raise ProtocolError(f"workflow {name!r} cannot run: {_describe_invalid(exc)}") from None
        self.session = session
        self._end_silence_s = _end_silence_s(prompt, self.runtime)
        self.runtime.listeners.append(self.on_runtime_event)
        self._graph_task = session.start()
        self.send_json({"type": "ready", "session_id": session_id})
        self._spawn(self._send_still(msg), "still")
        self.set_state("listening")

    async def _send_still(self, msg: StartMessage) -> None:
        path = default_portrait() if msg.photo == DEFAULT_PHOTO else None
        if path is None and msg.photo:
            try:
                path = folders.resolve("input", msg.photo)
            except ValueError:
                path = None
        if path is None or not path.is_file():
            return
        try:
            jpeg = await asyncio.to_thread(still_frame, path)
        except Exception as exc:
            log.info("talk %s: no still picture (%s)", self.session_id, exc)
            return
        self._offer((0, media_packet(KIND_FRAME, 0, 0.0, jpeg)))

    async def barge_in(self, reason: str, rewind: bool = True) -> BargeIn | None:
        """Stop the reply now: cancel the graph, replay the recent mic audio to a restarted graph, flush the page."""
        if self.session is None or self._barging or self._closed:
            return None
        self._barging = True
        requested = time.perf_counter()
        turn = self.current_turn
        try:
            self.flushed_below = max(self.flushed_below, turn)
            self._speaking_until = 0.0
            report = await self.session.interrupt()
            stopped = time.perf_counter()
            if self._graph_task is not None:
                await asyncio.gather(self._graph_task, return_exceptions=True)
            if self._closed:
                return None
            if rewind:
                self._rewind_mic()
            self._graph_task = self.session.start()
            self.send_json({"type": "flush", "turn": turn})
            self.set_state("listening")
            heard = self._speech_started_at if reason == "speech" and self._speech_started_at else requested
            event = BargeIn(turn, reason, requested, (stopped - requested) * 1000, (stopped - heard) * 1000,
                            (time.perf_counter() - requested) * 1000, list(report.nodes_cancelled))
            self.barge_ins.append(event)
            log.info("talk %s: barge-in (%s) on turn %s: stopped in %.1f ms", self.session_id, reason, turn,
                     event.stopped_ms)
            return event
        finally:
            self._barging = False

    def _rewind_mic(self) -> None:
        """Replay to the restarted graph the mic chunks it already consumed since just before speech began
        (the chunks still queued are read anyway), so the start of the interrupting utterance is heard."""
        began = self._speech_started_at or time.perf_counter()
        since = max(began - REWIND_BEFORE_S, self._turn_ended_at)
        recent = sum(1 for at in self._mic_arrivals if at > since)
        channel = self.session.channel("mic")
        queued = channel.pending  # fed but not yet read by the graph
        if recent - queued > 0:
            channel.rewind(recent - queued)

    async def _restart_after_failure(self) -> None:
        if self.session is None or self._closed:
            return
        if self._graph_task is not None:
            await asyncio.gather(self._graph_task, return_exceptions=True)
        self._graph_failures += 1
        if self._graph_failures > MAX_GRAPH_RESTARTS:
            self.error("the conversation workflow keeps failing; fix it in the editor and reconnect")
            await self.ws.close(code=1011)
            return
        await asyncio.sleep(min(0.2 * self._graph_failures, 2.0))
        if not self._closed and self.session is not None and not self.session.running:
            self._graph_task = self.session.start()
            self.set_state("listening")

    async def on_text(self, msg: TextMessage) -> None:
        self._require_session()
        text = msg.text.strip()
        if not text:
            raise ProtocolError("the message is empty")
        if self.state in ("thinking", "speaking"):
            await self.barge_in("typed", rewind=False)
        self._pending_typed = time.time() * 1000
        self.session.feed("text", text.encode("utf-8"))

    def on_mic(self, data: bytes) -> None:
        self._require_session()
        if len(data) % 2 or not data or len(data) > MAX_MIC_FRAME_BYTES:
            raise ProtocolError(f"a mic frame is PCM16 mono at {MIC_RATE} Hz: an even number of bytes, at most "
                                f"{MAX_MIC_FRAME_BYTES}; got {len(data)} bytes")
        if self.muted:
            self._mic_buffer.clear()
            return
        self._mic_buffer += data  # fed in chunks of MIC_FEED_BYTES: a third of the hops the page's 20 ms frames cost
        if len(self._mic_buffer) >= MIC_FEED_BYTES:
            self.session.feed("mic", bytes(self._mic_buffer))
            self._mic_buffer.clear()
            self._mic_arrivals.append(time.perf_counter())

    def on_played(self, msg: PlayedMessage) -> None:
        for stage in ("first_audio_played", "first_frame_played"):
            value = getattr(msg, stage)
            if value is not None:
                self._mark(msg.turn, stage, float(value))

    def _require_session(self) -> None:
        if self.session is None:
            raise ProtocolError("send a 'start' message first")

    # Lifetime ----------------------------------------------------------------------------------------------
    async def serve(self) -> None:
        sender = asyncio.create_task(self._sender(), name="talk-sender")
        watcher = asyncio.create_task(self._state_watch(), name="talk-state")
        try:
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
                try:
                    await self._on_message(message)
                except ProtocolError as exc:
                    self.errors += 1
                    self.error(str(exc))
                    if self.errors > MAX_PROTOCOL_ERRORS:
                        await asyncio.sleep(0.05)  # let the last error message go out
                        await self.ws.close(code=1008, reason="too many protocol errors")
                        return
                if sender.done():
                    return  # the socket broke while sending
        except (WebSocketDisconnect, RuntimeError):
            return
        finally:
            await self.close()
            sender.cancel()
            watcher.cancel()
            await asyncio.gather(sender, watcher, return_exceptions=True)

    async def _on_message(self, message: dict[str, Any]) -> None:
        data = message.get("bytes")
        if data is not None:
            self.on_mic(data)
            return
        text = message.get("text")
        if text is None:
            raise ProtocolError("empty message")
        try:
            msg = ClientMessage.validate_json(text)
        except pydantic.ValidationError as exc:
            first = exc.errors()[0] if exc.errors() else {}
            where = ".".join(str(p) for p in first.get("loc", ()))
            raise ProtocolError(f"bad message ({where}: {first.get('msg', 'invalid')}); expected JSON with type "
                                "start | text | mute | interrupt | played") from None
        if isinstance(msg, StartMessage):
            await self.start(msg)
        elif isinstance(msg, TextMessage):
            await self.on_text(msg)
        elif isinstance(msg, MuteMessage):
            self.muted = msg.muted
        elif isinstance(msg, InterruptMessage):
            self._require_session()
            await self.barge_in("button", rewind=False)
        elif isinstance(msg, PlayedMessage):
            self.on_played(msg)

    async def close(self) -> None:
        """Free the session (the client left): stop the graph, store the remaining traces."""
        if self._closed:
            return
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.on_runtime_event in self.runtime.listeners:
            self.runtime.listeners.remove(self.on_runtime_event)
        if self.session is not None:
            try:
                await self.runtime.close_session(self.session_id)
            except Exception:
                log.exception("talk %s: closing the session failed", self.session_id)
            if self._graph_task is not None:
                await asyncio.gather(self._graph_task, return_exceptions=True)
            for stamps in self.turns.values():
                self._record(stamps)
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        if self.memory is not None:
            self.memory.request()
        else:
            await asyncio.to_thread(release_free_memory)
        try:
            self.outbox.put_nowait(None)
        except asyncio.QueueFull:
            pass


def _end_silence_s(prompt: dict[str, Any], runtime: Runtime) -> float:
    """The silence after which the workflow's VAD ends a turn (its ``end_silence_ms``), in seconds."""
    for node in prompt.values():
        cls = runtime.registry.nodes.get(node.get("class_type", ""))
        spec = cls.input_spec("end_silence_ms") if cls is not None else None
        if spec is not None:
            value = node.get("inputs", {}).get("end_silence_ms", spec.default)
            if isinstance(value, int | float):
                return float(value) / 1000
    return 0.0


def _describe_invalid(exc: PromptInvalid) -> str:
    issues = list(getattr(exc.report, "issues", []))
    return "; ".join(str(i) for i in issues[:5]) if issues else str(exc)


def _runtime(app: Any) -> Runtime:
    runtime = getattr(app.state, "runtime", None)
    if runtime is None:
        raise RuntimeError("the Talk router needs app.state.runtime (use mount_talk(app, runtime))")
    return runtime
