"""State behind small protocols, with backends chosen by URL scheme (memory://, sqlite:///...)."""
