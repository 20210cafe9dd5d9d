# callbridge: make demo, make test. See README.md.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
STATICCHECK_VERSION := v0.7.0

.PHONY: all build test test-faults test-print test-freeswitch test-cluster capacity lint demo bench fmt clean

all: build

## build: the callbridge binary in bin/
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/callbridge ./cmd/callbridge

## test: gofmt, vet, the compose file, and every test under -race against a real PostgreSQL
## (a throwaway cluster unless DATABASE_URL is set)
test:
	scripts/with-postgres.sh scripts/test.sh

## test-faults: the fault and security scenarios and bounded fuzzing
test-faults:
	scripts/with-postgres.sh scripts/test-faults.sh

## test-print: the invoice and credit note rendered in headless Chromium (A4 and Letter, PNG and PDF in .tmp/print)
test-print:
	scripts/test-print.sh

## test-freeswitch: the real-switch suite: FreeSWITCH (FREESWITCH_DIR, default ../shared/freeswitch),
## sipp carriers and phones, PostgreSQL and `callbridge serve`, on loopback
test-freeswitch:
	scripts/with-postgres.sh scripts/test-freeswitch.sh

## test-cluster: the scale-out suite: Kamailio (kamailio/kamailio.cfg) in front of two real
## FreeSWITCH nodes, two controllers on one PostgreSQL, sipp carriers and phones, on loopback
test-cluster:
	REALSWITCH_SUITE=cluster scripts/with-postgres.sh scripts/test-freeswitch.sh

## capacity: measure one real FreeSWITCH node under rising call rates (docs/capacity.md);
## CAPACITY_RATES=5,10,20 chooses the steps. Not part of CI: it asserts no speed.
capacity:
	REALSWITCH_SUITE=cluster scripts/with-postgres.sh scripts/test-freeswitch.sh -tags "cluster capacity" -run TestCapacity

## lint: gofmt, go vet and staticcheck
lint:
	scripts/lint.sh $(STATICCHECK_VERSION)

## demo: the whole system on local defaults with the simulator, a scripted tour, then the API left running
demo: build
	scripts/with-postgres.sh scripts/demo.sh

## bench: every benchmark and load run, as a table and bench/results.json
bench: build
	scripts/with-postgres.sh scripts/bench.sh

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin .tmp
