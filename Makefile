# The README's commands live here. `make test` installs everything it needs into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export YOLO_OFFLINE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install install-gpu lock test test-gpu test-deploy demo bench bench-track lint soak clean docs docs-serve

install: $(STAMP)

# From the lock (constraints.txt: every package at the version the suite last passed with), so two installs a
# week apart get the same packages; pyproject.toml keeps the ranges a user's own install resolves.
EXTRAS := cpu,openvino,train,dev,record,docs
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e '.[$(EXTRAS)]'
	touch $(STAMP)

# The lock written again: a fresh venv resolves pyproject.toml's ranges with the hand-picked pins of
# constraints.in (torch, OpenVINO), its `pip freeze` becomes constraints.txt, then .venv is installed from it
# and the whole suite runs. Commit constraints.txt when it passes.
LOCK_VENV := .lock-venv
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install -q -c constraints.in -e '.[$(EXTRAS)]'
	{ sed -n '1,/^[^#]/{/^#/p}' constraints.txt; \
	  { $(LOCK_VENV)/bin/pip freeze --exclude-editable; \
	    $(LOCK_VENV)/bin/pip freeze | sed -n 's/^opencv-python==/opencv-python-headless==/p'; } | LC_ALL=C sort -f; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf $(LOCK_VENV)
	$(MAKE) test

# In parallel: most tests wait on sockets, processes and clocks, so 4 workers overlap on 2 cores. --dist loadscope
# keeps each module on one worker, so its module fixtures (a trained model) are made once; the session's models
# are made once for all workers (tests/conftest.py). Then the tests marked `serial` (rates, replies timed
# against a clock) run alone. PYTEST_WORKERS=0: all in one process.
PYTEST_WORKERS ?= 4
test: install
	$(BIN)/python -m pytest -q -ra -n $(PYTEST_WORKERS) --dist loadscope --durations=20 -m "not serial"
	$(BIN)/python -m pytest -q -ra -m serial

# The CPU container image built and run for real with podman (tests/deploy/; not in `make test`: minutes,
# root, a Debian mirror and the package registry): a debootstrapped bookworm base, the image, detections at
# a host subscriber, HEALTHCHECK healthy, SIGTERM -> exit 0. Installs podman, debootstrap and runc from Debian
# when missing. Measured on 2 busy cores under nice 19: 131-135 s from nothing (EDGE_RT_DEPLOY_FRESH=1: debootstrap
# 54-61 s, build 45-54 s), 53 s with the base cached in podman's storage (a 503 MB image).
test-deploy: install
	@command -v podman >/dev/null && command -v debootstrap >/dev/null && command -v runc >/dev/null || \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman debootstrap runc >/dev/null)
	EDGE_RT_TEST_DEPLOY=1 $(BIN)/python -m pytest -q -ra -s -m deploy tests/deploy

# On an NVIDIA box: the GPU extra (onnxruntime-gpu, tensorrt, cuda-python) beside the CPU venv's tools.
install-gpu: install
	$(BIN)/pip install -q -c constraints.txt -e '.[gpu]'

# Only the tests marked gpu or tensorrt; each skips with its reason where the hardware is absent.
test-gpu: install
	$(BIN)/python -m pytest -q -ra -m "gpu or tensorrt"

lint: install
	$(BIN)/ruff check edge_rt tests
	$(BIN)/mypy edge_rt

demo: install
	$(BIN)/edge-rt demo

