# Two entry points: `make demo` and `make test`. Both create .venv on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean server

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch and torchvision come from files on this disk (pip's cap); everything else from PyPI.
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/clouds demo --config configs/tiny.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_artifacts.py --samples 512 --repeats 5
	$(BIN)/python benchmarks/bench_teacher.py --model tiny --images 16 --batch 8
	$(BIN)/python benchmarks/bench_refine.py
	$(BIN)/python benchmarks/bench_synthesize.py --repeats 3
	$(BIN)/python benchmarks/bench_orchestration.py --images 64 --per-shard 4 --repeats 3
	$(BIN)/python benchmarks/bench_local_workers.py --images 64 --per-shard 4 --size 256 512 --repeats 3
	$(BIN)/python benchmarks/bench_ray.py --images 128 --per-shard 16 --workers 2 --repeats 3
	$(BIN)/python benchmarks/bench_probe.py --towers random models/weights/clouds-tiny-convnext-toycity.safetensors

server: $(STAMP)
	$(BIN)/clouds server

clean:
	rm -rf $(VENV) runs .pytest_cache
