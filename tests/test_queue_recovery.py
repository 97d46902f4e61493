"""A process killed with SIGKILL mid-queue resumes its pending prompts on restart; history survives."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from engine.queue.sqlite_store import Store

ROOT = Path(__file__).resolve().parent.parent


def spawn(*args):
    return subprocess.Popen([sys.executable, "-m", "tests.queue_worker_proc", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigkill_mid_queue_then_restart(tmp_path):
    db = str(tmp_path / "q.sqlite3")
    assert spawn(db, "enqueue", "6").wait(60) == 0
    proc = spawn(db, "work")
    store = Store(db)
    deadline = time.time() + 60
    while store.history_count() < 2 and time.time() < deadline:  # let it finish two prompts
        time.sleep(0.05)
    assert store.history_count() >= 2
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    done_before = set(store.history())
    left = {i.prompt_id for i in store.pending()} | {i.prompt_id for i in store.running()}
    assert left and len(done_before) + len(left) == 6, "nothing lost at the kill"
    assert store.running(), "the killed process was in the middle of a prompt"
    store.close()

    proc = spawn(db, "work")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    store = Store(db)
    history = store.history()
    assert set(history) == {f"p{i}" for i in range(6)}, "every prompt completed exactly once"
    assert all(h["status"]["status_str"] == "success" for h in history.values())
    assert {pid: h["outputs"]["s"]["text"] for pid, h in history.items()} == {f"p{i}": [str(i)] for i in range(6)}
    assert not store.pending() and not store.running()