# A representative set on this machine; results land in bench-results/ and the README quotes them.
BENCH := bench-results
V8S := $(BENCH)/yolov8s_shapes.pt
bench: install $(V8S)
	mkdir -p $(BENCH)
	$(BIN)/edge-rt dataset clip $(BENCH)/clip.mp4 --frames 600 --size 640x360 --fps 30 > /dev/null
	$(BIN)/edge-rt dataset synth $(BENCH)/calib --images 80 --imgsz 320 --seed 101 > /dev/null
	$(BIN)/edge-rt dataset synth $(BENCH)/heldout --images 80 --imgsz 320 --seed 202 > /dev/null
	$(BIN)/edge-rt export --weights models/demo/demo.pt --target cpu-int8 --imgsz 320 --calibration $(BENCH)/calib/images \
	    --verify --verify-source $(BENCH)/heldout/images --output $(BENCH)/demo_int8.onnx | tee $(BENCH)/export_int8.txt
	$(BIN)/edge-rt bench engine -m models/demo/demo.onnx -m models/demo/demo_dynamic.onnx -m $(BENCH)/demo_int8.onnx \
	    --shape 192x320 --batch 1,2,4 --iters 300 --json $(BENCH)/engine.json | tee $(BENCH)/engine.txt
	$(BIN)/edge-rt bench pipeline -m models/demo/demo_dynamic.onnx -s $(BENCH)/clip.mp4 --duration 20 \
	    --json $(BENCH)/pipeline_max.json --plot $(BENCH)/pipeline_max.png | tee $(BENCH)/pipeline_max.txt
	$(BIN)/edge-rt bench pipeline -m models/demo/demo_dynamic.onnx -s $(BENCH)/clip.mp4 --fps 30 --duration 20 \
	    --json $(BENCH)/pipeline_30fps.json --plot $(BENCH)/pipeline_30fps.png | tee $(BENCH)/pipeline_30fps.txt
	$(BIN)/edge-rt bench pipeline -m models/demo/demo_dynamic.onnx -s a=$(BENCH)/clip.mp4 -s b=$(BENCH)/clip.mp4 \
	    -s c=$(BENCH)/clip.mp4 -s d=$(BENCH)/clip.mp4 --fps 120 --max-batch 4 --duration 20 \
	    --json $(BENCH)/pipeline_overload.json --plot $(BENCH)/pipeline_overload.png | tee $(BENCH)/pipeline_overload.txt
	$(BIN)/edge-rt bench compare -m models/demo/demo_dynamic.onnx -s $(BENCH)/clip.mp4 --reference models/demo/demo.pt \
	    --json $(BENCH)/compare.json | tee $(BENCH)/compare.txt
	$(BIN)/edge-rt bench publish --count 100000 --json $(BENCH)/publish.json | tee $(BENCH)/publish.txt
	# A YOLO11n-sized model (untrained weights from the YAML: same compute) at 640, on the 16:9 clip.
	$(BIN)/python -c "from ultralytics import YOLO; YOLO('yolo11n.yaml').save('$(BENCH)/yolo11n_untrained.pt')" > /dev/null
	$(BIN)/edge-rt export --weights $(BENCH)/yolo11n_untrained.pt --imgsz 640 --dynamic --max-batch 4 --output $(BENCH)/yolo11n.onnx > /dev/null
	$(BIN)/edge-rt bench pipeline -m $(BENCH)/yolo11n.onnx -s $(BENCH)/clip.mp4 --duration 20 \
	    --json $(BENCH)/pipeline_yolo11n.json | tee $(BENCH)/pipeline_yolo11n.txt
	# A YOLOv8s (11M parameters) on a 720p clip: INT8 at 384x640 (peak memory of the export by /usr/bin/time),
	# its box match on held-out frames, edge_rt vs Ultralytics on the .pt, and the INT8 variants compared.
	$(BIN)/edge-rt dataset clip $(BENCH)/clip720.mp4 --frames 300 --size 1280x720 --fps 30 --seed 3 > /dev/null
	$(BIN)/edge-rt dataset clip $(BENCH)/clip720_heldout.mp4 --frames 300 --size 1280x720 --fps 30 --seed 4 > /dev/null
	/usr/bin/time -v -o $(BENCH)/export_yolov8s_int8.time $(BIN)/edge-rt export --weights $(V8S) --target cpu-int8 --imgsz 384x640 \
	    --calibration $(BENCH)/clip720.mp4 --verify --verify-source $(BENCH)/clip720_heldout.mp4 --output $(BENCH)/yolov8s_int8.onnx \
	    | tee $(BENCH)/export_yolov8s_int8.txt
	grep -E "Maximum resident|Elapsed" $(BENCH)/export_yolov8s_int8.time
	$(BIN)/edge-rt bench compare -m $(BENCH)/yolov8s_int8.onnx -s $(BENCH)/clip720_heldout.mp4 --reference $(V8S) --rounds 3 \
	    --json $(BENCH)/compare_yolov8s.json | tee $(BENCH)/compare_yolov8s.txt
	$(BIN)/python -m edge_rt.bench.int8_variants --weights $(V8S) --calibration $(BENCH)/clip720.mp4 \
	    --heldout $(BENCH)/clip720_heldout.mp4 --imgsz 384x640 --out $(BENCH)/int8_variants | tee $(BENCH)/int8_variants.txt
	# OpenVINO (docs/intel.md): the INT8 IR against Ultralytics' own OpenVINO INT8 export of the same .pt (calibrated
	# by Ultralytics on a synthetic dataset's val images), both timed and scored against the .pt in interleaved rounds.
	# --min-match 0.9: on this weak model the IR finds ~99% of the .pt's boxes with ~7% extra (a 94% match rate).
	/usr/bin/time -v -o $(BENCH)/export_yolov8s_ov_int8.time $(BIN)/edge-rt export --weights $(V8S) --target openvino-int8 \
	    --imgsz 384x640 --calibration $(BENCH)/clip720.mp4 --verify --verify-source $(BENCH)/clip720_heldout.mp4 --min-match 0.9 \
	    --output $(BENCH)/yolov8s_ov_int8.xml | tee $(BENCH)/export_yolov8s_ov_int8.txt
	grep -E "Maximum resident|Elapsed" $(BENCH)/export_yolov8s_ov_int8.time
	$(BIN)/python -c "from ultralytics import YOLO; YOLO('$(V8S)').export(format='openvino', int8=True, imgsz=[384, 640], \
	    data='$(BENCH)/calib/data.yaml', verbose=False)" > /dev/null
	$(BIN)/edge-rt bench compare -m $(BENCH)/yolov8s_ov_int8.xml -s $(BENCH)/clip720_heldout.mp4 --reference $(V8S) \
	    --reference-export $(BENCH)/yolov8s_shapes_int8_openvino_model --rounds 3 --json $(BENCH)/compare_yolov8s_ov.json \
	    | tee $(BENCH)/compare_yolov8s_ov.txt

