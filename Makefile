# enclave-storage — see README.md.
#
# Everything builds without cgo. imgbuild reads container images through
# github.com/containers/image/v5 with only the transports it needs imported
# (docker, docker-archive, docker-daemon, oci, oci-archive), so no storage
# driver, gpgme or btrfs/devmapper graph driver is linked and no build tag is
# needed; IMGBUILD_TAGS lists the tags we pass anyway so a future import of
# the full transport set stays cgo-free.
GO            ?= go
BIN           ?= bin
IMGBUILD_TAGS := containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper containers_image_storage_stub
TEST_TIMEOUT  ?= 20m
FUZZTIME      ?= 10s

.PHONY: all deps build test bench lint fuzz integration demo clean

all: build

deps: ## install apt packages and Go modules (root or sudo)
	scripts/deps.sh

build: ## static binaries in ./bin
	CGO_ENABLED=0 $(GO) build -trimpath -tags '$(IMGBUILD_TAGS)' -o $(BIN)/ ./cmd/...

test: ## unit and oracle tests (installs the oracle tools first when one is missing)
	scripts/ensure-deps.sh
	$(GO) test -tags '$(IMGBUILD_TAGS)' -timeout $(TEST_TIMEOUT) ./...

lint: ## go mod tidy is a no-op, gofmt clean; go vet and staticcheck, over the unit and the integration-tagged code
	$(GO) mod tidy -diff
	@out=$$(gofmt -l $$(find . -path ./integration/.cache -prune -o -name '*.go' -print)); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet -tags '$(IMGBUILD_TAGS)' ./...
	$(GO) vet -tags '$(IMGBUILD_TAGS) integration' ./...
	@sc=$$(command -v staticcheck || echo "$$($(GO) env GOPATH)/bin/staticcheck"); \
	if [ -x "$$sc" ]; then "$$sc" -tags '$(IMGBUILD_TAGS)' ./... && "$$sc" -tags '$(IMGBUILD_TAGS) integration' ./...; \
	else echo "lint: staticcheck not installed (make deps installs it)"; fi

bench: build ## our code against the real tools, same machine, same run
	scripts/bench.sh

.PHONY: bench-vm
bench-vm: build ## our code against the real tools inside the QEMU microVM (vsock, the enclave's path); slow
	@for b in scripts/bench-vm-*.sh; do echo "== $$b"; bash "$$b" || exit 1; echo; done

integration: ## kernel-level tests in a QEMU microVM (Debian kernel, TCG); HOST=1 runs them on this host instead
	scripts/integration.sh

demo: ## the whole system on a sample app in the microVM: imgbuild --tag, then nbd-parent run twice (installs its dependencies)
	scripts/demo.sh $(DEMO_FLAGS)

fuzz: ## a short run of every fuzz target
	scripts/fuzz.sh $(FUZZTIME)

clean:
	rm -rf $(BIN)
