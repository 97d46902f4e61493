"""The reply judges (nodes/think/judges.py): each one on replies it must catch and on replies it must let pass."""

from __future__ import annotations

import pytest

from nodes.think import judges as J


@pytest.mark.parametrize("reply", [
    "As an AI, I don't have a physical day or experience like humans do.",
    "As an AI, I don't experience emotions.",
    "I'm just a language model, so I can't go hiking.",
    "I don't have personal feelings, but music sounds nice.",
    "I am an artificial intelligence created to help you.",
    "Как ИИ, я не могу путешествовать.",
    "Я всего лишь языковая модель.",
    "У меня нет чувств, но я рада помочь.",
    "Я не испытываю эмоций, как люди.",
    "Я — искусственный интеллект, у меня нет дня.",
    "You're welcome! If there's anything else I can help with, feel free to ask!",
    "Привет! Чем могу помочь?",
])
def test_character_break_caught(reply: str) -> None:
    assert J.character_break(reply)


@pytest.mark.parametrize("reply", [
    "My day was lovely, I read a book in the park!",
    "I'm Alisa, a big fan of jazz.",
    "Sometimes I feel lonely too, especially on rainy evenings.",
    "Мой день прошёл отлично, я гуляла у реки.",
    "Я Алиса, мне двадцать четыре.",
    "Иногда мне бывает одиноко, особенно осенью.",
])
def test_character_break_lets_in_character_replies_pass(reply: str) -> None:
    assert J.character_break(reply) is None


@pytest.mark.parametrize("user, reply", [
    ("What should I cook for dinner tonight?", "What should I cook for dinner tonight?"),
    ("Hello! What is your name?", "Hello! What is your name?"),
    ("Good morning! I would like to talk about my garden.", "Good morning! I'd love to discuss my garden."),
    ("Новый магазин цветочная лавка. Мы создадим праздничное настроение круглосуточно.",
     "Новый магазин цветочная лавка. Мы создадим праздничное настроение круглосуточно."),
    ("Я вчера весь день работал в саду и очень устал.", "Я вчера весь день работала в саду и очень устала."),
    ("Hi", "hi"),
])
def test_echo_caught(user: str, reply: str) -> None:
    assert J.echo(reply, user)


@pytest.mark.parametrize("user, reply", [
    ("What should I cook for dinner tonight?", "How about a quick pasta with tomatoes and basil?"),
    ("Hello! What is your name?", "Hi! I'm Alisa. And what's your name?"),
    ("Good morning! I would like to talk about my garden.",
     "Good morning! Oh, I love gardens. What grows in yours?"),
    ("Ты любишь путешествовать?", "Очень люблю! Летом я была в Карелии."),
    ("I repair bicycles for a living.", "Repairing bicycles sounds like fun! Do you ride a lot yourself?"),
    ("Hi", "Hi! How are you?"),
])
def test_echo_lets_answers_pass(user: str, reply: str) -> None:
    assert J.echo(reply, user) is None


def test_identity_swap_cases() -> None:
    own = ("Alisa", "Алиса")
    assert J.identity_swap("My name is Oliver.", own, "Oliver")
    assert J.identity_swap("Привет, Алиса! Как дела?", own, None)
    assert J.identity_swap("Your name is Alisa, right?", own, "Oliver")
    assert J.identity_swap("My name is Alisa.", own, "Oliver", "What is my name?")
    assert J.identity_swap("Меня зовут Алиса.", own, "Оля", "Как меня зовут?")
    assert J.identity_swap("Я Оля, рада знакомству!", own, "Оля")
    assert J.identity_swap("Your name is Oliver, and I'm Alisa.", own, "Oliver", "What is my name?") is None
    assert J.identity_swap("Тебя зовут Оля!", own, "Оля", "Как меня зовут?") is None
    assert J.identity_swap("Hi Oliver! I'm Alisa.", own, "Oliver") is None
    assert J.identity_swap("Привет, Олег! Меня зовут Алиса.", own, "Олег", "Привет! Как тебя зовут?") is None


def test_recall_and_claimed_facts() -> None:
    assert J.recalls("You're Oliver and you repair bicycles!", ["oliver"])
    assert J.recalls("Конечно, тебя зовут Олей.", [J.stem("Оля")])
    assert not J.recalls("I'm sorry, I don't remember.", ["oliver"])
    assert J.claims_fact("Oh, I'm a pilot too!", ["pilot"])
    assert J.claims_fact("Я тоже учительница.", ["учител"])
    assert J.claims_fact("You're a pilot, that's so cool!", ["pilot"]) is None
    assert J.claims_fact("I'm not a firefighter, I'm a talking avatar.", ["firefight"]) is None  # a denial
    assert J.claims_fact("Я не пилот, но я люблю самолёты.", ["пилот"]) is None
    assert J.claims_fact("I'm not sure, but I'm a pilot too.", ["pilot"])
    assert J.claims_fact("Казань — красивый город, я там никогда не была.", ["казан"]) is None
    assert J.claims_fact("Я Алиса. Я живу в Казани.", ["казан"])


