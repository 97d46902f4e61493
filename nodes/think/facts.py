"""Facts the person states about themselves, pulled out of their turns so the prompt can keep them in a separate
"what you know about the person" block (small models otherwise take the user's name or job as their own).

Rule-based and cheap: the person's name from the usual phrasings (en/ru), and other first-person statements
("I am a pilot", "я живу в Казани", "мне 30 лет") kept as short quotations attributed to the person, each tagged
with what it is about (job, city, plans, pet). A question the person asks about themselves ("what do I do for a
living?", "напомни, где я живу?") is matched to those topics, and the facts that answer it are said back in the
second person (``answer_from_facts``: "You repair bicycles.", "Ты живёшь в Казани."; ``nodes.think.perspective``
conjugates the Russian verbs).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nodes.common.text import split_sentences
from nodes.think.perspective import second_person, third_person, without_greeting

_NAME_PATTERNS = (
    re.compile(r"\b(?i:my name is|my name's|call me)\s+([A-Z][\w'-]+)"),
    re.compile(r"\bI(?:'m| am) ([A-Z][a-z'-]+)\b(?!\s+(?:and\s+)?(?:too|from))"),
    re.compile(r"(?i:меня зовут|зовут меня)\s+([А-ЯЁA-Z][\w-]+)"),
    re.compile(r"(?i:меня)\s+([А-ЯЁ][а-яё-]+)\s+(?i:зовут)\b"),
    re.compile(r"(?i:моё|мое)\s+(?i:имя)\s*(?:[—–-]\s*)?([А-ЯЁA-Z][\w-]+)"),
    re.compile(r"(?i:зови(?:те)? меня)\s+([А-ЯЁA-Z][\w-]+)"),
    re.compile(r"(?:^|[.!?,]\s*)(?:Я|я)\s+(?:[—–-]\s+)?([А-ЯЁ][а-яё-]+)(?=[\s,.!?]|$)"),
)
_NOT_NAMES = frozenset({"fine", "good", "okay", "ok", "here", "back", "sorry", "glad", "happy", "english", "russian",
                        "american", "not", "so", "very", "just", "also", "i"})
# First-person statements worth remembering (who the person is, what they do, like, have), not passing events.
_SELF_STATEMENT = re.compile(
    r"\b(?:I(?:'m| am) (?:a|an|from|\d+|married|single|studying|learning|working|retired)\b"
    r"|I (?:work|live|come from|study|have|like|love|enjoy|hate|was born|grew up|teach|play|speak)\b"
    r"|my (?:name|job|wife|husband|son|daughter|kids|children|dog|cat|favou?rite|hobby|work|home|city|age)\b"
    r"|(?:меня зовут|я работаю|я живу|я из\b|я родил|я учусь|я учу|я преподаю|я люблю|я обожаю|я ненавижу"
    r"|я играю|я говорю|я по профессии|мне \d+|у меня (?:есть|двое|трое|сын|дочь|собака|кошка|муж|жена)"
    r"|мо(?:й|я|и|ё|е) (?:работа|профессия|муж|жена|сын|дочь|дети|собака|кот|кошка|хобби|любим|город|имя)))"
    r"|^(?:я|Я)\s+[а-яё-]+[.!]?$"
    r"|(?:^|,\s*)я\s+(?:[а-яё]+(?:ница|ник|тель|тельница|ист|истка|ер|ёр|ор|ач|ар|арь|ый|ой|ка))\b",
    re.IGNORECASE)
_QUESTION = re.compile(r"\?\s*$")
_PLEASANTRY = re.compile(r"^(?:I'm|I am|I feel|Я|У меня)\s+"
                         r"(?:(?:all|very|so|really|just|тоже|всё|все|очень|вполне)\s+)?(?:fine|ok|okay|good|great|well|alright|хорошо|нормально|отлично|в порядке)\b",
                         re.IGNORECASE)
MAX_FACT_CHARS = 120


@dataclass(frozen=True)
class Fact:
    kind: str  # "name" or "said"
    text: str  # the name, or the person's own sentence

    def render(self, language: str | None = "en", feminine: bool | None = None) -> str:
        """The fact told about the person in the third person (never in their first-person words, which a small
        model takes as its own)."""
        if language == "ru":
            if self.kind == "name":
                return f"Собеседника зовут {self.text}."
            return f"Собеседник сказал о себе: «{_lower_pronoun(third_person(self.text, feminine))}»"
        if self.kind == "name":
            return f"The person's name is {self.text}."
        return f"The person said about themselves: {_lower_pronoun(third_person(self.text))}"

    @property
    def topics(self) -> frozenset[str]:
        """What the fact is about: "name", "job", "city", "plans", "pet" (see ``fact_topics``)."""
        return frozenset({"name"}) if self.kind == "name" else fact_topics(self.text)


def _lower_pronoun(text: str) -> str:
    first = text.split(" ", 1)[0]
    if first in ("They", "They're", "Their", "Он", "Она", "Его", "Её", "Ему", "Ей"):
        return first.lower() + text[len(first):]
    return text


# What a first-person statement is about (several may apply), and what a question about the person asks for.
_FACT_TOPICS = {
    "job": re.compile(
        r"\bI (?:work|repair|fix|teach|build|drive|write|design|sell|cook|study|program|code|make|run|own|manage"
        r"|nurse|paint|treat)\b|\bI(?:'m| am) (?:an? |the )?(?!(?:from|in|at|going|flying|moving|off|here|"
        r"fine|good|ok|okay|so|very|tired|happy|sad|bored|glad|back|sorry|not|\d)\b)[a-z-]*(?:er|or|ist|ian|ant|ent|"
        r"ot|ief|ect|man|woman|nurse|cook|chef|student|teacher|doctor|vet|coach|judge)\b|\bmy (?:job|work|"
        r"profession|major|shop|business|company)\b|\bI(?:'m| am) (?:studying|working|retired|self-employed)\b"
        r"|\bfor a living\b|\bработаю\b|\bучусь\b|\bпреподаю\b|\bпо профессии\b|\bмо(?:я|ей) (?:работ|професси)"
        r"|\bстудент|\bзанимаюсь\b|\bя (?:\w+ )?(?:чиню|ремонтирую|строю|вожу|пеку|шью|рисую|пишу|продаю|готовлю"
        r"|программирую|преподаю|лечу (?!в\b|на\b|во\b|к\b|домой))", re.IGNORECASE),
    "city": re.compile(r"\bI live\b|\bI(?:'m| am) from\b|\bI come from\b|\bI grew up\b|\bI was born\b"
                       r"|\bmy (?:city|town|hometown|home town|country)\b|\bживу\b|\bя из\b|\bродом\b"
                       r"|\bмо(?:й|ём|ем) город|\bвырос|\bродил(?:ся|ась)\b", re.IGNORECASE),
    "plans": re.compile(r"\bnext (?:week|month|year|weekend|summer|winter|spring|autumn)\b|\btomorrow\b|\bsoon\b"
                        r"|\bI(?:'m| am) (?:going|flying|travell?ing|moving|planning|leaving|getting)\b|\bI will\b"
                        r"|\bI'll\b|\bI plan\b|\bI want to\b|\bна следующей неделе\b|\bзавтра\b|\bскоро\b"
                        r"|\bсобираюсь\b|\bпланирую\b|\bхочу\b|\bлечу\b|\bеду\b|\bпоеду\b|\bполечу\b"
                        r"|\bв (?:следующ|этом|этот)\w* (?:году|месяце|выходные|отпуск)|\bв отпуск\b",
                        re.IGNORECASE),
    "pet": re.compile(r"\b(?:dog|cat|puppy|kitten|parrot|hamster|rabbit|pet|fish|horse)s?\b|\bсобак|\bпс[аеу]\b"
                      r"|\bщен|\bкош(?:к|еч)|\bкот(?:а|у|ом|ик|ёнок|енок)?\b|\bпопуга|\bхомяк|\bпитом|\bкролик",
                      re.IGNORECASE),
}
_ASKS_TOPIC = {
    "name": re.compile(r"\bmy name\b|\bwho am i\b|\bwhat(?:'s| is) my (?:first )?name\b|\bwhat am i called\b"
                       r"|\bменя зовут\b|\bзовут меня\b|\bменя как зовут\b|\bмо[её] имя\b|\bкто я\b|\bкак меня\b",
                       re.IGNORECASE),
    "job": re.compile(r"\bwhat do i do(?: for (?:a )?(?:living|work))?\s*(?:\?|$|,|\band\b)|\bfor a living\b"
                      r"|\bmy (?:job|work|profession|major|occupation)\b"
                      r"|\bwhere do i (?:work|study)\b|\bwhat am i (?:studying|learning)\b|\bwhat do i (?:study|"
                      r"teach|repair|fix|make)\b|\bwhat (?:is|'s) my (?:job|profession)\b|\bкем я\b|\bчем я (?:занима|"
                      r"зарабатыва)|\bна кого я\b|\bгде я (?:работаю|учусь)\b|\bчто я (?:изучаю|чиню|делаю по)\b"
                      r"|\bмо(?:я|ю|ей) (?:работ|професси)|\bпрофесси|\bкем работаю\b", re.IGNORECASE),
    "city": re.compile(r"\bwhere do i live\b|\bwhere i live\b|\bwhere am i from\b|\bwhere i'm from\b"
                       r"|\bwhere do i come from\b|\bmy (?:city|town|hometown|country)\b|\bгде я живу\b"
                       r"|\bоткуда я\b|\bмо(?:й|ём|ем) город|\bв каком городе я\b|\bгде я жив", re.IGNORECASE),
    "plans": re.compile(r"\bwhere am i (?:going|flying|travell?ing|moving)\b|\bwhat am i (?:doing|going to do) "
                        r"(?:next|tomorrow|this|on)\b|\bmy plans?\b|\bwhat are my plans\b|\bwhere (?:will|shall) i\b"
                        r"|\bкуда я\b|\bмои планы\b|\bчто я (?:собираюсь|планирую|буду делать)\b", re.IGNORECASE),
    "pet": re.compile(r"\bmy (?:dog|cat|pet|puppy|kitten|parrot|hamster)s?\b|\bмо(?:я|ю|ей|его|й) (?:собак|кош|кот|"
                      r"питом|пёс|пес|попуга)|\bкак зовут мо", re.IGNORECASE),
}


def fact_topics(sentence: str) -> frozenset[str]:
    """The topics of one of the person's statements: "I repair bicycles" -> job; "я живу в Казани" -> city;
    "Next week I'm flying to Japan" -> plans; "у меня есть собака" -> pet (empty: something else)."""
    found = {topic for topic, pattern in _FACT_TOPICS.items() if pattern.search(sentence)}
    if "job" not in found and _russian_profession(sentence):
        found.add("job")
    if extract_name(sentence):
        found.add("name")
    return frozenset(found)


def _russian_profession(sentence: str) -> bool:
    """"я пилот", "Я Виктор, пожарный", "я — учительница": an animate noun (not a name) said of "я", right after
    it or after the person's name."""
    from nodes.think.perspective import morph

    words = re.findall(r"[А-ЯЁа-яё-]+", sentence)
    for i, word in enumerate(words):
        if word.lower() != "я":
            continue
        for nxt in words[i + 1:i + 3]:
            if nxt in ("-", "—") or nxt[:1].isupper():
                continue  # a dash, or the person's name ("я Виктор, пожарный")
            if any(p.tag.POS == "NOUN" and p.tag.animacy == "anim" and p.tag.case == "nomn" and
                   p.tag.number == "sing" and not {"Name", "Surn", "Patr"} & set(str(p.tag).replace(" ", ",")
                                                                                  .split(","))
                   for p in morph().parse(nxt.lower())):  # "пожарный": an adjective first, a noun too
                return True
            break
    return False


