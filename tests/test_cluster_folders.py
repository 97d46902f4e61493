"""Cluster members must share the input and output folders: a worker that cannot see the check file a server wrote
refuses to start with a clear message (exit code 3); a mark nobody confirms any more is replaced; uploads through
the server land in the shared input folder atomically."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from engine.queue import shared_folders as SF
from engine.queue.redis_server import LocalRedis
from tests.cluster_support import LocalCluster, Member


@pytest.fixture
def redis_server(tmp_path: Path):
    server = LocalRedis(tmp_path / "redis").start()
    yield server
    server.stop()


def test_a_worker_with_another_input_folder_refuses_to_start(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path / "cluster").start(workers=0)
    try:
        assert (cluster.inputs / SF.CHECK_FILE).is_file() and (cluster.outputs / SF.CHECK_FILE).is_file()
        elsewhere = tmp_path / "not-shared" / "input"
        elsewhere.mkdir(parents=True)
        args = ["worker", "--name", "lost", "--data-dir", str(tmp_path / "lost"), "--queue", cluster.redis.url,
                "--output-dir", str(cluster.outputs), "--input-dir", str(elsewhere)]
        member = Member("lost", args, tmp_path / "lost.log").start()
        assert member.proc.wait(timeout=120) == 3
        log = member.log()
        assert f"--input-dir {elsewhere.resolve()} is not the input folder the rest of this cluster uses" in log, log
        assert "Mount the same shared folder" in log
        good = cluster.start_worker("w1")  # the same command with the shared folders joins
        cluster.wait_workers(1)
        assert good.alive
    finally:
        cluster.stop()


def test_marks_are_confirmed_and_a_stale_one_is_replaced(redis_server, tmp_path: Path) -> None:
    from engine.queue.cluster import connect

    redis = connect(redis_server.url)
    try:
        a, b = tmp_path / "a", tmp_path / "b"
        a.mkdir()
        b.mkdir()
        tokens = SF.check_shared_folders(redis, "t:folders", {"input": a}, "first")
        assert (a / SF.CHECK_FILE).read_text() == tokens["input"]
        with pytest.raises(SF.SharedFolderError, match="member first wrote"):
            SF.check_shared_folders(redis, "t:folders", {"input": b}, "second")
        # the file was deleted while the first member runs: confirming writes it again
        (a / SF.CHECK_FILE).unlink()
        keeper = SF.FolderMarkKeeper(redis, "t:folders", {"input": a}, tokens, "first")
        keeper.confirm()
        assert (a / SF.CHECK_FILE).read_text() == tokens["input"]
        # nobody confirmed the mark for STALE_S seconds (the cluster moved): the next member marks its own folder
        mark = SF.FolderMark.loads(redis.hget("t:folders", "input"))
        old = SF.FolderMark(mark.token, mark.member, mark.path, time.time() - SF.STALE_S - 1)
        redis.hset("t:folders", "input", old.dumps())
        moved = SF.check_shared_folders(redis, "t:folders", {"input": b}, "second")
        assert moved["input"] != tokens["input"] and (b / SF.CHECK_FILE).read_text() == moved["input"]
    finally:
        redis.close()
