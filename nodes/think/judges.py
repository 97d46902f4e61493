"""Judges of one persona reply: plain functions that say what is wrong with it, each on its own.

Used twice: by the reply guard (``nodes.think.guard``) on the first sentence of every reply before it is spoken,
and by ``benchmarks/persona.py`` on whole replies. Each judge returns a short reason (what it found) or None.

* ``character_break``: she talks like an assistant or a program ("As an AI", "языковая модель", "у меня нет чувств").
* ``repeats_herself``: a sentence of the reply says again one of her earlier replies.
* ``echo``: the reply repeats the person's message (shared 4-grams), or says their words from their side
  (most of its words are theirs and it keeps a first-person phrase of theirs: "I'd love to discuss my garden").
* ``identity_swap``: she gives the person's name as hers, calls the person by her own name, or answers "what is my
  name" with her own; ``claims_fact`` (a stated job or the like taken as hers, judged by the word's part of speech),
  ``claims_plan`` (the person's trip or plan told as hers); ``recalls`` (a stated fact named).
* ``wrong_language``, ``too_long`` (more than 3 sentences), ``markup`` (markdown, emoji, stage directions),
  ``filler_opening`` ("Certainly!", "Вот вам ответ").
* ``self_gender`` / ``masculine_self_reference``: the grammatical gender of her Russian self-reference (past-tense
  verbs, short adjectives and participles with "я"), from pymorphy3's dictionary, not from hand lists.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from nodes.common.text import detect_language, split_sentences
from nodes.think.claims import claims_fact, claims_plan  # noqa: F401  (judges of their own module)
from nodes.think.claims import normalise
from nodes.think.perspective import morph as _morph

# ------------------------------------------------------------------ helpers

_WORD = re.compile(r"[a-zа-яё0-9]+(?:['’][a-z]+)?", re.IGNORECASE)




def words(text: str) -> list[str]:
    return _WORD.findall(normalise(text))


def _phrases(*patterns: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in patterns))


# ------------------------------------------------------------------ character break

_BREAK = _phrases(
    # English
    r"\bas an? (?:ai|a\.i\.|artificial intelligence|language model|virtual assistant|digital assistant|"
    r"ai (?:language )?model|ai assistant|machine|computer program|chatbot|assistant)\b",
    r"\b(?:i'm|i am) (?:just |only |merely )?(?:an? )?(?:ai|a\.i\.|artificial intelligence|language model|"
    r"virtual assistant|digital assistant|computer program|chatbot|bot|machine|program)\b",
    r"\blanguage model\b", r"\bneural network\b", r"\btraining data\b", r"\b(?:openai|alibaba cloud|qwen)\b",
    r"\b(?:i )?(?:don't|do not|can't|cannot) (?:have|experience|feel|possess) (?:any )?(?:personal|physical|real|"
    r"human|actual|my own) (?:feelings|emotions|experiences?|opinions|preferences|body|life|day|form)",
    r"\bi (?:don't|do not|can't|cannot) (?:have|experience|feel) (?:feelings|emotions)\b",
    r"\bi (?:don't|do not) (?:have|experience) (?:a|any) (?:physical|personal|real)\b",
    r"\b(?:i'm|i am) not (?:a real person|a human|human|capable of (?:feeling|emotions))\b",
    r"\bi (?:don't|do not) have the (?:ability|capacity) to (?:feel|experience|taste|eat|travel|go)\b",
    r"\b(?:i |who )?(?:live|lives|living|exist|exists|existing|am|'m) (?:only )?(?:in|inside) (?:this|the|an?|your) "
    r"(?:app|application|computer|server|cloud|program|device|phone|chat|screen)\b",
    r"\bas an? (?:talking |virtual |digital |animated )?avatar\b",
    r"\b(?:i'm|i am) (?:just |only )?(?:an? )?(?:talking |virtual |digital |animated )?avatar\b",
    r"\bhow (?:can|may) i (?:help|assist) you\b", r"\b(?:anything|something) else i can (?:help|assist)",
    r"\bi'm here to (?:help|assist)\b", r"\bi am here to (?:help|assist)\b",
    # Russian
    r"\bкак (?:ии|искусственный интеллект|языковая модель|виртуальный (?:ассистент|помощник)|"
    r"программа|компьютерная программа|бот|чат-?бот|ассистент|модель)\b",
    r"\bя (?:[—-] )?(?:всего лишь |просто |лишь )?(?:ии|искусственный интеллект|языковая модель|"
    r"виртуальный (?:ассистент|помощник)|программа|компьютерная программа|бот|чат-?бот|нейросеть|модель)\b",
    r"\bязыков(?:ая|ой|ую) модел", r"\bискусственн(?:ый|ого|ым) интеллект", r"\bнейросет",
    r"\bу меня нет (?:собственных |своих |личных |настоящих |реальных )?(?:чувств|эмоций|личного опыта|"
    r"личных (?:чувств|эмоций|предпочтений|мнений)|физического тела|тела|предпочтений|мнения)",
    r"\bя не (?:испытываю|могу испытывать|чувствую|могу чувствовать) (?:эмоци|чувств)",
    r"\bя не (?:человек|живой человек|настоящий человек)\b",
    r"\bу меня нет (?:возможности|способности) (?:чувствовать|испытывать|путешествовать|есть|ходить)",
    r"\bобучен(?:а|ная|ный)? на (?:данных|текстах)",
    r"\bкак (?:говорящий |виртуальный |цифровой )?аватар\b",
    r"\bя (?:[—-] )?(?:всего лишь |просто |лишь )?(?:говорящий |виртуальный |цифровой )?аватар\b",
    r"\b(?:живу|живет|живущая|живущий|нахожусь|находящаяся|существую) (?:только )?(?:в|внутри) "
    r"(?:этом |этой |этого |твоем |твоей |вашем |вашей )?"
    r"(?:приложени|компьютер|сервер|облак|программ|телефон|устройств|чат|экран)",
    r"\bчем (?:я )?могу (?:вам |тебе )?помочь\b", r"\bя здесь,? чтобы (?:помочь|помогать)",
)


def character_break(reply: str) -> str | None:
    """The assistant-like phrase that breaks her character, or None."""
    m = _BREAK.search(normalise(reply))
    return m.group(0) if m else None


def instruction_leak(reply: str, instructions: Sequence[str], n: int = 5) -> str | None:
    """The words of her own instructions (the prompt's notes, the guard's corrections) that ``reply`` reads out
    ("Когда собеседник спрашивает о себе, говори ..."): a run of ``n`` words shared with one of them, or None."""
    said = _ngrams(words(reply), n)
    if not said:
        return None
    for text in instructions:
        common = said & _ngrams(words(text), n)
        if common:
            return f"reads out her instructions: {' '.join(min(common))!r}"
    return None


# ------------------------------------------------------------------ echo

_STOP = frozenset("""
a an the and or but so to of in on at for with about from by is are was were be been am do does did have has had
it its this that these those there here what which who how when where why would could should will can just really
very too also not no yes oh well like
и а но или в во на за к ко с со у о об от до по из для что как это то так же ли бы не ни да нет вот ну ещё еще
очень тоже там тут где когда почему какой какая какие который
""".split())
_FIRST_PERSON = frozenset("i i'm i'd i've i'll my me mine myself я мой моя моё мое мои мне меня мной".split())


def _ngrams(seq: Sequence[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(seq[i:i + n]) for i in range(len(seq) - n + 1)}


def _content(ws: Iterable[str]) -> set[str]:
    return {w for w in ws if len(w) >= 3 and w not in _STOP and w not in _FIRST_PERSON}


def _first_person_pairs(ws: Sequence[str]) -> set[tuple[str, str]]:
    """(first-person word, the content word after it): ("my", "garden"), ("я", "работаю")."""
    return {(ws[i], ws[i + 1]) for i in range(len(ws) - 1)
            if ws[i] in _FIRST_PERSON and ws[i + 1] not in _STOP and len(ws[i + 1]) >= 3}


def echo(reply: str, user_text: str, *, copied_share: float = 0.5, overlap_share: float = 0.6) -> str | None:
    """Whether ``reply`` repeats ``user_text`` (the person's last message), with the reason, or None.

    - copying: at least ``copied_share`` of the person's word 4-grams reappear in the reply (messages of 4+ words),
      or the reply is the message (short ones);
    - their perspective: at least ``overlap_share`` of the reply's content words are the person's (and at least 2),
      and the reply keeps one of their first-person phrases ("my garden", "я работаю").
    """
    said, heard = words(reply), words(user_text)
    if not said or not heard:
        return None
    if len(heard) < 4:
        return "repeats the message" if said == heard else None
    user_grams = _ngrams(heard, 4)
    shared = user_grams & _ngrams(said, 4)
    if len(shared) >= max(1, copied_share * len(user_grams)):
        return f"copies {len(shared)} of the message's {len(user_grams)} word 4-grams"
    reply_content, user_content = _content(said), _content(heard)
    common = reply_content & user_content
    if reply_content and len(common) >= 2 and len(common) >= overlap_share * len(reply_content):
        kept = _first_person_pairs(said) & _first_person_pairs(heard)
        if kept:
            pair = " ".join(sorted(kept)[0])
            return f"says the person's words from their side ({pair!r}, {len(common)}/{len(reply_content)} words)"
    return None


def repeats_herself(reply: str, earlier: Sequence[str], share: float = 0.75) -> str | None:
    """A sentence of ``reply`` (4+ words) that says again one of her ``earlier`` replies (at least ``share`` of its
    word 4-grams): the loop a small model falls into once a reply is in its memory ("What would you like to know
    about dinner tonight?" after every answer)."""
    old = set().union(*(_ngrams(words(e), 4) for e in earlier)) if earlier else set()
    if not old:
        return None
    for sentence in split_sentences(reply):
        grams = _ngrams(words(sentence), 4)
        if grams and len(grams & old) >= share * len(grams):
            return f"says again {sentence[:60]!r}"
    return None


# ------------------------------------------------------------------ names and facts

def stem(name: str) -> str:
    """A name's stem that matches its Russian cases (Оля, Олю, Оле -> "ол"); English names unchanged."""
    low = normalise(name)
    if re.search(r"[а-я]", low) and len(low) > 3:
        return low[:-1]
    if re.search(r"[а-я]", low) and len(low) == 3 and low[-1] in "аяь":
        return low[:-1]
    return low


def _claims_name_patterns(name_stem: str) -> list[str]:
    s = re.escape(name_stem)
    return [rf"\bmy name(?: is|'s) {s}", rf"\bi'm {s}\b", rf"\bi am {s}\b", rf"\bcall me {s}", rf"\bit's me,? {s}\b",
            rf"\bменя зовут {s}", rf"(?:^|[.!?,] ?)я (?:[—-] )?{s}", rf"\bмое имя (?:[—-] )?{s}", rf"\bзови меня {s}"]


def claims_name(reply: str, name: str) -> bool:
    """She says ``name`` is hers ("My name is Oliver", "Я Оля", "меня зовут Олей")."""
    low = normalise(reply)
    return any(re.search(p, low) for p in _claims_name_patterns(stem(name)))


_ASKS_OWN_NAME = re.compile(r"\bwhat(?:'s| is) my name\b|\bdo you (?:remember|know) my name\b|\bwho am i\b|"
                            r"\bкак меня зовут\b|\bмое имя\b|\bты помнишь,? как меня зовут|\bкто я\b")


def asks_own_name(user_text: str) -> bool:
    """The person asks what their own name is."""
    return bool(_ASKS_OWN_NAME.search(normalise(user_text)))


_ASKS_HER_NAME = re.compile(r"\bwhat(?:'s| is) your name\b|\bwho are you\b|\bкак тебя зовут\b|\bкак вас зовут\b|"
                            r"\bкак твое имя\b|\bкто ты(?: такая)?\?")


def asks_her_name(user_text: str) -> bool:
    """The person asks what her name is."""
    return bool(_ASKS_HER_NAME.search(normalise(user_text)))


def _says_name(low: str, name: str) -> bool:
    """``name`` (in any Russian case) is a word of the normalised ``low``."""
    s = stem(name)
    tail = r"\w{0,2}" if re.search(r"[а-я]", s) else r"(?:'s)?"
    return bool(re.search(rf"\b{re.escape(s)}{tail}\b", low))


def gives_their_name_for_hers(reply: str, own_names: Sequence[str], person_name: str | None,
                              user_text: str) -> str | None:
    """Asked her name, she says the person's and not hers ("Как тебя зовут?" -> "Света, работаю медсестрой")."""
    if not (user_text and person_name and asks_her_name(user_text)):
        return None
    low = normalise(reply)
    if stem(person_name) in {stem(n) for n in own_names} or not _says_name(low, person_name):
        return None
    if any(_says_name(low, n) for n in own_names):
        return None
    return f"answers 'what is your name' with the person's name {person_name!r}"


def identity_swap(reply: str, own_names: Sequence[str], person_name: str | None = None,
                  user_text: str = "") -> str | None:
    """She takes the person's name as hers, gives hers to the person, or answers a question about the person's
    name with her own. ``own_names``: her names in every language (Alisa, Алиса)."""
    low = normalise(reply)
    own = {stem(n) for n in own_names}
    if person_name and stem(person_name) not in own and claims_name(reply, person_name):
        return f"gives the person's name {person_name!r} as hers"
    for s in own:
        e = re.escape(s)
        if re.search(rf"\byour name(?: is|'s) {e}|\byou(?:'re| are) {e}\b|\bтебя зовут {e}|\bвас зовут {e}|"
                     rf"\bты (?:[—-] )?{e}\b|\bвы (?:[—-] )?{e}\b|\b(?:ваше|твое) имя (?:[—-] )?{e}", low):
            return "gives her own name to the person"
        # "Привет, Алиса!" / "Hi Alisa," at the start: she greets the person by her own name
        if re.match(rf"(?:hi|hello|hey|good (?:morning|evening|afternoon)|привет|здравствуй(?:те)?|"
                    rf"добрый (?:день|вечер)|доброе утро)[,!]? {e}\w*\b", low):
            return "calls the person by her own name"
    if person_name:  # "Тебя зовут Иван" to Лена: a name the person never gave
        said = re.search(r"\byour name(?: is|'s) ([a-zа-я-]+)|\b(?:тебя|вас) зовут ([a-zа-я-]+)", low)
        if said:
            given = said.group(1) or said.group(2)
            same_script = bool(re.search(r"[а-я]", given)) == bool(re.search(r"[а-я]", normalise(person_name)))
            if same_script and not _says_name(given, person_name) and given not in ("not", "не", "так", "тоже",
                                                                                   "как"):
                return f"calls the person {given!r}, not {person_name!r}"
    reason = gives_their_name_for_hers(reply, own_names, person_name, user_text)
    if reason:
        return reason
    if user_text and asks_own_name(user_text):
        person_said = person_name is not None and stem(person_name) in low
        if not person_said and any(re.search(p, low) for s in own for p in _claims_name_patterns(s)):
            return "answers 'what is my name' with her own name"
    return None


def names_stranger(reply: str, names: Sequence[str], person_name: str | None = None) -> str | None:
    """She names someone from the persona's example exchanges ("Привет, Вера!") who is not the person."""
    text = reply.replace("ё", "е").replace("Ё", "Е")
    for name in names:
        if person_name and stem(name) == stem(person_name):
            continue
        base = stem(name)
        tail = r"\w{0,2}\b" if re.search(r"[а-я]", base) else r"\b"  # Russian names decline
        if re.search(rf"\b{re.escape(base[:1].upper() + base[1:])}{tail}", text):  # a name: capitalised
            return f"names {name!r} from the example exchanges"
    return None


_ME = re.compile(r"\b(?:i|i'm|i've|i'll|i'd|my|me|mine|я|мой|моя|мое|мои|мне|меня|у меня)\b")
_YOU = re.compile(r"\b(?:you|you're|your|yours|ты|тебя|тебе|твой|твоя|твое|твои|тобой|вы|вас|вам|ваш|ваша)\b")
_RECALLING = re.compile(r"\b(?:remember|recall|know|помню|знаю|не забыла)\b")


def asks_about_person(user_text: str) -> bool:
    """The person asks about themselves ("What's my name?"): the right answer may be one she gave before."""
    from nodes.think.prompt import asked_about

    return asked_about(user_text) == "self"


def repeats_herself_needlessly(reply: str, expect: Expectation) -> str | None:
    """``repeats_herself``, except for a sentence that gives the person's name or fact back when they ask about
    themselves again ("Your name is Tom." twice is right; the small talk around it said again is not)."""
    if not asks_about_person(expect.user_text):
        return repeats_herself(reply, expect.earlier_replies)
    keys = [stem(expect.person_name)] if expect.person_name else []
    keys += [normalise(s) for s in expect.person_facts]
    kept = [s for s in split_sentences(reply) if not any(k and k in normalise(s) for k in keys)]
    return repeats_herself(" ".join(kept), expect.earlier_replies) if kept else None


def answers_from_her_side(reply: str, user_text: str) -> str | None:
    """The person asked about themselves ("What am I studying?", "Кем я работаю?") and the reply's first
    sentence answers in the first person, as if about her ("I'm studying chemistry", "Я работаю медсестрой")."""
    from nodes.think.prompt import asked_about  # the question classifier of the prompt's closing note

    if asked_about(user_text) != "self":
        return None
    first = normalise(next(iter(split_sentences(reply)), ""))
    if _ME.search(first) and not _YOU.search(first) and not _RECALLING.search(first):
        return f"answers the person's question about themselves in the first person: {first[:60]!r}"
    return None


def recalls(reply: str, stems: Sequence[str]) -> bool:
    """The reply names a stated fact: any of ``stems`` (lower-case word stems: "pilot", "учител") occurs."""
    low = normalise(reply)
    return any(normalise(s) in low for s in stems)


# ------------------------------------------------------------------ language, length, form

def wrong_language(reply: str, expected: str) -> bool:
    """The reply is written in the other language than ``expected`` ("en" or "ru"); a mix, or an ``expected``
    that is neither, is not judged."""
    if expected not in ("en", "ru"):
        return False
    found = detect_language(reply)
    return found is not None and found != expected


def sentence_count(reply: str) -> int:
    return len(split_sentences(reply))


def too_long(reply: str, max_sentences: int = 3) -> bool:
    return sentence_count(reply) > max_sentences


_MARKDOWN = re.compile(r"\*\*|__|`|^\s*#{1,6}\s|^\s*[-*•]\s+\S|^\s*\d+[.)]\s+\S|\[[^\]]+\]\([^)]+\)", re.MULTILINE)
_EMOJI = re.compile("[\U0001F000-\U0001FAFF\U00002600-\U000027BF\U0000FE0F\U0000200D\U00002B50\U00002B55]")
_STAGE = re.compile(r"\*[^*\n]{2,40}\*|\((?:[a-z]+ing|smiles?|laughs?|sighs?|winks?|pause[sd]?|улыбается|смеется|"
                    r"смеётся|вздыхает|подмигивает|пауза|смеюсь|улыбаюсь)[^)]{0,30}\)|\[[^\]\n]{2,30}\]",
                    re.IGNORECASE)


def markup(reply: str) -> str | None:
    """Markdown, emoji or a stage direction ("*smiles*", "(laughs)", "[pause]") in what the model wrote."""
    for kind, pattern in (("markdown", _MARKDOWN), ("emoji", _EMOJI), ("stage direction", _STAGE)):
        m = pattern.search(reply)
        if m:
            return f"{kind} {m.group(0).strip()!r}"
    return None


_FILLER = _phrases(
    r"^(?:certainly|absolutely|of course|sure)[!.,]? (?:here(?:'s| is| are)|let me|i can help|i'd be happy to help)",
    r"^certainly[!.]", r"^here(?:'s| is| are) (?:a|an|the|my|some|your|what)\b",
    r"^(?:that's a |what a )?(?:great|good|excellent|interesting) question\b", r"^as requested\b",
    r"^(?:i'd be|i would be|i am|i'm) happy to help\b", r"^(?:sure|okay|ok)[!.,]? here\b",
    r"^вот (?:вам |тебе )?(?:ответ|совет|несколько|пара|список|мой ответ|что я думаю)",
    r"^(?:конечно|разумеется|безусловно)[!.,]? (?:вот|давай(?:те)? я|я помогу|с радостью помогу)",
    r"^(?:хороший|отличный|интересный|замечательный) вопрос\b", r"^разумеется[!.]",
    r"^(?:ответ|мой ответ)\s*:",
)


_BARE_OPENING = re.compile(r"^(?:sure|certainly|absolutely|of course|okay|ok|alright|great|конечно|разумеется|"
                           r"безусловно|хорошо|ладно|отлично|давай(?:те)?)[!.,]?$")


def bare_opening(sentence: str) -> bool:
    """A first sentence that is only an opening word ("Sure!", "Конечно!"): whether it is a filler opening shows
    only with the next sentence."""
    return bool(_BARE_OPENING.match(normalise(sentence)))


def lone_filler(sentence: str, following: str) -> bool:
    """``sentence`` is only an empty opening word that the filler judge flags ("Certainly!", "Разумеется.") and
    ``following`` is a sentence of its own (three words or more, not a filler opening itself): the opening can be
    left unsaid without changing what she says."""
    return bare_opening(sentence) and filler_opening(sentence) is not None and len(words(following)) >= 3 and \
        filler_opening(following) is None


def filler_opening(reply: str) -> str | None:
    """An empty opening that announces the answer instead of giving it ("Certainly!", "Вот вам ответ: ...")."""
    m = _FILLER.search(normalise(reply))
    return m.group(0) if m else None


# ------------------------------------------------------------------ Russian self-reference



# words that may stand between "я" and the gendered word: "я тоже очень рада", "я так устала", "я уже была"
_BETWEEN = frozenset("тоже очень так уже ведь же бы не всегда сегодня вчера сейчас сама правда действительно "
                     "немного совсем просто честно вообще даже только ещё еще и вот".split())
_GENDERED_POS = frozenset({"VERB", "ADJS", "PRTS"})


@dataclass(frozen=True)
class SelfReference:
    word: str
    gender: str  # "femn" or "masc"


def _gendered_parse(word: str) -> Any:
    """``word`` read as a singular past-tense verb, short adjective or short participle with a gender, or None."""
    for parse in _morph().parse(word):
        tag = parse.tag
        if tag.POS in _GENDERED_POS and tag.number == "sing" and tag.gender in ("masc", "femn"):
            if tag.POS == "VERB" and tag.tense != "past":
                continue
            return parse
    return None


_TOKEN = re.compile(r"[а-яёa-z0-9]+(?:-[а-яё]+)?", re.IGNORECASE)


def _sentence_starts(reply: str, tokens: list[tuple[int, int, str]]) -> set[int]:
    """Indices of the tokens that open a sentence."""
    return {i for i, (start, _, _) in enumerate(tokens)
            if i == 0 or re.search(r"[.!?…]", reply[tokens[i - 1][1]:start])}


def _has_subject(reply: str, tokens: list[tuple[int, int, str]], j: int, window: int = 3) -> bool:
    """Whether a noun or pronoun in the nominative follows token ``j`` in its clause (within ``window`` words)."""
    for k in range(j + 1, min(len(tokens), j + 1 + window)):
        if re.search(r"[,;:.!?…—]", reply[tokens[k - 1][1]:tokens[k][0]]):
            return False
        tag = _morph().parse(tokens[k][2])[0].tag
        if tag.POS in ("NOUN", "NPRO") and tag.case == "nomn":
            return True
    return False


def self_references(reply: str, window: int = 4) -> list[tuple[int, int, str, Any]]:
    """(start, end, word, pymorphy parse) of her gendered self-references in a Russian reply: after each "я", the
    first past-tense verb, short adjective or short participle within ``window`` words (skipping "тоже", "очень",
    "не", ...); and a sentence that opens with a short adjective or participle and no subject, where "я" is
    implied ("Рад был помочь.", "Очень рада тебя слышать!"), with the past-tense "был" that may follow it."""
    tokens = [(m.start(), m.end(), m.group(0).lower().replace("ё", "е")) for m in _TOKEN.finditer(reply)]
    starts = _sentence_starts(reply, tokens)
    found = []
    for i, (_, _, w) in enumerate(tokens):
        if w == "я":
            for start, end, nxt in tokens[i + 1:i + 1 + window]:
                if nxt in _BETWEEN:
                    continue
                if nxt in ("я", "ты", "вы", "он", "она", "мы", "они"):
                    break
                parse = _gendered_parse(nxt)
                if parse is not None:
                    found.append((start, end, reply[start:end], parse))
                    break
                if _morph().parse(nxt)[0].tag.POS not in ("ADVB", "PRCL", "CONJ", "PRED", "INTJ"):
                    break  # another word (a present-tense verb, a noun): no gendered form for "я" here
        elif i in starts:
            j = i
            while j < len(tokens) and tokens[j][2] in _BETWEEN:
                j += 1
            parse = _gendered_parse(tokens[j][2]) if j < len(tokens) else None
            if parse is None or parse.tag.POS == "VERB" or _has_subject(reply, tokens, j):
                continue  # "Пошёл дождь", "Прав ты": the subject comes after the word
            found.append((tokens[j][0], tokens[j][1], reply[tokens[j][0]:tokens[j][1]], parse))
            if j + 1 < len(tokens):
                link = _gendered_parse(tokens[j + 1][2])
                if link is not None and link.tag.POS == "VERB" and link.normal_form == "быть":
                    found.append((tokens[j + 1][0], tokens[j + 1][1], reply[tokens[j + 1][0]:tokens[j + 1][1]], link))
    return found


def self_gender(reply: str, window: int = 4) -> list[SelfReference]:
    """Her gendered self-references in a Russian reply (see ``self_references``) with their gender."""
    return [SelfReference(word.lower(), str(parse.tag.gender)) for _, _, word, parse in self_references(reply, window)]


def with_self_gender(reply: str, gender: str = "femn") -> str:
    """``reply`` with her self-references in ``gender`` ("femn": "я так устал" -> "я так устала", "я рад" ->
    "я рада"); everything else unchanged."""
    other = "masc" if gender == "femn" else "femn"
    out, last = [], 0
    for start, end, word, parse in self_references(reply):
        if parse.tag.gender != other:
            continue
        # a short participle keeps one н ("уверен" -> "уверена", not the adjective's "уверенна")
        options = [p for p in _morph().parse(word.lower()) if p.tag.POS == "PRTS" and p.tag.gender == other]
        changed = next((f for f in (p.inflect({gender}) for p in [*options, parse]) if f is not None), None)
        if changed is None:
            continue
        new = changed.word
        if word[:1].isupper():
            new = new[:1].upper() + new[1:]
        out += [reply[last:start], new]
        last = end
    return "".join(out) + reply[last:] if out else reply


def masculine_self_reference(reply: str) -> list[str]:
    """Her self-references in the masculine ("я рад", "я устал"): the words, empty when there are none."""
    return [r.word for r in self_gender(reply) if r.gender == "masc"]


# ------------------------------------------------------------------ everything at once

@dataclass(frozen=True)
class Failure:
    judge: str
    reason: str


@dataclass(frozen=True)
class Expectation:
    """What a reply is judged against: the person's message and language, her names, what the person stated."""
    user_text: str
    language: str  # "en" or "ru": the language she should answer in
    own_names: tuple[str, ...] = ("Alisa", "Алиса")
    person_name: str | None = None
    person_facts: tuple[str, ...] = ()  # stems of other stated facts (job, city, pet)
    person_plans: tuple[str, ...] = ()  # stems of the person's stated plans (the place or thing: "japan", "япони")
    max_sentences: int | None = 3  # None: the person asked for more
    earlier_replies: tuple[str, ...] = ()  # her replies so far in this dialog
    stranger_names: tuple[str, ...] = ()  # names of the people in the persona's example exchanges
    fallback_lines: tuple[str, ...] = ()  # the persona's "I lost my thought" lines: said when every try failed
    instructions: tuple[str, ...] = ()  # texts she is told and must never say (``guard.instruction_texts``)


def judge_reply(reply: str, expect: Expectation, raw: str | None = None) -> list[Failure]:
    """Every judge that fails on ``reply`` (the spoken text); ``raw`` (what the model wrote) for markup."""
    out: list[Failure] = []

    def add(judge: str, reason: str | None) -> None:
        if reason:
            out.append(Failure(judge, reason))

    if not reply.strip():
        return [Failure("empty", "she said nothing")]
    if reply.strip() in expect.fallback_lines:  # not an answer, and not a claim about anyone either
        return [Failure("fallback", "she said her fallback line instead of an answer")]
    add("character_break", character_break(reply) or instruction_leak(reply, expect.instructions))
    add("echo", echo(reply, expect.user_text))
    add("self_repeat", repeats_herself_needlessly(reply, expect))
    add("identity_swap", identity_swap(reply, expect.own_names, expect.person_name, expect.user_text)
        or claims_fact(reply, expect.person_facts) or claims_plan(reply, expect.person_plans)
        or names_stranger(reply, expect.stranger_names, expect.person_name)
        or answers_from_her_side(reply, expect.user_text))
    add("wrong_language", f"answered in the wrong language (expected {expect.language})"
        if wrong_language(reply, expect.language) else None)
    if expect.max_sentences is not None and too_long(reply, expect.max_sentences):
        add("too_long", f"{sentence_count(reply)} sentences")
    add("markup", markup(raw if raw is not None else reply))
    add("filler", filler_opening(reply))
    if expect.language == "ru":
        masc = masculine_self_reference(reply)
        add("masculine", f"masculine self-reference: {', '.join(masc)}" if masc else None)
    return out
