"""serd batch on a real two-worker Dask LocalCluster: what serd analyze --json says of every file, error rows, resume
after a killed run, JSON Lines and Parquet, and the [batch] extra staying out of everything else."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
import wave
from pathlib import Path

import pytest

from serd.audio import load_audio
from serd.batchwork import OVERALL_ROW, list_jobs, models_loaded, tasks_run
from serd.errors import SerdError
from serd.results import ResultStore, analyses, read_jsonl, read_results
from tests.support_cli import SERD, serd, write_manifest

CLIPS_PER_CORPUS = 4
CORPORA = ("ravdess", "savee", "tess", "emovo", "bangla")
WORKERS = 2
DEADLINE_S = 60
POLL_S = 0.05
ERROR_PREFIX = "serd: error: "


@pytest.fixture(scope="module")
def corpora(ravdess_manifest) -> Path:
    return ravdess_manifest.parent.parent


@pytest.fixture(scope="module")
def archive(tmp_path_factory, corpora) -> dict:
    """A folder of corpus clips (symlinks, two levels deep), a truncated WAV, text named .wav and a note that is not audio."""
    root = tmp_path_factory.mktemp("archive")
    clips = []
    for corpus in CORPORA:
        with (corpora / corpus / "MANIFEST.tsv").open(newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))[:CLIPS_PER_CORPUS]
        for row in rows:
            link = root / corpus / Path(row["path"]).name
            link.parent.mkdir(exist_ok=True)
            link.symlink_to(corpora / corpus / row["path"])
            clips.append(str(link))
    stereo = root / "stereo" / "44k.flac"  # decoded through sox's rate and channel change
    stereo.parent.mkdir()
    subprocess.run(["sox", "-V1", clips[0], "-r", "44100", "-c", "2", str(stereo)], check=True)
    clips.append(str(stereo))
    truncated, text = root / "bad" / "truncated.wav", root / "bad" / "text.wav"
    truncated.parent.mkdir()
    write_wav(truncated, load_audio(clips[0]).tobytes())
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    text.write_text("these are notes, not audio\n")
    (root / "bad" / "notes.txt").write_text("not audio, and not named as audio\n")
    return {"root": root, "clips": clips, "bad": [str(truncated), str(text)]}


def write_wav(path: Path, pcm: bytes) -> None:
    """16 kHz mono 16-bit WAV."""
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(16000)
        writer.writeframes(pcm)


@pytest.fixture(scope="module")
def expected(archive) -> dict:
    """What `serd analyze --json` says of every file: objects by file, and the error line of each bad file."""
    files = sorted(archive["clips"] + archive["bad"])
    result = serd("analyze", "--json", *files)
    assert result.returncode == 1, result.stderr.decode()
    objects = {line["file"]: line for line in map(json.loads, result.stdout.decode().splitlines())}
    errors = {}
    for line in result.stderr.decode().splitlines():
        assert line.startswith(ERROR_PREFIX), line
        errors[line[len(ERROR_PREFIX):].split(":")[0]] = line[len(ERROR_PREFIX):]
    assert sorted(objects) == sorted(archive["clips"]) and sorted(errors) == sorted(archive["bad"])
    return {"objects": objects, "errors": errors}


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True, dashboard_address=":0") as local:
        yield local


def result_errors(rows: list[dict]) -> dict:
    """Error rows by file."""
    return {row["file"]: row["error"] for row in rows if row["row"] == "error"}


def finished_files(rows: list[dict]) -> list[str]:
    """Files with an overall or error row, once each per row."""
    return [row["file"] for row in rows if row["row"] in (OVERALL_ROW, "error")]


def test_a_folder_lists_its_audio_files_recursively(archive):
    assert [job.path for job in list_jobs([str(archive["root"])])] == sorted(archive["clips"] + archive["bad"])


def test_batch_on_a_two_worker_cluster_equals_analyze_json(tmp_path, archive, expected, cluster):
    from distributed import Client
    from serd.batch import run_batch

    out = tmp_path / "results.parquet"
    summary = io.StringIO()
    code = run_batch([str(archive["root"])], str(out), cluster.scheduler_address, WORKERS, False, None, None, summary, io.StringIO())
    assert code == 1, "two files failed"
    rows = read_results(out)
    assert analyses(rows) == expected["objects"]
    assert result_errors(rows) == expected["errors"]
    assert sorted(finished_files(rows)) == sorted(archive["clips"] + archive["bad"])
    assert not out.with_name(out.name + ".partial").exists()
    assert summary.getvalue().startswith("serd batch: 23 files analysed, 2 failed, 0 skipped")
    again = io.StringIO()
    assert run_batch([str(archive["root"])], str(out), cluster.scheduler_address, WORKERS, True, None, None, again, io.StringIO()) == 1
    assert again.getvalue().startswith("serd batch: 2 files analysed, 2 failed, 21 skipped"), "--resume tries failed files again"
    assert read_results(out)[: len(rows) - 2] == [row for row in rows if row["row"] != "error"]
    assert sorted(finished_files(read_results(out))) == sorted(archive["clips"] + archive["bad"]), "every file once"
    with Client(cluster.scheduler_address) as client:
        loaded, tasks = client.run(models_loaded), client.run(tasks_run)
    assert len(loaded) == WORKERS and sum(tasks.values()) >= 2 * WORKERS, tasks
    for worker, count in tasks.items():
        assert loaded[worker] == (1 if count else 0), "each worker loads the model once (%s: %d tasks)" % (worker, count)


def test_serd_batch_on_a_local_cluster_writes_json_lines(tmp_path, archive, expected):
    out = tmp_path / "results.jsonl"
    result = serd("batch", archive["root"], "--out", out, "--workers", WORKERS, text=True)
    assert result.returncode == 1, result.stderr
    assert sorted(result.stderr.splitlines()) == sorted(ERROR_PREFIX + line for line in expected["errors"].values())
    assert result.stdout.splitlines()[0] == "serd batch: 23 files analysed, 2 failed, 0 skipped (already in %s)" % out
    rows = read_jsonl(out)
    assert analyses(rows) == expected["objects"] and result_errors(rows) == expected["errors"]
    again = serd("batch", archive["root"], "--out", out, "--workers", WORKERS, text=True)
    assert again.returncode == 1 and again.stderr == "%s%s exists: --resume adds to it (or remove it)\n" % (ERROR_PREFIX, out)


class FifoFeeder:
    """The write end of a FIFO input: held open empty, so the worker reading it waits, then given a clip."""

    def __init__(self, path: Path):
        self.path, self.fd = path, None

    def wait_for_reader(self) -> None:
        """Open once a worker has the FIFO open for reading."""
        deadline_s = time.monotonic() + DEADLINE_S
        while self.fd is None:
            try:
                self.fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # ENXIO: no reader yet
                assert time.monotonic() < deadline_s, "no worker opened the FIFO"
                time.sleep(POLL_S)

    def feed(self, data: bytes) -> None:
        """Write the clip and close."""
        os.set_blocking(self.fd, True)
        os.write(self.fd, data)
        os.close(self.fd)
        self.fd = None


def test_resume_after_a_killed_batch_analyses_only_the_rest(tmp_path, archive, expected, cluster):
    """The batch is killed while one task waits on a FIFO; --resume analyses only the files without a result."""
    from serd.batch import task_groups

    fifo = tmp_path / "held.flac"
    os.mkfifo(fifo)
    inputs = [str(archive["root"]), str(fifo)]
    groups = task_groups(list_jobs(inputs), WORKERS)
    held = next(group for group in groups if str(fifo) in [job.path for job in group])
    before_kill = sorted(job.path for group in groups if group is not held for job in group)
    assert before_kill and len(held) > 1, "the kill must come with work done and work in flight"
    out = tmp_path / "results.jsonl"
    argv = SERD + ["batch", *inputs, "--out", str(out), "--dask", cluster.scheduler_address]
    tasks_before = cluster_tasks(cluster)
    feeder = FifoFeeder(fifo)
    run = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        feeder.wait_for_reader()
        wait_for(lambda: out.exists() and sorted(finished_files(read_jsonl(out))) == before_kill)
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait()
    clip_bytes = Path(archive["clips"][0]).read_bytes()
    feeder.feed(clip_bytes)  # the task the kill left on a worker ends, and lets the FIFO go
    wait_for(lambda: cluster_tasks(cluster) == tasks_before + len(groups))
    killed_rows = read_jsonl(out)
    analysed = {row["file"] for row in killed_rows if row["row"] == OVERALL_ROW}
    rest = sorted(set(archive["clips"] + archive["bad"] + [str(fifo)]) - analysed)

    resume = subprocess.Popen(argv + ["--resume"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    feeder.wait_for_reader()
    feeder.feed(clip_bytes)
    stdout, stderr = resume.communicate(timeout=DEADLINE_S)
    assert resume.returncode == 1, stderr
    assert stdout.splitlines()[0].startswith("serd batch: %d files analysed, 2 failed, %d skipped" % (len(rest), len(analysed)))
    rows = read_jsonl(out)
    assert sorted(finished_files(rows)) == sorted(archive["clips"] + archive["bad"] + [str(fifo)]), "every file once"
    assert [row for row in rows if row["file"] in analysed] == [row for row in killed_rows if row["file"] in analysed]
    found = analyses(rows)
    assert {name: found[name] for name in archive["clips"]} == expected["objects"]
    assert dict(found[str(fifo)], file=archive["clips"][0]) == expected["objects"][archive["clips"][0]]
    assert result_errors(rows) == expected["errors"]


def cluster_tasks(cluster) -> int:
    """Tasks the cluster's workers have finished."""
    from distributed import Client

    with Client(cluster.scheduler_address) as client:
        return sum(client.run(tasks_run).values())


