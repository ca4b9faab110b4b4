"""Observability: every metric defined in one module, and the recorder that turns finished requests into them."""
