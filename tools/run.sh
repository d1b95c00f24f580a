#!/usr/bin/env bash
# `make run`: start the daemon on the microphone (or the demo speech when there is none) and show its events.
set -euo pipefail
cd "$(dirname "$0")/.."
SERD=.venv/bin/serd
export OPENBLAS_NUM_THREADS=1
endpoint="ipc://${TMPDIR:-/tmp}/serd-run-$$/events"
helpers=()

# Ctrl-C is how `make run` is meant to end: stop quietly and exit 0, so make has no error to report.
trap 'exit 0' INT
trap 'kill "${helpers[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT

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
sleep 0.5
if [ "$narrate" = true ]; then
    .venv/bin/python -m tools.demo --narrate .cache/demo.wav &
    helpers+=($!)
fi
"$SERD" run "${source_args[@]}" --zmq "$endpoint" --device-id demo
sleep 0.5