def wait_for(condition, deadline_s: float = DEADLINE_S) -> None:
    """Poll until condition() holds; fail after deadline_s."""
    end_s = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < end_s, "timed out"
        time.sleep(POLL_S)


def test_resume_keeps_complete_files_and_drops_what_a_kill_cut(tmp_path, archive):
    """Rows of a finished file stay; an unfinished file's rows, a cut last line, error rows and a changed file's rows go."""
    from serd.batchwork import analysis_rows, error_row, file_job

    done, changed, unfinished, bad = (file_job(path) for path in archive["clips"][:4])
    analysis = {"duration_s": 1.0, "source_rate_hz": 16000, "label": "sad", "confidence": 0.5, "probabilities": {"sad": 0.5},
                "segments": [{"start_s": 0.1, "end_s": 0.9, "windows": 1, "label": "sad", "confidence": 0.5, "probabilities": {"sad": 0.5}}],
                "warnings": []}
    kept = analysis_rows(done, analysis)
    stale = [dict(row, size_bytes=changed.size_bytes + 1) for row in analysis_rows(changed, analysis)]
    lines = [json.dumps(row) for row in kept + stale + analysis_rows(unfinished, analysis)[:1] + [error_row(bad, "bad")]]
    out = tmp_path / "results.jsonl"
    out.write_text("\n".join(lines) + "\n" + json.dumps(kept[0])[:40])
    store = ResultStore(out, ("sad",), resume=True, current={job.path: job.key for job in (done, changed, unfinished, bad)})
    store.close()
    assert store.done == {done.key}
    assert read_jsonl(out) == kept and out.read_text().endswith("\n")


