"""The command line on real files: analyze, eval, run on a file and on stdin, bad input."""

import json
import subprocess

import pytest

from serd.bar import confidence_bar
from serd.config import DEFAULT_MIN_CONFIDENCE
from serd.events import UNCERTAIN_LABEL
from tests.support_cli import serd, write_manifest

CLIP_NAMES = ("03-01-05-02-01-01-01.flac", "03-01-03-02-01-01-01.flac", "03-01-04-02-02-01-01.flac")


@pytest.fixture(scope="module")
def clips(ravdess_manifest):
    return [ravdess_manifest.parent / "Actor_01" / name for name in CLIP_NAMES]


def test_analyze_json_on_flac_clips(clips, labels):
    result = serd("analyze", "--json", *clips)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert [line["file"] for line in lines] == [str(c) for c in clips]
    for line in lines:
        assert line["label"] in labels or (line["label"] == UNCERTAIN_LABEL and line["confidence"] < DEFAULT_MIN_CONFIDENCE)
        assert abs(sum(line["probabilities"].values()) - 1.0) < 1e-2
        assert 3.0 < line["duration_s"] < 5.0
        assert line["segments"], "a RAVDESS clip holds speech"
        for segment in line["segments"]:
            assert 0.0 <= segment["start_s"] < segment["end_s"] <= line["duration_s"] + 0.05
            assert segment["windows"] >= 1 and (segment["label"] in labels or (
                segment["label"] == UNCERTAIN_LABEL and segment["confidence"] < DEFAULT_MIN_CONFIDENCE))


def file_tables(text):
    """analyze's plain output split into one list of lines per file (files are separated by an empty line)."""
    return [block.splitlines() for block in text.split("\n\n")]


def test_analyze_text_is_an_aligned_table_per_file(clips, labels):
    result = serd("analyze", *clips)
    assert result.returncode == 0, result.stderr
    analyses = [json.loads(line) for line in serd("analyze", "--json", *clips).stdout.decode().splitlines()]
    tables = file_tables(result.stdout.decode())
    assert len(tables) == len(clips)
    for clip, table, analysis in zip(clips, tables, analyses):
        assert table[0] == "%s  %.2f s" % (clip, analysis["duration_s"])
        header, rows = table[1], table[2:]
        assert header.split() == ["start_s", "end_s", "label", "confidence", "windows", "arousal", "valence"]
        expected = [("%.2f" % s["start_s"], "%.2f" % s["end_s"], s["label"], s["confidence"], s["windows"], s["arousal"],
                     s["valence"]) for s in analysis["segments"]]
        windows = sum(s["windows"] for s in analysis["segments"])
        expected.append(("overall", "", analysis["label"], analysis["confidence"], windows, analysis["arousal"], analysis["valence"]))
        assert len(rows) == len(expected)
        for row, (start, end, label, confidence, windows, arousal, valence) in zip(rows, expected):
            assert row[:8].strip() == start and row[9:17].strip() == end, "times right-aligned under their headers"
            assert row[19:].startswith("%-9s %4.2f %s" % (label, confidence, confidence_bar(confidence)))
            assert row.endswith(" %7d %+7.2f %+7.2f" % (windows, arousal, valence)) and len(row) == len(rows[0])
        assert header.index("label") == 19 and header.endswith("valence") and len(header) == len(rows[0])


