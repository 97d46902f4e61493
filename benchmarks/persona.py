"""Persona benchmark: does she stay in character, remember the person and speak like a 24-year-old woman?

Scripted dialogs in benchmarks/persona_data/{en,ru}.yaml (small talk; her own life, feelings and favourites; facts
the person states and asks back 1-4 turns later; advice; requests she should decline; a change of language; long
15-20 turn sessions that mix spoken and typed turns) run through the persona (``nodes.think.conversation``) with a
fresh dialog memory each, the reply guard on unless ``--no-guard``. Every reply is judged by the functions of
``nodes/think/judges.py``: character break, echo, identity swap (and a stated fact claimed as hers), wrong language,
length, markup, filler opening, masculine self-reference in Russian; recall is judged on the turns that ask for a
stated fact. Long sessions report their health: the share of replies passing every judge in turns 10-20 against
turns 1-5.

Spoken turns (``spoken: true``) go through the real audio path: the message is spoken by Festival (English
cmu_us_slt_arctic_hts, Russian msu_ru_nsh; espeak-ng where a voice is not installed), resampled to 16 kHz and
sent as the Talk page sends the microphone (PCM16 in 20 ms frames, then 1.5 s of silence) into the listen stage's
own MicInput node (session source) and VAD node (Silero); each turn the VAD cuts is transcribed by the listen
stage's Whisper backend (faster-whisper, whisper-base), and the transcript is what the persona answers.
``--spoken text`` sends the written text instead.

The held-back dialogs (``held_back: true``, 25 %) are reported apart; never copy them into a prompt.

    .venv/bin/python benchmarks/persona.py                          # everything, default stack
    .venv/bin/python benchmarks/persona.py --lang ru --limit 8      # a quick run
    .venv/bin/python benchmarks/persona.py --set held_back --backend ollama --model llama3.2

Prints every dialog with the failing judges marked, the rates per language (and held-back apart), and ends with
one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from engine.queue.sqlite_store import Store  # noqa: E402
from nodes.think import judges as J  # noqa: E402
from nodes.think.backends.select import BackendConfig, open_backend  # noqa: E402
from nodes.think.conversation import Conversation  # noqa: E402
from nodes.think.facts import extract_name  # noqa: E402
from nodes.think.guard import ReplyGuard, instruction_texts  # noqa: E402
from nodes.think.memory import DialogMemory  # noqa: E402
from nodes.think.persona import load_persona  # noqa: E402

DATA = ROOT / "benchmarks" / "persona_data"
LANGS = ("en", "ru")
RATE = 16000
JUDGES = ("character_break", "echo", "self_repeat", "identity_swap", "wrong_language", "too_long", "markup", "filler", "masculine",
          "empty", "fallback")


# ------------------------------------------------------------------ data

@dataclass(frozen=True)
class Turn:
    user: str
    lang: str
    states: dict[str, Any] = field(default_factory=dict)
    asks: tuple[str, ...] = ()
    spoken: bool = False
    long_ok: bool = False


@dataclass(frozen=True)
class Dialog:
    id: str
    category: str
    lang: str
    held_back: bool
    turns: tuple[Turn, ...]


def load_dialogs(lang: str) -> list[Dialog]:
    data = yaml.safe_load((DATA / f"{lang}.yaml").read_text(encoding="utf-8"))
    out = []
    for d in data["dialogs"]:
        turns = []
        for t in d["turns"]:
            t = {"user": t} if isinstance(t, str) else t
            if "user" not in t:
                raise ValueError(f"{lang}.yaml {d['id']}: a turn without 'user' ({t}); quote a message with ': '")
            turns.append(Turn(t["user"], t.get("lang", lang), t.get("states", {}) or {}, tuple(t.get("asks", ())),
                              bool(t.get("spoken")), bool(t.get("long_ok"))))
        out.append(Dialog(d["id"], d["category"], lang, bool(d.get("held_back")), tuple(turns)))
    return out


# ------------------------------------------------------------------ spoken turns

# The simulated person's voices: Festival where installed (requirements/apt-*.txt), else espeak-ng. espeak-ng's
# English was misheard far more often by whisper-base (2026-12-02, 6 sentences of the long sessions: "Do you have
# any pets?" -> "Boo you family pets.", "my name" -> "my aim"; 1 of 6 heard wrong with Festival's slt, 5 with espeak).
FESTIVAL_VOICES = {"en": "cmu_us_slt_arctic_hts", "ru": "msu_ru_nsh_clunits"}


class Ears:
    """The simulated person's voice (Festival / espeak-ng) heard by the listen stage (MicInput, VAD, Whisper)."""

    def __init__(self, folder: Path):
        from engine.files.folders import folders
        from nodes.listen.backends import FasterWhisperBackend

        self.folder = folder
        self.whisper = FasterWhisperBackend(folders.models("whisper") / "whisper-base",
                                            cpu_threads=max(1, (os.cpu_count() or 2)))
        self.seconds = 0.0
        self.listen = ListenStage()
        self.turns_heard: list[int] = []  # VAD turns per clip (1: the clip was heard as one utterance)

    def speak(self, text: str, lang: str) -> Any:
        import numpy as np
        import soundfile
        import soxr

        key = abs(hash((text, lang)))
        path = self.folder / f"u{key}.wav"
        festival = FESTIVAL_VOICES.get(lang)
        if festival and shutil.which("text2wave") and any(Path("/usr/share/festival/voices").glob(f"*/{festival}")):
            source = self.folder / f"u{key}.txt"
            source.write_text(text, encoding="utf-8")
            subprocess.run(["text2wave", "-eval", f"(voice_{festival})", str(source), "-o", str(path)],
                           check=True, capture_output=True)
        else:
            subprocess.run(["espeak-ng", "-v", {"en": "en-us", "ru": "ru"}[lang], "-s", "160", "-w", str(path),
                            text], check=True, capture_output=True)
        samples, rate = soundfile.read(path, dtype="float32")
        if samples.ndim > 1:
            samples = samples.mean(axis=1)
        return soxr.resample(samples, rate, RATE).astype(np.float32)

    async def hear(self, text: str, lang: str) -> str:
        """What the listen stage hears of ``text`` spoken: the clip as the Talk page sends it (PCM16 16 kHz in 20 ms
        frames, then 1.5 s of silence) through the session source of the MicInput node, cut into turns by the VAD
        node (Silero), each turn transcribed by Whisper; the turns of one clip joined."""
        began = time.perf_counter()
        samples = await asyncio.to_thread(self.speak, text, lang)
        turns = await self.listen.turns(samples)
        heard = []
        for turn in turns:
            result = await asyncio.to_thread(self.whisper.transcribe, turn, [lang])
            if result.text.strip():
                heard.append(result.text.strip())
        self.seconds += time.perf_counter() - began
        self.turns_heard.append(len(turns))
        return " ".join(heard)


