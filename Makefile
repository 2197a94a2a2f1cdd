# sluice — see README.md. Every target works on a fresh clone with only the Rust toolchain.

SHELL      := bash
CARGO      ?= cargo
GUEST_OUT  := guests/target/wasm32-wasip2/release
FILE_WASM  := $(GUEST_OUT)/sluice_file.wasm
SLUICE     := target/debug/sluice

.PHONY: setup wasm-target kafka-broker s3-server guests bundled pytools build run demo test guest-tests fuzz bench bench-peers services lint doc fmt clean

## setup: install what the build needs (the wasm32-wasip2 target, rustfmt, clippy),
## the clients the tests check with: `mysql` (Debian: mariadb-client-core) and
## `redis-cli` (Debian: redis-tools), `mosquitto_pub`/`mosquitto_sub` (Debian: mosquitto-clients),
## the SSH server the SFTP tests start (OpenSSH's sshd and ssh-keygen; Debian: openssh-server),
## the Kafka-compatible broker the kafka tests start (tansu, from crates.io)
## and the S3-API server the S3 tests start (s3s-fs, from crates.io)
setup: wasm-target kafka-broker s3-server
	rustup component add rustfmt clippy
	@command -v mysql >/dev/null || { command -v apt-get >/dev/null && apt-get install -y -q mariadb-client-core; } || \
		echo "the mysql client is missing and could not be installed: install mariadb-client-core (or default-mysql-client)"
	@command -v redis-cli >/dev/null || { command -v apt-get >/dev/null && apt-get install -y -q redis-tools; } || \
		echo "redis-cli is missing and could not be installed: install redis-tools"
	@command -v mosquitto_sub >/dev/null || { command -v apt-get >/dev/null && apt-get install -y -q mosquitto-clients; } || \
		echo "mosquitto_sub is missing and could not be installed: install mosquitto-clients"
	@test -x /usr/sbin/sshd && command -v ssh-keygen >/dev/null || \
		{ command -v apt-get >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q openssh-server; } || \
		echo "OpenSSH's server is missing and could not be installed: install openssh-server"

wasm-target:
	@rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2

## kafka-broker: tansu, a Kafka-compatible broker (in-memory storage), built once per
## machine into cargo's bin directory when missing (about 10 minutes on two cores)
TANSU_VERSION := 0.6.0
kafka-broker:
	@command -v tansu >/dev/null || $(CARGO) install tansu --version $(TANSU_VERSION) --locked --no-default-features --features dynostore

## s3-server: s3s-fs, an S3-API server that serves a directory and checks every
## request's AWS Signature Version 4, built once per machine into cargo's bin
## directory when missing (about 5 minutes on two cores)
S3S_VERSION := 0.14.1
s3-server:
	@command -v s3s-fs >/dev/null || $(CARGO) install s3s-fs --version $(S3S_VERSION) --locked --features binary

## guests: build every guest component (SDK, connectors, probes) for wasm32-wasip2
guests: wasm-target
	cd guests && $(CARGO) build --release

## build: the host library and the `sluice` binary, plus the guests (the whole
## workspace, so `make test` reuses the same dependency builds instead of
## compiling wasmtime again under the test crate's feature set)
build: guests
	$(CARGO) build --workspace

SLUICE_ADMIN_TOKEN ?= dev-admin-token
export SLUICE_ADMIN_TOKEN

## run: start `sluice serve` on http://127.0.0.1:$(PORT) (default 8080) from a release build
## (data in target/sluice-data, bundled connectors preloaded)
PORT ?= 8080
run: bundled
	$(CARGO) build --release -p sluice-cli --bin sluice
	@echo "sluice serve: http://127.0.0.1:$(PORT)  (admin token: $$SLUICE_ADMIN_TOKEN)"
	@echo "In another terminal, run the walkthrough: URL=http://127.0.0.1:$(PORT) sh examples/walkthrough.sh"
	@echo "-- examples/walkthrough.sh -----------------------------------------------"
	@grep -v '^#!' examples/walkthrough.sh
	@echo "---------------------------------------------------------------------------"
	@target/release/sluice serve --listen 127.0.0.1:$(PORT) --data-dir target/sluice-data --connectors $(BUNDLED)

