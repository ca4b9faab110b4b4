"""Ollama: the native /api/chat and /api/embed endpoints of a local or remote Ollama server."""
