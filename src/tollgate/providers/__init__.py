"""Provider adapters: one folder per wire format, registered in ``registry.py``."""
