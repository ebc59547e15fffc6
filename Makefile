# make demo   creates .venv, installs edgeopt, compresses the shipped Fashion-MNIST model to INT8 and prints the report
#             (with FP32 and INT8 accuracy against the shipped labels, on the 120 images held back from calibration)
# make test   same set-up, then the whole test suite
# make bench  same set-up, then the benchmarks: bench/results/compress.{json,md}, bench_repeatability.{json,md},
#             real_models.{json,md}, train_throughput.{json,md}, finetune.{json,md}, prune.{json,md},
#             distill.{json,md} (DISTILL_ARGS passes options to bench/distill_bench.py, e.g. "--seeds 0 --epochs 3";
#             its full run is 18 trainings of 15 epochs on 60,000 images: many hours on 2 cores), qat.{json,md},
#             ptq_repair.{json,md}

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# torch is only needed by the tests (to export models to ONNX); the CPU wheel avoids GBs of CUDA packages.
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed
DEMO_OUT ?= out/demo
JOBS   ?= 2
DISTILL_ARGS ?=

.PHONY: demo test bench install clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/edgeopt compress edgeopt/assets/fashion_mnist_cnn.onnx --int8 \
	    --calib edgeopt/assets/fashion_mnist_subset-images-idx3-ubyte.gz --value-range 0,1 \
	    --labels edgeopt/assets/fashion_mnist_subset-labels-idx1-ubyte.gz --calib-samples 600 \
	    -o $(DEMO_OUT)/fashion_mnist_int8.tflite

test: $(STAMP)
	bash scripts/install-test-deps.sh
	$(VENV)/bin/pytest -n $(JOBS) --dist loadfile -q

bench: $(STAMP)
	$(PY) bench/compress_bench.py
	$(PY) bench/bench_repeatability.py
	$(PY) bench/real_models_bench.py
	$(PY) bench/ptq_repair_bench.py
	$(PY) bench/train_throughput_bench.py
	bash scripts/install-test-deps.sh
	$(PY) bench/finetune_bench.py
	$(PY) -m pip install -q -e '.[test,bench]'
	$(PY) bench/prune_bench.py
	$(PY) bench/distill_bench.py $(DISTILL_ARGS)
	$(PY) bench/qat_bench.py

clean:
	rm -rf $(VENV) out .pytest_cache