# Trackers on people (docs/tracking.md#people): the four people scenes, and the same scenes drawn with seeds 1-3,
# through the shipped people detector; edge_rt's tracker beside Ultralytics' ByteTrack and BoT-SORT, every frame and
# every 2nd, with the middle line's counts. About 6 minutes on 2 cores.
PEOPLE := $(BENCH)/people
bench-track: install
	mkdir -p $(PEOPLE)
	for seed in 0 1 2 3; do for s in cross groups stopgo line; do \
	    $(BIN)/edge-rt dataset clip $(PEOPLE)/$$s$$seed.mp4 --tracks --people $$s --seed $$seed > /dev/null || exit 1; done; done
	$(BIN)/edge-rt bench track -m models/people/people.onnx $(foreach s,cross groups stopgo line,-s $(PEOPLE)/$(s)0.mp4) \
	    --every 1,2 --json $(PEOPLE)/track4.json | tee $(PEOPLE)/track4.txt
	$(BIN)/edge-rt bench track -m models/people/people.onnx \
	    $(foreach k,1 2 3,$(foreach s,cross groups stopgo line,-s $(PEOPLE)/$(s)$(k).mp4)) --every 1,2 | tee $(PEOPLE)/track12.txt

# The YOLOv8s the bench uses: trained once, briefly, from scratch on the synthetic shapes (~25 min on 2 cores);
# no pretrained weights can be downloaded here. models/bench/make_yolov8s_shapes.py says how.
$(V8S): | install
	PYTHONPATH=. $(BIN)/python models/bench/make_yolov8s_shapes.py --out $@

# Soak (not part of `make test`): `edge-rt run` for DURATION seconds against 2 synthetic cameras, a looping
# clip and a flapping RTSP camera, subscribers joining and leaving; RSS, fds, threads and latency every
# minute into $(SOAK)/soak.csv and soak.png, then a verdict (exit 0 pass, 1 fail, 2 no RTSP server here).
# Try it with DURATION=180 (too short for a meaningful verdict: checks that it runs).
DURATION ?= 1800
SOAK := $(BENCH)/soak
soak: install
	$(BIN)/python tests/soak.py --duration $(DURATION) --out $(SOAK)

# The documentation site (mkdocs.yml, pages in docs/): the CLI reference written again from the parser, then a strict
# build into site/ (a broken link, a missing page or a bad anchor fails it). docs-serve: http://127.0.0.1:8000.
# NO_MKDOCS_2_WARNING: Material's banner about its successor (Zensical), printed on every build, is not a build warning.
docs: install
	$(BIN)/python -m edge_rt.cli.reference
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -d site

docs-serve: install
	$(BIN)/python -m edge_rt.cli.reference
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

clean:
	rm -rf $(VENV) $(LOCK_VENV) .pytest_cache build *.egg-info
