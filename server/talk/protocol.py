"""The Talk WebSocket protocol: constants, client messages, media packets (see ``ui/talk/src/protocol.ts``).

client -> server  JSON ``start | text | mute | interrupt | played``; binary PCM16 LE mono 16 kHz mic frames.
server -> client  JSON ``ready | transcript | state | latency | flush | error``; binary media packets
                  ``[kind u8][turn u32 LE][pts f64 LE] + payload`` (kind 1 = JPEG frame, 2 = PCM16 24 kHz).
"""

from __future__ import annotations

import struct
from typing import Annotated, Literal

import pydantic

MIC_RATE = 16000
AUDIO_RATE = 24000
KIND_FRAME = 1
KIND_AUDIO = 2
HEADER = struct.Struct("<BId")
MAX_MIC_FRAME_BYTES = MIC_RATE * 2  # one second of PCM16 per message at most
MAX_TEXT_CHARS = 2000
MAX_PROTOCOL_ERRORS = 50  # a client that keeps sending garbage is disconnected
MAX_NAME_CHARS = 200  # a persona, photo, voice or workflow name
MAX_TURN = 2**32 - 1  # turns travel as u32 in media packets
Name = Annotated[str, pydantic.Field(max_length=MAX_NAME_CHARS)]
Stamp = Annotated[float, pydantic.Field(allow_inf_nan=False, ge=0)]  # epoch ms


# Protocol messages ----------------------------------------------------------------------------------------------
class StartMessage(pydantic.BaseModel):
    type: Literal["start"]
    persona: Name = ""
    photo: Name = ""
    voice: Name = ""
    language: Literal["", "auto", "ru", "en"] = ""  # the spoken language (the listen and LLM nodes' `language`)
    workflow: Name = ""
    sample_rate: int = pydantic.Field(MIC_RATE, ge=1, le=384_000)


class TextMessage(pydantic.BaseModel):
    type: Literal["text"]
    text: str = pydantic.Field(max_length=MAX_TEXT_CHARS)


class MuteMessage(pydantic.BaseModel):
    type: Literal["mute"]
    muted: bool


class InterruptMessage(pydantic.BaseModel):
    type: Literal["interrupt"]


class PlayedMessage(pydantic.BaseModel):
    type: Literal["played"]
    turn: int = pydantic.Field(ge=1, le=MAX_TURN)
    first_audio_played: Stamp | None = None
    first_frame_played: Stamp | None = None


ClientMessage = pydantic.TypeAdapter(Annotated[StartMessage | TextMessage | MuteMessage | InterruptMessage |
                                               PlayedMessage, pydantic.Field(discriminator="type")])


class ProtocolError(ValueError):
    """The client sent something the protocol does not allow; it is told, and the connection stays."""


def media_packet(kind: int, turn: int, pts: float, payload: bytes) -> bytes:
    return HEADER.pack(kind, turn, pts) + payload

