"""Mutation testing of serd's stage modules with cosmic-ray: how many one-line changes the tests catch.

`python -m tools.mutants` (`make mutants`) runs, module by module, every mutant cosmic-ray makes of
the module against the tests of that module (and the end-to-end tests that exercise it), in a copy
of the committed tree (the working tree is never mutated), `--jobs` modules at a time. Each finished
module's counts (mutants, killed, survived, timed out, incompetent) and its survivors (line,
operator) are merged into docs/mutants.json. Not part of `make test` or CI.
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

log = logging.getLogger("tools.mutants")

REPO_DIR = Path(__file__).resolve().parent.parent
RESULTS = REPO_DIR / "docs" / "mutants.json"
EQUIVALENT = REPO_DIR / "docs" / "mutants_equivalent.json"  # survivors shown equivalent by hand, with the reason
WORK_DIR = REPO_DIR / ".cache" / "mutants"
TIMEOUT_FACTOR = 3.0  # a mutant whose tests run longer than this many baselines (plus 10 s) has timed out
PYTEST = "python -m pytest -x -q -p no:cacheprovider"

# Stage module -> the tests that exercise it (its own module's tests first, then end-to-end ones).
MODULE_TESTS: dict[str, tuple[str, ...]] = {
    "serd/smoothing.py": ("tests/test_smoothing.py",),
    "serd/vad.py": ("tests/test_vad.py", "tests/test_noisegate.py", "tests/test_frontend.py"),
    "serd/noisegate.py": ("tests/test_noisegate.py", "tests/test_vad.py"),
    "serd/ringbuffer.py": ("tests/test_ringbuffer.py", "tests/test_properties.py"),
    "serd/windows.py": ("tests/test_windows.py",),
    "serd/features.py": ("tests/test_features.py", "tests/test_properties.py"),
    "serd/frontend.py": ("tests/test_frontend.py",),
    "serd/events.py": ("tests/test_events.py", "tests/test_properties.py"),
    "serd/affect.py": ("tests/test_affect.py", "tests/test_properties.py"),
    "serd/config.py": ("tests/test_config.py", "tests/test_properties.py"),
    "serd/speaker.py": ("tests/test_speaker.py",),
    "serd/head.py": ("tests/test_head.py",),
    "serd/model.py": ("tests/test_model.py", "tests/test_head.py", "tests/test_card.py"),
    "serd/card.py": ("tests/test_card.py",),
    "serd/audio.py": ("tests/test_audio.py",),
    "serd/resample.py": ("tests/test_audio.py", "tests/test_properties.py"),
    "serd/sdnotify.py": ("tests/test_sdnotify.py",),
    "serd/capture.py": ("tests/test_capture.py",),
    "serd/publish/__init__.py": ("tests/test_publish_fanout.py", "tests/test_publish_zmq.py", "tests/test_publish_stdout.py", "tests/test_publish_mqtt.py"),
    "serd/publish/base.py": ("tests/test_publish_base.py", "tests/test_publish_stdout.py", "tests/test_publish_zmq.py"),
    "serd/publish/stdout_pub.py": ("tests/test_publish_stdout.py",),
    "serd/publish/zmq_pub.py": ("tests/test_publish_zmq.py",),
    "serd/publish/mqtt_pub.py": ("tests/test_publish_mqtt.py", "tests/test_discovery.py"),
    "serd/publish/discovery.py": ("tests/test_discovery.py",),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m tools.mutants", description=__doc__.splitlines()[0])
    parser.add_argument("--module", action="append", help="only this module (repeatable), e.g. serd/smoothing.py")
    parser.add_argument("--jobs", type=int, default=2, help="modules mutated at once (each in its own copy)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="results JSON (default: docs/mutants.json)")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--rescore", action="store_true", help="recount the modules' last sessions (in .cache/mutants) "
                      "without running them, e.g. after listing an equivalent mutant")
    what.add_argument("--retest", action="store_true", help="run the survivors of the modules' last sessions again against "
                      "the committed tests (the module itself unchanged since), e.g. after writing the tests they called for")
    return parser.parse_args(argv)


def copy_tree(module: str) -> Path:
    """A fresh copy of the committed tree (git archive of HEAD) for one module's mutants."""
    tree = tree_of(module)
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=REPO_DIR, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    models = tree / "serd" / "models"
    if models.is_symlink() or not models.exists():  # the shipped models, read from the real tree
        models.unlink(missing_ok=True)
        models.symlink_to(REPO_DIR / "models")
    return tree


def environment(tree: Path) -> dict[str, str]:
    """The tests' environment: the copy's serd first on the path (subprocesses too), the real corpora."""
    shared = Path(os.environ.get("SERD_SHARED_DIR", REPO_DIR.parent / "shared")).resolve()
    return dict(os.environ, PYTHONPATH=str(tree), SERD_SHARED_DIR=str(shared), OPENBLAS_NUM_THREADS="1",
                PATH="%s:%s" % (Path(sys.executable).parent, os.environ.get("PATH", "")))


