"""OpenAI and OpenAI-compatible APIs (vLLM, Together, Groq, DeepSeek, xAI, Perplexity, Mistral, ...)."""
