"""Azure OpenAI: the OpenAI wire format at a per-deployment URL with an ``api-key`` header."""