class _Microphone:
    """The live session as MicInput and VAD see it: a "mic" input channel of PCM16 frames, and session events."""

    def __init__(self, pcm: bytes, frame_bytes: int = 640):
        self.session_id = "persona-benchmark"
        self.state: dict[str, Any] = {}
        self.store = None
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._pcm, self._frame = pcm, frame_bytes

    def emit_event(self, type_: str, data: dict[str, Any] | None = None) -> None:
        self.events.append((type_, dict(data or {})))

    async def input_stream(self, name: str) -> Any:
        for i in range(0, len(self._pcm), self._frame):
            yield self._pcm[i:i + self._frame]
            await asyncio.sleep(0)

    async def send_media(self, item: Any) -> None:
        return None


class ListenStage:
    """The listen stage's own MicInput and VAD nodes (nodes/listen/nodes.py), run on a session microphone."""

    def __init__(self) -> None:
        import threading

        from engine.graph.context import NodeContext
        from nodes.listen.nodes import VAD, MicInput

        self.mic, self.vad = MicInput("mic"), VAD("vad")
        self._context = NodeContext
        self._interrupted = threading.Event()
        self._vad_state: dict[str, Any] = {}  # the VAD node keeps its Silero model here across clips

    def _ctx(self, node_id: str, session: _Microphone, state: dict[str, Any] | None = None) -> Any:
        return self._context(node_id, node_id, "persona-benchmark", asyncio.get_running_loop(), lambda e: None,
                             self._interrupted, session=session, state=state if state is not None else {})

    async def turns(self, samples: Any) -> list[Any]:
        import numpy as np

        from nodes.common.audio import float_to_pcm16

        silence = np.zeros(int(1.5 * RATE), dtype=np.float32)
        session = _Microphone(float_to_pcm16(np.concatenate([samples, silence])))
        _, stream = await self.mic.run(self._ctx("mic", session), source="session")
        (turns,) = await self.vad.run(self._ctx("vad", session, self._vad_state), stream)
        return [chunk.samples async for chunk in turns if chunk.final]


