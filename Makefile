# newbieha build, test and demo targets. Everything here runs on a plain
# Debian host with Go, Docker Engine and iproute2; .ci/run installs them.

GO        ?= go
BIN       := $(CURDIR)/bin
STUB_IMAGE := newbieha/stub-model:dev
FUZZTIME  ?= 10s
export NEWBIEHA_BIN := $(BIN)/newbieha
export NEWBIEHA_STUB_BIN := $(BIN)/stub-model
export NEWBIEHA_STUB_IMAGE := $(STUB_IMAGE)
export NEWBIEHA_VIPWATCH_BIN := $(BIN)/vipwatch

.PHONY: bench-footprint bench-load
.PHONY: all build lint test test-unit test-fuzz test-integration fuzz stub-image demo demo-down bench bench-failover clean

all: build

build:
	mkdir -p $(BIN)
	CGO_ENABLED=1 $(GO) build -o $(BIN)/newbieha ./cmd/newbieha
	CGO_ENABLED=0 $(GO) build -o $(BIN)/newbieha-witness ./cmd/newbieha
	CGO_ENABLED=0 $(GO) build -o $(BIN)/stub-model ./cmd/stub-model
	CGO_ENABLED=0 $(GO) build -o $(BIN)/vipwatch ./cmd/vipwatch
	CGO_ENABLED=1 $(GO) build -o $(BIN)/gpu-probe ./cmd/gpu-probe

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags integration ./integration/...

# stub-image packages the stub model server as a FROM scratch image; no
# registry is needed.
stub-image: build
	docker build -q -t $(STUB_IMAGE) -f cmd/stub-model/Dockerfile $(BIN) >/dev/null
	@echo "built $(STUB_IMAGE)"

test: lint stub-image test-unit test-fuzz test-integration

test-unit:
	$(GO) test -race -count=1 ./...
	# the witness build: no cgo, no NVML
	CGO_ENABLED=0 $(GO) test -count=1 ./health/... ./cmd/gpu-probe

# A short fuzz run on every test; `make fuzz FUZZTIME=60s` for the long one.
test-fuzz fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeCommand$$' -fuzztime=$(FUZZTIME) ./fsm
	$(GO) test -run='^$$' -fuzz='^FuzzRestore$$' -fuzztime=$(FUZZTIME) ./fsm
	$(GO) test -run='^$$' -fuzz='^FuzzJoinRequest$$' -fuzztime=$(FUZZTIME) ./cluster
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeSigned$$' -fuzztime=$(FUZZTIME) ./cluster/gossip

test-integration: build
	$(GO) test -tags integration -count=1 -timeout 15m -v ./integration/...

bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./...

demo: build
	./scripts/demo.sh up

demo-down:
	./scripts/demo.sh down

clean:
	rm -rf $(BIN)

# Client-side outage through the VIP for crash, host loss and planned
# switchover (min, median, max); BENCHTIME=10x for more runs.
BENCHTIME ?= 5x
bench-failover: build
	$(GO) test -tags integration -run='^$$' -bench='^BenchmarkFailover$$' -benchtime=$(BENCHTIME) -timeout 30m -v ./integration/ | grep -E 'Benchmark|over [0-9]+ runs|^ok|FAIL|---'

# The lease simulation over more seeds than `make test` runs (2,000):
# `make sim SEEDS=100000`; a failing seed prints the command that replays it.
SEEDS ?= 20000
.PHONY: sim
sim:
	$(GO) test -count=1 -run='^TestSimulation$$' -timeout 60m ./cluster/lease -sim.seeds=$(SEEDS) -sim.stats -v

# Idle CPU and memory of each agent over FOOTPRINT (5m for docs/benchmarks.md).
FOOTPRINT ?= 60s
bench-footprint: build
	FOOTPRINT=$(FOOTPRINT) $(GO) test -tags integration -run='^$$' -bench='^BenchmarkIdleFootprint$$' -benchtime=1x -timeout 30m -v ./integration/ | grep -E 'Benchmark|cpu|^ok|FAIL|---'

# One busy core on each GPU node for BUSY: no move, no failed request.
BUSY ?= 60s
bench-load: build
	BUSY=$(BUSY) $(GO) test -tags integration -run='^$$' -bench='^BenchmarkBusyCores$$' -benchtime=1x -timeout 30m -v ./integration/ | grep -E 'Benchmark|busy|^ok|FAIL|---'
