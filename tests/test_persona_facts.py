"""What she remembers about the person and how she says it back: facts pulled out of the person's turns, what a
question about themselves asks for, the person's words in the second and third person (pymorphy3 conjugates the
Russian verbs), the closing note that carries the answer, and the guard's last resort on such a question."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.queue.sqlite_store import Store
from nodes.think.facts import Fact, answer_from_facts, asked_topics, extract_facts, extract_name, fact_topics, \
    merge_facts
from nodes.think.memory import DialogMemory
from nodes.think.persona import load_persona
from nodes.think.perspective import name_is_feminine, second_person, third_person
from nodes.think.prompt import build_prompt, closing_instruction
from tests.test_persona_guard import ScriptedBackend, talk


def remembered(*turns: str) -> list[Fact]:
    facts: list[Fact] = []
    for turn in turns:
        facts = merge_facts(facts, extract_facts(turn))
    return facts


@pytest.mark.parametrize("text, name", [
    ("I'm Oliver", "Oliver"), ("call me Oli", "Oli"), ("Меня Олег зовут.", "Олег"), ("я — Маша", "Маша"),
    ("Зовут меня Ира.", "Ира"), ("Hello, my name's Kate and I bake bread.", "Kate"), ("I live in Leeds.", None),
    ("я работаю врачом", None),
])
def test_names_in_other_phrasings(text: str, name: str | None) -> None:
    assert extract_name(text) == name


@pytest.mark.parametrize("text, topic", [
    ("I live in Leeds", "city"), ("я работаю врачом", "job"), ("I'm an engineer.", "job"),
    ("Я бухгалтер.", "job"), ("Я из Самары.", "city"), ("Tomorrow I'm driving to Wales.", "plans"),
    ("На выходных я еду на дачу, а завтра полечу в Сочи.", "plans"), ("I have a cat called Mia.", "pet"),
    ("У меня есть собака.", "pet"), ("I fix old radios.", "job"),
])
def test_statements_are_kept_with_their_topic(text: str, topic: str) -> None:
    said = [f for f in extract_facts(text) if f.kind == "said"]
    assert said and topic in said[0].topics


def test_pleasantries_and_feelings_are_not_facts() -> None:
    assert extract_facts("I'm tired today.") == []
    assert fact_topics("Я сегодня очень рада.") == frozenset()


@pytest.mark.parametrize("question, topics", [
    ("what do I do for a living?", {"job"}), ("напомни, где я живу?", {"city"}), ("What am I called?", {"name"}),
    ("Who am I, and where am I from?", {"name", "city"}), ("Чем я занимаюсь?", {"job"}),
    ("Куда я собиралась поехать?", {"plans"}), ("What's my dog's name?", {"pet"}), ("Do you remember me?", set()),
    ("Do you remember my city and my job?", {"city", "job"}), ("Ты помнишь моё имя и профессию?", {"name", "job"}),
    ("And my name?", {"name"}),
])
def test_what_a_question_about_the_person_asks_for(question: str, topics: set[str]) -> None:
    from nodes.think.prompt import asked_about

    assert asked_topics(question) == topics
    assert asked_about(question) == "self"


@pytest.mark.parametrize("text, you", [
    ("I live in Leeds.", "You live in Leeds."),
    ("I'm a vet and my clinic is small.", "You're a vet and your clinic is small."),
    ("Hi, I was born in Oslo.", "You were born in Oslo."),
    ("я работаю врачом", "Ты работаешь врачом"), ("Я учусь на юриста.", "Ты учишься на юриста."),
    ("Завтра я лечу в Рим к моей сестре.", "Завтра ты летишь в Рим к твоей сестре."),
    ("У меня есть кот.", "У тебя есть кот."), ("Я живу в Перми.", "Ты живёшь в Перми."),
])
def test_second_person(text: str, you: str) -> None:
    assert second_person(text) == you


def test_third_person_conjugates_and_takes_the_gender() -> None:
    assert third_person("I live in Leeds.") == "They live in Leeds."
    assert third_person("я работаю врачом") == "он работает врачом"
    assert third_person("У меня есть кот.", feminine=True) == "У неё есть кот."
    assert third_person("Я студентка, учусь на физика.") == "Она студентка, учится на физика."
    assert name_is_feminine("Маша") is True and name_is_feminine("Олег") is False and name_is_feminine("Tom") is None


def test_the_answer_to_a_question_about_the_person() -> None:
    facts = remembered("Hey, I'm Kate. I live in Leeds and I work as a baker.", "Tell me a joke.")
    answer = answer_from_facts(facts, asked_topics("What's my name?"), "en")
    assert answer.known and answer.lines == ("Your name is Kate.",)
    answer = answer_from_facts(facts, asked_topics("Where do I live?"), "en")
    assert answer.known and answer.text == "You live in Leeds and you work as a baker."
    facts = remembered("Меня Олег зовут. Я работаю врачом.")
    assert answer_from_facts(facts, asked_topics("Кем я работаю?"), "ru").text == "Ты работаешь врачом."
    assert answer_from_facts(facts, asked_topics("Как меня зовут?"), "ru").text == "Тебя зовут Олег."
    assert answer_from_facts(facts, asked_topics("What's my name?"), "en").text == "Your name is Олег."
    # not told: nothing to say, or (an unrecognised topic) the statements she has, marked not known
    assert not answer_from_facts(remembered("Hello!"), asked_topics("What's my name?"), "en").known
    maybe = answer_from_facts(remembered("I love jazz."), asked_topics("Where do I live?"), "en")
    assert not maybe.known and maybe.lines == ("You love jazz.",)


def test_the_closing_note_of_a_question_about_the_person_carries_the_answer() -> None:
    alisa = load_persona("alisa")
    facts = remembered("I'm Kate, I live in Leeds.")
    note = closing_instruction(alisa, "Where do I live?", facts)
    assert "THEMSELVES" in note and '"You live in Leeds."' in note
    note = closing_instruction(alisa, "Напомни, как меня зовут?", remembered("Я — Маша."))
    assert "«Тебя зовут Маша.»" in note
    note = closing_instruction(alisa, "What's my name?", [])
    assert "don't know yet" in note and "Your name" not in note
    assert "Kate" not in closing_instruction(alisa, "Do you like jazz?", facts)  # only on questions about them


def test_the_prompt_of_a_recall_turn_knows_the_answer(tmp_path: Path) -> None:
    alisa = load_persona("alisa")
    with Store(tmp_path / "m.sqlite") as store:
        memory = DialogMemory(store, "s")
        memory.add("user", "Hi! Call me Oli. I teach maths.")
        memory.add("assistant", "Nice to meet you, Oli!")
        prompt = build_prompt(alisa, "What do I do for a living?", memory, budget=4096)
    assert prompt.recall is not None and prompt.recall.known and prompt.recall.text == "You teach maths."
    assert prompt.messages[-1]["content"] == prompt.note and "You teach maths." in prompt.note


async def test_a_first_person_answer_is_retried_with_the_answer_form(tmp_path: Path) -> None:
    with Store(tmp_path / "m.sqlite") as store:
        memory = DialogMemory(store, "s")
        memory.add("user", "I'm Oliver, I repair bicycles.")
        memory.add("assistant", "Nice to meet you, Oliver!")
        backend = ScriptedBackend(["I repair bicycles.", "You repair bicycles, Oliver!"])
        conversation = talk(backend, memory)
        said, _ = await conversation.reply_text("What do I do for a living?", turn_id=3)
    assert said == "You repair bicycles, Oliver!"
    assert "You repair bicycles." in backend.prompts[1][-1]["content"]  # the retry was shown how to answer
    report = conversation.last_guard
    assert report is not None and report.retries == 1 and not report.templated and not report.fallback


async def test_when_every_try_fails_a_known_answer_is_said_not_the_fallback_line(tmp_path: Path) -> None:
    with Store(tmp_path / "m.sqlite") as store:
        memory = DialogMemory(store, "s")
        memory.add("user", "Меня Олег зовут.")
        memory.add("assistant", "Привет, Олег!")
        backend = ScriptedBackend(["Меня зовут Олег."] * 3)
        conversation = talk(backend, memory)
        said, _ = await conversation.reply_text("Как меня зовут?", turn_id=3)
        assert said == "Тебя зовут Олег."
        report = conversation.last_guard
        assert report is not None and report.templated and not report.fallback and report.retries == 2
        # an unknown answer still gets the fallback line
        backend.replies = ["Я работаю врачом."] * 3
        said, _ = await conversation.reply_text("Кем я работаю?", turn_id=5)
    assert said == load_persona("alisa").fallback_in("ru")
    assert conversation.last_guard is not None and conversation.last_guard.fallback


async def test_a_filler_opening_is_regenerated() -> None:
    backend = ScriptedBackend(["Sure! Here is my advice: drink tea.", "Make some tea and read a good book."])
    conversation = talk(backend)
    said, _ = await conversation.reply_text("Any advice for a rainy evening?", turn_id=1)
    assert said == "Make some tea and read a good book."
    assert "Sure" in backend.prompts[1][-1]["content"] and conversation.last_guard.retries == 1


async def test_a_fact_of_the_person_taken_as_hers_is_regenerated(tmp_path: Path) -> None:
    with Store(tmp_path / "m.sqlite") as store:
        memory = DialogMemory(store, "s")
        memory.add("user", "Я Денис, я живу в Казани.")
        memory.add("assistant", "Привет, Денис!")
        backend = ScriptedBackend(["Я тоже живу в Казани!", "Казань — красивый город, я там никогда не была."])
        conversation = talk(backend, memory)
        said, _ = await conversation.reply_text("Ты слышала про мой город?", turn_id=3)
    assert said.startswith("Казань — красивый город")
    assert conversation.last_guard is not None and "казан" in conversation.last_guard.reasons[0]


def test_the_opening_of_a_known_answer() -> None:
    from nodes.think.facts import Answer, recall_opening

    assert recall_opening(Answer(("Your name is Kate.", "You live in Leeds."), True)) == "Your name is"
    assert recall_opening(Answer(("Тебя зовут Олег.",), True)) == "Тебя зовут"
    assert recall_opening(Answer(("Ты живёшь в Казани.",), True)) == "Ты живёшь"
    # up to the word that speaks to the person: the model cannot make it her own sentence ("я лечу в Японию")
    assert recall_opening(Answer(("На следующей неделе ты летишь в Японию.",), True)) == \
        "На следующей неделе ты летишь"
    assert recall_opening(Answer(("У тебя есть собака Рекс.",), True)) == "У тебя есть"


class _Continuing(ScriptedBackend):
    """A backend that continues a reply from a given opening (as llama.cpp does): records the opening."""

    continues_reply = True

    def __init__(self, replies: list[str]):
        super().__init__(replies)
        self.prefixes: list[str | None] = []

    async def stream_chat(self, messages, *, prefix=None, **kwargs):  # type: ignore[override]
        self.prefixes.append(prefix)
        first = True
        async for piece in super().stream_chat(messages, **kwargs):
            yield f"{prefix} {piece}" if (first and prefix) else piece
            first = False


async def test_a_continuing_backend_gets_the_opening_and_the_others_do_not(tmp_path: Path) -> None:
    with Store(tmp_path / "m.sqlite") as store:
        memory = DialogMemory(store, "s")
        memory.add("user", "Hi! I'm Kate.")
        memory.add("assistant", "Hi Kate!")
        continuing = _Continuing(["Kate.", "I love jazz."])
        conversation = talk(continuing, memory)
        await conversation.reply_text("What's my name?", turn_id=3)
        await conversation.reply_text("Do you like jazz?", turn_id=5)
        plain = ScriptedBackend(["Your name is Kate."])  # no ``prefix`` parameter: never passed one
        said, _ = await talk(plain, memory).reply_text("What's my name?", turn_id=7)
    assert continuing.prefixes == ["Your name is", None]
    assert conversation.last_prompt is not None
    assert said == "Your name is Kate."


async def test_asked_her_name_the_persons_name_is_rejected_from_the_first_clause(tmp_path: Path) -> None:
    with Store(tmp_path / "m.sqlite") as store:
        memory = DialogMemory(store, "s")
        memory.add("user", "Здравствуй! Я Света, работаю медсестрой.")
        memory.add("assistant", "Привет, Света!")
        backend = ScriptedBackend(["Света — это медсестра, которая работает в больнице.", "Я Алиса, очень приятно!"])
        conversation = talk(backend, memory)
        said, _ = await conversation.reply_text("Как тебя зовут?", turn_id=3)
    assert said == "Я Алиса, очень приятно!"
    assert "what is your name" in conversation.last_guard.reasons[0]


async def test_a_filler_opening_gets_one_retry_and_is_then_spoken_not_the_fallback_line() -> None:
    backend = ScriptedBackend(["Sure! Here are the steps: warm up first.", "Certainly! Start slowly, twice a week.",
                               "never asked for"])
    conversation = talk(backend)
    said, _ = await conversation.reply_text("How do I start running?", turn_id=1)
    assert said == "Start slowly, twice a week."  # the lone "Certainly!" before a whole sentence is left unsaid
    report = conversation.last_guard
    assert report is not None and report.retries == 1 and not report.fallback and len(backend.prompts) == 2


async def test_a_short_elliptical_question_about_the_person_is_answered_from_memory(tmp_path: Path) -> None:
    with Store(tmp_path / "m.sqlite") as store:
        memory = DialogMemory(store, "s")
        memory.add("user", "Hi! Call me Lily. I study chemistry.")
        memory.add("assistant", "Hi Lily!")
        backend = ScriptedBackend(["I study chemistry.", "I study chemistry.", "I study chemistry."])
        conversation = talk(backend, memory)
        said, _ = await conversation.reply_text("And my name?", turn_id=3)
    assert "Your name is Lily." in backend.prompts[0][-1]["content"]  # the note knew the answer
    assert said == "Your name is Lily." and conversation.last_guard.templated  # a first-person claim never spoken


@pytest.mark.parametrize("text, name", [
    ("меня зовут жора", "Жора"), ("Привет. Я жора. Работаю таксистом.", "Жора"), ("меня саша зовут", "Саша"),
    ("зовут меня ирина, я врач", "Ирина"), ("моё имя — надежда", "Надежда"), ("зови меня костя", "Костя"),
    ("меня зовут вера.", "Вера"),  # "вера" is a common noun too: after "меня зовут" it is a name
    ("my name is anna", "Anna"), ("hi, my name is oliver and i repair bicycles", "Oliver"),
    ("call me mary-jane.", "Mary-Jane"), ("my name's priya, nice to meet you", "Priya"),
])
def test_a_lower_case_name_from_a_transcript_is_taken_after_a_naming_phrase(text: str, name: str) -> None:
    assert extract_name(text) == name


@pytest.mark.parametrize("text", [
    "my name is not important", "Меня зовут друзья.", "call me back later", "call me crazy, but I like it",
    "my name is hard to pronounce", "я рада.", "я устала, привет", "я вера в лучшее", "call me maybe",
])
def test_a_lower_case_word_that_is_not_a_name_is_not_taken(text: str) -> None:
    assert extract_name(text) is None


def test_a_plan_gives_the_stems_of_its_place() -> None:
    from nodes.think.facts import fact_stems

    for text, stem in (("Меня зовут Лена. На следующей неделе я лечу в Японию.", "япони"),
                       ("Hi, I'm Helen. Next week I'm flying to Japan!", "japan"),
                       ("Tomorrow I'm driving to Wales.", "wales")):
        facts = remembered(text)
        assert stem in fact_stems(facts, frozenset({"plans"}))
        assert stem not in fact_stems(facts)  # job / city / pet only
