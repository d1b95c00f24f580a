"""The demo `make run` plays without a microphone: real espeak-ng speech, its script, and the narration of it."""

import json
import subprocess
import sys
import time
import wave

from tools.demo import LINES, script_path, synthesise


def test_demo_script_holds_each_line_its_intent_and_start(tmp_path):
    wav = tmp_path / "demo.wav"
    synthesise(wav)
    script = json.loads(script_path(wav).read_text())
    assert [(line["text"], line["intent"]) for line in script["lines"]] == [(text, intent) for text, intent, *_ in LINES]
    starts = [line["start_s"] for line in script["lines"]]
    assert starts[0] == 0.0 and all(a + 1.0 < b for a, b in zip(starts, starts[1:]))
    with wave.open(str(wav)) as reader:
        assert abs(reader.getnframes() / reader.getframerate() - script["duration_s"]) < 0.01


def test_narration_says_what_plays_and_that_the_voice_is_synthetic(tmp_path):
    wav = tmp_path / "demo.wav"
    lines = [{"text": "first words", "intent": "calm", "start_s": 0.0}, {"text": "second words", "intent": "angry", "start_s": 0.4}]
    script_path(wav).write_text(json.dumps({"duration_s": 1.0, "lines": lines}))
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "tools.demo", "--narrate", str(wav)], capture_output=True, text=True, timeout=30, check=True)
    assert time.monotonic() - started >= 0.4
    shown = result.stdout.splitlines()
    assert shown[-2:] == ['playing 1/2, meant calm: "first words"', 'playing 2/2, meant angry: "second words"']
    caveat = " ".join(shown[:-2])
    assert "synthesised speech" in caveat and "carries little emotion" in caveat and "the model's guess" in caveat


def test_narration_without_a_script_is_one_clear_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "tools.demo", "--narrate", str(tmp_path / "none.wav")], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert result.stderr.startswith("demo: ") and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
