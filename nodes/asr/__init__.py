"""Speech recognition internals used by ``nodes.listen``: Whisper weights (``weights``), the CTranslate2 ->
openai-whisper converter (``convert_ct2``), the two backends (``backends``), Silero VAD (``vad``) and incremental
turn transcription (``incremental``). No node classes live here."""