# ------------------------------------------------------------------ running

@dataclass
class Reply:
    turn: int
    lang: str
    said: str
    heard: str
    reply: str
    failures: list[J.Failure]
    recall: dict[str, bool]
    gendered: list[str]  # "word:gender" for Russian self-references
    first_sentence_s: float | None
    retries: int
    fallback: bool
    cut: bool
    templated: bool = False  # every try was rejected on a question about the person: the known answer was said
    why: str = ""  # the guard's reasons: rejected tries, and the sentence it cut at


@dataclass
class DialogResult:
    dialog: Dialog
    replies: list[Reply]


def stems_of(states: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for kind, value in states.items():
        if kind == "name":
            out["name"] = [J.stem(str(value))]
        else:
            out[kind] = [str(v) for v in (value if isinstance(value, list) else [value])]
    return out


async def run_dialog(dialog: Dialog, talk: Conversation, ears: Ears | None) -> DialogResult:
    known: dict[str, list[str]] = {}
    person_name: str | None = None
    replies = []
    for index, turn in enumerate(dialog.turns, start=1):
        heard = await ears.hear(turn.user, turn.lang) if (turn.spoken and ears is not None) else turn.user
        if "name" in turn.states:
            # a spoken name the recogniser got wrong ("Anna" heard as "Anu"): she can only call the person by the
            # name she heard, so the swap judge takes that one; recall is still judged against the real name
            person_name = (extract_name(heard) if turn.spoken and heard else None) or str(turn.states["name"])
        known.update(stems_of(turn.states))
        text, _ = await talk.reply_text(heard or turn.user, turn_id=index)
        timing, report = talk.last_timing, talk.last_guard
        assert timing is not None
        other = tuple(s for kind, stems in known.items() if kind not in ("name", "plans") for s in stems)
        expect = J.Expectation(user_text=heard or turn.user, language=turn.lang, person_name=person_name,
                               person_facts=other, person_plans=tuple(known.get("plans", ())), max_sentences=None if turn.long_ok else 3,
                               earlier_replies=tuple(r.reply for r in replies),
                               stranger_names=talk.persona.stranger_names(),
                               fallback_lines=tuple(talk.persona.fallback.values()),
                               instructions=instruction_texts(turn.lang))
        raw = timing.raw_text if (report is None or (not report.fallback and not report.cut)) else text
        failures = J.judge_reply(text, expect, raw=raw)
        recall = {kind: J.recalls(text, known.get(kind, ["\x00"])) for kind in turn.asks}
        gendered = [f"{r.word}:{r.gender}" for r in J.self_gender(text)] if turn.lang == "ru" else []
        replies.append(Reply(index, turn.lang, turn.user, heard, text, failures, recall, gendered,
                             timing.first_sentence, report.retries if report else 0,
                             bool(report and report.fallback), bool(report and report.cut),
                             bool(report and report.templated),
                             "; ".join([*(report.reasons if report else []),
                                        *([f"cut: {report.cut}"] if report and report.cut else [])])))
    return DialogResult(dialog, replies)


def print_dialog(result: DialogResult) -> None:
    d = result.dialog
    print(f"\n=== {d.id} [{d.category}]{' [held back]' if d.held_back else ''}")
    for r in result.replies:
        heard = f"   (heard: {r.heard})" if r.heard != r.said else ""
        print(f"  {r.turn:>2} > {r.said}{heard}")
        marks = [f"{f.judge}: {f.reason}" for f in r.failures]
        marks += [f"recall {k}: MISSED" for k, ok in r.recall.items() if not ok]
        guard = f" [guard: {r.retries} retr{'y' if r.retries == 1 else 'ies'}{', fallback' if r.fallback else ''}" \
                f"{', templated answer' if r.templated else ''}{', cut' if r.cut else ''}]" \
            if (r.retries or r.fallback or r.cut or r.templated) else ""
        print(f"     < {r.reply}{guard}")
        for mark in marks:
            print(f"       !! {mark}")
        if r.why:
            print(f"       guard: {r.why[:300]}")


# ------------------------------------------------------------------ summary

def rate(flags: list[bool]) -> float | None:
    return round(sum(flags) / len(flags), 3) if flags else None


def passes(r: Reply) -> bool:
    return not r.failures and all(r.recall.values())


def summarise(results: list[DialogResult]) -> dict[str, Any]:
    replies = [r for res in results for r in res.replies]
    out: dict[str, Any] = {"dialogs": len(results), "replies": len(replies)}
    for judge in JUDGES:
        if judge == "masculine":
            gendered = [r for r in replies if r.gendered]
            out["feminine_rate"] = rate([all(g.endswith(":femn") for g in r.gendered) for r in gendered])
            out["gendered_replies"] = len(gendered)
            continue
        out[f"{judge}_rate"] = rate([any(f.judge == judge for f in r.failures) for r in replies])
    for kind in ("name", "other"):
        flags = [ok for r in replies for k, ok in r.recall.items() if (k == "name") == (kind == "name")]
        out[f"recall_{kind}_rate"] = rate(flags)
        out[f"recall_{kind}_n"] = len(flags)
        # the same without the guard's templated answers (a recall the model itself did not say counts as missed)
        out[f"recall_{kind}_by_model_rate"] = rate([ok and not r.templated for r in replies
                                                    for k, ok in r.recall.items() if (k == "name") == (kind == "name")])
    out["pass_rate"] = rate([passes(r) for r in replies])
    out["retried_replies"] = sum(1 for r in replies if r.retries)
    out["fallback_replies"] = sum(1 for r in replies if r.fallback)
    out["templated_replies"] = sum(1 for r in replies if r.templated)
    out["cut_replies"] = sum(1 for r in replies if r.cut)
    fs = [r.first_sentence_s for r in replies if r.first_sentence_s is not None]
    out["first_sentence_median_s"] = round(statistics.median(fs), 2) if fs else None
    health = []
    for res in results:
        if res.dialog.category != "long_session":
            continue
        early = [passes(r) for r in res.replies if r.turn <= 5]
        late = [passes(r) for r in res.replies if 10 <= r.turn <= 20]
        health.append({"id": res.dialog.id, "turns_1_5": rate(early), "turns_10_20": rate(late),
                       "degenerated": bool(early and late) and (rate(late) or 0) < (rate(early) or 0)})
    out["sessions"] = health
    out["degenerated_sessions"] = sum(1 for h in health if h["degenerated"])
    return out


def print_summary(name: str, s: dict[str, Any]) -> None:
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}%"

    print(f"\n{name}: {s['dialogs']} dialogs, {s['replies']} replies, all judges passed {pct(s['pass_rate'])}")
    print(f"  character break {pct(s['character_break_rate'])}  echo {pct(s['echo_rate'])}  "
          f"repeats herself {pct(s['self_repeat_rate'])}  "
          f"identity swap {pct(s['identity_swap_rate'])}  wrong language {pct(s['wrong_language_rate'])}  "
          f"filler {pct(s['filler_rate'])}")
    print(f"  too long {pct(s['too_long_rate'])}  markup {pct(s['markup_rate'])}  empty {pct(s['empty_rate'])}  "
          f"feminine self-reference {pct(s['feminine_rate'])} of {s['gendered_replies']} gendered replies")
    print(f"  recall: name {pct(s['recall_name_rate'])} (n={s['recall_name_n']}), other facts "
          f"{pct(s['recall_other_rate'])} (n={s['recall_other_n']}); said by the model itself (templated answers "
          f"not counted): name {pct(s['recall_name_by_model_rate'])}, other {pct(s['recall_other_by_model_rate'])}")
    print(f"  guard: {s['retried_replies']} replies retried, {s['fallback_replies']} fallback lines, "
          f"{s['templated_replies']} templated answers, {s['cut_replies']} cut; first sentence median "
          f"{s['first_sentence_median_s']} s")
    for h in s["sessions"]:
        print(f"  session {h['id']}: passed {pct(h['turns_1_5'])} in turns 1-5, {pct(h['turns_10_20'])} in 10-20"
              f"{'  DEGENERATED' if h['degenerated'] else ''}")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    backend = open_backend(BackendConfig(args.backend, args.model, args.url, n_ctx=args.context + 256))
    began = time.perf_counter()
    load = getattr(backend, "load", None)
    if load is not None:
        await load()
    load_s = time.perf_counter() - began
    levers = {"copy_block": not args.no_copy_block, "break_bias": not args.no_break_bias}
    if backend.name == "llamacpp":
        backend.copy_block = levers["copy_block"]  # type: ignore[attr-defined]
        backend.break_bias = backend.break_bias if levers["break_bias"] else 0.0  # type: ignore[attr-defined]
    else:
        levers = {"copy_block": False, "break_bias": False}  # llama.cpp only
    persona = load_persona(args.persona)
    if args.no_gender_fix:
        persona = persona.model_copy(update={"self_gender": None})
    levers["gender_fix"] = persona.self_gender is not None
    levers["recall_opening"] = not args.no_recall_opening and bool(getattr(backend, "continues_reply", False))
    guard = None if args.no_guard else ReplyGuard(max_retries=args.retries)
    print(f"backend {backend.describe()} (load {load_s:.1f} s); guard "
          f"{'off' if guard is None else f'on, {args.retries} retries'}; clean memory "
          f"{'off' if args.no_clean_memory else 'on'}; decoding {levers}; {time.strftime('%Y-%m-%d %H:%M')} UTC; "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    dialogs = []
    for lang in args.lang:
        mine = [d for d in load_dialogs(lang)
                if (args.set == "all" or (args.set == "held_back") == d.held_back)
                and (not args.category or d.category in args.category)
                and (not args.ids or d.id in args.ids)]
        dialogs += mine[:args.limit] if args.limit else mine
    results: list[DialogResult] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="persona-bench-") as tmp, Store(Path(tmp) / "bench.sqlite") as store:
        ears = None
        if args.spoken == "audio" and any(t.spoken for d in dialogs for t in d.turns):
            ears = Ears(Path(tmp))
        warm = Conversation(persona, backend, None, args.context, args.temperature, args.max_tokens, guard=None)
        await warm.reply_text("Hello!")  # the persona prompt enters llama.cpp's prefix cache, as in a running app
        for n, dialog in enumerate(dialogs):
            memory = DialogMemory(store, dialog.id, count=backend.count_tokens)
            talk = Conversation(persona, backend, memory, args.context, args.temperature, args.max_tokens,
                                seed=args.seed + n, guard=guard, clean_memory=not args.no_clean_memory,
                                steer_recall=not args.no_recall_opening)
            result = await run_dialog(dialog, talk, ears)
            results.append(result)
            if not args.quiet:
                print_dialog(result)
            print(f"[{n + 1}/{len(dialogs)}] {dialog.id}: {sum(passes(r) for r in result.replies)}/"
                  f"{len(result.replies)} replies passed", flush=True)
        asr_s = round(ears.seconds, 1) if ears else 0.0
        vad_turns = {str(n): ears.turns_heard.count(n) for n in sorted(set(ears.turns_heard))} if ears else {}
    await backend.close()
    if args.save is not None:
        args.save.write_text(json.dumps([{"id": res.dialog.id, "category": res.dialog.category, "lang": res.dialog.lang,
                                          "held_back": res.dialog.held_back,
                                          "replies": [{"turn": r.turn, "said": r.said, "heard": r.heard,
                                                       "reply": r.reply, "failures": [f.judge for f in r.failures],
                                                       "recall": r.recall, "gendered": r.gendered,
                                                       "retries": r.retries, "fallback": r.fallback, "cut": r.cut,
                                                       "templated": r.templated, "guard": r.why}
                                                      for r in res.replies]} for res in results],
                                        ensure_ascii=False, indent=1), encoding="utf-8")
    out: dict[str, Any] = {"benchmark": "persona", "date": time.strftime("%Y-%m-%d"), "machine": args.machine,
                           "backend": backend.describe(), "guard": None if guard is None else guard.max_retries,
                           "clean_memory": not args.no_clean_memory, **levers,
                           "temperature": args.temperature, "max_tokens": args.max_tokens, "set": args.set,
                           "spoken": args.spoken, "load_average": round(os.getloadavg()[0], 2),
                           "wall_s": round(time.perf_counter() - started, 1), "asr_s": asr_s,
                           "spoken_clips_by_vad_turns": vad_turns, "languages": {}}
    for lang in args.lang:
        for part, held in (("main", False), ("held_back", True)):
            chosen = [r for r in results if r.dialog.lang == lang and r.dialog.held_back == held]
            if not chosen:
                continue
            summary = summarise(chosen)
            out["languages"].setdefault(lang, {})[part] = summary
            print_summary(f"{lang} {'held-back set' if held else 'main set'}", summary)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="auto", choices=["auto", "ollama", "openai", "llamacpp"])
    parser.add_argument("--model", default="")
    parser.add_argument("--url", default="")
    parser.add_argument("--persona", default="alisa")
    parser.add_argument("--lang", nargs="+", default=list(LANGS), choices=LANGS)
    parser.add_argument("--limit", type=int, default=0, help="dialogs per language (0: all)")
    parser.add_argument("--set", default="all", choices=["all", "main", "held_back"],
                        help="main: without the held-back dialogs; held_back: only them")
    parser.add_argument("--category", nargs="*", default=[], help="only these categories (e.g. facts her_life)")
    parser.add_argument("--ids", nargs="*", default=[], help="only these dialog ids")
    parser.add_argument("--spoken", default="audio", choices=["audio", "text"],
                        help="spoken turns through TTS -> Whisper (audio) or as written (text)")
    parser.add_argument("--no-guard", action="store_true", help="speak every first try (no reply guard)")
    parser.add_argument("--no-clean-memory", action="store_true",
                        help="store echoes and character breaks in the dialog memory as they were")
    parser.add_argument("--no-copy-block", action="store_true",
                        help="llama.cpp: do not push down tokens that continue a copy of the person's message")
    parser.add_argument("--no-break-bias", action="store_true",
                        help="llama.cpp: no negative bias on the tokens that open 'As an AI ...'")
    parser.add_argument("--no-gender-fix", action="store_true",
                        help="do not correct her Russian self-reference to the persona's grammatical gender")
    parser.add_argument("--no-recall-opening", action="store_true",
                        help="llama.cpp: do not start the answer to a question about the person with its known "
                             "opening ('Your name is ...'); the closing note still carries the answer")
    parser.add_argument("--retries", type=int, default=2, help="the guard's retries per reply")
    parser.add_argument("--max-tokens", type=int, default=120, help="as the LLMPersona node's default")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--context", type=int, default=1536, help="prompt token budget")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--machine", default="2-core CPU, no GPU")
    parser.add_argument("--quiet", action="store_true", help="do not print every dialog")
    parser.add_argument("--save", type=Path, default=None, help="also write every judged reply to this JSON file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    result = asyncio.run(run(args))
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
