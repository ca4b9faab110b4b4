"""Fake providers speaking each provider's real wire format, with scenarios chosen by the model name."""
