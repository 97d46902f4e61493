"""ComfyUI's own execution tests, vendored (see README.md here): they run against our server."""
