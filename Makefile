# The two commands a new user needs: `make demo` (the full flow on the synthetic collection) and
# `make test`. Both create .venv on first use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export TF_CPP_MIN_LOG_LEVEL ?= 2
PREFECT_PORT ?= 4200
# TensorFlow's build: `make venv TENSORFLOW=gpu` (into a fresh .venv) on a machine with an NVIDIA GPU.
TENSORFLOW ?= cpu
DEPLOY_ARGS ?=

.PHONY: venv demo test lint bench ui deploy worker clean tensorboard

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# --no-compile: Python compiles what it imports on first use; compiling all of TensorFlow ahead took half the
	# install (3 min 2 s against 1 min 31 s, docs/benchmarks.md)
	$(BIN)/python -m pip install --quiet --no-compile -e '.[$(TENSORFLOW),test]'
	# musicnn's pretrained MSD weights (data files only; its numpy<1.17 pin is neither met nor needed)
	$(BIN)/python -m pip install --quiet --no-compile --no-deps musicnn==0.1.0
	touch $(STAMP)

# The demo: the four models trained from scratch at 1 and 5 s on 150 synthetic tracks (30 of them test tracks),
# briefly: one random crop per track and epoch, 4 epochs of batches of 8, so that it ends in minutes on 2 cores.
# A real run drops these options (musicnn too, 15 and 30 s clips, 30 epochs, each network's own batch size, schedule,
# stopping and augmentation: models/registry.py).
DEMO_ARGS ?= --models baseline cnn rnn crnn --tracks-per-genre 25 --clip-seconds 1 5 --epochs 4 --crops-per-track 1 \
	--batch-size 8

demo: $(STAMP)
	$(BIN)/genreflow run --data synthetic --out runs $(DEMO_ARGS)

# Two test processes, each taking whole files, so a module's server or cluster starts once (timings:
# docs/benchmarks.md). TEST_PROCESSES=0 runs the tests in this process.
TEST_PROCESSES ?= 2

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_PROCESSES) --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python bench/extract.py
	$(BIN)/python bench/train_input.py

ui: $(STAMP)
	PREFECT_UI_API_URL=http://127.0.0.1:$(PREFECT_PORT)/api \
	$(BIN)/prefect server start --host 127.0.0.1 --port $(PREFECT_PORT)

deploy: $(STAMP)
	PREFECT_API_URL=http://127.0.0.1:$(PREFECT_PORT)/api $(BIN)/python -m genreflow.deployments.nightly $(DEPLOY_ARGS)

worker: $(STAMP)
	PREFECT_API_URL=http://127.0.0.1:$(PREFECT_PORT)/api \
	$(BIN)/prefect worker start --pool genreflow-process --type process

clean:
	rm -rf $(VENV) runs .prefect

# Every network cell's learning curves (loss, accuracy, learning rate per epoch; HParams) from a cache:
# `make tensorboard CACHE=s3://bucket/cache` for another one than runs/cache.
CACHE ?= runs/cache
tensorboard: $(STAMP)
	$(BIN)/genreflow cache tensorboard --cache $(CACHE)
