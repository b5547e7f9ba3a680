# vgsweep: `make help` lists the targets.
VENV   ?= .venv
PY     := $(VENV)/bin/python
ARGS   ?=
PORT   ?= 5000
DATA_ROOT ?= data
STORE  ?= $(if $(MLFLOW_TRACKING_URI),$(MLFLOW_TRACKING_URI),sqlite:///$(CURDIR)/mlflow.db)

.DEFAULT_GOAL := help
.PHONY: help install sweep table figures report status ui test test-fast test-oldest bench bench-vgg profile clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test,search]'
	touch $@

install: $(VENV)/.installed ## create .venv and install vgsweep with its test tools and the Optuna sweeper

sweep: install ## the paper grid (experiment=paper_table1; add ARGS="seed=0,1,2"), then table, figures, report
	$(PY) -m vgsweep experiment=paper_table1 $(ARGS)
	$(MAKE) report

table: install ## results/table.md, table.tex (LaTeX) and table.csv from MLflow (TABLE_ARGS="--experiment X")
	$(PY) -m vgsweep table --out results $(TABLE_ARGS)

figures: install ## results/figures/ (PNG + PDF, figures.tex with captions) from MLflow, also logged as the `figures` run (FIG_ARGS="--activation tanh")
	$(PY) -m vgsweep figures --out results/figures $(FIG_ARGS)

report: install ## results/report.md: the table, the verdicts and the figures, all regenerated from MLflow
	$(PY) -m vgsweep report --out results $(FIG_ARGS)

status: install ## where each study stands: configs finished, running (epoch, time left, heartbeat), queued (SLURM, a later pack; a local sweep's time left), failed, killed (STATUS_ARGS="--experiment X")
	$(PY) -m vgsweep status $(STATUS_ARGS)

ui: install ## the MLflow UI over the store (MLFLOW_TRACKING_URI, else the project's) on 127.0.0.1 (PORT=5000); prints each experiment's address
	$(PY) -m vgsweep ui --tracking-uri $(STORE) --port $(PORT)

test: install ## the whole test suite (unit + end-to-end + real MNIST), CPU only, on 2 workers
	$(PY) -m pytest -n 2 --dist loadscope

test-fast: install ## unit tests only (no subprocess CLI runs, no real MNIST)
	$(PY) -m pytest -m "not e2e and not mnist"

OLDEST ?= .venv-oldest
$(OLDEST)/.installed: pyproject.toml tools/oldest-venv.sh
	bash tools/oldest-venv.sh $(OLDEST)

test-oldest: $(OLDEST)/.installed ## the tests on the oldest versions pyproject.toml allows (Python 3.10, torch 2.4, ...); TEST_ARGS="tests/test_e2e.py"
	$(OLDEST)/bin/python -m pytest -n 2 --dist loadscope $(TEST_ARGS)

bench: install ## time the paper grid packed (fp32, tf32) vs one job at a time; DATA_ROOT=.devdata on the GPU machine
	$(PY) bench/grid.py --data-root $(DATA_ROOT) --out results/bench $(BENCH_ARGS)

bench-vgg: install ## VGG38 seconds per epoch: packed K=7 vs one at a time vs a DataLoader (BENCH_VGG_ARGS="--k 7")
	$(PY) bench/vgg.py --out results/bench/vgg.json $(BENCH_VGG_ARGS)

PROFILE_ARGS ?= activation=logistic,tanh,relu,leaky_relu,swish regime=baseline,gna,gna_bn depth=2
profile: install ## where one pack's time goes, against its arithmetic floor (PROFILE_ARGS="<overrides> --epochs 2")
	$(PY) -m vgsweep profile data.root=$(DATA_ROOT) $(PROFILE_ARGS) --trace results/bench/trace.json.gz

clean: ## remove caches and Hydra's outputs (keeps mlflow.db, mlartifacts/ and results/)
	rm -rf .pytest_cache outputs multirun/*/ && find . -name __pycache__ -prune -exec rm -rf {} +