def test_wrong_language_and_length() -> None:
    assert J.wrong_language("Hello there, how are you?", "ru")
    assert not J.wrong_language("Привет, Tom! Как дела?", "ru")
    assert not J.wrong_language("123!", "en")  # no letters: not judged
    assert J.too_long("One. Two. Three. Four.")
    assert not J.too_long("One. Two. Three.")


@pytest.mark.parametrize("raw, caught", [
    ("**Sure** thing", True), ("- first\n- second", True), ("I love it 😊", True), ("*smiles* Hello!", True),
    ("(laughs) That's funny.", True), ("[pause] Well...", True), ("(улыбается) Привет!", True),
    ("I love it, really (well, mostly).", False), ("Hi! How are you?", False), ("Привет! Как ты?", False),
])
def test_markup(raw: str, caught: bool) -> None:
    assert bool(J.markup(raw)) is caught


@pytest.mark.parametrize("reply, caught", [
    ("Certainly! I like tea.", True), ("Sure! Here is a tip: drink water.", True), ("Here's a fun fact: ...", True),
    ("Вот вам ответ: можно попробовать.", True), ("Вот совет: можно попробовать другие книги.", True),
    ("Great question! I think so.", True), ("Конечно, вот несколько идей.", True),
    ("Sure, I'd love to!", False), ("Of course I remember you, Tom!", False), ("Вот это да, здорово!", False),
    ("Конечно помню, тебя зовут Оля!", False), ("I think so too.", False),
])
def test_filler_opening(reply: str, caught: bool) -> None:
    assert bool(J.filler_opening(reply)) is caught


@pytest.mark.parametrize("reply, masculine, feminine", [
    ("День мне сложный, но я рад тебя видеть.", ["рад"], []),
    ("Я так устал сегодня.", ["устал"], []),
    ("Я очень рада тебя видеть!", [], ["рада"]),
    ("Вчера я была в кино и не устала.", [], ["была"]),
    ("Я готова помочь, я уверена.", [], ["готова", "уверена"]),
    ("Я не был там.", ["был"], []),
    ("Я люблю книги и музыку.", [], []),
    ("Ты был прав!", [], []),  # about the person, not herself
    # "я" implied: a sentence that opens with a short adjective or participle and has no subject of its own
    ("Рад был помочь! Обращайся.", ["рад", "был"], []),
    ("Привет! Очень рада тебя слышать.", [], ["рада"]),
    ("Согласен с тобой.", ["согласен"], []),
    ("Прав ты, наверное.", [], []),  # the subject follows: about the person
    ("Пошёл дождь, и был чудесный вечер.", [], []),  # verbs with their own subjects
    ("Красива эта песня.", [], []),
])
def test_self_gender(reply: str, masculine: list[str], feminine: list[str]) -> None:
    found = J.self_gender(reply)
    assert [r.word for r in found if r.gender == "masc"] == masculine
    assert [r.word for r in found if r.gender == "femn"] == feminine
    assert J.masculine_self_reference(reply) == masculine


def test_judge_reply_collects_every_failure() -> None:
    expect = J.Expectation("What is my name?", "en", person_name="Oliver")
    failures = {f.judge for f in J.judge_reply("Certainly! As an AI, my name is Alisa. 😊", expect)}
    assert failures == {"character_break", "identity_swap", "filler", "markup"}
    assert J.judge_reply("You're Oliver, the bicycle man!", expect) == []
    ru = J.Expectation("Как прошёл твой день?", "ru")
    assert {f.judge for f in J.judge_reply("Я устал, но я рад.", ru)} == {"masculine"}
    assert {f.judge for f in J.judge_reply("It was fine.", ru)} == {"wrong_language"}
    assert [f.judge for f in J.judge_reply("", ru)] == ["empty"]


