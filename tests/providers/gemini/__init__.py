"""Tests of the Gemini adapter: golden request, response and stream cases, errors and schema cleaning."""
