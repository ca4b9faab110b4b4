"""Guardrails: detectors and actions on prompts and answers, as a library the INSPECT/RESPOND policies use."""

from tollgate.guardrails.masking import MaskSession, PlaceholderRestorer
from tollgate.guardrails.pii import Match, PIIDetector

__all__ = ["MaskSession", "Match", "PIIDetector", "PlaceholderRestorer"]