def test_existing_results_need_resume_and_a_known_extension(tmp_path):
    out = tmp_path / "results.jsonl"
    out.write_text("")
    with pytest.raises(SerdError, match="results.jsonl exists: --resume adds to it"):
        ResultStore(out, ("sad",), resume=False)
    with pytest.raises(SerdError, match="must end in .parquet or .jsonl"):
        ResultStore(tmp_path / "results.csv", ("sad",), resume=False)


def test_a_manifest_names_its_clips_and_each_file_is_listed_once(tmp_path, archive, corpora):
    manifest = write_manifest(tmp_path / "MANIFEST.tsv", [(archive["clips"][1], "s1", "sad"), (archive["clips"][0], "s1", "angry")])
    paths = [job.path for job in list_jobs([str(manifest), str(archive["root"])])]
    assert paths[:2] == [archive["clips"][1], archive["clips"][0]]
    assert sorted(paths) == sorted(archive["clips"] + archive["bad"])
    with pytest.raises(SerdError, match="no audio files in the folder"):
        list_jobs([str(tmp_path)])


def test_standard_input_is_refused(tmp_path):
    result = serd("batch", "-", "--out", tmp_path / "results.jsonl", text=True)
    assert result.returncode == 1
    assert result.stderr == ERROR_PREFIX + "- (standard input) cannot be batched: workers read files (use serd analyze -)\n"


