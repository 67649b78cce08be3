"""Test helpers shipped with the package: an Ollama-protocol server backed by real local models."""

from langchain_slm_router.testing.ollama_server import OllamaProtocolServer
from langchain_slm_router.testing.processes import ServerStartError, start_server_process

__all__ = ["OllamaProtocolServer", "ServerStartError", "start_server_process"]
