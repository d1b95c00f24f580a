#!/usr/bin/env bash
# `make run`: start the daemon on the microphone (or the demo speech when there is none) and show its events.
set -euo pipefail
cd "$(dirname "$0")/.."
SERD=.venv/bin/serd
export OPENBLAS_NUM_THREADS=1
endpoint="ipc://${TMPDIR:-/tmp}/serd-run-$$/events"

if [ -e /dev/snd/controlC0 ] || pactl info >/dev/null 2>&1; then
    source_args=(--source mic)
    echo "listening on the default microphone (Ctrl-C stops)"
else
    echo "no capture device here (no /dev/snd card, no PulseAudio server):"
    echo "playing the bundled demo speech through the pipeline instead"
    .venv/bin/python -m tools.demo .cache/demo.wav
    source_args=(--source file:.cache/demo.wav --realtime)
fi

"$SERD" monitor --zmq "$endpoint" &
monitor=$!
trap 'kill "$monitor" 2>/dev/null || true' EXIT
sleep 0.5
"$SERD" run "${source_args[@]}" --zmq "$endpoint" --device-id demo
sleep 0.5
