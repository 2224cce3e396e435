# newbieha build, test and demo targets. Everything here runs on a plain
# Debian host with Go, Docker Engine and iproute2; .ci/run installs them.

GO        ?= go
BIN       := $(CURDIR)/bin
STUB_IMAGE := newbieha/stub-model:dev
FUZZTIME  ?= 5s
export NEWBIEHA_BIN := $(BIN)/newbieha
export NEWBIEHA_STUB_BIN := $(BIN)/stub-model
export NEWBIEHA_STUB_IMAGE := $(STUB_IMAGE)
export NEWBIEHA_VIPWATCH_BIN := $(BIN)/vipwatch
export NEWBIEHA_WITNESS_BIN := $(BIN)/newbieha-witness

# What `newbieha version` prints (cmd/newbieha/main.go), each settable:
# `make build VERSION=1.2.0`. The build date honours SOURCE_DATE_EPOCH.
# The `:=` lines evaluate each once, so both agent builds get the same.
VERSION    ?= $(shell git describe --tags --dirty 2>/dev/null || echo dev)
REVISION   ?= $(shell r=$$(git rev-parse HEAD 2>/dev/null) && { git diff --quiet HEAD 2>/dev/null || r=$$r-dirty; echo $$r; })
BUILD_DATE ?= $(shell date -u -d "@$${SOURCE_DATE_EPOCH:-$$(date +%s)}" +%Y-%m-%dT%H:%M:%SZ)
VERSION    := $(VERSION)
REVISION   := $(REVISION)
BUILD_DATE := $(BUILD_DATE)
VERSION_LDFLAGS := -X main.version=$(VERSION) -X main.revision=$(REVISION) -X main.buildDate=$(BUILD_DATE)

.PHONY: bench-footprint bench-load
.PHONY: all build lint test test-unit test-fuzz test-integration fuzz stub-image demo demo-drill demo-down bench bench-failover clean

all: build

build:
	mkdir -p $(BIN)
	CGO_ENABLED=1 $(GO) build -ldflags '$(VERSION_LDFLAGS)' -o $(BIN)/newbieha ./cmd/newbieha
	CGO_ENABLED=0 $(GO) build -ldflags '$(VERSION_LDFLAGS)' -o $(BIN)/newbieha-witness ./cmd/newbieha
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
	$(GO) test -run='^$$' -fuzz='^FuzzFailoverRequest$$' -fuzztime=$(FUZZTIME) ./cluster
	$(GO) test -run='^$$' -fuzz='^FuzzMaintenanceRequest$$' -fuzztime=$(FUZZTIME) ./cluster
	$(GO) test -run='^$$' -fuzz='^FuzzConfigRequest$$' -fuzztime=$(FUZZTIME) ./cluster
	$(GO) test -run='^$$' -fuzz='^FuzzTokenCreateRequest$$' -fuzztime=$(FUZZTIME) ./cluster
	$(GO) test -run='^$$' -fuzz='^FuzzTokenRevokeRequest$$' -fuzztime=$(FUZZTIME) ./cluster
	$(GO) test -run='^$$' -fuzz='^FuzzRemoveRequest$$' -fuzztime=$(FUZZTIME) ./cluster
	$(GO) test -run='^$$' -fuzz='^FuzzTransferLeaderRequest$$' -fuzztime=$(FUZZTIME) ./cluster
	$(GO) test -run='^$$' -fuzz='^FuzzDrillRequest$$' -fuzztime=$(FUZZTIME) ./cluster
	$(GO) test -run='^$$' -fuzz='^FuzzDrillEventRequest$$' -fuzztime=$(FUZZTIME) ./cluster
	$(GO) test -run='^$$' -fuzz='^FuzzDrillServiceRequest$$' -fuzztime=$(FUZZTIME) ./cluster
	$(GO) test -run='^$$' -fuzz='^FuzzOperatorCertRequest$$' -fuzztime=$(FUZZTIME) ./cluster
	$(GO) test -run='^$$' -fuzz='^FuzzInternalApply$$' -fuzztime=$(FUZZTIME) ./cluster
	$(GO) test -run='^$$' -fuzz='^FuzzVoterRequest$$' -fuzztime=$(FUZZTIME) ./cluster
	$(GO) test -run='^$$' -fuzz='^FuzzLeaseRequest$$' -fuzztime=$(FUZZTIME) ./cluster
	$(GO) test -run='^$$' -fuzz='^FuzzHandoverRequest$$' -fuzztime=$(FUZZTIME) ./cluster
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeSigned$$' -fuzztime=$(FUZZTIME) ./cluster/gossip
	$(GO) test -run='^$$' -fuzz='^FuzzParseRunbook$$' -fuzztime=$(FUZZTIME) ./drill
	$(GO) test -run='^$$' -fuzz='^FuzzParse$$' -fuzztime=$(FUZZTIME) ./migrate/keepalived

test-integration: build
	$(GO) test -tags integration -count=1 -timeout 40m -v ./integration/...

bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./...

demo: build
	./scripts/demo.sh up

# The demo lab, then `newbieha drill run docs/runbooks/holder-crashes.yaml`
# from the witness and its report (RUNBOOK=docs/runbooks/... for another).
demo-drill: build
	./scripts/demo.sh drill

demo-down:
	./scripts/demo.sh down

clean:
	rm -rf $(BIN)

# make install [DESTDIR=...] [PREFIX=/usr/local]: bin/newbieha and
# bin/newbieha-witness to $(PREFIX)/bin; the units of deploy/systemd to
# $(PREFIX)/lib/systemd/system (on systemd's search path for /usr/local
# and /usr; set UNITDIR for another prefix), with their binary path
# rewritten to $(PREFIX)/bin; the data dir /var/lib/newbieha (0700) and
# /etc/newbieha. DESTDIR stages it all under another root (packages,
# tests). See deploy/systemd/README.md.
PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
UNITDIR ?= $(PREFIX)/lib/systemd/system
.PHONY: install
install: build
	install -d -m 0755 "$(DESTDIR)$(BINDIR)" "$(DESTDIR)$(UNITDIR)" "$(DESTDIR)/etc/newbieha"
	install -m 0755 $(BIN)/newbieha $(BIN)/newbieha-witness "$(DESTDIR)$(BINDIR)/"
	for u in deploy/systemd/*.service; do \
		sed 's|/usr/local/bin/|$(BINDIR)/|g' "$$u" > "$(DESTDIR)$(UNITDIR)/$${u##*/}" && \
		chmod 0644 "$(DESTDIR)$(UNITDIR)/$${u##*/}" || exit 1; \
	done
	install -d -m 0700 "$(DESTDIR)/var/lib/newbieha"

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

# A seeded random sequence of real faults on the namespace lab, one at a
# time (integration/soak_test.go): make soak FAULTS=200 SEED=n. The report
# is in bin/soak/ (JSON and Markdown); a failing run prints its replay.
FAULTS ?= 20
SEED   ?=
.PHONY: soak
soak: build
	SOAK_FAULTS=$(FAULTS) SOAK_SEED=$(SEED) $(GO) test -tags integration -count=1 -run='^TestSoak$$' -timeout 180m -v ./integration/
