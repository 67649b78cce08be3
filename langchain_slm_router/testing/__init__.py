"""Test helpers shipped with the package (the engine server itself lives in :mod:`langchain_slm_router.engine_server`)."""

from langchain_slm_router.engine_server import OllamaProtocolServer
from langchain_slm_router.testing.processes import ServerStartError, start_server_process

__all__ = ["OllamaProtocolServer", "ServerStartError", "start_server_process"]
