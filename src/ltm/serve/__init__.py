"""Serve: an exported model behind an OpenAI-compatible HTTP API (FastAPI + uvicorn)."""