# the things a "my ..." question may list ("my name and job?", "моё имя и работу?"), by topic
_MY_THINGS = (("name", r"name|имя|имени"), ("job", r"job|work|profession|occupation|major|работ\w*|професси\w*"),
              ("city", r"city|town|hometown|home|country|город\w*|стран\w*"),
              ("pet", r"dog|cat|pet|puppy|kitten|собак\w*|кошк\w*|кот\w*|питом\w*|пс\w*"),
              ("plans", r"plans?|trip|планы?|поездк\w*"))
_MY_LIST = re.compile(r"\b(?:my|мо[йяеёию]|моего|моей)\s+(\w+(?:'s)?(?:\s*(?:,|and|or|и|или)\s*(?:my\s+|мо\w+\s+)?\w+)*)",
                      re.IGNORECASE)


def asked_topics(question: str) -> frozenset[str]:
    """What a question about the person asks for: "What is my name?" -> name; "what do I do for a living?" -> job;
    "напомни, где я живу?" -> city; several for "who am I and what do I do?" or "my name and job?"; empty when it
    does not say."""
    found = {topic for topic, pattern in _ASKS_TOPIC.items() if pattern.search(question)}
    for listed in _MY_LIST.finditer(question):
        for word in re.split(r"\s*(?:,|\band\b|\bor\b|\bи\b|\bили\b)\s*", listed.group(1).lower()):
            word = re.sub(r"^(?:my|мо\w+)\s+", "", word).removesuffix("'s")
            if listed.group(1).lower().startswith(word + "'s"):
                continue  # "my dog's name": the dog's, not the person's name; the dog is the topic
            found.update(topic for topic, names in _MY_THINGS if re.fullmatch(names, word))
    return frozenset(found)


