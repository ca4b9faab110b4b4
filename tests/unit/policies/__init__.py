"""Unit tests of the policies."""
