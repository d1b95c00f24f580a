# serd: `make run` listens and shows events; `make test` runs the suite. Both set themselves up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# apt packages: what running needs (PyAudio's build and library, the demo's speech), then what testing adds
# (the MQTT broker, a virtual microphone, mp3/ogg decoding, the unit's checks and its seccomp policy, a browser for serd web's page)
RUN_PACKAGES := portaudio19-dev libportaudio2 espeak-ng sox
TEST_PACKAGES := mosquitto pulseaudio pulseaudio-utils libasound2-plugins libsox-fmt-all systemd python3-seccomp chromium
export OPENBLAS_NUM_THREADS := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test model bench soak mutants install apt-run apt-test venv venv-dev clean
SERD_PREFIX := /opt/serd

run: apt-run venv
	@tools/run.sh

test: apt-test venv-dev
	$(PY) -m pytest -q

model: apt-test venv-dev
	$(PY) -m tools.train --out models
	$(PY) -m tools.study.whisper_loco --backend-out models

bench: apt-test venv-dev
	$(PY) -m tools.bench

# 24 h of speech through serd run as fast as it goes (minutes), RSS sampled: docs/soak.json
soak: apt-test venv-dev
	$(PY) -m tools.bench --soak 24

# mutation testing of the stage modules (a couple of hours on two cores; not part of make test)
mutants: apt-test venv-dev
	$(PY) -m pip install -q -e ".[mutants]"
	$(PY) -m tools.mutants

# $(call apt_install,PACKAGES): install the missing ones as root, else name them on one line and fail
define apt_install
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || printf '%s ' $$p; done); \
	missing=$${missing% }; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing: $$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
		else \
			echo "serd needs these packages: $$missing (run: sudo apt-get install -y $$missing)"; exit 1; \
		fi; \
	fi
endef

apt-run:
	$(call apt_install,$(RUN_PACKAGES))

apt-test:
	$(call apt_install,$(RUN_PACKAGES) $(TEST_PACKAGES))

# make run's venv: the daemon's runtime plus the [web] extra, for the browser view it opens beside the console monitor
$(VENV)/.runtime: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[web]"
	touch $@

$(VENV)/.dev: $(VENV)/.runtime
	$(PY) -m pip install -q -e ".[dev,train,web,batch]"
	touch $@

venv: $(VENV)/.runtime
venv-dev: $(VENV)/.dev

install: apt-run
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