MISSING_EXTRA = """
import sys
for name in ("dask", "distributed", "pyarrow"):
    sys.modules[name] = None
from serd.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("results_name", ["results.jsonl", "results.parquet"])
def test_without_the_batch_extra_one_line_says_how_to_install_it(tmp_path, archive, results_name):
    result = subprocess.run([sys.executable, "-c", MISSING_EXTRA, "batch", archive["clips"][0], "--out", str(tmp_path / results_name)],
                            capture_output=True, text=True, timeout=DEADLINE_S, check=False)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == ERROR_PREFIX + "serd batch needs the [batch] extra: pip install 'serd[batch]'\n"


NOTHING_OF_DASK = """
import sys
import serd.cli, serd.daemon, serd.report, serd.web.main, serd.batch, serd.results
serd.cli.build_parser().parse_args(["batch", "x.wav", "--out", "r.parquet"])
print(" ".join(sorted({m.split(".")[0] for m in sys.modules} & {"dask", "distributed", "pyarrow"})))
"""


def test_the_daemon_and_the_other_commands_never_import_dask_or_pyarrow():
    result = subprocess.run([sys.executable, "-c", NOTHING_OF_DASK], capture_output=True, text=True, timeout=DEADLINE_S, check=True)
    assert result.stdout == "\n"


def test_the_help_names_batch():
    result = serd("--help", text=True)
    assert "batch" in result.stdout and "Dask" in serd("batch", "--help", text=True).stdout


def test_parquet_results_are_written_a_row_group_at_a_time(tmp_path, archive, monkeypatch):
    """The journal becomes Parquet in batches of rows, never all of them at once; reading gives them back in order."""
    import pyarrow.parquet as pq

    from serd import results
    from serd.batchwork import analysis_rows, file_job

    monkeypatch.setattr(results, "PARQUET_BATCH_ROWS", 2)
    analysis = {"duration_s": 2.0, "source_rate_hz": 8000, "label": None, "confidence": 0.0, "probabilities": {},
                "segments": [], "warnings": ["recorded at 8000 Hz"]}
    rows = [row for path in archive["clips"][:5] for row in analysis_rows(file_job(path), analysis)]
    out = tmp_path / "results.parquet"
    store = ResultStore(out, ("sad", "angry"), resume=False)
    for row in rows:
        store.write([row])
    store.close()
    assert pq.ParquetFile(out).num_row_groups >= 3 and not (tmp_path / "results.parquet.partial").exists()
    assert read_results(out) == rows
    assert analyses(read_results(out))[archive["clips"][0]]["probabilities"] == {}, "no speech: no probabilities"


def test_a_bad_scheduler_address_is_one_line_and_leaves_no_results(tmp_path, archive):
    out = tmp_path / "results.parquet"
    result = serd("batch", archive["clips"][0], "--out", out, "--dask", "nowhere", text=True)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == ERROR_PREFIX + "cannot reach the Dask scheduler at nowhere: missing port number in address 'nowhere'\n"
    assert list(tmp_path.iterdir()) == []


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_the_progress_line_is_drawn_on_a_terminal_only():
    from serd.batchprogress import Progress, Tally

    tally = Tally(files=3, audio_s=7200.0)
    tally.started_s -= 10.0
    terminal, pipe = Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        progress = Progress(4, stream)
        progress.update(tally)
        progress.errors(["a.wav: empty file"])
        progress.close()
    line = terminal.getvalue()
    assert line.startswith("\r3/4 files  2.00 h of audio  ") and "× real time  ETA 0:00:03" in line
    assert 700 < float(line.split("h of audio  ")[1].split(" ×")[0]) <= 720, "7200 s of audio in about 10 s"
    assert line.endswith("\r\x1b[Kserd: error: a.wav: empty file\n\n")
    assert pipe.getvalue() == "serd: error: a.wav: empty file\n", "no progress line when stderr is not a terminal"


def test_a_long_file_is_split_over_the_workers_and_still_equals_analyze_json(tmp_path, archive, cluster, monkeypatch):
    """A long file is planned (a VAD pass), analysed in parts on the workers and combined: its rows are analyze's."""
    import math

    from serd import batch

    monkeypatch.setattr(batch, "LONG_FILE_BYTES", 1 << 20)
    monkeypatch.setattr(batch, "PART_MIN_S", 15.0)
    call = tmp_path / "long" / "call.wav"
    call.parent.mkdir()
    write_wav(call, b"".join(load_audio(clip).tobytes() for clip in archive["clips"]))
    inputs = [str(call)] + archive["clips"][:3]
    result = serd("analyze", "--json", *inputs)
    assert result.returncode == 0, result.stderr.decode()
    expected_objects = {line["file"]: line for line in map(json.loads, result.stdout.decode().splitlines())}
    tasks_before = cluster_tasks(cluster)
    out = tmp_path / "results.jsonl"
    assert batch.run_batch(inputs, str(out), cluster.scheduler_address, WORKERS, False, None, None, io.StringIO(), io.StringIO()) == 0
    assert analyses(read_jsonl(out)) == expected_objects
    call_s, segments = expected_objects[str(call)]["duration_s"], len(expected_objects[str(call)]["segments"])
    parts = min(segments, batch.PARTS_PER_WORKER * WORKERS, math.ceil(call_s / 15.0))
    assert parts >= 2 and cluster_tasks(cluster) - tasks_before == 1 + parts + len(archive["clips"][:3]), "a plan, the parts, a task a clip"


