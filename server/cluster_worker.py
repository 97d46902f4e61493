"""``python main.py worker --queue redis://HOST:PORT/DB``: a cluster worker.

It runs prompts from the shared queue with its own model manager, hosts the live conversations servers place on it
(``server.talk.relay.TalkHost``), announces itself with a heartbeat, and on SIGTERM/SIGINT stops taking work and
hands an unfinished prompt back to the queue. At start it removes what dead runs left in the shared folders
(``engine.files.output_names.reap``). It serves no HTTP: the servers do.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from engine.app.runtime import Runtime
from engine.files.folders import folders
from engine.files.output_names import reap
from server.talk.relay import TalkHost

log = logging.getLogger(__name__)


async def serve_worker(runtime: Runtime) -> None:
    """Run until SIGTERM/SIGINT."""
    assert runtime.cluster is not None, "a worker needs --queue redis://..."
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    for kind in ("output", "input"):  # what a killed predecessor left in the shared folders (claims, .part files)
        report = await asyncio.to_thread(reap, folders.get(kind))
        if report.claims or report.parts:
            log.info("worker: removed %d stale claim(s) and %d temporary file(s) from the %s folder",
                     report.claims, report.parts, kind)
    await runtime.start(local_worker=True, serve_events=False)
    host = asyncio.create_task(TalkHost(runtime).serve(), name="talk-host")
    info = runtime.describe()
    log.info("worker %s ready: device %s, protocol %s, queue %s", info.name, info.device, info.protocol,
             runtime.cluster.url.split("@")[-1])
    try:
        await stop.wait()
    finally:
        log.info("worker %s stopping", info.name)
        host.cancel()
        await asyncio.gather(host, return_exceptions=True)
        await runtime.stop()


def run_worker(runtime: Runtime) -> int:
    asyncio.run(serve_worker(runtime))
    return 0

