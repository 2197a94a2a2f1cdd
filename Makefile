# sluice — see README.md. Every target works on a fresh clone with only the Rust toolchain.

SHELL      := bash
CARGO      ?= cargo
GUEST_OUT  := guests/target/wasm32-wasip2/release
FILE_WASM  := $(GUEST_OUT)/sluice_file.wasm
SLUICE     := target/debug/sluice

.PHONY: setup wasm-target guests build run test services lint fmt clean

## setup: install what the build needs (the wasm32-wasip2 target, rustfmt, clippy)
setup: wasm-target
	rustup component add rustfmt clippy

wasm-target:
	@rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2

## guests: build every guest component (SDK, connectors, probes) for wasm32-wasip2
guests: wasm-target
	cd guests && $(CARGO) build --release

## build: the host library and the `sluice` binary, plus the guests
build: guests
	$(CARGO) build -p sluice --bin sluice

## run: run the file connector over the bundled sample dataset
run: build
	@echo "== sluice run file.wasm fetch people.csv --filter age=gt:80 --sort age:desc"
	@$(SLUICE) run $(FILE_WASM) --mount examples/data:/data:ro \
		--config '{"root": "/data", "csv": {"infer_types": true}}' \
		fetch people.csv --filter age=gt:80 --sort age:desc --fields name,age,city
	@echo "== sluice run file.wasm stream people.ndjson --emit-checkpoints"
	@$(SLUICE) run $(FILE_WASM) --mount examples/data:/data:ro \
		--config '{"root": "/data"}' \
		stream people.ndjson --batch-size 3 --emit-checkpoints

## test: build the guests and run every test (needs PostgreSQL on 127.0.0.1:5432)
test: build services
	$(CARGO) test --workspace --no-fail-fast

## services: check that the services the tests use are reachable
services:
	@(exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null || { \
		echo "PostgreSQL is not reachable on 127.0.0.1:5432; the tests need it (trust auth, database 'test')."; \
		echo "Install it (Debian: apt-get install postgresql) and start it:"; \
		echo "  pg_ctlcluster --skip-systemctl-redirect \$$(ls /etc/postgresql) main start"; \
		exit 1; }

## lint: rustfmt and clippy (-D warnings) on the host and the guests
lint:
	$(CARGO) fmt --all -- --check
	cd guests && $(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	cd guests && $(CARGO) clippy --release --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all
	cd guests && $(CARGO) fmt --all

clean:
	$(CARGO) clean
	cd guests && $(CARGO) clean