## bundled: the connectors `make run` offers every tenant: those of guests/connectors
## (never the hostile test probes built beside them)
BUNDLED := target/bundled
bundled: guests
	@mkdir -p $(BUNDLED) && rm -f $(BUNDLED)/*.wasm
	@for dir in guests/connectors/*/; do \
		cp $(GUEST_OUT)/sluice_$$(basename $$dir).wasm $(BUNDLED)/; \
	done

## demo: run the file connector once from the command line over the sample data
demo: build
	@$(SLUICE) run $(FILE_WASM) --mount examples/data:/data:ro \
		--config '{"root": "/data", "csv": {"infer_types": true}}' \
		fetch people.csv --filter age=gt:80 --sort age:desc --fields name,age,city

## pytools: third-party checkers the tests run against the server's output
## (openapi-spec-validator, prometheus_client's text parser) and the brokers'
## own client libraries the queue tests check with (nats-py, pika, kafka-python), and the
## gRPC server the grpc tests start (grpcio with server reflection; grpcio-tools compiles
## its .proto), in target/pytools (installed again when this list changes)
PYTOOLS := target/pytools
PYTOOLS_PACKAGES := openapi-spec-validator==0.9.0 prometheus-client==0.26.0 nats-py==2.16.0 pika==1.3.2 kafka-python==3.0.12 pyarrow==26.0.1 pyftpdlib==2.2.0 \
	grpcio==1.85.1 grpcio-reflection==1.85.1 grpcio-tools==1.85.1
pytools: $(PYTOOLS)/.installed
$(PYTOOLS)/.installed: Makefile
	@command -v python3 >/dev/null || { echo "python3 is needed for the checkers the tests run: install it (Debian: apt-get install python3 python3-venv)"; exit 1; }
	python3 -m venv $(PYTOOLS)
	$(PYTOOLS)/bin/pip install --quiet $(PYTOOLS_PACKAGES)
	@touch $@

## test: build the guests and run every test (needs PostgreSQL on 127.0.0.1:5432,
## MariaDB or MySQL on 127.0.0.1:3306, Redis on 127.0.0.1:6379, RabbitMQ on
## 127.0.0.1:5672, Mosquitto on 127.0.0.1:1883, NATS with JetStream on 127.0.0.1:4222,
## and tansu installed by `make setup`: the kafka tests start their own brokers)
test: build services pytools
	$(CARGO) test --workspace --no-fail-fast
	$(MAKE) guest-tests

## guest-tests: the SDK's, the Python and JavaScript kits' and the connectors' own tests, natively (among them: each
## connector's config.schema.json is the schema derived from its config type;
## SLUICE_UPDATE_SCHEMAS=1 rewrites them)
guest-tests:
	cd guests && $(CARGO) test --workspace --exclude sluice-probe --lib --target $$(rustc -vV | sed -n 's/^host: //p')
	python3 -m unittest discover -s guests/kits/python/tests
	@command -v node >/dev/null || { echo "node is needed for the JavaScript kit's tests: install Node.js 20 or later (Debian: nodejs)"; exit 1; }
	node --test guests/kits/js/tests

## fuzz: the fuzz targets (uploads, grants against ceilings, config schemas), FUZZ_SECONDS each (default 600);
## `make test` runs them for 3 s each
FUZZ_SECONDS ?= 600
fuzz: guests
	SLUICE_FUZZ_SECONDS=$(FUZZ_SECONDS) $(CARGO) test --release -p sluice-tests --test fuzz -- --nocapture

## bench: the performance suite in release against native baselines (QUICK=1: a smaller run);
## prints the table and writes target/bench/results.json (needs PostgreSQL on 127.0.0.1:5432)
bench: guests services
	-@$(MAKE) --no-print-directory bench-peers
	$(CARGO) bench -p sluice-tests --bench suite --features bench-brokers,bench-parquet -- $(if $(filter-out 0,$(QUICK)),--quick) $(ONLY)

## bench-peers: the tools `make bench` compares with, installed when missing: jq
## (Debian) and, in target/bench/peers, the Meltano SDK's tap-postgres and dlt
## (PyPI). A peer that cannot be installed is reported by the bench, not fatal.
PEERS := target/bench/peers
bench-peers: $(PEERS)/.installed
	@command -v jq >/dev/null || { command -v apt-get >/dev/null && apt-get install -y -q jq; } || \
		echo "jq is missing and could not be installed: the bench reports it as not measured"