def baseline_s(tree: Path, tests: tuple[str, ...], env: dict[str, str]) -> float:
    """Seconds the unmutated tests take; RuntimeError if they fail (a mutant's failure would mean nothing)."""
    started = time.monotonic()
    result = subprocess.run(PYTEST.split() + list(tests), cwd=tree, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError("tests fail unmutated: %s" % result.stdout[-1500:])
    return time.monotonic() - started


def tree_of(module: str) -> Path:
    """The copy of the tree a module's mutants run in."""
    return WORK_DIR / module.replace("/", "_").replace(".py", "")


def cosmic_ray(tree: Path, *args: str, env: dict | None = None) -> str:
    """Run one of cosmic-ray's commands (cosmic-ray, cr-filter-pragma) in a module's tree; its standard output."""
    tool, *rest = args
    return subprocess.run([str(Path(sys.executable).parent / tool)] + rest, cwd=tree, env=env, check=True,
                          capture_output=True, text=True).stdout


def known_equivalents() -> dict:
    """docs/mutants_equivalent.json: module -> survivors shown equivalent by hand."""
    return json.loads(EQUIVALENT.read_text()) if EQUIVALENT.is_file() else {}


def stored_entry(module: str) -> dict:
    """The module's entry in docs/mutants.json ({} before its first run)."""
    return json.loads(RESULTS.read_text())["modules"].get(module, {}) if RESULTS.is_file() else {}


def rescore_module(module: str) -> dict:
    """The counts of a module's last session, recounted with today's equivalents list."""
    tree = tree_of(module)
    session = tree / "session.sqlite"
    if not session.is_file():
        raise RuntimeError("no session to rescore in %s" % tree)
    stored = stored_entry(module)
    return summarise(module, MODULE_TESTS[module], cosmic_ray(tree, "cosmic-ray", "dump", str(session)),
                     stored.get("seconds", 0.0), stored.get("timeout_s", 0.0), (tree / module).read_text(), known_equivalents())


def retest_module(module: str) -> dict:
    """The survivors of a module's last session (but those in annotations or listed as equivalent) run again against the
    committed tests; the others keep their result."""
    tree = tree_of(module)
    session = tree / "session.sqlite"
    if not session.is_file():
        raise RuntimeError("no session to retest in %s" % tree)
    committed = subprocess.run(["git", "show", "HEAD:%s" % module], cwd=REPO_DIR, check=True, capture_output=True, text=True).stdout
    if committed != (tree / module).read_text():
        raise RuntimeError("%s changed since its session was made; run it again in full" % module)
    tests = MODULE_TESTS[module]
    archive = subprocess.run(["git", "archive", "HEAD", "tests"], cwd=REPO_DIR, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    env = environment(tree)
    timeout_s = baseline_s(tree, tests, env) * TIMEOUT_FACTOR + 10.0
    config = write_config(tree, module, tests, timeout_s)
    spans = annotation_spans(committed)
    equivalents = known_equivalents()
    known = {(e["line"], e["operator"], e["occurrence"]) for e in equivalents.get(module, [])}
    with sqlite3.connect(session) as db:  # a work item without a result is pending: exec runs it again
        survivors = db.execute("SELECT r.job_id, s.start_pos_row, s.start_pos_col, s.operator_name, s.occurrence FROM "
                               "work_results r JOIN mutation_specs s ON s.job_id = r.job_id WHERE r.test_outcome = 'SURVIVED'")
        again = [(job,) for job, row, col, operator, occurrence in survivors.fetchall()
                 if not _inside([row, col], spans) and (row, operator, occurrence) not in known]
        db.executemany("DELETE FROM work_results WHERE job_id = ?", again)
    log.info("%s: %d survivors run again", module, len(again))
    started = time.monotonic()
    cosmic_ray(tree, "cosmic-ray", "exec", str(config), str(session), env=env)
    dump = cosmic_ray(tree, "cosmic-ray", "dump", str(session), env=env)
    return summarise(module, tests, dump, stored_entry(module).get("seconds", 0.0) + time.monotonic() - started, timeout_s,
                     (tree / module).read_text(), equivalents)


def write_config(tree: Path, module: str, tests: tuple[str, ...], timeout_s: float) -> Path:
    """cosmic-ray's configuration for a module's session in its tree."""
    config = tree / "cosmic-ray.toml"
    config.write_text('[cosmic-ray]\nmodule-path = "%s"\ntimeout = %.1f\nexcluded-modules = []\ntest-command = "%s %s"\n\n'
                      '[cosmic-ray.distributor]\nname = "local"\n' % (module, timeout_s, PYTEST, " ".join(tests)))
    return config


def run_module(module: str) -> dict:
    """Every mutant of one module against its tests; the module's counts and survivors."""
    tests = MODULE_TESTS[module]
    tree = copy_tree(module)
    env = environment(tree)
    timeout_s = baseline_s(tree, tests, env) * TIMEOUT_FACTOR + 10.0
    config = write_config(tree, module, tests, timeout_s)
    session = tree / "session.sqlite"
    started = time.monotonic()
    for step in (("cosmic-ray", "init", str(config), str(session)), ("cr-filter-pragma", str(session)),
                 ("cosmic-ray", "exec", str(config), str(session))):
        cosmic_ray(tree, *step, env=env)
    dump = cosmic_ray(tree, "cosmic-ray", "dump", str(session), env=env)
    return summarise(module, tests, dump, time.monotonic() - started, timeout_s, (tree / module).read_text(), known_equivalents())


def annotation_spans(source: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """(start, end) (line, column) of every annotation: with `from __future__ import annotations` they are never
    evaluated, so a mutant inside one is equivalent (no behaviour can tell it apart)."""
    spans = []
    for node in ast.walk(ast.parse(source)):
        annotations = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            annotations.append(node.returns)
            arguments = node.args
            annotations += [a.annotation for a in arguments.posonlyargs + arguments.args + arguments.kwonlyargs]
            annotations += [a.annotation for a in (arguments.vararg, arguments.kwarg) if a is not None]
        elif isinstance(node, ast.AnnAssign):
            annotations.append(node.annotation)
        spans += [((a.lineno, a.col_offset), (a.end_lineno, a.end_col_offset)) for a in annotations if a is not None]
    return spans


def _inside(position: list[int], spans: list) -> bool:
    """True when a (line, column) position lies within one of the spans."""
    point = tuple(position)
    return any(start <= point < end for start, end in spans)


def summarise(module: str, tests: tuple[str, ...], dump: str, seconds: float, timeout_s: float, source: str = "",
              equivalents: dict | None = None) -> dict:
    """Counts of cosmic-ray's dump (one JSON [work item, result] per line) and the survivors; survivors inside
    annotations, and those listed in equivalents (module -> [{line, operator, occurrence, reason}]), are counted as
    equivalent, not survived."""
    counts = {"mutants": 0, "killed": 0, "survived": 0, "timed_out": 0, "incompetent": 0, "skipped": 0,
              "equivalent_annotation": 0}
    spans = annotation_spans(source) if source else []
    known = {(e["line"], e["operator"], e["occurrence"]): e["reason"] for e in equivalents.get(module, [])} if equivalents else {}
    counts["equivalent_known"] = 0
    survivors = []
    for line in dump.splitlines():
        item, result = json.loads(line)
        if result is None:
            continue
        counts["mutants"] += 1
        outcome = result.get("test_outcome")
        if result.get("worker_outcome") == "skipped":
            counts["skipped"] += 1
        elif result.get("worker_outcome") == "timeout":
            counts["timed_out"] += 1
        elif outcome == "killed":
            counts["killed"] += 1
        elif outcome == "incompetent":
            counts["incompetent"] += 1
        elif _inside(item["mutations"][0]["start_pos"], spans):
            counts["equivalent_annotation"] += 1
        elif (item["mutations"][0]["start_pos"][0], item["mutations"][0]["operator_name"],
              item["mutations"][0]["occurrence"]) in known:
            counts["equivalent_known"] += 1
        else:
            counts["survived"] += 1
            mutation = item["mutations"][0]
            survivors.append({"line": mutation["start_pos"][0], "operator": mutation["operator_name"],
                              "occurrence": mutation["occurrence"]})
    scored = (counts["mutants"] - counts["skipped"] - counts["incompetent"] - counts["equivalent_annotation"]
              - counts["equivalent_known"])
    kill_rate = (counts["killed"] + counts["timed_out"]) / scored if scored else None
    return {"module": module, "tests": list(tests), **counts, "kill_rate": kill_rate, "seconds": round(seconds, 1),
            "timeout_s": round(timeout_s, 1), "survivors": sorted(survivors, key=lambda s: s["line"])}


def write_result(path: Path, entry: dict) -> None:
    """Merge one module's entry into the results file."""
    stored = json.loads(path.read_text()) if path.is_file() else {"modules": {}}
    stored["modules"][entry["module"]] = entry
    stored["tool"] = "cosmic-ray"
    path.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    modules = args.module or list(MODULE_TESTS)
    unknown = [m for m in modules if m not in MODULE_TESTS]
    if unknown:
        print("tools.mutants: error: no tests known for %s (known: %s)" % (", ".join(unknown), ", ".join(MODULE_TESTS)),
              file=sys.stderr)
        return 2
    failed = 0
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        work = rescore_module if args.rescore else retest_module if args.retest else run_module
        futures = {pool.submit(work, module): module for module in modules}
        for future in as_completed(futures):
            module = futures[future]
            try:
                entry = future.result()
            except (RuntimeError, subprocess.CalledProcessError) as exc:
                log.error("%s: %s", module, getattr(exc, "stderr", None) or exc)
                failed += 1
                continue
            write_result(args.results, entry)
            log.info("%s: %d mutants, %d killed, %d survived, %d timed out (kill rate %s) in %.0f s", module,
                     entry["mutants"], entry["killed"], entry["survived"], entry["timed_out"],
                     "%.0f %%" % (100 * entry["kill_rate"]) if entry["kill_rate"] is not None else "-", entry["seconds"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
