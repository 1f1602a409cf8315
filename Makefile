# `make demo` and `make test` build .venv themselves (idempotent: re-installs only when pyproject.toml changes).
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: demo test venv clean adabldm-weights

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	@touch $(STAMP)

demo: $(STAMP)
	MPLBACKEND=Agg $(PY) -m defectlab.demo --out outputs/demo --overwrite

# unit tests and every notebook (nbval, quick mode), in one pytest run
test: $(STAMP)
	DEFECTLAB_QUICK=1 MPLBACKEND=Agg $(PY) -m pytest tests notebooks --nbval-lax -q $(PYTEST_ARGS)

# AdaBLDM's trained offline checkpoint for notebook 05's control panel: trained once (about 15 min on one
# free CPU core), cached with its SHA-256 in $$DEFECTLAB_ADABLDM_CACHE or ~/.cache/defectlab/adabldm, reused after
adabldm-weights: $(STAMP)
	$(PY) -m defectlab.adabldm.cache --threads 1

clean:
	rm -rf outputs build *.egg-info
