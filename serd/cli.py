"""Command-line front doors: run, analyze, batch, eval, monitor, web, devices, check-config."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from serd import __license__, __version__
from serd.errors import ModelError, SerdError
from serd.process import tune_process

log = logging.getLogger("serd")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
DEFAULT_MQTT_PORT = 1883
SERVICE_ENDPOINT_PATH = "/run/serd/events"  # RuntimeDirectory=serd of serd.service
MODEL_HELP = ("model file (.tflite; .npz for the opt-in whisper backend; its .json card beside it) "
              "or a shipped model's name: serd-emotion (default) or serd-whisper")


class VersionAction(argparse.Action):
    """--version: serd's version and licence, then the shipped model's name, version, licence and card."""

    def __init__(self, option_strings: list[str], dest: str, help: str | None = None):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        """Print and exit 0 (before the subcommand is required)."""
        from serd.shipped import version_lines

        print("\n".join(["serd %s (code licence: %s)" % (__version__, __license__)] + version_lines()))
        parser.exit(EXIT_OK)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="serd", description="Real-time speech emotion recognition: audio in, emotion events out.")
    parser.add_argument("--version", action=VersionAction, help="print serd's version and the shipped model's name, version and licence, then exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_run(commands)
    _add_analyze(commands)
    _add_batch(commands)
    _add_eval(commands)
    _add_monitor(commands)
    _add_web(commands)
    commands.add_parser("devices", help="list the capture devices PyAudio sees")
    check = commands.add_parser("check-config", help="validate a config file and print the effective configuration")
    check.add_argument("config", nargs="?", default=None, help="INI file (default: built-in defaults)")
    return parser


def _add_run(commands) -> None:
    """serd run."""
    run = commands.add_parser("run", help="listen to a source, or several ([source.NAME] sections), and publish emotion events (the daemon)",
                              description="Listen to a source and publish emotion events. A config with [source.NAME] "
                                          "sections listens to each of those sources at once (each its own device id, "
                                          "VAD and voice estimate; events and topics keyed by device id); --source then "
                                          "picks one source instead of them.")
    run.add_argument("--config", metavar="FILE", help="INI config file (e.g. /etc/serd/serd.conf); flags override it")
    run.add_argument("--source", metavar="SRC", help="mic, file:PATH or stdin (raw s16le mono 16 kHz); the only source, "
                     "even if the config has [source.NAME] sections")
    run.add_argument("--device", metavar="DEV", help="microphone: index or a substring of its name")
    run.add_argument("--realtime", action="store_true", default=None, help="pace a file source at real time")
    run.add_argument("--model", metavar="PATH", help=MODEL_HELP)
    run.add_argument("--zmq", metavar="ENDPOINT", help="ZeroMQ PUB endpoint, ipc://PATH or tcp://HOST:PORT")
    run.add_argument("--no-zmq", action="store_true", help="do not publish on ZeroMQ")
    run.add_argument("--mqtt", metavar="HOST[:PORT]", help="publish to this MQTT broker")
    run.add_argument("--stdout", action="store_true", help="write JSON lines to stdout")
    run.add_argument("--device-id", metavar="NAME", help="device name in events and topics (default: host name; "
                     "[source.NAME] sections name their own)")
    run.add_argument("--metrics", metavar="[HOST:]PORT", help="serve Prometheus metrics at http://HOST:PORT/metrics "
                     "(PORT alone: loopback; the [metrics] extra)")
    run.add_argument("--mqtt-forget", action="store_true",
                     help="remove this device's Home Assistant entities from the MQTT broker ([mqtt] discovery) and exit")


def _add_analyze(commands) -> None:
    """serd analyze."""
    analyze = commands.add_parser("analyze", help="speech segments and emotions of audio files (.wav .flac .ogg .mp3)",
                                  description="Speech segments and emotions of audio files: per file a table of segments (start, end, "
                                              "label, confidence and bar, windows) and an overall row; 'uncertain' where the top "
                                              "probability is below [smoothing] min_confidence, 'no speech' where the VAD heard none; "
                                              "a warning line for a file recorded below the model's 16 kHz. Files are read a block at "
                                              "a time, so memory does not grow with their length.")
    analyze.add_argument("files", nargs="+", metavar="FILE", help="audio file or FIFO, its format told by its content; - reads one from standard input")
    analyze.add_argument("--json", action="store_true", help="one JSON object per file, one per line")
    analyze.add_argument("--model", metavar="PATH", help=MODEL_HELP)
    analyze.add_argument("--config", metavar="FILE", help="config file for [vad] settings and [smoothing] min_confidence (below it: uncertain)")
    analyze.add_argument("--jobs", type=positive_int, default=1, metavar="N", help="analyse N files at once (processes, N >= 1)")


def _add_batch(commands) -> None:
    """serd batch."""
    batch = commands.add_parser("batch", help="analyse archives of audio on Dask into a Parquet or JSON Lines file (needs the [batch] extra)",
                                description="Analyse many files as serd analyze --json does, on a Dask cluster: a local one of N "
                                            "worker processes, or an existing scheduler (--dask). RESULTS gets a row per speech "
                                            "segment and an overall row per file (file, size_bytes, mtime_ns, row, start_s, end_s, "
                                            "windows, label, confidence, probabilities, arousal and valence as analyze gives them, duration_s, "
                                            "source_rate_hz, warnings), or an error row naming why a file failed; the others go on "
                                            "and the exit status is 1. A progress line on a terminal, a summary at the end. "
                                            "Needs pip install 'serd[batch]'.")
    batch.add_argument("inputs", nargs="+", metavar="INPUT", help="audio file, folder (searched recursively for .wav .wave .flac "
                       ".ogg .oga .opus .mp3) or manifest (.tsv with a path column, as serd eval reads)")
    batch.add_argument("--out", required=True, metavar="RESULTS", help="results file: .parquet or .jsonl")
    where = batch.add_mutually_exclusive_group()
    where.add_argument("--dask", metavar="ADDRESS", help="an existing Dask scheduler (tcp://HOST:8786); its workers must read the "
                       "files and have serd installed")
    where.add_argument("--workers", type=positive_int, default=os.cpu_count() or 1, metavar="N",
                       help="start a local cluster of N worker processes (default: one per CPU)")
    batch.add_argument("--resume", action="store_true", help="skip files RESULTS already holds with the same size and modification "
                       "time, and add the rest (files that failed are tried again)")
    batch.add_argument("--model", metavar="PATH", help=MODEL_HELP)
    batch.add_argument("--config", metavar="FILE", help="config file for [vad] settings and [smoothing] min_confidence, as analyze")


def _add_eval(commands) -> None:
    """serd eval."""
    evaluate = commands.add_parser("eval", help="accuracy on labelled speech (MANIFEST.tsv: path speaker emotion duration_s)",
                                   description="Accuracy of the runtime path on labelled speech: accuracy, UAR, macro-F1, ECE, "
                                               "per-class scores ('-' / null where a class has no clips), the confusion matrix, "
                                               "and coverage (share of clips with speech not uncertain) with UAR on the covered "
                                               "clips. Clips without speech are counted, never predicted. A warning says when the clips "
                                               "lie in the corpora that trained the model.")
    evaluate.add_argument("manifests", nargs="+", metavar="MANIFEST")
    evaluate.add_argument("--model", metavar="PATH", help=MODEL_HELP)
    evaluate.add_argument("--merge", action="append", default=[], metavar="A=B", help="fold class A into B on both sides (repeatable)")
    evaluate.add_argument("--classes", metavar="A,B,...", help="score only these classes: truths outside them are skipped, "
                          "probabilities renormalised over them, the argmax taken among them; 'present' = the classes the manifests have")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.add_argument("--config", metavar="FILE", help="config file for [vad] settings and [smoothing] min_confidence (below it: uncertain)")


def _add_monitor(commands) -> None:
    """serd monitor."""
    monitor = commands.add_parser("monitor", help="show events as they arrive, one line each",
                                  description="Show events as they arrive, one line each. Says on stderr where it waits, and "
                                              "once if no event came within a few seconds. Ctrl-C stops it (exit 2).")
    where = monitor.add_mutually_exclusive_group()
    where.add_argument("--zmq", metavar="ENDPOINT", help="ZeroMQ endpoint, ipc://PATH or tcp://HOST:PORT (default: the daemon's default ipc endpoint)")
    where.add_argument("--mqtt", metavar="HOST[:PORT]", help="MQTT broker to subscribe to")
    monitor.add_argument("--json", action="store_true", help="print the events' JSON unchanged")


def _add_web(commands) -> None:
    """serd web."""
    web = commands.add_parser("web", help="the analysis page and HTTP API in a browser (needs the [web] extra)",
                              description="Serve the analysis page (/) and the HTTP API: POST /api/analyze (an audio file: "
                                          "what analyze --json prints, plus a per-window timeline), GET /api/health; the live view (/live) of "
                                          "a daemon's events: GET /api/state, GET /api/events (Server-Sent Events); GET /api/openapi.json. "
                                          "Errors are JSON {\"error\": ...}: 400 bad file, 401 no token, 413 over [web] "
                                          "max_upload_mb, 415 not audio, 503 [web] max_concurrent analyses running. Loopback "
                                          "only unless [web] token_file is set. Needs pip install 'serd[web]'.")
    web.add_argument("--listen", metavar="HOST:PORT", help="address to serve on (default 127.0.0.1:8765; port 0: any free one); "
                     "a non-loopback address needs [web] token_file")
    web.add_argument("--model", metavar="PATH", help=MODEL_HELP)
    web.add_argument("--config", metavar="FILE", help="config file: [web] limits and token, [vad] and [smoothing] min_confidence as analyze")
    web.add_argument("--events", metavar="ENDPOINT", help="the daemon's ZeroMQ endpoint the live view (/live, /api/state, /api/events) "
                     "follows (default: the config's [zmq] endpoint, as serd run)")


def positive_int(text: str) -> int:
    """An integer of at least 1; argparse turns the ArgumentTypeError into a usage error (exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a whole number (got %r)" % text) from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1 (got %d)" % value)
    return value


