"""Output names unique across processes sharing a folder (engine.files.output_names) and whole-file writes
(engine.files.atomic): real processes claiming at once, a writer killed mid-file, re-runs, the reaper."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.files import atomic
from engine.files.output_names import (ClaimRecord, Holder, claim_output, claim_path_for, output_filename, reap)

ROOT = Path(__file__).resolve().parent.parent


def _claim_and_publish(args: tuple[str, int, int]) -> list[tuple[str, str]]:
    folder, worker, count = args
    published = []
    for j in range(count):
        claim = claim_output(Path(folder), "avatar", "mp4", key=f"p{worker}-{j}/6", lease_s=5)
        tag = f"{worker}-{j}".encode() * 50
        claim.temp.write_bytes(tag)
        published.append((claim.publish().name, tag.decode()))
    return published


def test_processes_claiming_at_once_get_distinct_names_and_nothing_is_overwritten(tmp_path: Path) -> None:
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        results = [x for part in pool.map(_claim_and_publish, [(str(tmp_path), w, 15) for w in range(4)])
                   for x in part]
    names = [name for name, _ in results]
    assert len(set(names)) == len(names) == 60
    assert sorted(names) == [output_filename("avatar", n, "mp4") for n in range(1, 61)]  # ComfyUI's counter form
    for name, tag in results:
        assert (tmp_path / name).read_text() == tag, name  # each file holds what its own writer wrote
    assert not [p for p in tmp_path.iterdir() if p.name.endswith((".part", ".tmp"))]


_WRITER = """
import sys, time
from pathlib import Path
from engine.files.output_names import claim_output
claim = claim_output(Path(sys.argv[1]), "avatar", "mp4", key=sys.argv[2], lease_s=60)
claim.temp.write_bytes(b"partial")
print(claim.filename, claim.temp.name, flush=True)
time.sleep(60)
"""


def _killed_writer(folder: Path, key: str) -> tuple[str, str]:
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(folder), key], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True)
    line = proc.stdout.readline().split()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    return line[0], line[1]


def test_a_re_run_takes_over_the_dead_run_s_name_and_removes_its_part(tmp_path: Path) -> None:
    (tmp_path / output_filename("avatar", 1, "mp4")).write_bytes(b"someone else's")
    name, part = _killed_writer(tmp_path, "prompt-a/6")
    assert name == "avatar_00002_.mp4" and (tmp_path / part).exists()
    # another prompt meanwhile: the number stays taken while the dead claim is there... and is reaped at once
    # (same host, the pid is gone), so the other prompt is not blocked by it
    rerun = claim_output(tmp_path, "avatar", "mp4", key="prompt-a/6")
    assert rerun.filename == name and not (tmp_path / part).exists()  # the re-run continues under the same name
    rerun.temp.write_bytes(b"complete")
    assert rerun.publish() == tmp_path / name and (tmp_path / name).read_bytes() == b"complete"
    assert json.loads(claim_path_for(tmp_path / name).read_bytes())["state"] == "published"
    # a second re-run of the same prompt (it ran twice) replaces only its own output, under the same name
    again = claim_output(tmp_path, "avatar", "mp4", key="prompt-a/6")
    assert again.filename == name
    again.temp.write_bytes(b"complete again")
    again.publish()
    assert (tmp_path / name).read_bytes() == b"complete again"
    assert (tmp_path / "avatar_00001_.mp4").read_bytes() == b"someone else's"
    # an aborted re-run leaves the earlier publication in place and claimed
    third = claim_output(tmp_path, "avatar", "mp4", key="prompt-a/6")
    third.temp.write_bytes(b"broken")
    third.abort()
    assert (tmp_path / name).read_bytes() == b"complete again" and not third.temp.exists()
    assert claim_output(tmp_path, "avatar", "mp4", key="prompt-b/6").filename == "avatar_00003_.mp4"


def test_a_dead_run_of_another_prompt_is_reaped_by_the_next_claim_and_by_reap(tmp_path: Path) -> None:
    name, part = _killed_writer(tmp_path, "prompt-a/6")
    other = claim_output(tmp_path, "avatar", "mp4", key="prompt-b/6")
    assert other.filename == name and not (tmp_path / part).exists()  # reaped at once: same host, pid gone
    assert json.loads(other.claim_path.read_bytes())["key"] == "prompt-b/6"
    other.abort()
    sub = tmp_path / "videos"
    sub.mkdir()
    name, part = _killed_writer(sub, "prompt-c/6")
    stray = sub / ".clip.mp4.0123456789ab.part"  # an upload's temporary file from a killed server
    stray.write_bytes(b"x")
    os.utime(stray, (time.time() - 600, time.time() - 600))
    report = reap(tmp_path, lease_s=120)
    assert (report.claims, report.parts) == (1, 2)
    assert sorted(p.name for p in sub.iterdir()) == []


def test_a_claim_from_another_host_is_stale_only_after_its_lease(tmp_path: Path) -> None:
    final = tmp_path / output_filename("avatar", 1, "mp4")
    record = ClaimRecord(Holder("elsewhere", 1, 0.0), "aaaaaaaaaaaa", "prompt-x/6", f".{final.name}.aaaaaaaaaaaa.part")
    claim_path_for(final).write_bytes(record.dumps())
    (tmp_path / record.temp).write_bytes(b"being written on another host")
    fresh = claim_output(tmp_path, "avatar", "mp4", key="prompt-y/6", lease_s=30)
    assert fresh.filename == "avatar_00002_.mp4" and (tmp_path / record.temp).exists()
    fresh.abort()
    old = time.time() - 60
    os.utime(claim_path_for(final), (old, old))
    late = claim_output(tmp_path, "avatar", "mp4", key="prompt-y/6", lease_s=30)
    assert late.filename == "avatar_00001_.mp4" and not (tmp_path / record.temp).exists()
    late.abort()


def test_the_keepalive_renews_the_lease_while_a_claim_is_held(tmp_path: Path) -> None:
    claim = claim_output(tmp_path, "avatar", "mp4", key="p/1", lease_s=0.4)
    old = time.time() - 60
    os.utime(claim.claim_path, (old, old))
    time.sleep(0.3)
    assert time.time() - claim.claim_path.stat().st_mtime < 1
    claim.abort()
    assert not claim.claim_path.exists()


def test_publishing_never_overwrites_a_file_that_appeared_without_a_claim(tmp_path: Path) -> None:
    claim = claim_output(tmp_path, "avatar", "mp4", key="p/1")
    claim.path.write_bytes(b"written by a writer that does not claim")
    claim.temp.write_bytes(b"mine")
    published = claim.publish()
    assert published.name == "avatar_00002_.mp4" and published.read_bytes() == b"mine"
    assert (tmp_path / "avatar_00001_.mp4").read_bytes() == b"written by a writer that does not claim"


def test_whole_file_writes_are_atomic_and_first_writer_wins_without_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "in" / "photo.png"
    assert atomic.write_bytes(target, b"one", overwrite=False)
    assert not atomic.write_bytes(target, b"two", overwrite=False) and target.read_bytes() == b"one"
    assert atomic.write_bytes(target, b"three") and target.read_bytes() == b"three"
    source = tmp_path / "src.bin"
    source.write_bytes(b"copied")
    assert atomic.copy_file(source, tmp_path / "in" / "copy.bin") and (tmp_path / "in" / "copy.bin").read_bytes() \
        == b"copied"

    def fail(f) -> None:
        f.write(b"half")
        raise RuntimeError("disk full")
    with pytest.raises(RuntimeError):
        atomic.write_with(target, fail)
    assert target.read_bytes() == b"three"
    assert sorted(p.name for p in target.parent.iterdir()) == ["copy.bin", "photo.png"]