@dataclass(frozen=True)
class Answer:
    """What she knows that answers a question the person asks about themselves, said to them in the second
    person ("Your name is Oliver.", "Ты чинишь велосипеды.")."""
    lines: tuple[str, ...]  # the facts asked for, or (``known`` False) everything the person said about themselves
    known: bool  # every fact asked for is among ``lines``

    @property
    def text(self) -> str:
        return " ".join(self.lines)


def recall_opening(answer: Answer) -> str:
    """The first words of a known answer, for the model to go on from: "Your name is" / "Тебя зовут" (the name is
    the model's to say), else up to the first word that speaks to the person and one more ("You repair",
    "На следующей неделе ты летишь"), so the model cannot turn it into her own sentence."""
    first = answer.lines[0]
    for opening in ("Your name is", "Тебя зовут"):
        if first.startswith(opening + " "):
            return opening
    words = first.split()
    for i, word in enumerate(words[:6]):
        if re.sub(r"[^\w']", "", word).lower() in _YOU_WORDS:
            return " ".join(words[:min(i + 2, len(words) - 1)])
    return " ".join(words[:2])


_YOU_WORDS = frozenset("you you're your ты тебя тебе твой твоя твоё твое твои".split())


def answer_from_facts(facts: list[Fact], topics: frozenset[str], language: str | None) -> Answer:
    """The known facts a question about ``topics`` asks for, in the second person (the name in ``language``'s
    words, a statement in the words it was made in). With no topic, every fact is given; when a non-name topic has
    no fact of its own (or the extraction did not recognise it), the person's other statements are given with
    ``known`` False, so the reply can use them or say it does not know."""
    name = next((f.text for f in facts if f.kind == "name"), None)
    said = [f for f in facts if f.kind != "name"]
    out: list[str] = []
    known = True
    if "name" in topics or not topics:
        if name:
            out.append(f"Тебя зовут {name}." if language == "ru" else f"Your name is {name}.")
        elif "name" in topics:
            known = False
    rest = topics - {"name"}
    if rest or not topics:
        matching = [f for f in said if f.topics & rest]
        if rest and not matching:
            known = False
        lines = [line for line in (_without_name_clause(f.text, name) for f in (matching or said)) if line]
        if not lines and rest:
            known = False
        for line in lines[-3:]:
            line = second_person(line)
            out.append(line if line.endswith((".", "!", "…")) else line + ".")
    return Answer(tuple(out), known and bool(out) and bool(topics))  # "do you remember me?": not one fact