def run_overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Config overrides from `serd run` flags."""
    overrides: dict[str, dict[str, Any]] = {}

    def put(section: str, key: str, value: Any) -> None:
        if value is not None:
            overrides.setdefault(section, {})[key] = value

    put("source", "source", args.source)
    put("source", "device", args.device)
    put("source", "realtime", args.realtime)
    put("model", "path", args.model)
    put("daemon", "device_id", args.device_id)
    if args.zmq:
        put("zmq", "endpoint", args.zmq)
        put("zmq", "enabled", True)
    if args.no_zmq:
        put("zmq", "enabled", False)
    if args.mqtt:
        host, port = parse_host_port(args.mqtt)
        put("mqtt", "host", host)
        put("mqtt", "port", port)
        put("mqtt", "enabled", True)
    if args.stdout:
        put("stdout", "enabled", True)
    put("metrics", "listen", args.metrics)
    if args.verbose:
        put("daemon", "log_level", "debug")
    return overrides


def parse_host_port(text: str) -> tuple[str, int]:
    """HOST[:PORT] -> (host, port); a bad port is a usage error."""
    host, _, port = text.rpartition(":") if ":" in text else (text, "", str(DEFAULT_MQTT_PORT))
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SerdError("%r is not HOST[:PORT]" % text)
    return host, int(port)


def setup_logging(level: str) -> None:
    """Log to stderr; journald adds its own timestamps, so leave them out there."""
    fmt = "%(levelname)s %(name)s: %(message)s" if os.environ.get("JOURNAL_STREAM") else "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level.upper(), format=fmt, stream=sys.stderr, force=True)


def cmd_run(args: argparse.Namespace) -> int:
    """serd run."""
    from serd.config import load_config
    from serd.daemon import Daemon

    overrides = run_overrides(args)
    config = load_config(args.config, overrides)
    setup_logging(config.daemon.log_level)
    if args.mqtt_forget:
        return forget_home_assistant(config)
    return Daemon(config, args.config, overrides).run()


def forget_home_assistant(config) -> int:
    """serd run --mqtt-forget: clear the device's Home Assistant entity configs on the broker."""
    from serd.config import channels
    from serd.publish.mqtt_pub import forget_discovery

    if not config.mqtt.enabled:
        raise SerdError("--mqtt-forget needs a broker: [mqtt] enabled = yes or --mqtt HOST[:PORT]")
    for device in [settings.device_id for settings in channels(config)]:  # every source's device ([source.NAME])
        topics = forget_discovery(config.mqtt, device)
        print("removed %d Home Assistant entities of device %s from %s:%d (%s)"
              % (len(topics), device, config.mqtt.host, config.mqtt.port, config.mqtt.discovery_prefix))
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    """serd analyze."""
    from serd.audio import STDIN_PATH
    from serd.report import analyze_files

    if args.files.count(STDIN_PATH) > 1:
        raise SerdError("- (standard input) can be analysed once")
    jobs = 1 if STDIN_PATH in args.files else args.jobs  # standard input is this process's, not a worker's
    return analyze_files(args.files, args.model, args.config, args.json, jobs, sys.stdout)


