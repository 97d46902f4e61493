"""engine/queue/sqlite_store.py: the SQLite queue, history, settings, sessions, dialog memory and traces survive restarts."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from engine.queue.sqlite_sessions import Turn
from engine.queue.sqlite_store import SCHEMA_VERSION, QueueItem, Store, StoreError

REPO = Path(__file__).resolve().parents[1]
PROMPT = {"1": {"class_type": "TextInput", "inputs": {"text": "hello"}},
          "2": {"class_type": "SaveText", "inputs": {"text": ["1", 0]}}}


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "data" / "avatargraph.sqlite3"


@pytest.fixture
def store(db: Path):
    with Store(db) as s:
        yield s


def ids(items: list[QueueItem]) -> list[str]:
    return [i.prompt_id for i in items]


def test_open_sets_wal_and_schema_version(db: Path, store: Store) -> None:
    assert db.exists()
    assert store.schema_version() == SCHEMA_VERSION
    raw = sqlite3.connect(db)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert raw.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    raw.close()


def test_newer_schema_is_refused(db: Path) -> None:
    Store(db).close()
    raw = sqlite3.connect(db)
    raw.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    raw.commit()
    raw.close()
    with pytest.raises(StoreError, match="newer"):
        Store(db)


def test_enqueue_order_numbers_and_front(store: Store) -> None:
    a = store.enqueue(PROMPT, prompt_id="a", client_id="c1", outputs_to_execute=["2"], extra_data={"x": 1})
    b = store.enqueue(PROMPT, prompt_id="b")
    c = store.enqueue(PROMPT, prompt_id="c", front=True)
    d = store.enqueue(PROMPT, prompt_id="d", front=True)
    e = store.enqueue(PROMPT)  # uuid4 prompt id
    assert a.number < b.number < e.number
    assert len(e.prompt_id) == 36 and e.status == "pending"
    # front goes before every pending item, the latest front first (ComfyUI's negative numbers)
    assert ids(store.pending()) == ["d", "c", "a", "b", e.prompt_id]
    assert c.number < 0 and d.number < c.number
    got = store.get("a")
    assert got == QueueItem(number=a.number, prompt_id="a", prompt=PROMPT, extra_data={"x": 1}, client_id="c1",
                            outputs_to_execute=["2"], status="pending", created=a.created, session_id=None)
    assert got.as_comfy() == [a.number, "a", PROMPT, {"x": 1}, ["2"]]
    assert store.get("nope") is None
    with pytest.raises(ValueError, match="already queued"):
        store.enqueue(PROMPT, prompt_id="a")
    # an explicit number is used as given
    store.enqueue(PROMPT, prompt_id="mid", number=0.5)
    assert ids(store.pending())[:4] == ["d", "c", "a", "mid"]


def test_front_beats_explicit_low_numbers(store: Store) -> None:
    store.enqueue(PROMPT, prompt_id="low", number=-1000)
    store.enqueue(PROMPT, prompt_id="f", front=True)
    assert ids(store.pending()) == ["f", "low"]


def test_claim_marks_running(store: Store) -> None:
    assert store.claim_next() is None
    for p in "abc":
        store.enqueue(PROMPT, prompt_id=p)
    item = store.claim_next()
    assert item is not None and item.prompt_id == "a" and item.status == "running"
    assert ids(store.running()) == ["a"]
    assert ids(store.pending()) == ["b", "c"]
    assert store.get("a").status == "running"
    assert store.remaining() == 3
    assert store.claim_next().prompt_id == "b"
    assert ids(store.running()) == ["a", "b"]


def test_recover_after_close_without_completing(db: Path) -> None:
    with Store(db) as s:
        for p in "abcd":
            s.enqueue(PROMPT, prompt_id=p)
        assert s.claim_next().prompt_id == "a"
        assert s.claim_next().prompt_id == "b"
        s.complete("a", "success", {}, [])
    with Store(db) as s:
        assert ids(s.running()) == ["b"]
        assert s.recover() == 1
        assert s.running() == []
        assert ids(s.pending()) == ["b", "c", "d"]
        assert s.recover() == 0
        assert list(s.history()) == ["a"]
        # the counter survives too: new numbers stay above the old ones
        assert s.enqueue(PROMPT, prompt_id="e").number > s.get("d").number


CRASH_SCRIPT = textwrap.dedent("""
    import os, sys
    from engine.queue.sqlite_store import Store
    s = Store(sys.argv[1])
    for i in range(5):
        s.enqueue({"1": {"class_type": "T", "inputs": {"i": i}}}, prompt_id=f"p{i}")
    assert s.claim_next().prompt_id == "p0"
    os.kill(os.getpid(), 9)
