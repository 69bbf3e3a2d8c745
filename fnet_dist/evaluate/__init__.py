"""Evaluation of edited models (filled below)."""
