"""The engine server under its former name (tests and scripts import it from here): see
:mod:`langchain_slm_router.engine_server`, where it lives since ``slm-router eval`` and the demo start it."""

from langchain_slm_router import engine_server as _engine_server
from langchain_slm_router.engine_server import *  # noqa: F403
from langchain_slm_router.engine_server import main

globals().update({k: v for k, v in vars(_engine_server).items() if not k.startswith("__")})

if __name__ == "__main__":
    raise SystemExit(main())
