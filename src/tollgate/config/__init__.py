"""Configuration: static settings, the YAML file (validated), and the compiled snapshot the gateway serves."""
