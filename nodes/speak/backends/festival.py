"""Festival: Russian unit selection (``festvox-ru``, msu_ru_nsh) and English HTS (``festvox-us-slt-hts``).

One long-lived ``festival`` process per synthesizer keeps the voice loaded (loading costs ~0.8 s), so a
sentence costs only its synthesis. Phoneme end times come from the utterance's Segment relation.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from nodes.io.media import PhonemeTiming
from nodes.speak.backends.base import BackendUnavailable, SpeechPiece, Synthesizer, TTSBackend
from nodes.speak.voice import Voice

log = logging.getLogger(__name__)

# language -> (scheme voice function, the file that shows the Debian voice package is installed, package)
VOICES = {
    "ru": ("voice_msu_ru_nsh_clunits", "/usr/share/festival/voices/russian/msu_ru_nsh_clunits", "festvox-ru"),
    "en": ("voice_cmu_us_slt_arctic_hts", "/usr/share/festival/voices/us/cmu_us_slt_arctic_hts",
           "festvox-us-slt-hts"),
}
_DONE = "AVATARGRAPH-DONE"


def scheme_string(text: str) -> str:
    """A Scheme string literal for ``text``."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class FestivalSynthesizer(Synthesizer):
    max_chars = 300

    def __init__(self, language: str, voice_fn: str, timeout: float = 60.0):
        self.language = language
        self.timeout = timeout
        self.sample_rate = 16000 if language == "ru" else 32000
        self._dir = tempfile.TemporaryDirectory(prefix="festival-")
        self._lock = threading.Lock()
        cmd = ["festival", "--pipe"]
        if shutil.which("stdbuf"):
            cmd = ["stdbuf", "-oL", *cmd]  # line-buffered stdout so the done markers arrive at once
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL)
        self._command(f"({voice_fn})")

    def _command(self, scheme: str) -> None:
        proc = self._proc
        if proc.poll() is not None or proc.stdin is None or proc.stdout is None:
            raise RuntimeError(f"the festival process has exited (code {proc.returncode})")
        proc.stdin.write(f'{scheme}\n(format t "{_DONE}\\n")\n'.encode())
        proc.stdin.flush()
        while True:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError("festival stopped while synthesizing; is the voice package installed?")
            if line.strip().decode(errors="replace") == _DONE:
                return

    def speak(self, sentence: str, language: str, voice: Voice | None = None) -> Iterator[SpeechPiece]:
        import soundfile as sf

        wav = Path(self._dir.name) / "utt.wav"
        segs = Path(self._dir.name) / "utt.segs"
        with self._lock:
            self._command(f"(set! avatargraph_utt (utt.synth (Utterance Text {scheme_string(sentence)})))"
                          f"(utt.save.wave avatargraph_utt {scheme_string(str(wav))} 'riff)"
                          f"(utt.save.segs avatargraph_utt {scheme_string(str(segs))})")
            samples, rate = sf.read(wav, dtype="float32")
            timings = parse_segs(segs.read_text(encoding="utf-8", errors="replace"))
        self.sample_rate = rate
        yield SpeechPiece(samples=samples.reshape(-1), sample_rate=rate, timings=timings)

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                if self._proc.stdin is not None:
                    self._proc.stdin.close()
                self._proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
        self._dir.cleanup()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - best effort at interpreter shutdown
            pass


def parse_segs(text: str) -> tuple[PhonemeTiming, ...]:
    """Festival's ESPS label file (``end_time 100 phone`` after a ``#`` line) -> timings."""
    out, start, body = [], 0.0, False
    for line in text.splitlines():
        if line.strip() == "#":
            body = True
            continue
        parts = line.split()
        if not body or len(parts) < 3:
            continue
        end = float(parts[0])
        out.append(PhonemeTiming(parts[2], start, end))
        start = end
    return tuple(out)


class FestivalBackend(TTSBackend):
    name = "festival"
    languages = ("ru", "en")
    quality = {"ru": 30, "en": 20}

    def missing(self, language: str, voice_name: str = "default") -> str | None:
        if language not in VOICES:
            return f"festival has voices for {', '.join(VOICES)}, not {language!r}"
        if shutil.which("festival") is None:
            return "festival is not installed (apt-get install festival)"
        _, folder, package = VOICES[language]
        if not Path(folder).exists():
            return f"the festival voice for {language!r} is not installed (apt-get install {package})"
        return None

    def load(self, language: str, voice_name: str = "default") -> FestivalSynthesizer:
        self.check(language, voice_name)
        try:
            return FestivalSynthesizer(language, VOICES[language][0])
        except RuntimeError as exc:
            raise BackendUnavailable(f"festival could not load its {language} voice: {exc}") from exc

    def size_bytes(self, language: str, voice_name: str = "default") -> int:
        return 500 * 2**20
