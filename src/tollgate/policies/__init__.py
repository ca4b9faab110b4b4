"""Policies: one module each, holding its config and its class; built once per config version."""
