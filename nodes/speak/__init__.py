"""Speaking: one TTS interface over several backends (XTTS, Piper, Festival, espeak-ng), voices, voice
adaptation and similarity, and the voice-cloning command line.

Modules: ``nodes`` (the graph nodes), ``backends`` (one module per engine), ``text`` (sentence chunking,
language detection), ``voice`` (the VOICE value), ``adapt`` (pyworld adaptation), ``similarity`` (speaker
embeddings), ``voice_cli`` (``main.py voice prepare|train``).
"""
