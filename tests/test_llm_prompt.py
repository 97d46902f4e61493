"""Persona files, the prompt builder and the dialog memory's token budget (real SQLite store, no model)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.queue.sqlite_store import Store
from nodes.think.memory import DialogMemory
from nodes.think.persona import Persona, PersonaError, load_persona, persona_ids
from nodes.think.prompt import (Prompt, PromptTooLong, about_person, asked_about, build_prompt, closing_instruction,
                                system_prompt)
from nodes.think.tokens import estimate_tokens, messages_tokens

def about_block(prompt: Prompt) -> tuple[int, str]:
    """Where the "about the person" block is in the prompt, and its text."""
    for index, message in enumerate(prompt.messages):
        if message["role"] == "system" and ("What you know about the person" in message["content"]
                                            or "Что ты знаешь о своём собеседнике" in message["content"]):
            return index, message["content"]
    raise AssertionError("no 'about the person' block in the prompt")


SCRIPT_EN = [
    ("user", "Hi! My name is Tom and I am a pilot."),
    ("assistant", "Nice to meet you, Tom! Flying sounds exciting. Where do you fly?"),
    ("user", "Mostly between London and Paris. Do you like travelling?"),
    ("assistant", "I love it, though I mostly travel through books. Paris must be beautiful from above."),
    ("user", "It is. The weather was terrible this week, though, lots of rain and fog."),
    ("assistant", "Oh no, fog must make landing tricky. I hope you stayed safe!"),
]


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "memory.sqlite") as s:
        yield s


def test_default_persona_loads_and_is_listed_first() -> None:
    alisa = load_persona("alisa")
    assert alisa.name == "Alisa" and alisa.name_in("ru") == "Алиса"
    assert persona_ids()[0] == "alisa"
    assert "language of the person's last message" in alisa.language_policy


def test_bad_persona_files_are_refused_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("name: [unclosed", encoding="utf-8")
    (tmp_path / "partial.yaml").write_text("name: Bob\n", encoding="utf-8")
    with pytest.raises(PersonaError, match="not valid YAML"):
        load_persona("broken", tmp_path)
    with pytest.raises(PersonaError, match="character"):
        load_persona("partial", tmp_path)
    with pytest.raises(PersonaError, match="no persona file"):
        load_persona("nobody", tmp_path)
    with pytest.raises(PersonaError, match="plain name"):
        load_persona("../etc/passwd", tmp_path)


def test_system_prompt_holds_identity_language_policy_and_user_facts_apart() -> None:
    from nodes.think.facts import Fact
    alisa = load_persona("alisa")
    text = system_prompt(alisa)
    assert text.startswith("You are Alisa")
    assert "Reply in the language of the person's last message" in text
    assert "Russian or English" not in text  # the phrasing that made the small model answer English in Russian
    about = about_person(alisa, [Fact("name", "Tom"), Fact("said", "I am a pilot.")])
    assert "The person you talk to (not you) is called Tom. You are Alisa, never Tom." in about
    assert "The person said about themselves: they are a pilot." in about  # third person: not her own words
    assert "Tom" not in text


def test_a_russian_conversation_gets_the_russian_persona_text_for_the_whole_dialog(store: Store) -> None:
    from nodes.think.facts import Fact
    alisa = load_persona("alisa")
    text = system_prompt(alisa, "ru")
    assert text.startswith("Ты — Алиса") and "в женском роде" in text and "Alisa" in text
    assert "Твоего собеседника (не тебя) зовут Оля" in about_person(alisa, [Fact("name", "Оля")], "ru")
    memory = DialogMemory(store, "ru")
    first = build_prompt(alisa, "Привет! Как дела?", memory, budget=4096)
    assert first.language == "ru" and first.messages[0]["content"] == text
    assert first.messages[1]["content"].startswith("Привет! Меня зовут Вера")  # Russian example exchanges
    memory.add("user", "Привет! Как дела?", {"about": first.about, "about_told": [], "prompt_lang": "ru"},
               note=first.note)
    memory.add("assistant", "Привет! Всё отлично.")
    switched = build_prompt(alisa, "Do you speak English?", memory, budget=4096)
    assert switched.language == "ru" and switched.messages[:len(first.messages) - 2] == first.messages[:-2]
    assert switched.note.startswith("Reply as Alisa, in English")  # the note follows the message's language


@pytest.mark.parametrize("text, about", [
    ("What is my name?", "self"), ("Do you remember what I do for a living?", "self"), ("Как меня зовут?", "self"),
    ("Ты помнишь, кем я работаю?", "self"), ("Where do I live, do you remember?", "self"),
    ("What's your name?", "her"), ("Ты любишь путешествовать?", "her"), ("Do you like music?", "her"),
    ("I repair bicycles.", None), ("What should I cook for dinner tonight?", None),
])
def test_who_a_question_is_about(text: str, about: str | None) -> None:
    assert asked_about(text) == about
    note = closing_instruction(load_persona("alisa"), text)
    if about == "self":
        assert "about THEMSELVES" in note or "о СЕБЕ" in note
    elif about == "her":
        assert "about YOU" in note or "о ТЕБЕ" in note


@pytest.mark.parametrize("text, expected", [
    ("How are you?", "in English"), ("Как дела?", "по-русски"), ("42", "in the language of the person's last"),
])
def test_closing_instruction_names_the_language_of_the_last_message(text: str, expected: str) -> None:
    assert expected in closing_instruction(load_persona("alisa"), text)


def test_closing_instruction_uses_the_persona_name_in_that_language() -> None:
    assert "Алиса" in closing_instruction(load_persona("alisa"), "Привет")


def test_prompt_without_memory_is_persona_message_instruction() -> None:
    alisa = load_persona("alisa")
    prompt = build_prompt(alisa, "Hello!", None, budget=1024)
    examples = 2 * len(alisa.example_dialog)
    assert [m["role"] for m in prompt.messages] == ["system"] + ["user", "assistant"] * (examples // 2) + \
        ["system", "user", "system"]
    assert prompt.messages[-2]["content"] == "Hello!"
    assert "Nothing yet" in about_block(prompt)[1]
    assert prompt.tokens == messages_tokens(prompt.messages, estimate_tokens)


def test_empty_message_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        build_prompt(load_persona("alisa"), "   ", None, budget=1024)


def test_prompt_over_budget_even_without_history_says_so() -> None:
    with pytest.raises(PromptTooLong, match="context_tokens"):
        build_prompt(load_persona("alisa"), "word " * 2000, None, budget=512)


def test_turn_four_prompt_carries_the_name_from_turn_one_within_the_budget(store: Store) -> None:
    alisa = load_persona("alisa")
    memory = DialogMemory(store, "s1")
    for role, text in SCRIPT_EN:
        memory.add(role, text)
    base = build_prompt(alisa, "Do you remember what I do for a living?", None, budget=4096).tokens
    budget = base + 150  # room for the facts and about one exchange: turn one must be folded away
    prompt = build_prompt(alisa, "Do you remember what I do for a living?", memory, budget=budget)
    assert prompt.tokens <= budget
    assert prompt.folded >= 2
    index, about = about_block(prompt)
    dialog = [m["content"] for m in prompt.messages[index + 1:-2]]
    assert dialog and SCRIPT_EN[0][1] not in dialog  # turn one itself is gone from the dialog ...
    assert "is called Tom." in about  # ... but the name and job it gave are still known
    assert "they are a pilot" in about
    assert prompt.messages[-2] == {"role": "user", "content": "Do you remember what I do for a living?"}
    # the store now holds one summary turn in place of the folded ones
    turns = store.turns("s1")
    assert turns[0].role == "system" and turns[0].meta["summary"]
    assert sum(t.tokens for t in turns if t.role != "system") <= budget


def test_each_prompt_extends_the_previous_one_so_the_kv_cache_is_reused(store: Store) -> None:
    alisa = load_persona("alisa")
    memory = DialogMemory(store, "cache")
    previous = None
    for user, reply in [("Hi! My name is Tom, I'm a pilot.", "Nice to meet you, Tom!"),
                        ("What is your name?", "I'm Alisa."), ("How are you today?", "Great, thanks!")]:
        prompt = build_prompt(alisa, user, memory, budget=4096)
        if previous is not None:
            assert prompt.messages[:len(previous.messages)] == previous.messages
        assert prompt.messages[-1]["content"] == prompt.note and "in English" in prompt.note
        memory.add("user", user, note=prompt.note)
        memory.add("assistant", reply.replace("!", "! "), raw=reply)  # the model's own text goes back in
        previous = prompt
        previous.messages.append({"role": "assistant", "content": reply})


def test_memory_folds_repeatedly_and_keeps_the_budget(store: Store) -> None:
    alisa = load_persona("alisa")
    memory = DialogMemory(store, "long")
    budget = 1300
    memory.add("user", "Привет, меня зовут Оля, я учительница.")
    memory.add("assistant", "Привет, Оля! Очень приятно.")
    for i in range(30):
        prompt = build_prompt(alisa, f"Расскажи что-нибудь интересное номер {i}.", memory, budget=budget)
        assert prompt.tokens <= budget
        assert "зовут Оля." in about_block(prompt)[1]
        memory.add("user", f"Расскажи что-нибудь интересное номер {i}.")
        memory.add("assistant", "Знаешь, осьминоги имеют три сердца и голубую кровь. Здорово, правда? " * 2)
    assert len([t for t in store.turns("long") if t.role == "system"]) == 1


def test_memory_of_another_session_is_separate(store: Store) -> None:
    DialogMemory(store, "a").add("user", "My name is Tom.")
    view = DialogMemory(store, "b").view()
    assert view.facts == [] and view.recent == []


def test_memory_rejects_unknown_roles(store: Store) -> None:
    with pytest.raises(ValueError):
        DialogMemory(store, "s").add("system", "x")


def test_persona_model_forbids_unknown_fields() -> None:
    with pytest.raises(Exception):
        Persona.model_validate({"name": "A", "character": "c", "speaking_style": "s", "mood": "x"})


def test_a_fact_stated_later_goes_into_that_turns_note_and_the_prompt_head_stays_cached(store: Store) -> None:
    """Facts the person states mid-dialog must not rewrite the facts block in front of the dialog (llama.cpp would
    re-evaluate the whole dialog): the block stays as it was and the new fact is told after the message; once old
    turns are folded away the block is rebuilt with every fact."""
    alisa = load_persona("alisa")
    memory = DialogMemory(store, "pin")
    previous = None
    script = [("How are you today?", "Great, thanks!"), ("My name is Tom, I live in Oslo.", "Nice to meet you, Tom!"),
              ("What is your name?", "I'm Alisa.")]
    for user, reply in script:
        prompt = build_prompt(alisa, user, memory, budget=4096)
        if previous is not None:  # each prompt extends the previous one
            assert prompt.messages[:len(previous.messages)] == previous.messages
        assert "Nothing yet" in about_block(prompt)[1]  # the block of turn one, kept
        memory.add("user", user, {"about": prompt.about, "about_told": [[f.kind, f.text] for f in prompt.told]},
                   note=prompt.note)
        memory.add("assistant", reply)
        previous = prompt
        previous.messages.append({"role": "assistant", "content": reply})
        if user.startswith("My name"):
            assert "is called Tom" in prompt.note and "never Tom" in prompt.note
            assert "Oslo" in prompt.note and prompt.note.startswith("Reply as Alisa, in English")
        else:
            assert "Tom" not in prompt.note  # told once, on the turn it was said
    assert [f.text for f in previous.told if f.kind == "name"] == ["Tom"]
    # a tight budget folds the old turns away: the block is rebuilt and now holds the name
    base = build_prompt(alisa, "Tell me about your weekend.", None, budget=4096).tokens
    folded = build_prompt(alisa, "Tell me about your weekend.", memory, budget=base + 60)
    assert folded.folded > 0 and "is called Tom." in about_block(folded)[1]
    assert "Tom" not in folded.note
