#!/usr/bin/env bash
# `make run`: start the daemon on the microphone (or the demo speech when there is none) and show its events.
set -euo pipefail
cd "$(dirname "$0")/.."
SERD=.venv/bin/serd
export OPENBLAS_NUM_THREADS=1
endpoint="ipc://${TMPDIR:-/tmp}/serd-run-$$/events"
web_listen="127.0.0.1:${SERD_WEB_PORT:-8765}"
web_log="${TMPDIR:-/tmp}/serd-run-$$.web.log"
helpers=()

# Ctrl-C is how `make run` is meant to end: stop quietly and exit 0, so make has no error to report.
trap 'exit 0' INT
trap 'kill "${helpers[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -f "$web_log"' EXIT

# The browser view beside the console monitor (make run installs the [web] extra; a venv without it goes on without the view).
start_web_view() {
    if ! .venv/bin/python -c "import aiohttp" 2>/dev/null; then
        echo "no browser view: it needs the web extra (.venv/bin/pip install -e '.[web]')"
        return
    fi
    "$SERD" web --listen "$web_listen" --events "$endpoint" 2>"$web_log" &
    helpers+=($!)
    for _ in $(seq 100); do
        grep -q '^serd web: http' "$web_log" 2>/dev/null && break
        kill -0 "${helpers[-1]}" 2>/dev/null || break
        sleep 0.1
    done
    url=$(sed -n 's|^serd web: \(http://[^ ]*\).*|\1|p' "$web_log")
    if [ -n "$url" ]; then
        echo "live view in a browser: ${url}live (files: $url)"
    else
        echo "no browser view: $(tail -n 1 "$web_log" 2>/dev/null || echo 'serd web did not start')"
    fi
}

if [ -e /dev/snd/controlC0 ] || pactl info >/dev/null 2>&1; then
    source_args=(--source mic)
    echo "listening on the default microphone (Ctrl-C stops)"
    narrate=false
else
    echo "no capture device here (no /dev/snd card, no PulseAudio server):"
    echo "playing the bundled demo speech through the pipeline instead (Ctrl-C stops)"
    .venv/bin/python -m tools.demo .cache/demo.wav
    source_args=(--source file:.cache/demo.wav --realtime)
    narrate=true
fi

"$SERD" monitor --zmq "$endpoint" &
helpers+=($!)
start_web_view
sleep 0.5
if [ "$narrate" = true ]; then
    .venv/bin/python -m tools.demo --narrate .cache/demo.wav &
    helpers+=($!)
fi
"$SERD" run "${source_args[@]}" --zmq "$endpoint" --device-id demo
sleep 0.5
