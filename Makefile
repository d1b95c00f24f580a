# serd: `make run` listens and shows events; `make test` runs the suite. Both set themselves up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := portaudio19-dev libportaudio2 mosquitto mosquitto-clients pulseaudio pulseaudio-utils \
	libasound2-plugins espeak-ng sox libsox-fmt-all systemd python3-seccomp
export OPENBLAS_NUM_THREADS := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test model bench install apt venv venv-dev clean
SERD_PREFIX := /opt/serd

run: apt venv
	@tools/run.sh

test: apt venv-dev
	$(PY) -m pytest -q

model: apt venv-dev
	$(PY) -m tools.train --out models

bench: apt venv-dev
	$(PY) -m tools.bench

apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing: $$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
		else \
			echo "serd needs these packages; run:"; echo "  sudo apt-get install -y $$missing"; exit 1; \
		fi; \
	fi

$(VENV)/.runtime: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime
	$(PY) -m pip install -q -e ".[dev,train]"
	touch $@

venv: $(VENV)/.runtime
venv-dev: $(VENV)/.dev

install: apt
	@test "$$(id -u)" = 0 || { echo "make install needs root: sudo make install"; exit 1; }
	test -x $(SERD_PREFIX)/bin/python || $(PYTHON) -m venv $(SERD_PREFIX)
	$(SERD_PREFIX)/bin/python -m pip install -q --upgrade pip
	$(SERD_PREFIX)/bin/python -m pip install -q .
	ln -sf $(SERD_PREFIX)/bin/serd /usr/local/bin/serd
	install -D -m 0644 systemd/serd.service /etc/systemd/system/serd.service
	install -d -m 0755 /etc/serd
	test -e /etc/serd/serd.conf || install -m 0644 systemd/serd.conf /etc/serd/serd.conf
	for f in mqtt-password mqtt-key.pem; do test -e /etc/serd/$$f || install -m 0600 /dev/null /etc/serd/$$f; done
	-systemctl daemon-reload 2>/dev/null
	@echo "installed. Edit /etc/serd/serd.conf, then: systemctl enable --now serd"

clean:
	rm -rf $(VENV) .cache build *.egg-info
