# `make demo` and `make test` build .venv themselves (idempotent: re-installs only when pyproject.toml changes).
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: demo test venv clean course notebooks anomalib-venv anomalib-bench adabldm-weights prior-weights mutation

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	@touch $(STAMP)

demo: $(STAMP)
	MPLBACKEND=Agg $(PY) -m defectlab.demo --out outputs/demo --overwrite

# unit tests and every notebook (nbval, quick mode), in one pytest run: one worker per core (a notebook's cells stay
# on one worker: --dist loadfile), one torch / BLAS thread each (threads competing for the cores made the suite
# five times slower), notebooks first (their cells are the longest items); line coverage of defectlab/ at the end
TEST_WORKERS ?= auto
test: $(STAMP)
	DEFECTLAB_QUICK=1 MPLBACKEND=Agg OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest notebooks tests --nbval-lax -q \
		-n $(TEST_WORKERS) --maxprocesses 8 --dist loadfile --durations 10 \
		--cov defectlab --cov-report term:skip-covered $(PYTEST_ARGS)

# mutation testing (issue #37): mutmut on metrics/detection.py with its fast tests, in a temporary copy (~25 min on
# 2 cores); MUTATION_TARGET=handcrafted for defectlab/synth/handcrafted; writes benchmarks/results/mutation_<target>.json
MUTATION_TARGET ?= detection
mutation: $(STAMP)
	$(PY) benchmarks/mutation.py $(MUTATION_TARGET)

# the embedded washer's domain prior (issue #36): an unconditional latent diffusion model of 256 rendered good washers
# (about 25 min on two free cores), cached with its SHA-256 in $$DEFECTLAB_PRIOR_CACHE or ~/.cache/defectlab/prior;
# AdaBLDM's checkpoint below starts from it (and trains it first when missing). A real data set's priors, one per
# benchmark seed: `defectlab prior train --data PATH --category C --seeds 0-4`
prior-weights: $(STAMP)
	$(PY) -m defectlab.prior.embedded --category washer

# AdaBLDM's trained offline checkpoint for notebook 05's control panel: trained once (about 15 min on one
# free CPU core), cached with its SHA-256 in $$DEFECTLAB_ADABLDM_CACHE or ~/.cache/defectlab/adabldm, reused after
adabldm-weights: $(STAMP)
	$(PY) -m defectlab.adabldm.cache --threads 1

# the notebooks, in order, as a static HTML course with their stored outputs: outputs/course/index.html
course: $(STAMP)
	$(PY) -m defectlab.course --out outputs/course --overwrite

# every notebook run in full mode (not quick), its outputs stored in place for readers on the web (an hour or
# more on two cores; notebook 05 first trains the AdaBLDM checkpoint of `make adabldm-weights` if it is missing)
notebooks: $(STAMP)
	env -u DEFECTLAB_QUICK -u MPLBACKEND $(PY) -m defectlab.course --run notebooks/[0-9][0-9]_*.ipynb

clean:
	rm -rf outputs build *.egg-info

# anomalib side by side, in its own environment (never a dependency of defectlab): torch/torchvision as
# in .venv (pip takes them from local disk where it can), then anomalib from the registry.
ANOMALIB_VENV ?= .venv-anomalib
ANOMALIB_STAMP := $(ANOMALIB_VENV)/.installed-stamp
ANOMALIB_VERSION ?= 2.7.0

anomalib-venv: $(ANOMALIB_STAMP)

$(ANOMALIB_STAMP):
	@test -x $(ANOMALIB_VENV)/bin/python || python3 -m venv $(ANOMALIB_VENV)
	$(ANOMALIB_VENV)/bin/python -m pip install --quiet --disable-pip-version-check torch==2.14.1 torchvision==0.29.1
	$(ANOMALIB_VENV)/bin/python -m pip install --quiet --disable-pip-version-check anomalib==$(ANOMALIB_VERSION)
	@touch $(ANOMALIB_STAMP)

# synthesis speed and AUPRO, defectlab vs anomalib, one run (writes benchmarks/results/anomalib_compare.json)
anomalib-bench: $(STAMP) $(ANOMALIB_STAMP)
	$(PY) benchmarks/anomalib_compare.py --anomalib-python $(ANOMALIB_VENV)/bin/python
