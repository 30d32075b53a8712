# gridsight: the two commands are `make run` and `make test`.
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never
# No incremental caches: a clean `make test` (CI) would write ~1.3 GB of them and read
# none back. Set CARGO_INCREMENTAL=1 to keep them between your own runs.
export CARGO_INCREMENTAL ?= 0
# Where cargo puts its builds (honours CARGO_TARGET_DIR).
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)

.PHONY: deps build run test lint unit e2e fuzz bench-mqtt bench-mqtt-rules bench-fanout bench-cameras soak bench-snapshot bench-spatial bench-engine bench-engine-instructions clean

## Install the system packages (quick when all are present).
deps:
	@./scripts/install-deps.sh

## Release build of the daemon.
build: deps
	$(CARGO) build --release -p gridsight

## Start the daemon on its built-in demo city; prints the dashboard URL and tokens.
run: build
	$(TARGET_DIR)/release/gridsight demo

## Everything: formatting, lints, unit, property and end-to-end tests, then a short smoke
## run of each benchmark. Tests run under cargo-nextest (on the machine), whose settings in
## .config/nextest.toml stop a hung test after 5 minutes and name it; cargo test otherwise.
test: deps lint
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		echo "$(CARGO) nextest run --workspace --lib --bins --tests --examples"; \
		$(CARGO) nextest run --workspace --lib --bins --tests --examples; \
	else \
		echo "cargo-nextest not found: cargo test (no per-test time limit)"; \
		$(CARGO) test --workspace --lib --bins --tests --examples; \
	fi
	$(CARGO) test --workspace --bench '*'

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## Fuzz every parser of outside input (fuzz/fuzz_targets/) for FUZZ_SECS seconds each
## (default 60), after installing cargo-fuzz if it is missing. Prints executions reached
## per target; a crash exits non-zero and leaves its input under target/fuzz/work/.
## `make fuzz FUZZ_SECS=600`, or `FUZZ_RUNS=10000000 make fuzz FUZZ_SECS=0`.
FUZZ_SECS ?= 60
fuzz:
	./scripts/fuzz.sh $(FUZZ_SECS) $(FUZZ_TARGETS)

## MQTT ingest benchmark: bare rumqttc subscriber vs the daemon, QoS 0 and 1, and latency.
bench-mqtt: deps
	$(CARGO) build --release -p gridsight -p gridsight-sim
	$(TARGET_DIR)/release/bench-mqtt --daemon $(TARGET_DIR)/release/gridsight --daemon-config-template deploy/bench/daemon.toml.tmpl $(BENCH_ARGS)

## MQTT drain with the 50 bench rules on vs off: QoS 1 daemon phases alternating, median
## ratio rules ÷ no rules. `make bench-mqtt-rules BENCH_ARGS="--messages 100000 --rounds 5"`.
bench-mqtt-rules: deps
	$(CARGO) build --release -p gridsight -p gridsight-sim
	$(TARGET_DIR)/release/bench-mqtt --daemon $(TARGET_DIR)/release/gridsight --daemon-config-template deploy/bench/daemon.toml.tmpl --rules-file deploy/bench/rules-50.toml --compare-rules $(BENCH_ARGS)

## Fan-out benchmark: the QoS 1 drain of 600k readings (10% alarms: ~10k alert changes/s)
## with 1,000 gRPC subscribers (one community each) and 50 WebSockets (one town each)
## reading the alert stream, vs with nobody subscribed; median ratio of 3 rounds.
## `make bench-fanout BENCH_ARGS="--rounds 5"`.
bench-fanout: deps
	$(CARGO) build --release -p gridsight -p gridsight-sim
	$(TARGET_DIR)/release/bench-mqtt --daemon $(TARGET_DIR)/release/gridsight --daemon-config-template deploy/bench/daemon.toml.tmpl --fanout --towns 25 --communities 40 --sensors 10 --messages 600000 --alarm-ratio 0.1 $(BENCH_ARGS)

## Camera benchmark: the daemon on 2,000 RTSP cameras (camera farm) vs a bare retina client,
## and per camera vs one ffmpeg per camera. `make bench-cameras BENCH_ARGS="--secs 600"`.
bench-cameras:
	@./scripts/install-deps.sh --bench
	$(CARGO) build --release -p gridsight -p gridsight-farm -p gridsight-sim --bins --example farm_load
	$(TARGET_DIR)/release/bench-cameras --daemon $(TARGET_DIR)/release/gridsight --farm $(TARGET_DIR)/release/camera-farm --bare-client $(TARGET_DIR)/release/examples/farm_load $(BENCH_ARGS)

## Camera flap soak (not part of `make test`): the daemon on 500 cameras of a farm whose
## mounts flap (20 s up, 10 s down) for 10 minutes; tasks, descriptors and memory compared
## between the quiet points before and after. Fails on a leak.
## `make soak SOAK_ARGS="--soak-secs 3600 --cameras 1000"`.
soak: deps
	$(CARGO) build --release -p gridsight -p gridsight-farm -p gridsight-sim --bins
	$(TARGET_DIR)/release/bench-cameras --soak --cameras 500 --daemon $(TARGET_DIR)/release/gridsight --farm $(TARGET_DIR)/release/camera-farm $(SOAK_ARGS)

## Snapshot benchmark: keyframe -> JPEG through the warm pool vs a fresh pipeline, throughput.
bench-snapshot: deps
	$(CARGO) bench -p gridsight --bench snapshot

## Spatial benchmark: GridIndex::new for 10,000 grids, and one locate / grids_within / neighbours call.
bench-spatial: deps
	$(CARGO) bench -p gridsight --bench spatial

## Engine benchmark: events/s through one correlation engine on a synthetic county (10,000
## grids and cameras), the 50 bench rules vs none, same events, median of 5 rounds.
bench-engine: deps
	$(CARGO) bench -p gridsight --bench engine

## The engine benchmark's rules pass (one round: 200k events timed after 200k untimed)
## under callgrind: the instructions the timed events take, a figure that does not drift
## with the machine's speed as the events/s do. About a minute after the build. The storm
## mix unless ENGINE_BENCH_MIX=day (the count's history is the storm's).
bench-engine-instructions:
	@./scripts/install-deps.sh --bench
	@bin=$$($(CARGO) bench -p gridsight --bench engine --no-run 2>&1 | tee /dev/stderr | \
		sed -n 's/.*Executable .*(\(.*\))$$/\1/p'); \
	out=$$(mktemp); mix=$${ENGINE_BENCH_MIX:-storm}; \
	ENGINE_BENCH_MIX=$$mix ENGINE_BENCH_ONLY=rules ENGINE_BENCH_ROUNDS=1 ENGINE_BENCH_BREAKDOWN=0 \
		valgrind --tool=callgrind --toggle-collect='engine::measured' --callgrind-out-file=$$out \
		$$bin --bench >/dev/null 2>&1; \
	echo "RESULT engine mix=$$mix rules instructions=$$(callgrind_annotate $$out 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $$1); print $$1}') events=200000"; \
	rm -f $$out

clean:
	$(CARGO) clean