_PLAIN_WORDS = frozenset("""
about after again also always because before being between could every going from have here just like
little maybe never next other people really should since some still than that their there these they things think
this those today tomorrow very week weekend what when where which while with work works working would year years
study studying student live lives living flying travel going want plan
когда который которая потому очень просто сейчас сегодня завтра всегда неделе следующей работаю работать живу
учусь учиться хочу буду теперь тоже""".split())


_JOB_WORDS = frozenset("vet cop chef cook dj poet nun maid".split())
_SHORT_WORDS = frozenset("""
the and but for with from have has had was were are you your our out not all any can one two who how why what
call called named name his her him she they them this that then there here when next week year work live
как это что так там тут его она они нас вас мне мой моя мою моё мое меня зовут есть или как уже ещё еще
""".split())


def fact_stems(facts: list[Fact], topics: frozenset[str] = frozenset({"job", "city", "pet"})) -> tuple[str, ...]:
    """Stems of the telling words of the person's statements about ``topics`` ("I repair bicycles" -> "bicycles";
    "я живу в Казани" -> "казан"; with ``topics`` {"plans"}: "Next week I'm flying to Japan" -> "japan"): a reply
    that says one of them about herself takes the person's fact as hers."""
    from nodes.think.perspective import morph

    name = next((f.text for f in facts if f.kind == "name"), None)
    out: list[str] = []
    for fact in facts:
        if fact.kind == "name" or not fact.topics & topics:
            continue
        for word in re.findall(r"[A-Za-zА-ЯЁа-яё-]{2,}", _without_name_clause(fact.text, name)):
            low = word.lower()
            if low in _PLAIN_WORDS or low in _SHORT_WORDS or (name and low == name.lower()):
                continue
            if "job" not in fact.topics & topics and not word[:1].isupper():
                continue  # a city, a pet, a plan: its name ("Leeds", "Рекс", "Japan"); "I love my dog" is hers too
            if len(low) < 5 and not word[:1].isupper() and low not in _JOB_WORDS:
                continue
            if re.search(r"[а-яё]", low):
                parse = morph().parse(low)[0]
                if parse.tag.POS not in ("NOUN", "ADJF"):
                    continue
                low = parse.normal_form
                low = low[:-1] if len(low) > 5 else low
            elif low.endswith("s") and len(low) > 5:
                low = low[:-1]
            if low not in out:
                out.append(low)
    return tuple(out)


