"""Sentence splitting, emotion labels, language detection, fact extraction, token estimates (no model)."""

from __future__ import annotations

import pytest

from nodes.think.emotion import label_emotion
from nodes.think.facts import Fact, extract_facts, extract_name, merge_facts
from nodes.common.text import detect_language
from nodes.common.text import SentenceSplitter, clean_for_speech, split_sentences
from nodes.think.tokens import estimate_tokens
from nodes.io.media import EMOTIONS


@pytest.mark.parametrize("text, expected", [
    ("Hello there. How are you? I'm fine!", ["Hello there.", "How are you?", "I'm fine!"]),
    ("I met Dr. Smith and Mrs. Jones today. They were nice.", ["I met Dr. Smith and Mrs. Jones today.",
                                                                "They were nice."]),
    ("Bring fruit, e.g. apples or pears. Thanks.", ["Bring fruit, e.g. apples or pears.", "Thanks."]),
    ("Pi is about 3.14 and e is 2.72. Nice numbers.", ["Pi is about 3.14 and e is 2.72.", "Nice numbers."]),
    ("J. K. Rowling wrote it. I loved it.", ["J. K. Rowling wrote it.", "I loved it."]),
    ("Wait... really?! Wow.", ["Wait... really?!", "Wow."]),
    ("Well... maybe. Sure.", ["Well... maybe.", "Sure."]),
    ('She said "Hi." Then left.', ['She said "Hi."', "Then left."]),
    ("I am 25. And you?", ["I am 25.", "And you?"]),
    ("Apples, pears etc. Fruit is good.", ["Apples, pears etc.", "Fruit is good."]),
    ("First line\nSecond line", ["First line", "Second line"]),
    ("No end punctuation", ["No end punctuation"]),
    ("Привет! Как дела? Я Алиса.", ["Привет!", "Как дела?", "Я Алиса."]),
    ("Это важно, т.е. очень важно. Понятно?", ["Это важно, т.е. очень важно.", "Понятно?"]),
    ("Я не пришла, т.к. болела. Извини.", ["Я не пришла, т.к. болела.", "Извини."]),
    ("А. С. Пушкин написал много стихов. Я их люблю.", ["А. С. Пушкин написал много стихов.", "Я их люблю."]),
    ("Это стоит 3.5 рубля. Дёшево!", ["Это стоит 3.5 рубля.", "Дёшево!"]),
    ("Яблоки, груши и т.д. Всё полезно.", ["Яблоки, груши и т.д.", "Всё полезно."]),
    ("Это было в 1999 г. в Москве. Давно.", ["Это было в 1999 г. в Москве.", "Давно."]),
    ("Ну… ладно. Пока!", ["Ну… ладно.", "Пока!"]),
    ("«Привет.» Она ушла.", ["«Привет.»", "Она ушла."]),
])
def test_split_sentences(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


@pytest.mark.parametrize("pieces", [
    ["Hel", "lo", " there", ".", " How", " are", " you", "?"],
    list("Hello there. How are you?"),
    ["Hello there. How are you?"],
])
def test_streamed_pieces_give_the_same_sentences(pieces: list[str]) -> None:
    splitter = SentenceSplitter()
    out: list[str] = []
    for piece in pieces:
        out += splitter.feed(piece)
    assert out == ["Hello there."]  # the last sentence waits: only flush knows it is complete
    assert splitter.flush() == ["How are you?"]


def test_a_sentence_end_waits_for_the_next_word() -> None:
    splitter = SentenceSplitter()
    assert splitter.feed("I met Dr.") == []
    assert splitter.feed(" ") == []
    assert splitter.feed("Smith. He") == ["I met Dr. Smith."]
    assert splitter.feed(" is 3.") == []
    assert splitter.feed("5 m tall.") == []
    assert splitter.flush() == ["He is 3.5 m tall."]


def test_trailing_newline_keeps_the_last_sentence_for_flush() -> None:
    splitter = SentenceSplitter()
    assert splitter.feed("One. Two.\n") == ["One."]
    assert splitter.flush() == ["Two."]


def test_first_sentence_may_be_cut_at_a_comma_after_60_chars() -> None:
    splitter = SentenceSplitter(first_comma_chars=60)
    text = ("Well, that is a really interesting question that I have thought about, and the answer is simple. "
            "Second sentence, with a comma that is far enough along to qualify for a cut, stays whole.")
    out = []
    for word in text.split(" "):
        out += splitter.feed(word + " ")
    out += splitter.flush()
    assert out[0] == "Well, that is a really interesting question that I have thought about,"
    assert out[1] == "and the answer is simple."
    assert out[2].startswith("Second sentence, with a comma") and out[2].endswith("stays whole.")
    assert len(out) == 3


def test_overlong_text_is_cut_at_a_space() -> None:
    text = "word " * 200
    out = split_sentences(text)
    assert all(len(s) <= 300 for s in out) and len(out) >= 3
    assert " ".join(out).split() == text.split()


def test_clean_for_speech_drops_markup_and_emoji() -> None:
    assert clean_for_speech("**Hi** there 😊 `code`") == "Hi there code"
    assert clean_for_speech("- first item") == "first item"


@pytest.mark.parametrize("sentence, emotion", [
    ("I'm so glad to see you!", "happy"),
    ("That's wonderful news.", "happy"),
    ("Unfortunately, I can't come.", "sad"),
    ("I'm sorry to hear that.", "sad"),
    ("Wow, really?!", "surprised"),
    ("No way, that's unbelievable!", "surprised"),
    ("I hate it when people lie.", "angry"),
    ("This is so annoying.", "angry"),
    ("The sky is blue.", "neutral"),
    ("I am not happy about it.", "sad"),
    ("Я так рада тебя видеть!", "happy"),
    ("Это просто замечательно.", "happy"),
    ("Мне очень жаль.", "sad"),
    ("К сожалению, я не смогу.", "sad"),
    ("Ого, неужели?", "surprised"),
    ("Меня это бесит.", "angry"),
    ("Небо голубое.", "neutral"),
    ("Привет!", "happy"),
])
def test_emotion_labels(sentence: str, emotion: str) -> None:
    assert label_emotion(sentence) == emotion
    assert emotion in EMOTIONS


@pytest.mark.parametrize("text, language", [
    ("Hello, how are you?", "en"), ("Привет, как дела?", "ru"), ("Привет! I'm Tom.", None), ("123 !", None),
    ("Меня зовут Tom.", "ru"),
])
def test_detect_language(text: str, language: str | None) -> None:
    assert detect_language(text) == language


@pytest.mark.parametrize("text, name", [
    ("Hi! My name is Tom, I'm a pilot.", "Tom"), ("call me Anna please", "Anna"), ("I'm Bob.", "Bob"),
    ("I'm fine, thanks.", None), ("Привет, меня зовут Оля.", "Оля"), ("Я Оля, учительница.", "Оля"),
    ("Моё имя — Пётр.", "Пётр"), ("Я учительница.", None), ("How are you?", None),
])
def test_extract_name(text: str, name: str | None) -> None:
    assert extract_name(text) == name


def test_extract_facts_keeps_self_statements_not_questions_or_pleasantries() -> None:
    facts = extract_facts("My name is Tom. I am a pilot. I'm fine. What is your name? The weather is nice.")
    assert facts == [Fact("name", "Tom"), Fact("said", "My name is Tom."), Fact("said", "I am a pilot.")]
    assert [f.text for f in extract_facts("Меня зовут Оля. Я живу в Казани. Как дела?")] == \
        ["Оля", "Меня зовут Оля.", "Я живу в Казани."]


def test_merge_facts_keeps_latest_name_and_limit() -> None:
    older = [Fact("name", "Tom"), Fact("said", "I am a pilot.")]
    newer = [Fact("name", "Tommy"), Fact("said", "I am a pilot."), *(Fact("said", f"I have {i} cats.") for i in
                                                                      range(20))]
    merged = merge_facts(older, newer, limit=5)
    assert merged[0] == Fact("name", "Tommy")
    assert len(merged) == 5 and merged[-1].text == "I have 19 cats."
    assert sum(f.kind == "name" for f in merged) == 1


def test_token_estimate_grows_with_text_and_counts_cyrillic_denser() -> None:
    assert estimate_tokens("") == 0
    en = estimate_tokens("hello world " * 10)
    assert 20 <= en <= 40
    assert estimate_tokens("привет мир " * 10) > en
