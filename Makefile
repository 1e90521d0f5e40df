# sluice — the Makefile is the front door. `make` lists the targets.

GO       ?= go
BIN      := bin/sluice
DATA_DIR ?= ./data
LISTEN   ?= 127.0.0.1:9092
GOFLAGS_BUILD := -trimpath
# The e2e suite drives the real binary; give it a fresh one.
export SLUICE_BIN := $(CURDIR)/$(BIN)

.PHONY: help build run test test-power-loss unit e2e fuzz bench bench-modes bench-durable lint generate check-generated clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

build: ## build bin/sluice (static)
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o $(BIN) ./cmd/sluice

run: build ## build and serve Kafka on 127.0.0.1:9092 with data in ./data
	./$(BIN) serve --data-dir $(DATA_DIR) --listen $(LISTEN)

test: build lint check-generated ## the whole suite, as CI runs it
	$(GO) test -count=1 -timeout 25m $$($(GO) list ./... | grep -v /test/powerloss)
	@# The engine's, network's and codecs' unit tests under the race
	@# detector: the shard's cross-goroutine paths (inbox, doorbell, pinned
	@# segments, cold-read answers). It needs cgo (gcc; .ci/install-deps).
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 10m ./engine/... ./netio/ ./wire/...
	@# The request handlers and the real-client suites once more in the
	@# other write mode (the run above used the default, direct; issue 5).
	SLUICE_IO_MODE=page-cache $(GO) test -count=1 -timeout 15m ./engine/api/ ./test/e2e/ ./test/groups/
	@# Power cuts in a qemu guest, 3 per mode and file system, alone: the
	@# emulated guest takes both CPUs (make test-power-loss runs more).
	POWER_CUTS=3 $(GO) test -count=1 -timeout 20m -v -run TestPowerLoss ./test/powerloss/
	@# kernel.io_uring_disabled is global: this check runs alone, last.
	SLUICE_URING_SYSCTL_TEST=1 $(GO) test -count=1 -v ./test/uringoff/

unit: ## unit tests only (no real binary, no external clients)
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /test/)

e2e: build ## the end-to-end suite against bin/sluice
	$(GO) test -count=1 -timeout 20m -v ./test/e2e/

fuzz: ## run every fuzz target for FUZZTIME each (default 30s)
	@for spec in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
	  for f in $$(grep -h '^func Fuzz' $$spec/*_test.go | sed 's/func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
	    echo "== $$spec $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $${FUZZTIME:-30s} $$spec || exit 1; \
	  done; \
	done

bench: ## Go benchmarks of the hot paths, with allocations
	$(GO) test -run '^$$' -bench . -benchmem ./wire/... ./engine/...

lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

generate: ## regenerate wire/msg from ../shared/kafka-messages, and the eBPF objects when clang is installed
	$(GO) generate ./wire/msg
	@if command -v clang >/dev/null; then $(MAKE) generate-bpf; else echo "clang not installed: keeping the checked-in eBPF objects (apt-get install clang llvm libbpf-dev, then make generate-bpf)"; fi

check-generated: ## fail if regenerating the codecs changes them
	$(GO) generate ./wire/msg
	@git diff --exit-code -- wire/msg || (echo "generated code is stale: run make generate and commit" && exit 1)
	@test -z "$$(git status --porcelain -- wire/msg)" || (git status --porcelain -- wire/msg; echo "generate produced untracked files" && exit 1)

clean: ## remove build output
	rm -rf bin

test-power-loss: build ## power cuts under load in a qemu guest, both modes, ext4 and xfs (POWER_CUTS=N, default 10; POWER_SEED replays)
	POWER_CUTS=$${POWER_CUTS:-10} $(GO) test -count=1 -v -timeout 90m -run TestPowerLoss ./test/powerloss/

bench-restart: build ## restart time after SIGKILL with 10 MB versus 10 GB stored, with every index file damaged, and with 5,000 partitions
	SLUICE_RESTART_BENCH=1 $(GO) test -count=1 -v -timeout 60m -run 'TestRestartTimeAfterSIGKILL|TestRestartWithDamagedIndexes|TestRestartWithManyPartitions' ./internal/restartbench/

# --- benchmark harness (sluice bench; see bench/ and bench/workloads/) ---
BENCH_DIR  ?= $(if $(TMPDIR),$(TMPDIR),/tmp)/sluice-bench
KAFKA_PORT ?= 29092
BENCH_FLAGS ?=

bench-smoke: build ## a 5-second end-to-end run of the harness against a fresh bin/sluice
	./$(BIN) bench compare --start sluice --limits=false --producer-performance=false --reps 1 \
	  --work-dir $(BENCH_DIR)/smoke --out $(BENCH_DIR) --name smoke-report bench/workloads/smoke.yaml

bench-kafka: build ## start a fresh Apache Kafka 4.x peer on 127.0.0.1:$(KAFKA_PORT) (left running) and smoke-test it
	scripts/kafka-peer start $(KAFKA_PORT) $(BENCH_DIR)/kafka-peer
	@echo "== settings ($(BENCH_DIR)/kafka-peer/server.properties)"; cat $(BENCH_DIR)/kafka-peer/server.properties
	./$(BIN) bench run bench/workloads/smoke.yaml --bootstrap 127.0.0.1:$(KAFKA_PORT) --broker-name kafka --quiet
	@echo "Kafka runs on 127.0.0.1:$(KAFKA_PORT); stop it with: scripts/kafka-peer stop $(BENCH_DIR)/kafka-peer"

bench-compare: build ## the standard set against fresh sluice and Kafka → bench/results/DATE-HOST.md (+ .html, plots)
	@command -v fio >/dev/null || echo "note: fio is not installed (apt-get install -y fio); disk limits will be missing"
	BENCH_COMMAND="make bench-compare" ./$(BIN) bench compare --suite bench/workloads/standard.yaml --start sluice,kafka \
	  --work-dir $(BENCH_DIR)/compare --out bench/results $(BENCH_FLAGS)

bench-modes: build ## issue 5: page-cache vs direct write mode vs Kafka → bench/results/DATE-HOST-modes.md
	BENCH_COMMAND="make bench-modes" ./$(BIN) bench compare --suite bench/workloads/suites/direct-mode.yaml \
	  --start sluice-page-cache,sluice-direct,kafka --work-dir $(BENCH_DIR)/modes --out bench/results \
	  --name $$(date -u +%Y-%m-%d)-$$(hostname)-modes $(BENCH_FLAGS)

bench-durable: build ## issue 5: durable throughput with 16 KiB records, page-cache vs direct → bench/results/DATE-HOST-durable-16k.md
	BENCH_COMMAND="make bench-durable" ./$(BIN) bench compare --suite bench/workloads/suites/durable-16k.yaml \
	  --start sluice-page-cache,sluice-direct --work-dir $(BENCH_DIR)/durable --out bench/results \
	  --name $$(date -u +%Y-%m-%d)-$$(hostname)-durable-16k $(BENCH_FLAGS)

.PHONY: generate-bpf test-tune
generate-bpf: ## recompile the eBPF probes in tuning/probe/bpf (needs clang, llvm, libbpf-dev) and their Go wrappers
	$(GO) generate ./tuning/probe

test-tune: build ## sluice tune: fake-tree tuners, eBPF probes (root), and the real binary
	$(GO) test -count=1 -v ./tuning/... ./test/tune/
