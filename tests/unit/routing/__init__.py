"""Unit tests of the pure routing decisions (strategies, breaker, retries, budget, explain)."""
