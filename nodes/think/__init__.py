"""Thinking: the LLM persona (node classes in ``nodes``), its persona files, prompt building, dialog memory, reply
streaming and chat backends (Ollama, any OpenAI-compatible server, in-process llama.cpp in ``backends``).

Modules here import only the standard library and pydantic at top level; model and HTTP libraries are imported
inside the functions that need them (the node registry imports every module under ``nodes/`` at start-up).
"""