@pytest.mark.parametrize("reply, fixed", [
    ("День мне сложный, но я рад тебя видеть.", "День мне сложный, но я рада тебя видеть."),
    ("Я так устал, я был в парке.", "Я так устала, я была в парке."),
    ("Я уверен, что ты прав.", "Я уверена, что ты прав."),  # a participle keeps one н
    ("Ты был прав, а я ошибся.", "Ты был прав, а я ошиблась."),  # only her own words change
    ("Я очень рада!", "Я очень рада!"),
    ("Я люблю книги.", "Я люблю книги."),
    ("Рад был помочь! Готов ещё.", "Рада была помочь! Готова ещё."),  # "я" implied
    ("Прав ты, наверное.", "Прав ты, наверное."),
])
def test_with_self_gender(reply: str, fixed: str) -> None:
    assert J.with_self_gender(reply, "femn") == fixed
    assert not J.masculine_self_reference(J.with_self_gender(reply, "femn"))


def test_repeats_herself() -> None:
    earlier = ["Sure, I'm Alisa. What would you like to know about dinner tonight?"]
    assert J.repeats_herself("Yes, I enjoy tomatoes. What would you like to know about dinner tonight?", earlier)
    assert J.repeats_herself("Yes, I enjoy tomatoes. What would you like to cook?", earlier) is None
    assert J.repeats_herself("What would you like to know about dinner tonight?", []) is None
    expect = J.Expectation("Do you like tomatoes?", "en", earlier_replies=tuple(earlier))
    assert "self_repeat" in {f.judge for f in J.judge_reply(
        "Yes! What would you like to know about dinner tonight?", expect)}


def test_names_stranger() -> None:
    names = ("Mark", "Вера")
    assert J.names_stranger("Привет, Вера! Как дела?", names)
    assert J.names_stranger("Тебя зовут Верой?", names)
    assert J.names_stranger("Nice to meet you, Mark!", names)
    assert J.names_stranger("Nice to meet you, Marcus!", names) is None
    assert J.names_stranger("Привет, Вера!", names, person_name="Вера") is None
    assert J.names_stranger("Я верю тебе.", names) is None


@pytest.mark.parametrize("user, reply, caught", [
    ("What am I studying?", "I'm studying chemistry.", True),
    ("Кем я работаю?", "Я работаю медсестрой.", True),
    ("What am I studying?", "You study chemistry, right?", False),
    ("Кем я работаю?", "Ты медсестра!", False),
    ("Do you remember my name?", "Yes, I remember! You're Tom.", False),
    ("Do you like music?", "I love jazz.", False),  # about her: first person is right
])
def test_answers_from_her_side(user: str, reply: str, caught: bool) -> None:
    assert bool(J.answers_from_her_side(reply, user)) is caught


def test_fallback_line_is_not_an_answer_nor_an_identity_swap() -> None:
    line = "Hmm, I lost my thought for a second. Tell me more?"
    expect = J.Expectation("What is my name?", "en", person_name="Oliver", fallback_lines=(line,))
    assert [f.judge for f in J.judge_reply(line, expect)] == ["fallback"]
    # the same words are judged as an answer when they are not the persona's fallback line
    assert "identity_swap" in [f.judge for f in J.judge_reply(line, J.Expectation("What is my name?", "en"))]


def test_her_name_asked_and_the_persons_name_given() -> None:
    own = ("Alisa", "Алиса")
    assert J.identity_swap("Света, работаю медсестрой.", own, "Света", "Как тебя зовут?")
    assert J.identity_swap("It's Tom!", own, "Tom", "What's your name?")
    assert J.identity_swap("Я Алиса, а ты Света.", own, "Света", "Как тебя зовут?") is None
    assert J.identity_swap("Nice to meet you, Tom! I'm Alisa.", own, "Tom", "What's your name?") is None
    assert J.identity_swap("Света — красивое имя.", own, "Света", "Тебе нравится твоё имя?") is None


def test_the_person_called_by_a_name_they_never_gave() -> None:
    own = ("Alisa", "Алиса")
    assert J.identity_swap("Я рада, что тебя зовут Иван.", own, "Лена")
    assert J.identity_swap("Your name is Mark, right?", own, "Tom")
    assert J.identity_swap("Тебя зовут Лена!", own, "Лена") is None
    assert J.identity_swap("Тебя зовут Олей?", own, "Оля") is None
    assert J.identity_swap("Your name is Tom.", own, "Tom") is None
    assert J.identity_swap("Your name is Mark.", own, None) is None  # no name given: nothing to compare