def cmd_batch(args: argparse.Namespace) -> int:
    """serd batch."""
    from serd.batch import run_batch

    return run_batch(args.inputs, args.out, args.dask, args.workers, args.resume, args.model, args.config)


def cmd_eval(args: argparse.Namespace) -> int:
    """serd eval."""
    from serd.evaluation import evaluate_manifests, format_evaluation

    report = evaluate_manifests(args.manifests, args.model, args.config, args.merge, args.classes)
    print(json.dumps(report) if args.json else format_evaluation(report))
    return EXIT_OK


def cmd_monitor(args: argparse.Namespace) -> int:
    """serd monitor: until Ctrl-C (exit 2, on every transport) or a closed output (exit 0)."""
    import signal
    import threading

    from serd.config import default_zmq_endpoint
    from serd.monitor import run_monitor

    stop, interrupted = threading.Event(), threading.Event()

    def on_sigint(signum: int, frame: Any) -> None:
        interrupted.set()
        stop.set()

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        if args.mqtt:
            host, port = parse_host_port(args.mqtt)
            run_monitor(None, host, port, args.json, sys.stdout, stop, notices=sys.stderr)
        else:
            endpoint = args.zmq or monitor_endpoint(default_zmq_endpoint())
            run_monitor(endpoint, None, DEFAULT_MQTT_PORT, args.json, sys.stdout, stop, notices=sys.stderr)
    finally:
        signal.signal(signal.SIGINT, previous)
    return EXIT_USAGE if interrupted.is_set() else EXIT_OK