""")


def test_real_crash_loses_nothing(db: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", CRASH_SCRIPT, str(db)], cwd=REPO, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    with Store(db) as s:
        assert ids(s.running()) == ["p0"]
        assert s.recover() == 1
        pending = s.pending()
        assert ids(pending) == [f"p{i}" for i in range(5)]
        assert [p.prompt["1"]["inputs"]["i"] for p in pending] == list(range(5))
        assert s.claim_next().prompt_id == "p0"


def test_complete_gives_comfyui_history_shape(store: Store) -> None:
    store.enqueue(PROMPT, prompt_id="a", extra_data={"client_id": "c1", "api_key_comfy_org": "secret"},
                  client_id="c1", outputs_to_execute=["2"])
    number = store.get("a").number
    store.claim_next()
    outputs = {"2": {"text": ["hello"], "images": [{"filename": "x.png", "subfolder": "", "type": "output"}]}}
    messages = [["execution_start", {"prompt_id": "a", "timestamp": 1}],
                ["execution_success", {"prompt_id": "a", "timestamp": 2}]]
    store.complete("a", "success", outputs, messages, timings={"1": 0.25, "2": 0.5},
                   meta={"2": {"node_id": "2", "display_node": "2", "parent_node": None, "real_node_id": "2"}})
    assert store.get("a") is None and store.remaining() == 0
    expected = {
        "prompt": [number, "a", PROMPT, {"client_id": "c1"}, ["2"]],  # API key stripped, as ComfyUI does
        "outputs": outputs,
        "status": {"status_str": "success", "completed": True, "messages": messages},
        "meta": {"2": {"node_id": "2", "display_node": "2", "parent_node": None, "real_node_id": "2"}},
        "timings": {"1": 0.25, "2": 0.5},
    }
    assert store.history() == {"a": expected}
    assert store.history_item("a") == {"a": expected}
    assert store.history_item("zzz") == {}
    with pytest.raises(KeyError):
        store.complete("a", "success", {}, [])


def test_error_and_interrupted_entries(store: Store) -> None:
    for p in ("err", "int"):
        store.enqueue(PROMPT, prompt_id=p)
    store.claim_next()
    error = {"prompt_id": "err", "node_id": "1", "exception_message": "boom"}
    store.complete("err", "error", {}, [["execution_start", {"prompt_id": "err"}]], error=error)
    store.complete("int", "interrupted", {}, [["execution_interrupted", {"prompt_id": "int"}]])
    h = store.history()
    assert list(h) == ["err", "int"]
    assert h["err"]["status"] == {"status_str": "error", "completed": False,
                                  "messages": [["execution_start", {"prompt_id": "err"}], ["execution_error", error]]}
    assert h["err"]["meta"] == {} and h["err"]["timings"] == {}
    assert h["int"]["status"]["status_str"] == "error" and h["int"]["status"]["completed"] is False
    with pytest.raises(ValueError):
        store.complete("x", "done", {}, [])  # type: ignore[arg-type]


def test_history_survives_reopen_and_pages_like_comfyui(db: Path) -> None:
    with Store(db) as s:
        for i in range(6):
            s.enqueue(PROMPT, prompt_id=f"h{i}")
            s.claim_next()
            s.complete(f"h{i}", "success", {"2": {"text": [str(i)]}}, [])
    with Store(db) as s:
        assert list(s.history()) == [f"h{i}" for i in range(6)]  # newest last
        assert s.history()["h3"]["outputs"] == {"2": {"text": ["3"]}}
        assert list(s.history(max_items=2)) == ["h4", "h5"]  # newest two, as the frontend asks
        assert list(s.history(max_items=2, offset=1)) == ["h1", "h2"]
        assert list(s.history(offset=4)) == ["h4", "h5"]
        assert s.history(max_items=0) == {}


def test_history_cap_drops_oldest(db: Path) -> None:
    with Store(db, max_history=3) as s:
        for i in range(5):
            s.enqueue(PROMPT, prompt_id=f"h{i}")
            s.complete(f"h{i}", "success", {}, [])
        assert list(s.history()) == ["h2", "h3", "h4"]
        assert s.history_count() == 3


def test_delete_and_clear(store: Store) -> None:
    for p in "abcde":
        store.enqueue(PROMPT, prompt_id=p)
    store.claim_next()  # a runs
    assert store.delete_pending(["a", "b", "zzz"]) == 1  # a is running: untouched
    assert ids(store.pending()) == ["c", "d", "e"]
    assert store.clear_pending() == 3
    assert store.pending() == [] and ids(store.running()) == ["a"]
    store.complete("a", "success", {}, [])
    for p in "fg":
        store.enqueue(PROMPT, prompt_id=p)
        store.complete(p, "success", {}, [])
    assert store.delete_history(["a", "nope"]) == 1
    assert list(store.history()) == ["f", "g"]
    assert store.clear_history() == 2
    assert store.history() == {}


def test_corrupt_json_is_logged_and_skipped(db: Path, store: Store, caplog: pytest.LogCaptureFixture) -> None:
    for p in "abc":
        store.enqueue(PROMPT, prompt_id=p)
        store.complete(p, "success", {"2": {"text": [p]}}, [])
    store.enqueue(PROMPT, prompt_id="q1")
    store.enqueue(PROMPT, prompt_id="q2")
    raw = sqlite3.connect(db)
    raw.execute("UPDATE history SET outputs = '{broken' WHERE prompt_id = 'b'")
    raw.execute("UPDATE queue SET prompt = '[nope' WHERE prompt_id = 'q1'")
    raw.commit()
    raw.close()
    with caplog.at_level(logging.ERROR, logger="engine.queue.sqlite_store"):
        assert list(store.history()) == ["a", "c"]
        assert store.history_item("b") == {}
        assert ids(store.pending()) == ["q2"]
        assert store.claim_next().prompt_id == "q2"  # the corrupt item cannot block the queue
    assert "history entry b is corrupt" in caplog.text and "queue item q1 is corrupt" in caplog.text


def test_settings_round_trip(db: Path) -> None:
    with Store(db) as s:
        assert s.get_settings() == {}
        s.set_setting("Comfy.Theme", "dark")
        s.set_settings({"volume": 0.5, "voices": ["a", "b"], "nested": {"x": None}})
        s.set_setting("Comfy.Theme", "light")
        s.set_setting("Comfy.Theme", "other user's", user="bob")
    with Store(db) as s:
        assert s.get_settings() == {"Comfy.Theme": "light", "volume": 0.5, "voices": ["a", "b"], "nested": {"x": None}}
        assert s.get_setting("volume") == 0.5
        assert s.get_setting("missing", default=3) == 3
        assert s.get_settings(user="bob") == {"Comfy.Theme": "other user's"}
        assert s.delete_setting("volume") and not s.delete_setting("volume")
        with pytest.raises(TypeError, match="JSON"):
            s.set_setting("bad", object())


def test_sessions(db: Path) -> None:
    wf = {"1": {"class_type": "Mic", "inputs": {}}}
    with Store(db) as s:
        rec = s.create_session("s1", wf, {"persona": "ada"})
        assert rec.status == "open" and rec.closed_at is None
        s.create_session("s2", {}, {})
        with pytest.raises(ValueError):
            s.create_session("s1", wf, {})
        upd = s.update_session("s1", voice="v2")
        assert upd.meta == {"persona": "ada", "voice": "v2"} and upd.workflow == wf
        s.update_session("s2", workflow=wf, meta={"only": 1})
        with pytest.raises(KeyError):
            s.update_session("nope", x=1)
        assert s.close_session("s2") and not s.close_session("s2")
    with Store(db) as s:
        assert [r.session_id for r in s.list_sessions()] == ["s1"]
        assert [r.session_id for r in s.list_sessions(open_only=False)] == ["s1", "s2"]
        s2 = s.get_session("s2")
        assert s2.status == "closed" and s2.closed_at is not None and s2.workflow == wf and s2.meta == {"only": 1}
        assert s.get_session("s1").meta == {"persona": "ada", "voice": "v2"}
        assert s.get_session("nope") is None


def test_dialog_turns_and_replace(db: Path) -> None:
    with Store(db) as s:
        t = [s.add_turn("s1", role, f"text {i}", 10 + i) for i, role in enumerate(["user", "assistant"] * 3)]
        s.add_turn("other", "user", "not mine", 1)
        assert [x.id for x in s.turns("s1")] == t
        assert [x.text for x in s.turns("s1", limit=2)] == ["text 4", "text 5"]
        summary = s.replace_turns("s1", t[:4], "they greeted each other", 7)
        assert summary == t[0]
        with pytest.raises(KeyError):
            s.replace_turns("s1", [t[1]], "gone already", 1)
        with pytest.raises(KeyError):
            s.replace_turns("s1", [t[4], 10_000], "unknown id", 1)
    with Store(db) as s:
        turns = s.turns("s1")
        assert [(x.role, x.text, x.tokens) for x in turns] == [("system", "they greeted each other", 7),
                                                               ("user", "text 4", 14),
                                                               ("assistant", "text 5", 15)]
        assert isinstance(turns[0], Turn) and turns[0].meta == {"summary_of": t[:4]}
        # a new turn still goes last
        new = s.add_turn("s1", "user", "again", 2, meta={"lang": "en"})
        assert s.turns("s1")[-1].id == new and s.turns("s1")[-1].meta == {"lang": "en"}
        assert s.clear_turns("s1") == 4
        assert s.turns("s1") == [] and len(s.turns("other")) == 1


def test_traces(store: Store) -> None:
    store.record_trace("s1", 3, {"vad_end": 1.0, "asr_done": 1.4, "first_audio": 2.1})
    store.record_trace("s1", None, {"vad_end": 5})
    store.record_trace("s2", 1, {"vad_end": 0.0})
    got = store.traces("s1")
    assert [(g["turn_id"], g["stamps"]) for g in got] == [(3, {"vad_end": 1.0, "asr_done": 1.4, "first_audio": 2.1}),
                                                          (None, {"vad_end": 5.0})]
    assert store.traces("none") == []


def test_concurrent_enqueue_gives_distinct_numbers(store: Store) -> None:
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for i in range(50):
                store.enqueue(PROMPT, prompt_id=f"t{k}-{i}")
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    pending = store.pending()
    assert len(pending) == 200 and len({p.number for p in pending}) == 200
    # each thread's items stay in its own order
    for k in range(4):
        mine = [p.prompt_id for p in pending if p.prompt_id.startswith(f"t{k}-")]
        assert mine == [f"t{k}-{i}" for i in range(50)]


def test_concurrent_claims_across_two_connections(db: Path) -> None:
    """Two Store objects (two connections, as two processes would have) claim each item exactly once."""
    with Store(db) as a, Store(db) as b:
        for i in range(60):
            a.enqueue(PROMPT, prompt_id=f"p{i}")
        claimed: list[str] = []
        errors: list[BaseException] = []
        lock = threading.Lock()

        def worker(s: Store) -> None:
            try:
                while (item := s.claim_next()) is not None:
                    with lock:
                        claimed.append(item.prompt_id)
            except BaseException as e:  # noqa: BLE001 - reported by the assertion below
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(s,)) for s in (a, b, a, b)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert errors == []
        assert sorted(claimed) == sorted(f"p{i}" for i in range(60))
        assert len(b.running()) == 60 and a.pending() == []
