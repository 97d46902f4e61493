"""Output names that stay unique across processes and hosts writing into one shared folder.

Every writer of a numbered output (``<base>_00001_.mp4``, ComfyUI's counter form) goes through three steps:

1. **Claim** the number: create the hidden claim file ``.<name>.claim`` with ``O_CREAT | O_EXCL`` (atomic on
   local file systems and on NFSv3+), taking the next number after every final file and claim already there. The
   claim records who holds it (host, pid, process start time, a run token), the prompt's key
   (``prompt_id/node_id``) and the private temporary file. A thread touches the claim every ``lease / 4`` seconds.
2. **Write** the private temporary file ``.<name>.<run>.part`` (hidden, unique per run): nothing else opens it.
3. **Publish** it: a hard link to the final name (fails when that name exists, so it never overwrites) and the
   temporary file removed; where hard links are not supported (some SMB mounts), a rename, which the claim
   protects. The claim then says ``published`` and stays for ``retention`` seconds.

A re-run of the same prompt (a re-queued prompt after its worker died, or ran twice) finds the claim with its key
and takes the same number over: it replaces only what that prompt itself published, never another's output.
A dead run's leftovers (claim + temporary file) are removed by whoever next claims a name in that folder, or by
``reap`` (workers call it at start): a claim whose holder is provably dead (same host, that pid not running with
that start time) is stale at once; one from another host when its lease has not been renewed for ``lease``
seconds (so every member sharing a folder needs its own host name, as containers and machines have). Removal
first renames the claim to a private name and checks it still holds what was judged stale, so a fresh claim made
meanwhile is put back, and publishing refuses to overwrite in any case (a final file found
where a claim said none was published is kept, and the run takes the next number instead).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

CLAIM_SUFFIX = ".claim"
PART_SUFFIX = ".part"
DEFAULT_LEASE_S = float(os.environ.get("AVATARGRAPH_OUTPUT_LEASE_S", "120"))
DEFAULT_RETENTION_S = float(os.environ.get("AVATARGRAPH_OUTPUT_CLAIM_RETENTION_S", str(24 * 3600)))
MAX_CLAIM_ATTEMPTS = 1000


class OutputNameError(OSError):
    """No output name could be claimed in a folder (not writable, or every attempt collided)."""


# Who holds a claim ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Holder:
    """A process, identified across hosts: host name, pid and the process's start time."""
    host: str
    pid: int
    started: float

    @staticmethod
    def current() -> Holder:
        return _holder(os.getpid())  # keyed by pid: a forked child is another holder

    def dead_here(self) -> bool:
        """True when the holder ran on this host and is gone (its pid is free or now another process)."""
        if self.host != socket.gethostname():
            return False
        import psutil

        try:
            return abs(psutil.Process(self.pid).create_time() - self.started) > 1.0
        except psutil.NoSuchProcess:
            return True
        except psutil.Error:
            return False


@functools.cache
def _holder(pid: int) -> Holder:
    import psutil

    return Holder(socket.gethostname(), pid, round(psutil.Process(pid).create_time(), 2))


