"""The LLM persona's parts: persona files, prompt building, dialog memory, chat backends (Ollama, any
OpenAI-compatible server, in-process llama.cpp), and cutting the token stream into spoken sentences.

Modules here import only the standard library and pydantic at top level; model and HTTP libraries are imported
inside the functions that need them (the node registry imports every module under ``nodes/`` at start-up).
"""
