# Build, test and check the update server and agent. `make help` lists targets.
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.0.0-dev)
LDFLAGS   := -s -w -X github.com/dropless/dropless/pkg/buildinfo.Version=$(VERSION)
DATA      ?= ./updateserver-data
LISTEN    ?= 127.0.0.1:8080
CROSS     := linux/amd64 linux/arm64 windows/amd64 darwin/arm64
FUZZTIME  ?= 60s
# Linux architectures `make packages` builds .deb and .rpm for.
PKG_ARCH  ?= amd64 arm64

.PHONY: help build run test test-race test-postgres e2e race lint check cross packages test-packages fuzz bench bench-publish bench-rollout bench-jobreports bench-enroll bench-backup bench-checkin bench-checkin-http bench-trigger bench-fleet-scale bench-serving bench-download bench-fleet bench-smoke clean

help: ## list targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

build: ## build bin/updateserver and bin/updateagent for this OS/arch (and bin/sampleapp, the demo app)
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/updateserver ./updateserver/cmd/updateserver
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/updateagent ./agent/cmd/updateagent
	$(GO) build -trimpath -o bin/sampleapp ./testenv/sampleapp

run: build ## run the server on the embedded store (DATA=./updateserver-data LISTEN=127.0.0.1:8080)
	./bin/updateserver serve --data $(DATA) --listen $(LISTEN)

test: ## run every test that needs nothing outside the repo (fuzz seed corpora included)
	$(GO) test -count=1 ./...

test-race: ## the agent's tests (and its API client's) under the race detector, as CI runs them
	$(GO) test -race -count=1 ./agent/... ./pkg/agentapi/...

test-postgres: ## the migration and engine tests, and the server's store, fleet, webhooks, CLI, publishing, replica bus, dashboard and replicas starting together on a real PostgreSQL (needs TEST_POSTGRES_DSN)
	@test -n "$$TEST_POSTGRES_DSN" || { echo "set TEST_POSTGRES_DSN=postgres://user:pass@127.0.0.1:5432/db?sslmode=disable"; exit 2; }
	$(GO) test -p 1 -count=1 ./pkg/migrate/ ./agent/internal/engine/ ./updateserver/internal/store/... ./updateserver/internal/fleet/ ./updateserver/internal/notify/ ./updateserver/internal/cli/ ./updateserver/internal/publish/ ./updateserver/internal/bus/ ./updateserver/internal/lease/ ./updateserver/internal/daemon/ ./updateserver/internal/ui/

e2e: ## end-to-end tests: a real server, real agents and sample apps (as root also a real OS service)
	$(GO) test -tags e2e -count=1 -parallel 4 -timeout 20m ./testenv/...

race: ## run the tests with the race detector
	$(GO) test -race -count=1 ./...

lint: ## gofmt, go vet, staticcheck and the import-boundary check
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt -w these files:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...
	$(GO) test -count=1 -run 'TestImportBoundaries|TestPackageDocs|TestTestHelpersOnlyInTests' .

check: lint test ## everything CI checks

cross: ## compile for linux/amd64, linux/arm64, windows/amd64, darwin/arm64
	@set -e; host=$$($(GO) env GOOS)/$$($(GO) env GOARCH); for p in $(CROSS); do \
		os=$${p%/*}; arch=$${p#*/}; echo "cross $$os/$$arch"; \
		if [ "$$p" = "$$host" ]; then $(GO) build ./...; else GOOS=$$os GOARCH=$$arch $(GO) build ./...; fi; \
	done

