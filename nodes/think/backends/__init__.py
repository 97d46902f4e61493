"""Chat backends behind one interface (``base.ChatBackend``): Ollama, OpenAI-compatible servers, in-process
llama.cpp; ``select.open_backend`` picks one (``auto``: Ollama when its server answers, else in-process)."""
