"""LLM persona benchmark: latency (time to first token, to first sentence, tokens/s) and dialog quality (recall of
a user fact, replies in the wrong language, identity slips) over scripted dialogs in English and Russian.

    .venv/bin/python benchmarks/llm.py                       # the configured default (auto: Ollama, else GGUF)
    .venv/bin/python benchmarks/llm.py --backend llamacpp --model smollm2-135m-instruct --dialogs 3

Each dialog (4 turns, fresh memory): the person gives their name and job; asks the avatar's name; small talk;
asks whether she remembers their name and job. Measured on every turn: first token and first sentence (from the
message arriving to the first TextChunk, prompt building included), tokens/s while generating. Quality:
- recall: the last reply contains the person's name (and, reported apart, the job);
- wrong language: a reply whose script is not the language of the person's message;
- identity slip: a reply in which the avatar claims the person's name as her own ("I'm Tom", "меня зовут Оля"),
  or answers "what is your name" without her own name.
Prints a table and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.queue.sqlite_store import Store  # noqa: E402
from nodes.think.backends.select import BackendConfig, open_backend  # noqa: E402
from nodes.think.conversation import Conversation  # noqa: E402
from nodes.common.text import detect_language  # noqa: E402
from nodes.think.memory import DialogMemory  # noqa: E402
from nodes.think.persona import load_persona  # noqa: E402

# (name, job as said, job stem to look for in the recall reply, topic)
PEOPLE = {
    "en": [("Tom", "a pilot", "pilot", "I flew to Rome yesterday."),
           ("Sarah", "a nurse", "nurse", "I had a long night shift at the hospital."),
           ("Mike", "a chef", "chef", "I cooked pasta for forty people today."),
           ("Emma", "a teacher", "teach", "My students had an exam this morning."),
           ("David", "a programmer", "program", "I fixed a nasty bug at work."),
           ("Lucy", "a painter", "paint", "I painted a sunset over the sea."),
           ("James", "a firefighter", "fire", "We had a busy day at the station."),
           ("Anna", "a doctor", "doctor", "I saw twenty patients today."),
           ("Peter", "a taxi driver", "driv", "The traffic in the city was terrible."),
           ("Kate", "a singer", "sing", "I have a concert next Friday."),
           ("Oliver", "a farmer", "farm", "The harvest this year is good."),
           ("Mia", "a photographer", "photo", "I took pictures at a wedding.")],
    "ru": [("Оля", "учительница", "учител", "Сегодня у моих учеников была контрольная."),
           ("Иван", "водитель автобуса", "водител", "На дорогах сегодня жуткие пробки."),
           ("Маша", "врач", "врач", "Сегодня я приняла двадцать пациентов."),
           ("Дмитрий", "программист", "программист", "Я весь день чинил сложную ошибку."),
           ("Анна", "медсестра", "медсестр", "У меня была длинная ночная смена."),
           ("Сергей", "повар", "повар", "Сегодня я готовил борщ на сорок человек."),
           ("Катя", "художница", "художни", "Я нарисовала закат над морем."),
           ("Алексей", "пожарный", "пожарн", "У нас был тяжёлый день на станции."),
           ("Наташа", "певица", "пев", "В пятницу у меня концерт."),
           ("Павел", "фермер", "фермер", "В этом году хороший урожай."),
           ("Лена", "фотограф", "фотограф", "Я снимала свадьбу в субботу."),
           ("Игорь", "пилот", "пилот", "Вчера я летал в Сочи.")],
}
SCRIPT = {
    "en": ["Hi! My name is {name}, I'm {job}.", "What is your name?", "{topic} How was your day?",
           "Do you remember my name and what I do for a living?"],
    "ru": ["Привет! Меня зовут {name}, я {job}.", "А как тебя зовут?", "{topic} А как прошёл твой день?",
           "Ты помнишь, как меня зовут и кем я работаю?"],
}
OWN_NAMES = ("alisa", "alice", "алиса", "алисой", "алису")


@dataclass
class TurnResult:
    language: str
    turn: int
    user: str
    reply: str
    first_token: float | None
    first_sentence: float | None
    tokens_per_s: float | None


def name_stem(name: str) -> str:
    """Russian names decline (Оля, Олю, Оле): match on all but the last letter when long enough."""
    return name[:-1].lower() if re.search(r"[а-яё]", name.lower()) and len(name) > 3 else name.lower()


def claims_name(reply: str, name: str) -> bool:
    stem = re.escape(name_stem(name))
    patterns = (rf"\bmy name is {stem}", rf"\bi'?m {stem}\b", rf"\bi am {stem}\b", rf"\bcall me {stem}",
                rf"меня зовут {stem}", rf"(?:^|[.!?,]\s*)я\s*[—-]?\s*{stem}", rf"моё имя\s*[—-]?\s*{stem}")
    low = reply.lower()
    return any(re.search(p, low) for p in patterns)


def mentions(reply: str, stem: str) -> bool:
    return stem.lower() in reply.lower()


async def run(args: argparse.Namespace) -> dict:
    backend = open_backend(BackendConfig(args.backend, args.model, args.url, n_ctx=args.context + 256))
    load = getattr(backend, "load", None)
    began = time.perf_counter()
    if load is not None:
        await load()
    load_s = time.perf_counter() - began
    persona = load_persona(args.persona)
    print(f"backend {backend.describe()}  (load {load_s:.1f} s)", flush=True)
    results: list[TurnResult] = []
    quality: dict[str, dict[str, list[bool]]] = {}
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "bench.sqlite") as store:
        # warm-up: the persona prompt enters llama.cpp's prefix cache, as in a running app
        warm = Conversation(persona, backend, None, args.context, args.temperature, args.max_tokens)
        await warm.reply_text("Hello!")
        for language in args.languages:
            q = quality.setdefault(language, {"recall_name": [], "recall_job": [], "wrong_language": [],
                                              "identity_slip": [], "own_name": []})
            for index, (name, job, job_stem, topic) in enumerate(PEOPLE[language][:args.dialogs]):
                memory = DialogMemory(store, f"{language}-{index}", count=backend.count_tokens)
                talk = Conversation(persona, backend, memory, args.context, args.temperature, args.max_tokens,
                                    seed=args.seed + index)
                slip = False
                for turn, template in enumerate(SCRIPT[language], start=1):
                    user = template.format(name=name, job=job, topic=topic)
                    reply, _ = await talk.reply_text(user, turn_id=turn)
                    timing = talk.last_timing
                    assert timing is not None
                    results.append(TurnResult(language, turn, user, reply, timing.first_token,
                                              timing.first_sentence, timing.tokens_per_second()))
                    q["wrong_language"].append(detect_language(reply) not in (language, None) or not reply)
                    if claims_name(reply, name):
                        slip = True
                    if turn == 2:
                        q["own_name"].append(any(n in reply.lower() for n in OWN_NAMES))
                    if turn == 4:
                        q["recall_name"].append(mentions(reply, name_stem(name)))
                        q["recall_job"].append(mentions(reply, job_stem))
                    if args.verbose:
                        print(f"  [{language} {index} t{turn}] {user}\n      -> {reply}  "
                              f"({timing.first_token or 0:.2f}/{timing.first_sentence or 0:.2f} s)", flush=True)
                q["identity_slip"].append(slip)
                print(f"{language} dialog {index + 1}/{args.dialogs} done", flush=True)
    await backend.close()
    return summarise(backend.describe(), load_s, results, quality, args)


def median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def p90(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 3)


def rate(flags: list[bool]) -> float | None:
    return round(sum(flags) / len(flags), 3) if flags else None


def summarise(backend: str, load_s: float, results: list[TurnResult], quality: dict, args) -> dict:
    out: dict = {"benchmark": "llm", "date": time.strftime("%Y-%m-%d"), "machine": args.machine,
                 "backend": backend, "load_s": round(load_s, 2), "dialogs_per_language": args.dialogs,
                 "max_tokens": args.max_tokens, "temperature": args.temperature, "languages": {}}
    print(f"\n{'lang':5}{'turns':>6}{'first token med/p90 s':>24}{'first sentence med/p90 s':>27}{'tok/s med':>11}"
          f"{'recall name':>13}{'recall job':>12}{'wrong lang':>12}{'id slip':>9}{'own name':>10}")
    for language in args.languages:
        rows = [r for r in results if r.language == language]
        ft = [r.first_token for r in rows if r.first_token is not None]
        fs = [r.first_sentence for r in rows if r.first_sentence is not None]
        tps = [r.tokens_per_s for r in rows if r.tokens_per_s is not None]
        q = quality[language]
        stats = {"turns": len(rows), "first_token_median_s": median(ft), "first_token_p90_s": p90(ft),
                 "first_sentence_median_s": median(fs), "first_sentence_p90_s": p90(fs),
                 "tokens_per_s_median": median(tps) if tps else None,
                 "recall_name_rate": rate(q["recall_name"]), "recall_job_rate": rate(q["recall_job"]),
                 "wrong_language_rate": rate(q["wrong_language"]), "identity_slip_rate": rate(q["identity_slip"]),
                 "says_own_name_rate": rate(q["own_name"])}
        out["languages"][language] = stats
        print(f"{language:5}{len(rows):>6}{stats['first_token_median_s']!s:>12}/{stats['first_token_p90_s']!s:<11}"
              f"{stats['first_sentence_median_s']!s:>14}/{stats['first_sentence_p90_s']!s:<12}"
              f"{stats['tokens_per_s_median']!s:>11}{stats['recall_name_rate']!s:>13}{stats['recall_job_rate']!s:>12}"
              f"{stats['wrong_language_rate']!s:>12}{stats['identity_slip_rate']!s:>9}"
              f"{stats['says_own_name_rate']!s:>10}")
    all_fs = [r.first_sentence for r in results if r.first_sentence is not None]
    out["first_sentence_median_s"] = median(all_fs)
    out["target_first_sentence_s"] = 1.0
    out["meets_target"] = bool(all_fs) and statistics.median(all_fs) <= 1.0
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="auto", choices=["auto", "ollama", "openai", "llamacpp"])
    parser.add_argument("--model", default="")
    parser.add_argument("--url", default="")
    parser.add_argument("--persona", default="alisa")
    parser.add_argument("--dialogs", type=int, default=10, help="scripted dialogs per language (max 12)")
    parser.add_argument("--languages", nargs="+", default=["en", "ru"], choices=["en", "ru"])
    parser.add_argument("--max-tokens", type=int, default=80)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--context", type=int, default=1536, help="prompt token budget")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--machine", default="2-core CPU, no GPU")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every exchange")
    args = parser.parse_args()
    args.dialogs = max(1, min(args.dialogs, 12))
    logging.basicConfig(level=logging.WARNING)
    result = asyncio.run(run(args))
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
