"""Every cluster member must see the same input and output folders; checked at start, so a worker that cannot see
what a server wrote refuses to start instead of failing prompts later.

The first member writes a random token into ``<folder>/.avatargraph-cluster-check`` and records it in Redis
(``<prefix>:folders``, one field per folder kind, with the time a member last confirmed it). A member that starts
later reads the token from Redis and looks for the same file in its own ``--input-dir`` / ``--output-dir``: found,
it joins; missing or different while another member confirmed the mark within ``STALE_S`` seconds, it refuses with
``SharedFolderError`` (``main.py`` exits with code 3). Members that passed the check confirm the mark every
``REFRESH_S`` seconds (and write the file again if someone deleted it), so a mark nobody vouches for any more (the
whole cluster moved to new folders) is replaced by the next member to start.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engine.files import atomic

log = logging.getLogger(__name__)

CHECK_FILE = ".avatargraph-cluster-check"
REFRESH_S = 10.0
STALE_S = 60.0


class SharedFolderError(RuntimeError):
    """This member's input or output folder is not the one the rest of the cluster uses."""


@dataclass(frozen=True)
class FolderMark:
    token: str
    member: str  # who wrote the file
    path: str  # where that member has the folder
    confirmed: float  # when a member last saw the file (time.time())

    @classmethod
    def loads(cls, raw: bytes | str | None) -> FolderMark | None:
        if raw is None:
            return None
        try:
            return cls(**json.loads(raw))
        except (ValueError, TypeError):
            return None

    def dumps(self) -> str:
        return json.dumps(asdict(self))


def _read_token(folder: Path) -> str | None:
    try:
        return (folder / CHECK_FILE).read_text().strip()
    except OSError:
        return None


def _compare_and_set(redis: Any, key: str, field: str, old: bytes | None, new: str) -> bool:
    """Set ``key[field]`` to ``new`` if it still holds ``old`` (None: unset)."""
    from redis.exceptions import WatchError

    with redis.pipeline(transaction=True) as pipe:
        try:
            pipe.watch(key)
            if pipe.hget(key, field) != old:
                return False
            pipe.multi()
            pipe.hset(key, field, new)
            pipe.execute()
            return True
        except WatchError:
            return False


def check_shared_folders(redis: Any, key: str, folders: dict[str, Path], member: str) -> dict[str, str]:
    """Verify (or, as the first member, mark) each folder; returns the token per folder kind."""
    tokens: dict[str, str] = {}
    for kind, folder in folders.items():
        for _attempt in range(5):
            raw = redis.hget(key, kind)
            mark = FolderMark.loads(raw)
            now = time.time()
            if mark is not None and _read_token(folder) == mark.token:
                confirmed = FolderMark(mark.token, mark.member, mark.path, now)
                _compare_and_set(redis, key, kind, raw, confirmed.dumps())
                tokens[kind] = mark.token
                break
            if mark is not None and now - mark.confirmed < STALE_S:
                raise SharedFolderError(
                    f"--{kind}-dir {folder} is not the {kind} folder the rest of this cluster uses: member "
                    f"{mark.member} wrote {CHECK_FILE} into its {kind} folder ({mark.path}) and it is not in {folder}. "
                    f"Mount the same shared folder (NFS, SMB, a container volume) at --{kind}-dir on every server and "
                    "worker, so that files uploaded through any server and videos written by any worker are seen "
                    "by all.")
            token = uuid.uuid4().hex
            atomic.write_bytes(folder / CHECK_FILE, token.encode())
            if _compare_and_set(redis, key, kind, raw, FolderMark(token, member, str(folder), now).dumps()):
                log.info("cluster: marked the shared %s folder %s", kind, folder)
                tokens[kind] = token
                break
        else:
            raise SharedFolderError(f"could not agree on the shared {kind} folder with the other members starting "
                                    "at the same time; start this member again")
    return tokens


class FolderMarkKeeper:
    """Confirms this member's marks every ``REFRESH_S`` seconds from a thread (and rewrites a deleted file)."""

    def __init__(self, redis: Any, key: str, folders: dict[str, Path], tokens: dict[str, str], member: str):
        self.redis, self.key, self.folders, self.tokens, self.member = redis, key, folders, tokens, member
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shared-folders", daemon=True)

    def start(self) -> FolderMarkKeeper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def confirm(self) -> None:
        for kind, folder in self.folders.items():
            token = self.tokens.get(kind)
            raw = self.redis.hget(self.key, kind)
            mark = FolderMark.loads(raw)
            if token is None or mark is None or mark.token != token:
                continue  # the cluster moved on to another mark: nothing of ours to confirm
            if _read_token(folder) != token:
                atomic.write_bytes(folder / CHECK_FILE, token.encode())
            _compare_and_set(self.redis, self.key, kind, raw,
                             FolderMark(token, mark.member, mark.path, time.time()).dumps())

    def _run(self) -> None:
        while not self._stop.wait(REFRESH_S):
            try:
                self.confirm()
            except Exception as exc:  # noqa: BLE001 - Redis away or the folder unmounted: try again next period
                log.debug("cluster: confirming the shared folders failed (%s)", exc)