@dataclass
class ClaimRecord:
    """The content of a claim file."""
    holder: Holder
    run: str  # a token unique to one claim by one run
    key: str | None  # prompt_id/node_id: a re-run of the same prompt takes the claim over
    temp: str  # the private temporary file's name (same folder)
    state: str = "writing"  # writing | published
    since: float = field(default_factory=time.time)

    def dumps(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def loads(cls, data: bytes) -> ClaimRecord | None:
        try:
            raw = json.loads(data)
            return cls(holder=Holder(**raw["holder"]), run=raw["run"], key=raw.get("key"), temp=raw["temp"],
                       state=raw.get("state", "writing"), since=float(raw.get("since", 0.0)))
        except (ValueError, KeyError, TypeError):
            return None


def claim_path_for(final: Path) -> Path:
    return final.with_name(f".{final.name}{CLAIM_SUFFIX}")


def _read_claim(path: Path) -> ClaimRecord | None:
    try:
        return ClaimRecord.loads(path.read_bytes())
    except OSError:
        return None


def _write_replace(path: Path, data: bytes) -> None:
    """Replace ``path``'s content atomically (private temporary name, then rename)."""
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _is_stale(path: Path, record: ClaimRecord | None, lease_s: float, now: float) -> bool:
    """Whether a claim in state ``writing`` was left by a run that is gone."""
    try:
        age = now - path.stat().st_mtime
    except FileNotFoundError:
        return False
    if record is None:  # being written right now, or garbage: judge by age alone
        return age > lease_s
    return record.holder.dead_here() or age > lease_s


# Claiming, writing, publishing ------------------------------------------------------------------------------------
@dataclass
class OutputClaim:
    """A claimed output name: write ``temp``, then ``publish()`` (or ``abort()``)."""
    directory: Path
    base: str
    extension: str
    number: int
    record: ClaimRecord
    lease_s: float = DEFAULT_LEASE_S
    previous: ClaimRecord | None = None  # what a takeover replaced (restored by abort when it was published)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _keeper: threading.Thread | None = field(default=None, repr=False)

    @property
    def filename(self) -> str:
        return output_filename(self.base, self.number, self.extension)

    @property
    def path(self) -> Path:
        return self.directory / self.filename

    @property
    def temp(self) -> Path:
        return self.directory / self.record.temp

    @property
    def claim_path(self) -> Path:
        return claim_path_for(self.path)

    def _start_keepalive(self) -> None:
        def keep() -> None:
            while not self._stop.wait(max(self.lease_s / 4, 0.05)):
                with contextlib.suppress(OSError):
                    os.utime(self.claim_path)
        self._keeper = threading.Thread(target=keep, name=f"claim:{self.filename}", daemon=True)
        self._keeper.start()

    def _stop_keepalive(self) -> None:
        self._stop.set()
        if self._keeper is not None and self._keeper is not threading.current_thread():
            self._keeper.join(timeout=5)

    def publish(self) -> Path:
        """Move the finished temporary file to the final name; never overwrites another prompt's output.

        Returns the published path; when the claim was lost meanwhile to a different prompt (a folder shared with
        writers that do not claim), the file is published under the next free number instead.
        """
        self._stop_keepalive()
        current = _read_claim(self.claim_path)
        same_prompt = (current is not None and self.record.key is not None and current.key == self.record.key)
        if current is None or (current.run != self.record.run and not same_prompt):
            log.warning("the claim on %s was lost to another run; publishing under the next free number",
                        self.path)
            return self._publish_elsewhere()
        # replacing is allowed only over this prompt's own earlier output: after a takeover, or as the earlier
        # run that a re-run took over from
        replace = same_prompt and (self.previous is not None or current.run != self.record.run)
        if not publish_file(self.temp, self.path, replace=replace):
            log.warning("%s appeared without a claim; publishing under the next free number", self.path)
            return self._publish_elsewhere()
        if current.run == self.record.run:
            published = ClaimRecord(self.record.holder, self.record.run, self.record.key, self.record.temp,
                                    "published")
            with contextlib.suppress(OSError):
                _write_replace(self.claim_path, published.dumps())
        return self.path

    def _publish_elsewhere(self) -> Path:
        other = claim_output(self.directory, self.base, self.extension, key=None, lease_s=self.lease_s,
                             keepalive=False)
        try:
            os.replace(self.temp, other.temp)
        except BaseException:
            other.abort()
            raise
        self.number, self.record = other.number, other.record
        return other.publish()

    def abort(self) -> None:
        """Remove the temporary file and give the name back (or restore the prompt's earlier publication)."""
        self._stop_keepalive()
        with contextlib.suppress(FileNotFoundError):
            self.temp.unlink()
        current = _read_claim(self.claim_path)
        if current is None or current.run != self.record.run:
            return
        with contextlib.suppress(OSError):
            if self.previous is not None and self.previous.state == "published" and self.path.exists():
                _write_replace(self.claim_path, self.previous.dumps())
            else:
                self.claim_path.unlink()

    def __enter__(self) -> OutputClaim:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


def publish_file(temp: Path, final: Path, replace: bool) -> bool:
    """Put ``temp`` at ``final`` atomically; False (``temp`` left in place) when ``final`` exists and ``replace``
    is not allowed. A hard link cannot overwrite; where the file system has none, a rename after a check (the
    claim, or the caller's care, covers the narrow window left)."""
    if replace:
        os.replace(temp, final)
        return True
    try:
        os.link(temp, final)
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS):
            raise
        if final.exists():
            return False
        os.replace(temp, final)
        return True
    temp.unlink()
    return True