def monitor_endpoint(default: str) -> str:
    """The user's default ipc endpoint, or the system service's when only that one exists."""
    own_path = default[len("ipc://"):]
    if not os.path.exists(own_path) and os.path.exists(SERVICE_ENDPOINT_PATH):
        return "ipc://" + SERVICE_ENDPOINT_PATH
    return default


def cmd_web(args: argparse.Namespace) -> int:
    """serd web."""
    from serd.web.main import run_web

    return run_web(args.listen, args.model, args.config, args.events)


def cmd_devices(args: argparse.Namespace) -> int:
    """serd devices."""
    from serd.capture import list_devices

    devices = list_devices()
    if not devices:
        print("no capture devices")
        return EXIT_FAILURE
    for device in devices:
        print("%3d  %-40s %d ch  %d Hz" % (device.index, device.name, device.max_input_channels, device.default_sample_rate_hz))
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    """serd check-config: the effective configuration, or one line per problem `serd run` would meet (bad keys,
    a missing or bad model, files it cannot read)."""
    from serd.config import load_config, referenced_files, to_ini

    config = load_config(args.config)
    problems = [_model_problem(config.model.path), _web_problem(config)]
    for key, name in referenced_files(config):
        path = Path(name)
        if not path.exists():
            problems.append("%s: %s: no such file" % (key, path))
        elif not os.access(path, os.R_OK):
            problems.append("%s: %s: not readable" % (key, path))
    problems = [problem for problem in problems if problem]
    for problem in problems:
        print("serd: error: %s" % problem, file=sys.stderr)
    if problems:
        return EXIT_FAILURE
    print(to_ini(config), end="")
    return EXIT_OK


def _model_problem(path: str) -> str:
    """Why [model] path cannot be loaded (its file and its card checked, not run), or ""."""
    from serd.card import ModelCard
    from serd.model import model_path
    from serd.shipped import read_card

    try:
        found = model_path(path)
        if not found.is_file():
            return "[model] path: %s: model file not found" % found
        card_path = found.with_suffix(".json")
        ModelCard.from_dict(read_card(card_path), card_path)
    except ModelError as exc:
        return "[model] path: %s" % exc
    return ""


def _web_problem(config) -> str:
    """Why `serd run` would not serve [web] listen (no web extra, not HOST:PORT, beyond loopback without a token), or ""."""
    if not config.web.listen:
        return ""
    from serd.web.access import parse_listen, required_token
    from serd.web.main import require_extra

    try:
        require_extra()
        address = parse_listen(config.web.listen)
        if not config.web.token_file:  # a token file is read (and named if missing) with the other files
            required_token(address, "")
    except SerdError as exc:
        return "[web] listen: %s" % str(exc).removeprefix("--listen ")
    return ""


COMMANDS = {
    "run": cmd_run,
    "analyze": cmd_analyze,
    "batch": cmd_batch,
    "eval": cmd_eval,
    "monitor": cmd_monitor,
    "web": cmd_web,
    "devices": cmd_devices,
    "check-config": cmd_check_config,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: errors become one line on stderr and a non-zero exit."""
    args = build_parser().parse_args(argv)
    setup_logging("debug" if args.verbose else "warning")
    tune_process()
    try:
        return COMMANDS[args.command](args)
    except SerdError as exc:
        print("serd: error: %s" % exc, file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_USAGE
    except BrokenPipeError:
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