packages: ## .deb and .rpm of the agent and server (PKG_ARCH="amd64 arm64") and the agent's Windows zip, in dist/
	@set -e; for arch in $(PKG_ARCH); do \
		echo "build linux/$$arch"; \
		for cmd in updateagent:agent updateserver:updateserver; do \
			CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/build/linux_$$arch/$${cmd%%:*} ./$${cmd#*:}/cmd/$${cmd%%:*}; \
		done; \
	done
	@echo "build windows/amd64"
	CGO_ENABLED=0 GOOS=windows GOARCH=amd64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/build/windows_amd64/updateagent.exe ./agent/cmd/updateagent
	$(GO) run ./installers/mkpkg -version '$(VERSION)' -build dist/build -out dist -arch '$(PKG_ARCH)'

test-packages: ## build the amd64 packages and vet the Windows agent, then install, upgrade through and purge the agent .deb here (root, dpkg)
	$(MAKE) packages PKG_ARCH=amd64
	GOOS=windows GOARCH=amd64 $(GO) vet ./agent/... ./pkg/...
	$(GO) test -tags 'e2e packages' -count=1 -timeout 5m -run 'TestPackage' ./testenv/

fuzz: ## run each fuzz target for FUZZTIME (default 60s)
	@set -e; for pkg in $$(grep -rl '^func Fuzz' --include='*_test.go' . | xargs -n1 dirname | sort -u); do \
		for f in $$(grep -h '^func Fuzz' $$pkg/*_test.go | sed 's/func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
			echo "fuzz $$pkg $$f"; $(GO) test $$pkg -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME); \
		done; \
	done

bench: ## run the benchmarks (publish throughput, bundle scan)
	$(GO) test -run '^$$' -bench . -benchtime 1x ./...

bench-publish: ## publish a 1 GiB bundle: throughput against cp, server peak RSS
	bash testenv/bench/publish.sh

bench-checkin: ## the check-in hot path: idle check-ins of 1000 agents through the API handler (make bench-checkin-http for HTTP)
	$(GO) test -run '^$$' -bench BenchmarkCheckinIdle -benchtime 3s -benchmem ./updateserver/internal/api/

bench-backup: ## SQLite backup and restore of a 1 GiB client database by the agent's code, against cp + fsync
	bash testenv/bench/backup.sh

bench-rollout: ## a rollout over 10,000 simulated agents, 500 at once: create -> all assigned, server CPU, pause
	bash testenv/bench/rollout.sh

bench-jobreports: ## 2,000 agents reporting a job's start and end at once: reports/s (PostgreSQL with TEST_POSTGRES_DSN)
	$(GO) test -run '^$$' -bench BenchmarkJobReports -benchtime 3x ./updateserver/internal/fleet/

bench-enroll: ## 100,000 enrollments asked at once: enrollments/s (PostgreSQL with TEST_POSTGRES_DSN)
	$(GO) test -run '^$$' -bench BenchmarkEnroll -benchtime 100000x ./updateserver/internal/store/

# testenv/perf: each script measures the product beside a reference measured
# in the same run and ends with one "RESULT <name> ratio=..." line. SMOKE=1
# runs it with small numbers (seconds; figures meaningless), to see it work.
# Settings are environment variables listed at the top of each script.
PERF := testenv/perf
# The shared script's 1,000 agents: unchanged check-ins (wrk repeats one
# report) cost no write and are not rate-limited.
CHECKIN_AGENTS := AGENTS=$${AGENTS:-1000}
# fleet-scale's levels: the most a 20,000 open-files limit allows by default.
FLEET_SCALE_LEVELS := LEVELS=$${LEVELS:-5000,10000,18500}
FLEET_SCALE_SMOKE  := LEVELS=200,500 PROBES=50 WAIT=30 SETTLE=1s DURATION=2m PORTS_PER_SOURCE=200

bench-checkin-http: build ## check-ins/s over HTTP (wrk, 1000 enrolled agents) against a bare net/http handler
	$(if $(SMOKE),AGENTS=1000 DURATION=2s WARMUP=1s CONNS=50,$(CHECKIN_AGENTS)) bash $(PERF)/checkin-throughput .

bench-trigger: build ## trigger -> assignment p50/p99 over 10,000 long-polling agents, against an in-memory long-poll server
	$(if $(SMOKE),AGENTS=300 ROUNDS=2 TIMEOUT=2m) bash $(PERF)/trigger-latency .

bench-fleet-scale: build ## agents one server holds in long-poll (RSS, fds, fresh check-in p99 per level)
	$(if $(SMOKE),$(FLEET_SCALE_SMOKE),$(FLEET_SCALE_LEVELS)) bash $(PERF)/fleet-scale .

bench-serving: build ## download of a 1 GiB bundle from the server against nginx sendfile (and Range)
	$(if $(SMOKE),SIZE=64M) bash $(PERF)/artifact-serving .

bench-download: build ## the agent's verified download of a 1 GiB target against curl (MB/s, peak RSS)
	$(if $(SMOKE),SIZE=64M RUNS=2) bash $(PERF)/agent-download .

bench-fleet: build ## N agents (100,000) over R replicas and loadgen shards, one rollout in waves (STORE=postgres|sqlite)
	$(if $(SMOKE),AGENTS=600 REPLICAS=1 SHARDS=2 STORE=sqlite TIMEOUT=3m) bash $(PERF)/fleet .

bench-smoke: ## every testenv/perf bench once with small numbers (not in CI: load, wrk, nginx)
	$(MAKE) bench-checkin-http bench-trigger bench-fleet-scale bench-serving bench-download bench-fleet SMOKE=1

clean: ## remove build output
	rm -rf bin dist