def output_filename(base: str, number: int, extension: str) -> str:
    return f"{base}_{number:05}_.{extension}"


def _numbers(directory: Path, base: str, extension: str) -> tuple[set[int], dict[int, Path]]:
    """Numbers taken by final files and by claims in ``directory``."""
    final = re.compile(rf"^{re.escape(base)}_(\d+)_\.{re.escape(extension)}$")
    claim = re.compile(rf"^\.{re.escape(base)}_(\d+)_\.{re.escape(extension)}{re.escape(CLAIM_SUFFIX)}$")
    finals: set[int] = set()
    claims: dict[int, Path] = {}
    for name in os.listdir(directory):
        if m := final.match(name):
            finals.add(int(m.group(1)))
        elif m := claim.match(name):
            claims[int(m.group(1))] = directory / name
    return finals, claims


def next_free_number(directory: Path, base: str, extension: str) -> int:
    """The number the next claim would try first: one past every final file and claim in ``directory``."""
    finals, claims = _numbers(directory, base, extension)
    return max(finals | set(claims), default=0) + 1


def claim_output(directory: Path, base: str, extension: str = "mp4", key: str | None = None,
                 lease_s: float = DEFAULT_LEASE_S, keepalive: bool = True) -> OutputClaim:
    """Claim the next free ``<base>_NNNNN_.<extension>`` in ``directory`` (or take over ``key``'s earlier claim).

    ``key`` names what is being written (``prompt_id/node_id``); a run with the same key reuses that claim's
    number. The directory must exist. Blocking (file system calls): run it off the event loop.
    """
    run = uuid.uuid4().hex[:12]
    holder = Holder.current()
    _finals, claims = _numbers(directory, base, extension)
    if key is not None:
        taken = _take_over(directory, base, extension, key, claims, holder, run, lease_s)
        if taken is not None:
            if keepalive:
                taken._start_keepalive()
            return taken
    reap_claims(directory, claims.values(), lease_s)
    number = next_free_number(directory, base, extension)
    for _ in range(MAX_CLAIM_ATTEMPTS):
        final = directory / output_filename(base, number, extension)
        record = ClaimRecord(holder, run, key, f".{final.name}.{run}{PART_SUFFIX}")
        try:
            fd = os.open(claim_path_for(final), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            number += 1
            continue
        except OSError as exc:
            raise OutputNameError(exc.errno, f"cannot claim an output name in {directory}: {exc.strerror}; check "
                                             "the folder's permissions and free space") from None
        try:
            os.write(fd, record.dumps())
        finally:
            os.close(fd)
        if final.exists():  # written by something that does not claim: leave it alone
            claim_path_for(final).unlink()
            number += 1
            continue
        claim = OutputClaim(directory, base, extension, number, record, lease_s)
        if keepalive:
            claim._start_keepalive()
        return claim
    raise OutputNameError(errno.EEXIST, f"no free output name for {base!r} in {directory} after "
                                        f"{MAX_CLAIM_ATTEMPTS} attempts")


def _take_over(directory: Path, base: str, extension: str, key: str, claims: dict[int, Path], holder: Holder,
               run: str, lease_s: float) -> OutputClaim | None:
    """The earlier claim of the same prompt (a re-run), now held by this run; its dead leftovers removed."""
    now = time.time()
    for number, path in sorted(claims.items()):
        record = _read_claim(path)
        if record is None or record.key != key:
            continue
        final = directory / output_filename(base, number, extension)
        mine = ClaimRecord(holder, run, key, f".{final.name}.{run}{PART_SUFFIX}")
        dead = record.state == "writing" and _is_stale(path, record, lease_s, now)
        try:
            _write_replace(path, mine.dumps())
        except OSError:
            continue
        if dead:  # a live earlier run (a worker declared lost that still runs) keeps its file and publishes it
            with contextlib.suppress(OSError):
                (directory / record.temp).unlink()
        log.info("taking over %s from an earlier run of %s (%s)", final.name, key, record.state)
        return OutputClaim(directory, base, extension, number, mine, lease_s, previous=record)
    return None


# Cleaning up after dead runs --------------------------------------------------------------------------------------
@dataclass
class ReapReport:
    claims: int = 0  # stale claims removed
    parts: int = 0  # temporary files removed
    published: int = 0  # published claims past retention removed


def reap_claims(directory: Path, claim_paths: Iterable[Path], lease_s: float = DEFAULT_LEASE_S,
                retention_s: float = DEFAULT_RETENTION_S, report: ReapReport | None = None) -> ReapReport:
    """Remove the stale claims among ``claim_paths`` (and their temporary files)."""
    report = report or ReapReport()
    now = time.time()
    for path in list(claim_paths):
        record = _read_claim(path)
        if record is not None and record.state == "published":
            try:
                old = now - path.stat().st_mtime > retention_s
            except FileNotFoundError:
                continue
            if old and _remove_claim_if(path, record):
                report.published += 1
            continue
        if not _is_stale(path, record, lease_s, now):
            continue
        if not _remove_claim_if(path, record):
            continue
        report.claims += 1
        if record is not None:
            with contextlib.suppress(FileNotFoundError):
                (directory / record.temp).unlink()
                report.parts += 1
        log.info("removed the stale output claim %s (%s)", path,
                 f"held by pid {record.holder.pid} on {record.holder.host}" if record else "unreadable")
    return report


def _remove_claim_if(path: Path, expected: ClaimRecord | None) -> bool:
    """Remove ``path`` if it still holds ``expected``; a claim made meanwhile is put back."""
    tomb = path.with_name(f"{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        os.rename(path, tomb)
    except FileNotFoundError:
        return False
    current = _read_claim(tomb)
    same = (current is None and expected is None) or (current is not None and expected is not None
                                                       and current.run == expected.run
                                                       and current.state == expected.state)
    if not same:
        with contextlib.suppress(OSError):
            os.link(tomb, path)  # fails when yet another claim was made: publishing refuses to overwrite anyway
        tomb.unlink()
        return False
    tomb.unlink()
    return True


def reap(root: Path, lease_s: float = DEFAULT_LEASE_S, retention_s: float = DEFAULT_RETENTION_S) -> ReapReport:
    """Remove dead runs' claims and temporary files below ``root`` (every subfolder); returns what was removed.

    Temporary files that no claim refers to are removed when untouched for ``lease_s`` seconds.
    """
    report = ReapReport()
    now = time.time()
    for directory, _dirs, names in os.walk(root):
        folder = Path(directory)
        claims = [folder / n for n in names if n.startswith(".") and n.endswith(CLAIM_SUFFIX)]
        reap_claims(folder, claims, lease_s, retention_s, report)
        referenced = set()
        for claim in claims:
            record = _read_claim(claim)
            if record is not None:
                referenced.add(record.temp)
        for name in names:
            if not name.startswith(".") or name in referenced:
                continue
            if not (name.endswith(PART_SUFFIX) or (name.endswith(".tmp") and CLAIM_SUFFIX in name)):
                continue
            path = folder / name
            try:
                if now - path.stat().st_mtime <= lease_s:
                    continue
                path.unlink()
            except FileNotFoundError:
                continue
            report.parts += 1
            log.info("removed the orphaned temporary file %s", path)
    return report