def _without_name_clause(text: str, name: str | None) -> str:
    """The statement without the part that gives the name (told on its own): "Hi, my name is Oliver and I repair
    bicycles." -> "I repair bicycles."; "Я Света, работаю медсестрой." -> "я работаю медсестрой."; "" when the
    statement only gives the name."""
    text = without_greeting(text.strip())
    if not name:
        return text
    n = re.escape(name)
    subject = re.match(rf"^(I'm|I am|я)\s+(?:[—–-]\s+)?{n}\b[\s,.!;—–-]*(?:and\s+|и\s+|а\s+)?", text, re.IGNORECASE)
    other = re.match(rf"^(?:my name is|my name's|call me|меня зовут|зови(?:те)? меня|мо[её] имя)\s+(?:[—–-]\s+)?"
                     rf"{n}\b[\s,.!;—–-]*(?:and\s+|и\s+|а\s+)?", text, re.IGNORECASE)
    found = subject or other
    if found is None:
        return text
    rest = text[found.end():].strip()
    if not rest.strip(" .,!"):
        return ""
    if subject is not None and not re.match(r"(?i)(?:I\b|I'|я\b|мне\b|у меня\b)", rest):
        rest = f"{subject.group(1)} {rest}"  # "I'm Tom, a pilot" -> "I'm a pilot"; "я Света, работаю" -> "я работаю"
    return rest[:1].upper() + rest[1:]


