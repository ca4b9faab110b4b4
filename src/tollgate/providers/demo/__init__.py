"""The built-in demo provider: deterministic canned answers in the OpenAI wire format, no network."""
