"""Hearing the user: node classes in ``nodes`` (MicInput, VAD, Whisper); beside them the Whisper weights
(``weights``), the CTranslate2 -> openai-whisper converter (``convert_ct2``), the two Whisper backends
(``backends``), Silero VAD (``vad``) and incremental turn transcription (``incremental``)."""
