"""Chaos on real processes, the CI version (about 3 minutes): a redis-server, one server, three workers sharing
input/output folders; 60 mixed prompts (render_avatar with soundtracks of different lengths, say_text) queued in
bursts by three API clients while workers are SIGKILLed and restarted at random moments and Redis is restarted
once. Every prompt must end exactly once in history with a valid MP4 (decoded and probed: 512x512, 25 fps, audio
within 40 ms), nothing overwritten or truncated, no orphaned temporary files or claims, the queue drained.
``benchmarks/chaos.py --minutes 30`` is the long run."""

from __future__ import annotations

from pathlib import Path

from tests.chaos_support import Chaos, ChaosPlan
from tests.cluster_support import LocalCluster


def test_sixty_prompts_survive_killed_workers_and_a_redis_restart(tmp_path: Path) -> None:
    plan = ChaosPlan(prompts=60, workers=3, clients=3, redis_restarts=1, seed=18,
                     drain_timeout_s=420)
    cluster = LocalCluster(tmp_path / "chaos").start(workers=plan.workers)
    try:
        report = Chaos(cluster, plan).run()
    finally:
        cluster.stop()
    print(report.summary())
    assert report.ok, report.problems
    assert report.prompts == report.completed == 60
    assert report.kills >= 3 and report.redis_restarts == 1, report.summary()