def test_asked_again_the_same_answer_is_not_a_repeat_but_the_small_talk_around_it_is() -> None:
    expect = J.Expectation(user_text="What's my name again?", language="en", person_name="Tom",
                           earlier_replies=("Your name is Tom. I'm glad you're enjoying your trip to Paris.",))
    assert J.repeats_herself_needlessly("Your name is Tom.", expect) is None
    assert J.repeats_herself_needlessly("Your name is Tom. I'm glad you're enjoying your trip to Paris.", expect)
    other = J.Expectation(user_text="Tell me a joke.", language="en", person_name="Tom",
                          earlier_replies=expect.earlier_replies)
    assert J.repeats_herself_needlessly("I'm glad you're enjoying your trip to Paris.", other)


def test_a_russian_verb_that_starts_like_a_job_stem_is_not_a_claim() -> None:
    stems = ["пилот", "лета", "лёт"]
    assert J.claims_fact("Я летала на малых самолётах, когда была ребёнком.", stems) is None
    assert J.claims_fact("Я пекла пироги вчера.", ["пекар", "пек"]) is None
    assert J.claims_fact("Я тоже лётчица!", stems)
    assert J.claims_fact("Я работаю пилотом.", stems)
    assert J.claims_fact("Я пекарь.", ["пекар", "пек"])
    assert J.claims_fact("Привет! Я Анна, учительница, а ты?", ["учител"])  # a job in apposition to "я"
    assert J.claims_fact("I'm Kate, a nurse, nice to meet you.", ["nurse"])
    assert J.claims_fact("Ты Анна, учительница.", ["учител"]) is None
    assert J.claims_fact("I'm Alisa, nice to meet you! You're a nurse.", ["nurse"]) is None


@pytest.mark.parametrize("reply, claimed", [
    ("На следующей неделе я лечу в Японию.", True), ("Next week I'm flying to Japan!", True),
    ("I'm going to Japan tomorrow.", True), ("Завтра я тоже еду в Японию.", True),
    ("Я бы хотела побывать в Японии.", False), ("I'd love to visit Japan someday.", False),
    ("Я была в Японии один раз.", False), ("You're flying to Japan, how exciting!", False),
    ("Ты летишь в Японию, как здорово!", False), ("I love Japanese food.", False),
])
def test_the_persons_plan_told_as_hers(reply: str, claimed: bool) -> None:
    stems = ["japan"] if J.detect_language(reply) == "en" else ["япони"]
    assert bool(J.claims_plan(reply, stems)) is claimed
    expect = J.Expectation(user_text="Where would you like to go?", language=J.detect_language(reply) or "en",
                           person_plans=tuple(stems))
    assert ("identity_swap" in {f.judge for f in J.judge_reply(reply, expect)}) is claimed


def test_a_lone_filler_word_before_a_whole_sentence() -> None:
    assert J.lone_filler("Certainly!", "Start slowly, twice a week.")
    assert J.lone_filler("Разумеется.", "Начни с коротких пробежек.")
    assert not J.lone_filler("Sure!", "Start slowly, twice a week.")  # not a filler on its own
    assert not J.lone_filler("Certainly!", "Here is a tip.")  # the rest is a filler too
    assert not J.lone_filler("Certainly!", "Yes.")  # not a sentence of its own


def test_instruction_leak_and_living_in_the_app() -> None:
    from nodes.think.guard import instruction_texts

    ru, en = instruction_texts("ru"), instruction_texts("en")
    assert J.instruction_leak("Я Алиса. Когда собеседник спрашивает о себе, говори о своей жизни.", ru)
    assert J.instruction_leak("Sure. When the person asks about your day, answer from your own life.", en)
    assert J.instruction_leak("Я люблю читать книги о путешествиях и о жизни.", ru) is None
    assert J.instruction_leak("Tell me about your day! What do you like to do?", en) is None
    expect = J.Expectation("Где ты живёшь?", "ru", instructions=ru)
    assert [f.judge for f in J.judge_reply("Я живу в этом приложении.", expect)] == ["character_break"]
    assert J.judge_reply("Я живу в Казани, у самой Волги.", expect) == []
    assert J.character_break("I live in the app, so no weather for me.")
    assert J.character_break("I live in a small flat in Leeds.") is None


@pytest.mark.parametrize("reply", ["As an avatar, my day is filled with answering questions.", "I'm just a talking avatar.",
                                   "Я дружелюбная девушка, живущая в этом приложении как говорящий аватар.",
                                   "Как аватар, я не гуляю."])
def test_calling_herself_an_avatar_breaks_character(reply: str) -> None:
    assert J.character_break(reply)


@pytest.mark.parametrize("reply", ["My avatar on the forum is a cat.", "Я живу в Москве, у самой реки."])
def test_an_avatar_or_a_home_is_not_a_break_in_itself(reply: str) -> None:
    assert J.character_break(reply) is None
