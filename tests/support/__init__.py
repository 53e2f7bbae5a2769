"""Shared test helpers: a tiny deterministic reasoning model and a vLLM server runner."""