# A name a speech recogniser wrote in lower case ("меня зовут жора", "my name is anna"): accepted only after an
# explicit naming phrase (or, in Russian, a bare "я" when the word's likeliest reading is a first name), and only
# when the word is a first name (Russian: pymorphy3's 'Name' grammeme) or not a common English word.
_END = r"(?=\s*(?:[,.!?;:—–]|$|\s(?:and|but|i|i'm|from|и|а|я)\b))"
_LOWER_NAME_EN = re.compile(r"\b(?i:my name is|my name's|call me)\s+([a-z][a-z'-]*[a-z])" + _END)
_LOWER_NAME_RU_EXPLICIT = (
    re.compile(r"(?i:меня зовут|зовут меня|зови(?:те)? меня|мо[её] имя)\s+(?:[—–-]\s*)?([а-яё][а-яё-]*[а-яё])(?![а-яё-])"),
    re.compile(r"(?i:меня)\s+([а-яё][а-яё-]*[а-яё])\s+(?i:зовут)\b"),
)
_LOWER_NAME_RU_BARE = re.compile(r"(?:^|[.!?,]\s*)(?:Я|я)\s+(?:[—–-]\s+)?([а-яё][а-яё-]*[а-яё])" + _END)
# common English words that may follow "my name is" / "call me" and are not names ("my name is not important",
# "call me back", "call me crazy"); a recogniser writes a name in lower case, but not these
_COMMON_EN = frozenset("""
a an the not no nobody nothing none never just only also really very so too what whatever who whoever which that
this it its is was be been being are am do does did done have has had will would can could should may might must
here there now then later soon back again anytime anything everything something someone somebody anyone anybody
sometime sometimes maybe perhaps please thanks thank sorry okay ok yes yeah well fine good great bad nice cool
important unimportant secret private unknown irrelevant long short hard easy difficult simple funny weird strange
crazy silly stupid boring common unusual different same old new complicated confusing pretty beautiful ugly
mister mr mrs ms miss sir madam doctor dr professor teacher friend buddy honey dear baby babe boss captain chief
tomorrow today tonight yesterday morning evening night when whenever if because before after until unless
on in at to of for with by from about into over under up down out off away home there everyone everybody
and or but i you he she we they me him her us them my your his our their mine yours
""".split())


def _capitalised(word: str) -> str:
    return "-".join(part[:1].upper() + part[1:] for part in word.split("-"))


def _russian_first_name(word: str, likeliest: bool) -> bool:
    """pymorphy3 knows ``word`` as a first name in the nominative ("жора", "анна", "вера" after "меня зовут");
    ``likeliest``: only when that is its most likely reading ("я жора", but not "я рада")."""
    from nodes.think.perspective import morph

    parses = morph().parse(word.lower())
    if likeliest:
        parses = parses[:1]
    return any("Name" in p.tag and p.tag.case == "nomn" for p in parses)


def _lower_case_name(text: str) -> str | None:
    for pattern in _LOWER_NAME_RU_EXPLICIT:
        m = pattern.search(text)
        if m and _russian_first_name(m.group(1), likeliest=False):
            return _capitalised(m.group(1))
    m = _LOWER_NAME_RU_BARE.search(text)
    if m and _russian_first_name(m.group(1), likeliest=True):
        return _capitalised(m.group(1))
    m = _LOWER_NAME_EN.search(text)
    if m and m.group(1) not in _COMMON_EN and m.group(1).lower() not in _NOT_NAMES:
        return _capitalised(m.group(1))
    return None


def extract_name(text: str) -> str | None:
    """The name the person gives for themselves ("Hi, I'm Oliver", "меня зовут Лена"), capitalised; a lower-case
    name from a transcript counts after an explicit naming phrase ("меня зовут жора" -> "Жора")."""
    for pattern in _NAME_PATTERNS:
        m = pattern.search(text)
        if m and m.group(1).lower() not in _NOT_NAMES:
            return m.group(1)
    return _lower_case_name(text)


def extract_facts(text: str) -> list[Fact]:
    """Facts in one user turn, in order."""
    facts: list[Fact] = []
    name = extract_name(text)
    if name:
        facts.append(Fact("name", name))
    for sentence in split_sentences(text):
        if _QUESTION.search(sentence) or _PLEASANTRY.match(sentence) or \
                not (_SELF_STATEMENT.search(sentence) or fact_topics(sentence) - {"name"}):
            continue
        if len(sentence) > MAX_FACT_CHARS:
            sentence = sentence[:MAX_FACT_CHARS].rsplit(" ", 1)[0] + "…"
        facts.append(Fact("said", sentence))
    return facts


def merge_facts(older: list[Fact], newer: list[Fact], limit: int = 12) -> list[Fact]:
    """Newer facts win: one name (the latest), quotations deduplicated, at most ``limit`` kept (newest)."""
    merged: list[Fact] = []
    for fact in older + newer:
        if fact.kind == "name":
            merged = [f for f in merged if f.kind != "name"]
        elif any(f.kind == fact.kind and f.text.lower() == fact.text.lower() for f in merged):
            continue
        merged.append(fact)
    names = [f for f in merged if f.kind == "name"]
    said = [f for f in merged if f.kind != "name"]
    return names + said[-max(0, limit - len(names)):]