def test_ctrl_c_writes_the_parquet_results_so_far(tmp_path, archive, cluster):
    """Interrupted while a task waits on a FIFO: exit 2, one line, and RESULTS holds every file finished by then."""
    from serd.batch import task_groups

    fifo = tmp_path / "held.flac"
    os.mkfifo(fifo)
    inputs = [str(archive["root"]), str(fifo)]
    groups = task_groups(list_jobs(inputs), WORKERS)
    done_before = sorted(job.path for group in groups if str(fifo) not in [j.path for j in group] for job in group)
    out, journal = tmp_path / "results.parquet", tmp_path / "results.parquet.partial"
    tasks_before = cluster_tasks(cluster)
    run = subprocess.Popen(SERD + ["batch", *inputs, "--out", str(out), "--dask", cluster.scheduler_address],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    feeder = FifoFeeder(fifo)
    try:
        feeder.wait_for_reader()
        wait_for(lambda: journal.exists() and sorted(finished_files(read_jsonl(journal))) == done_before)
        run.send_signal(signal.SIGINT)
        stdout, stderr = run.communicate(timeout=DEADLINE_S)
    finally:
        run.kill()
        feeder.feed(Path(archive["clips"][0]).read_bytes())
    assert run.returncode == 2 and stdout == ""
    assert stderr.splitlines()[-1] == "serd batch: interrupted after %d files; run it again with --resume to go on" % len(done_before)
    assert all(line.startswith(ERROR_PREFIX) for line in stderr.splitlines()[:-1]), "no traceback"
    assert not journal.exists() and sorted(finished_files(read_results(out))) == done_before
    wait_for(lambda: cluster_tasks(cluster) == tasks_before + len(groups))  # the held task ends on its worker
