"""Test helpers shipped with the package: an Ollama-protocol server backed by real local models."""

from langchain_slm_router.testing.ollama_server import OllamaProtocolServer

__all__ = ["OllamaProtocolServer"]
