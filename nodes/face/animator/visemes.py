"""Phoneme -> mouth shape (viseme) for the default animator.

A shape is (open, spread, round): ``open`` scales the jaw opening the voice envelope asks for (bilabials nearly
close the lips), ``spread`` and ``round`` drive the lip-width controls. Symbols are IPA (espeak-ng, piper) or
ARPAbet (CMUdict); stress marks, length marks and digits are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

from nodes.io.media import PhonemeTiming


@dataclass(frozen=True)
class Viseme:
    open: float
    spread: float
    round: float


NEUTRAL = Viseme(1.0, 0.0, 0.0)
REST = Viseme(0.0, 0.0, 0.0)

_IPA: dict[str, Viseme] = {}


def _add(symbols: str, v: Viseme) -> None:
    for s in symbols.split():
        _IPA[s] = v


_add("a ɑ ɐ æ ʌ aɪ aʊ AA AE AH AY AW", Viseme(1.15, 0.1, 0.0))
_add("e ɛ eɪ EH EY", Viseme(0.8, 0.5, 0.0))
_add("ə ɚ ɜ ɝ ER AX", Viseme(0.7, 0.1, 0.0))
_add("i ɪ ɨ IY IH", Viseme(0.55, 0.9, 0.0))
_add("o ɔ oʊ ɔɪ OW AO OY", Viseme(0.85, 0.0, 0.75))
_add("u ʊ ʉ y ɯ UW UH", Viseme(0.5, 0.0, 1.0))
_add("w ʍ W", Viseme(0.35, 0.0, 0.9))
_add("p b m P B M", Viseme(0.3, 0.0, 0.0))
_add("f v F V", Viseme(0.45, 0.2, 0.0))
_add("θ ð TH DH", Viseme(0.6, 0.1, 0.0))
_add("s z ʃ ʒ ɕ ʑ ʂ ʐ S Z SH ZH", Viseme(0.55, 0.5, 0.1))
_add("tʃ dʒ tɕ CH JH", Viseme(0.55, 0.2, 0.4))
_add("t d n l ɾ r ɹ ɫ T D N L R", Viseme(0.65, 0.2, 0.0))
_add("k g ŋ x ɣ h K G NG HH", Viseme(0.7, 0.1, 0.0))
_add("j JH Y", Viseme(0.6, 0.6, 0.0))

_STRIP = "ˈˌːˑ0123456789ʲ̃ ̩"


def viseme_for(phoneme: str) -> Viseme:
    """The mouth shape of one phoneme symbol (unknown symbols open the mouth as the voice asks)."""
    p = phoneme.strip()
    if not p or p in ("_", "sil", "sp", "pau", "SIL", "SP"):
        return REST
    key = "".join(ch for ch in p if ch not in _STRIP) or p
    for candidate in (key, key.upper(), key[:2], key[:1], key[:1].upper()):
        if candidate in _IPA:
            return _IPA[candidate]
    return NEUTRAL


def shape_at(timings: tuple[PhonemeTiming, ...], t: float, blend: float = 0.06) -> Viseme | None:
    """The viseme at utterance time ``t``, cross-fading into the next phoneme over ``blend`` seconds
    (coarticulation). None when ``t`` is outside every timing."""
    if not timings:
        return None
    for k, ph in enumerate(timings):
        if ph.start <= t < ph.end:
            v = viseme_for(ph.phoneme)
            if k + 1 < len(timings) and ph.end - t < blend:
                w = 1.0 - (ph.end - t) / blend
                n = viseme_for(timings[k + 1].phoneme)
                return Viseme(*(a + (b - a) * 0.5 * w for a, b in ((v.open, n.open), (v.spread, n.spread),
                                                                    (v.round, n.round))))
            return v
    return None
