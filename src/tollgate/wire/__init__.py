"""Wire formats: the canonical OpenAI shapes and Server-Sent Events framing."""