$(PEERS)/.installed:
	python3 -m venv $(PEERS)
	$(PEERS)/bin/pip install --quiet meltanolabs-tap-postgres==0.10.0 dlt==1.31.0 sqlalchemy==2.0.51 psycopg2-binary==2.9.12
	@touch $@

## services: check that the services the tests use are reachable
services:
	@(exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null || { \
		echo "PostgreSQL is not reachable on 127.0.0.1:5432; the tests need it (trust auth, database 'test')."; \
		echo "Install it (Debian: apt-get install postgresql) and start it:"; \
		echo "  pg_ctlcluster --skip-systemctl-redirect \$$(ls /etc/postgresql) main start"; \
		exit 1; }
	@(exec 3<>/dev/tcp/127.0.0.1/3306) 2>/dev/null || { \
		echo "MariaDB (or MySQL) is not reachable on 127.0.0.1:3306; the tests need it (root without a password, database 'test')."; \
		echo "Install it (Debian: apt-get install mariadb-server) and start it: service mariadb start"; \
		exit 1; }
	@command -v mysql >/dev/null || { \
		echo "The mysql client is missing; the MariaDB tests compare values with it: run make setup (Debian: apt-get install mariadb-client-core)"; \
		exit 1; }
	@(exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null || { \
		echo "Redis is not reachable on 127.0.0.1:6379; the redis connector's tests need it."; \
		echo "Install it (Debian: apt-get install redis-server) and start it: service redis-server start"; \
		exit 1; }
	@command -v redis-cli >/dev/null || { \
		echo "redis-cli is missing; the redis tests check what sluice did with Redis's own client: run make setup (Debian: apt-get install redis-tools)"; \
		exit 1; }
	@(exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null || { \
		echo "RabbitMQ is not reachable on 127.0.0.1:5672; the rabbitmq connector's tests need it (guest/guest)."; \
		echo "Install it (Debian: apt-get install rabbitmq-server) and start it: service rabbitmq-server start"; \
		exit 1; }
	@(exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null || { \
		echo "Mosquitto (MQTT) is not reachable on 127.0.0.1:1883; the mqtt connector's tests need it."; \
		echo "Install it (Debian: apt-get install mosquitto mosquitto-clients) and start it: service mosquitto start"; \
		exit 1; }
	@command -v mosquitto >/dev/null && command -v mosquitto_passwd >/dev/null && command -v nats-server >/dev/null || { \
		echo "mosquitto, mosquitto_passwd or nats-server is missing: the login tests start their own broker with a password on a free port (Debian: apt-get install mosquitto nats-server)"; \
		exit 1; }
	@command -v mosquitto_sub >/dev/null || { \
		echo "mosquitto_pub/mosquitto_sub are missing; the mqtt tests check with Mosquitto's own clients: run make setup (Debian: apt-get install mosquitto-clients)"; \
		exit 1; }
	@command -v tansu >/dev/null || { \
		echo "tansu (a Kafka-compatible broker) is missing; the kafka tests start it on free ports: run make setup (cargo install tansu, about 10 minutes)"; \
		exit 1; }
	@command -v s3s-fs >/dev/null || { \
		echo "s3s-fs (an S3-API server) is missing; the S3 tests start it on free ports: run make setup (cargo install s3s-fs, about 5 minutes)"; \
		exit 1; }
	@test -x /usr/sbin/sshd && command -v ssh-keygen >/dev/null || { \
		echo "OpenSSH's server (/usr/sbin/sshd) or ssh-keygen is missing; the SFTP tests start sshd on a free port: run make setup (Debian: apt-get install openssh-server)"; \
		exit 1; }
	@(exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null || { \
		echo "NATS is not reachable on 127.0.0.1:4222; the nats connector's tests need it, with JetStream."; \
		echo "Install it (Debian: apt-get install nats-server) and start it: nats-server -js -a 127.0.0.1 -p 4222"; \
		exit 1; }

## lint: rustfmt and clippy (-D warnings) on the host and the guests
lint:
	$(CARGO) fmt --all -- --check
	cd guests && $(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	cd guests && $(CARGO) clippy --release --all-targets -- -D warnings

## doc: the API documentation of every crate, warnings (broken links, missing docs) denied
doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps

fmt:
	$(CARGO) fmt --all
	cd guests && $(CARGO) fmt --all

clean:
	$(CARGO) clean
	cd guests && $(CARGO) clean