def test_analyze_text_says_no_speech(tmp_path):
    import wave

    quiet = tmp_path / "quiet.wav"
    with wave.open(str(quiet), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(16000)
        handle.writeframes(b"\0\0" * 16000)
    result = serd("analyze", quiet)
    assert result.returncode == 0, result.stderr
    table = result.stdout.decode().splitlines()
    assert table[2].split() == ["overall", "no", "speech", "0"]


def analyses_with_min_confidence(tmp_path, clips, min_confidence, *flags):
    config = tmp_path / ("analyze-%s.conf" % min_confidence)
    config.write_text("[smoothing]\nmin_confidence = %s\n" % min_confidence)
    result = serd("analyze", "--config", config, *flags, *clips)
    assert result.returncode == 0, result.stderr
    return result.stdout.decode()


def test_analyze_reports_uncertain_below_min_confidence(tmp_path, clips, labels):
    baseline = json.loads(analyses_with_min_confidence(tmp_path, clips[:1], 0, "--json"))
    for threshold in (round(baseline["confidence"] - 0.0001, 4), round(baseline["confidence"] + 0.0001, 4)):
        analysis = json.loads(analyses_with_min_confidence(tmp_path, clips[:1], threshold, "--json"))
        assert analysis["label"] == (baseline["label"] if baseline["confidence"] >= threshold else UNCERTAIN_LABEL)
        assert (analysis["confidence"], analysis["probabilities"]) == (baseline["confidence"], baseline["probabilities"])
        for segment, before in zip(analysis["segments"], baseline["segments"]):
            assert segment["label"] == (before["label"] if before["confidence"] >= threshold else UNCERTAIN_LABEL)
    text = analyses_with_min_confidence(tmp_path, clips[:1], round(baseline["confidence"] + 0.0001, 4))
    assert text.splitlines()[-1].split()[:2] == ["overall", UNCERTAIN_LABEL]


@pytest.mark.parametrize("jobs", ["0", "-1"])
def test_analyze_refuses_jobs_below_one(jobs, clips):
    result = serd("analyze", "--jobs", jobs, clips[0])
    assert result.returncode == 2 and result.stdout == b""
    assert result.stderr.decode().splitlines()[-1] == "serd analyze: error: argument --jobs: must be at least 1 (got %s)" % jobs


def bad_files(tmp_path, clip):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    text = tmp_path / "notes.flac"
    text.write_text("this is not audio\n" * 20)
    truncated = tmp_path / "cut.flac"
    truncated.write_bytes(clip.read_bytes()[:60])
    unsupported = tmp_path / "clip.xyz"
    unsupported.write_bytes(b"\0" * 100)
    return {"missing": tmp_path / "missing.wav", "empty": empty, "not audio": text, "truncated": truncated, "unsupported": unsupported}


def test_analyze_bad_inputs_get_one_line_each_and_others_still_run(tmp_path, clips):
    bad = bad_files(tmp_path, clips[0])
    result = serd("analyze", "--json", clips[0], *bad.values(), clips[1])
    assert result.returncode == 1
    assert [json.loads(line)["file"] for line in result.stdout.decode().splitlines()] == [str(clips[0]), str(clips[1])]
    errors = [line for line in result.stderr.decode().splitlines() if line.startswith("serd: error:")]
    assert len(errors) == len(bad)
    for path in bad.values():
        assert any(str(path) in line for line in errors)
    assert "Traceback" not in result.stderr.decode()


def test_analyze_jobs_gives_the_same_answer(clips):
    single = serd("analyze", "--json", *clips)
    parallel = serd("analyze", "--json", "--jobs", "2", *clips)
    assert parallel.returncode == 0
    assert parallel.stdout == single.stdout


def analyses(result) -> list[dict]:
    """The JSON lines of `serd analyze --json`, without their file names."""
    assert result.returncode == 0, result.stderr.decode()
    return [{key: value for key, value in json.loads(line).items() if key != "file"} for line in result.stdout.decode().splitlines()]


def test_analyze_wav_without_an_extension_goes_by_its_content(tmp_path, clips):
    wav = tmp_path / "recording"
    subprocess.run(["sox", "-V1", str(clips[0]), "-t", "wav", str(wav)], check=True)
    assert analyses(serd("analyze", "--json", wav)) == analyses(serd("analyze", "--json", clips[0]))


def test_analyze_dash_reads_standard_input(clips):
    from_stdin = serd("analyze", "--json", "-", stdin=clips[0].read_bytes())
    assert json.loads(from_stdin.stdout.decode())["file"] == "-"
    assert analyses(from_stdin) == analyses(serd("analyze", "--json", clips[0]))


def test_analyze_dash_among_files_with_jobs(clips):
    mixed = serd("analyze", "--json", "--jobs", "2", clips[0], "-", clips[2], stdin=clips[1].read_bytes())
    assert analyses(mixed) == analyses(serd("analyze", "--json", *clips))


@pytest.mark.parametrize("args, stdin, reason", [(["-", "-"], b"", "- (standard input) can be analysed once"),
                                                 (["-"], b"", "stdin: empty input")])
def test_analyze_dash_refusals_are_one_line(args, stdin, reason):
    result = serd("analyze", *args, stdin=stdin)
    assert result.returncode == 1
    assert result.stderr.decode() == "serd: error: %s\n" % reason


def test_eval_json_on_a_small_manifest(tmp_path, ravdess_manifest, labels):
    actor = ravdess_manifest.parent / "Actor_02"
    rows = [(str(p), "02", "angry" if "-05-" in p.name else "neutral", 3.5) for p in sorted(actor.glob("03-01-0[15]-*.flac"))[:8]]
    rows.append((str(actor / "03-01-01-01-01-01-02.flac"), "02", "boredom", 3.5))
    manifest = write_manifest(tmp_path / "MANIFEST.tsv", rows)
    result = serd("eval", "--json", manifest)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["n"] == 8 and report["skipped"] == 1
    assert set(report) >= {"n", "skipped", "accuracy", "uar", "macro_f1", "ece", "labels", "per_class", "confusion"}
    assert report["labels"] == list(labels)
    assert sum(map(sum, report["confusion"])) == 8
    assert 0.0 <= report["uar"] <= 1.0 and 0.0 <= report["ece"] <= 1.0


def test_eval_merge_folds_one_class_into_another(tmp_path, ravdess_manifest, labels):
    actor = ravdess_manifest.parent / "Actor_03"
    rows = [(str(p), "03", "disgust", 3.5) for p in sorted(actor.glob("03-01-07-*.flac"))[:4]]
    result = serd("eval", "--json", "--merge", "disgust=angry", write_manifest(tmp_path / "m.tsv", rows))
    report = json.loads(result.stdout)
    assert "disgust" not in report["labels"] and report["per_class"]["angry"]["support"] == 4


@pytest.mark.parametrize("merge", ["sad", "sad=sad", "sad=boredom"])
def test_eval_bad_merge_is_a_one_line_error(tmp_path, merge, ravdess_manifest):
    result = serd("eval", "--merge", merge, ravdess_manifest)
    assert result.returncode == 1 and result.stderr.decode().startswith("serd: error: --merge")


def test_eval_missing_manifest(tmp_path):
    result = serd("eval", tmp_path / "nope.tsv")
    assert result.returncode == 1 and "manifest not found" in result.stderr.decode()


def stdout_events(result):
    return [json.loads(line) for line in result.stdout.decode().splitlines()]


def test_run_on_a_file_matches_analyze(clips, labels):
    run = serd("run", "--source", "file:%s" % clips[0], "--stdout", "--no-zmq", "--device-id", "t")
    assert run.returncode == 0, run.stderr
    events = stdout_events(run)
    types = [e["type"] for e in events]
    assert types[0] == "status" and types[-1] == "status" and events[-1]["state"] == "stopping"
    assert "speech-started" in types and "speech-ended" in types
    changes = [e for e in events if e["type"] == "emotion-changed"]
    assert changes[0]["previous"] == "silence" and changes[0]["label"] in labels + (UNCERTAIN_LABEL,)
    assert changes[-1]["label"] == "silence"
    analysis = json.loads(serd("analyze", "--json", clips[0]).stdout)
    started = [e for e in events if e["type"] == "speech-started"]
    ended = [e for e in events if e["type"] == "speech-ended"]
    assert [round(e["stream_time_s"], 2) for e in started] == [round(s["start_s"], 2) for s in analysis["segments"]]
    assert [round(e["stream_time_s"], 2) for e in ended] == [round(s["end_s"], 2) for s in analysis["segments"]]


def first_change_with_min_confidence(tmp_path, clip, min_confidence):
    config = tmp_path / ("serd-%s.conf" % min_confidence)
    config.write_text("[smoothing]\nmin_confidence = %s\n" % min_confidence)
    run = serd("run", "--config", config, "--source", "file:%s" % clip, "--stdout", "--no-zmq")
    assert run.returncode == 0, run.stderr
    return next(e for e in stdout_events(run) if e["type"] == "emotion-changed")


def test_run_reports_uncertain_below_min_confidence(tmp_path, clips, labels):
    first = first_change_with_min_confidence(tmp_path, clips[0], 0)
    assert first["label"] in labels and first["confidence"] < 0.999
    above = first_change_with_min_confidence(tmp_path, clips[0], round(first["confidence"] + 0.0001, 4))
    assert (above["label"], above["previous"]) == (UNCERTAIN_LABEL, "silence")
    assert above["confidence"] == first["confidence"] and above["probabilities"] == first["probabilities"]
    below = first_change_with_min_confidence(tmp_path, clips[0], round(first["confidence"] - 0.0001, 4))
    assert below["label"] == first["label"]


def test_run_on_stdin_gives_the_same_segments_as_the_file(clips):
    from serd.audio import load_audio

    raw = load_audio(clips[1]).astype("<i2").tobytes()
    from_stdin = stdout_events(serd("run", "--source", "stdin", "--stdout", "--no-zmq", stdin=raw))
    from_file = stdout_events(serd("run", "--source", "file:%s" % clips[1], "--stdout", "--no-zmq"))
    keep = ("speech-started", "speech-ended", "emotion-changed")
    strip = lambda events: [(e["type"], e["stream_time_s"], e.get("label")) for e in events if e["type"] in keep]  # noqa: E731
    assert strip(from_stdin) == strip(from_file) and strip(from_file)


def test_run_bad_source_file_is_one_line(tmp_path):
    result = serd("run", "--source", "file:%s" % (tmp_path / "missing.flac"), "--no-zmq")
    assert result.returncode == 1
    assert result.stderr.decode().strip().splitlines()[-1].startswith("serd: error:")
    assert "Traceback" not in result.stderr.decode()


def test_run_bad_model_is_one_line(tmp_path):
    fake = tmp_path / "m.tflite"
    fake.write_bytes(b"not a model")
    (tmp_path / "m.json").write_text("{}")
    result = serd("run", "--source", "stdin", "--model", fake, "--no-zmq", stdin=b"")
    assert result.returncode == 1 and "bad model card" in result.stderr.decode()


def test_check_config_names_the_bad_key(tmp_path):
    config = tmp_path / "serd.conf"
    config.write_text("[vad]\naggressiveness = 7\n")
    result = serd("check-config", config)
    assert result.returncode == 1
    assert result.stderr.decode().strip() == "serd: error: [vad] aggressiveness: 7 must be 0 to 3"


def test_check_config_names_each_file_run_would_miss(tmp_path):
    config = tmp_path / "serd.conf"
    config.write_text("[model]\npath = %s\n[mqtt]\nenabled = yes\npassword_file = %s\n[source]\nsource = file:%s\n"
                      % (tmp_path / "none.tflite", tmp_path / "password", tmp_path / "none.flac"))
    result = serd("check-config", config, text=True)
    assert result.returncode == 1 and result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        "serd: error: [model] path: %s: model file not found" % (tmp_path / "none.tflite"),
        "serd: error: [source] source: %s: no such file" % (tmp_path / "none.flac"),
        "serd: error: [mqtt] password_file: %s: no such file" % (tmp_path / "password")]


def test_check_config_refuses_a_model_whose_card_run_would_refuse(tmp_path):
    from serd.shipped import default_model_path

    shipped = default_model_path()
    weights = tmp_path / ("m" + shipped.suffix)
    weights.write_bytes(shipped.read_bytes())
    card = json.loads(shipped.with_suffix(".json").read_text())
    card["window"]["hop_frames"] = 0
    weights.with_suffix(".json").write_text(json.dumps(card))
    config = tmp_path / "serd.conf"
    config.write_text("[model]\npath = %s\n" % weights)
    result = serd("check-config", config, text=True)
    assert result.returncode == 1 and result.stderr.strip().endswith("window.hop_frames must be positive")


def test_a_source_that_cannot_open_says_why_in_status_events_before_stopping(tmp_path):
    missing = tmp_path / "missing.flac"
    result = serd("run", "--source", "file:%s" % missing, "--stdout", "--no-zmq", text=True)
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1] == "serd: error: %s: no such file" % missing
    states = [(e["state"], e["message"]) for e in map(json.loads, result.stdout.splitlines()) if e["type"] == "status"]
    assert states == [("starting", "model serd-emotion"), ("error", "cannot open source: %s: no such file" % missing),
                      ("stopping", "exit 1")]
