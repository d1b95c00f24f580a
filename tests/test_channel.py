"""Several sources in one daemon ([source.NAME] sections): real `serd run` subprocesses on corpus clips, events read
from stdout and a real ZeroMQ subscriber; check-config on such sections."""

import json
import os
import signal
import subprocess
import sys
import time

from serd.events import from_dict
from tests.support_cli import serd
from tests.test_daemon import Subscriber

SECOND_CLIP = ("Actor_02", "03-01-03-01-02-01-02.flac")  # happy, actor 02: speech from 0.9 s to 3.1 s


def speech_events(lines, device=None):
    """The non-status events (of one device), without their device and wall time, as dicts."""
    events = [json.loads(line) for line in lines]
    kept = [e for e in events if e["type"] != "status" and device in (None, e["device"])]
    return [{k: v for k, v in e.items() if k not in ("device", "wall_time_s")} for e in kept]


def run_alone(clip, tmp_path, vad=""):
    """Events of `serd run --source file:clip` (its [vad] settings as given): the reference of each source."""
    config = tmp_path / ("alone-%s.conf" % clip.stem)
    config.write_text("[vad]\n%s" % vad)
    result = serd("run", "--config", config, "--source", "file:%s" % clip, "--no-zmq", "--stdout", "--device-id", "alone")
    assert result.returncode == 0, result.stderr.decode()
    return speech_events(result.stdout.splitlines())


def test_two_file_sources_in_one_run_each_follow_their_own_file(tmp_path, ravdess_clip, ravdess_manifest):
    other = ravdess_manifest.parent.joinpath(*SECOND_CLIP)
    config = tmp_path / "two.conf"
    config.write_text("[source.angry]\nsource = file:%s\n[source.happy]\nsource = file:%s\ndevice_id = den\naggressiveness = 3\n"
                      % (ravdess_clip, other))
    endpoint = "ipc://%s/events" % tmp_path
    sub = Subscriber(endpoint)
    try:
        run = serd("run", "--config", config, "--zmq", endpoint, "--stdout")
        while sub.read(300) is not None:
            pass
    finally:
        sub.close()
    assert run.returncode == 0, run.stderr.decode()
    lines = run.stdout.splitlines()
    assert speech_events(lines, "angry") == run_alone(ravdess_clip, tmp_path)
    assert speech_events(lines, "den") == run_alone(other, tmp_path, "aggressiveness = 3\n")
    assert speech_events(lines, "angry") != speech_events(lines, "den")
    events = [from_dict(json.loads(line)) for line in lines]
    assert {e.device for e in events} == {"angry", "den"}
    for device in ("angry", "den"):
        states = [e.state for e in events if e.type == "status" and e.device == device]
        assert states[0] == "starting" and states[-1] == "stopping" and "running" in states
    assert [(topic, e) for topic, e in sub.seen] == [("serd/%s/%s" % (e.device, e.type), e) for e in events], \
        "ZeroMQ carries every event under its own device's topic"


def test_one_source_section_gives_the_events_of_source_alone(tmp_path, ravdess_clip):
    config = tmp_path / "one.conf"
    config.write_text("[source.only]\nsource = file:%s\ndevice_id = alone\n" % ravdess_clip)
    sectioned = serd("run", "--config", config, "--no-zmq", "--stdout")
    plain = serd("run", "--source", "file:%s" % ravdess_clip, "--no-zmq", "--stdout", "--device-id", "alone")
    assert sectioned.returncode == plain.returncode == 0, sectioned.stderr.decode()

    def statuses(result):  # where the first running status falls among a fast file's events is a race, in both
        return [(e["device"], e["state"], e["message"]) for e in map(json.loads, result.stdout.splitlines()) if e["type"] == "status"]

    assert speech_events(sectioned.stdout.splitlines()) == speech_events(plain.stdout.splitlines())
    assert statuses(sectioned) == statuses(plain)
    assert [json.loads(line)["device"] for line in sectioned.stdout.splitlines()] == ["alone"] * len(sectioned.stdout.splitlines())


def test_source_flag_runs_that_one_source_instead_of_the_sections(tmp_path, ravdess_clip):
    config = tmp_path / "two.conf"
    config.write_text("[source.a]\nsource = file:/nonexistent/a.wav\n[source.b]\nsource = mic\ndevice = no-such-mic\n")
    run = serd("run", "--config", config, "--source", "file:%s" % ravdess_clip, "--no-zmq", "--stdout", "--device-id", "one")
    assert run.returncode == 0, run.stderr.decode()
    assert {json.loads(line)["device"] for line in run.stdout.splitlines()} == {"one"}


def test_a_failing_microphone_is_retried_while_the_other_source_goes_on(tmp_path, ravdess_clip):
    config = tmp_path / "mixed.conf"
    config.write_text("[source.desk]\nsource = file:%s\nrealtime = yes\n[source.hall]\nsource = mic\ndevice = no-such-mic\n"
                      "[daemon]\nstatus_interval_s = 0.5\n" % ravdess_clip)
    process = subprocess.Popen([sys.executable, "-m", "serd.cli", "run", "--config", str(config), "--no-zmq", "--stdout"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
    try:
        time.sleep(6.0)  # the 4 s clip plays out; the microphone was tried at start, after 1 s and after 2 more
        assert process.poll() is None, "a microphone never ends: the daemon goes on after the file"
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err.decode()
    events = [from_dict(json.loads(line)) for line in out.splitlines()]
    hall = [e for e in events if e.device == "hall"]
    desk = [e for e in events if e.device == "desk"]
    assert any(e.type == "status" and e.state == "error" and "no-such-mic" in e.message for e in hall)
    assert not any(e.type.startswith("speech") for e in hall)
    assert [e.type for e in desk].count("speech-ended") == 1
    assert any(e.type == "status" and e.message == "source ended; the other sources go on" for e in desk)
    assert err.decode().count("cannot reopen source") >= 2
    assert "Traceback" not in err.decode()


def test_reload_rebuilds_the_changed_source_and_says_so(tmp_path, ravdess_clip):
    config = tmp_path / "reload.conf"
    sections = "[source.a]\nsource = file:%s\nrealtime = yes\n[source.b]\nsource = file:%s\nrealtime = yes\n" % (ravdess_clip, ravdess_clip)
    config.write_text(sections + "[source.d]\nsource = file:%s\nrealtime = yes\n" % ravdess_clip)
    endpoint = "ipc://%s/events" % tmp_path
    sub = Subscriber(endpoint)
    process = subprocess.Popen([sys.executable, "-m", "serd.cli", "run", "--config", str(config), "--zmq", endpoint],
                               stderr=subprocess.PIPE, env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
    try:
        sub.wait_for_each(lambda e: e.type == "status" and e.state == "running", ("a", "b", "d"), "running")
        config.write_text(sections + "aggressiveness = 3\n[source.c]\nsource = file:%s\nrealtime = yes\n" % ravdess_clip)
        process.send_signal(signal.SIGHUP)
        reloaded = {}
        while len(reloaded) < 3:
            event = sub.wait_for(lambda e: e.type == "status" and e.message.startswith("configuration reloaded"), "reload status")
            reloaded[event.device] = event.message
        sub.wait_for(lambda e: e.type == "status" and e.device == "c" and e.message.startswith("source file:"), "c opened")
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
        sub.close()
    assert reloaded == {"a": "configuration reloaded: unchanged", "b": "configuration reloaded: pipeline rebuilt",
                        "c": "configuration reloaded: added"}
    removed = [e for _, e in sub.seen if e.device == "d" and e.type == "status" and e.state == "stopping"]
    assert [e.message for e in removed] == ["source removed by a reload"], "d says goodbye once, at the reload"
    assert "Traceback" not in process.stderr.read().decode()


def test_check_config_lists_each_source_section(tmp_path, ravdess_clip):
    config = tmp_path / "serd.conf"
    config.write_text("[vad]\nhangover_ms = 400\n[source.cabin]\ndevice = serd_a\n[source.rear]\nsource = file:%s\n"
                      "device_id = back\n" % ravdess_clip)
    result = serd("check-config", config, text=True)
    assert result.returncode == 0, result.stderr
    cabin = result.stdout.split("[source.cabin]\n")[1].split("\n\n")[0].splitlines()
    assert "device = serd_a" in cabin and "hangover_ms = 400" in cabin and "device_id = cabin" in cabin
    assert "device_id = back" in result.stdout.split("[source.rear]\n")[1]


def test_check_config_names_the_bad_section_and_key_in_one_line(tmp_path):
    config = tmp_path / "serd.conf"
    config.write_text("[source.cabin]\naggressiveness = 7\n")
    result = serd("check-config", config, text=True)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == "serd: error: [source.cabin] aggressiveness: 7 must be 0 to 3\n"
    config.write_text("[source.cabin]\nsource = file:/nonexistent/cabin.wav\n")
    result = serd("check-config", config, text=True)
    assert result.stderr == "serd: error: [source.cabin] source: /nonexistent/cabin.wav: no such file\n"


def test_a_reload_that_fails_keeps_the_source_it_would_have_removed(tmp_path, ravdess_clip):
    not_a_socket = tmp_path / "events-file"
    not_a_socket.write_text("")
    sections = "[source.a]\nsource = file:%s\nrealtime = yes\n" % ravdess_clip
    config = tmp_path / "reload.conf"
    config.write_text("[zmq]\nenabled = no\n" + sections + "[source.d]\nsource = file:%s\nrealtime = yes\n" % ravdess_clip)
    process = subprocess.Popen([sys.executable, "-m", "serd.cli", "run", "--config", str(config), "--stdout"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
    try:
        time.sleep(2.5)  # both sources play; the model is loaded
        config.write_text("[zmq]\nendpoint = ipc://%s\n" % not_a_socket + sections)
        process.send_signal(signal.SIGHUP)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err.decode()
    assert "reload failed, keeping the running configuration: [zmq] endpoint:" in err.decode()
    d = [from_dict(json.loads(line)) for line in out.splitlines() if json.loads(line)["device"] == "d"]
    messages = [e.message for e in d if e.type == "status"]
    assert messages.index("source removed by a reload") < next(i for i, m in enumerate(messages) if m.startswith("reload failed"))
    assert messages[-1] == "exit 0" and any(m.endswith("reopened") for m in messages), "d is opened again and ends with the others"


def test_a_reload_in_mid_speech_numbers_segments_on_and_never_replays_the_file(tmp_path, ravdess_clip):
    config = tmp_path / "mid.conf"
    source = "[source]\nsource = file:%s\nrealtime = yes\n" % ravdess_clip
    config.write_text(source + "[vad]\naggressiveness = 2\n")
    endpoint = "ipc://%s/events" % tmp_path
    sub = Subscriber(endpoint)
    process = subprocess.Popen([sys.executable, "-m", "serd.cli", "run", "--config", str(config), "--zmq", endpoint],
                               stderr=subprocess.PIPE, env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
    try:
        sub.wait_for(lambda e: e.type == "speech-started", "speech-started")
        config.write_text(source + "chunk_ms = 50\n[vad]\naggressiveness = 1\n")  # rebuilds the pipeline, changes the source
        process.send_signal(signal.SIGHUP)
        assert process.wait(timeout=20) == 0
        while sub.read(300) is not None:
            pass
    finally:
        if process.poll() is None:
            process.kill()
        sub.close()
    events = [e for _, e in sub.seen]
    started = [e.segment for e in events if e.type == "speech-started"]
    ended = [e.segment for e in events if e.type == "speech-ended"]
    assert len(started) >= 2, "the reload ends the open segment and the new pipeline opens the next one"
    assert started == sorted(set(started)) and ended == started, "segment ids are unique and each segment ends once"
    assert all(e.segment in started for e in events if e.type == "emotion")
    duration_s = float(subprocess.run(["soxi", "-D", str(ravdess_clip)], capture_output=True, text=True).stdout)
    last = [e for e in events if e.type == "status"][-1]
    assert last.state == "stopping" and abs(last.audio_s - duration_s) < 0.2, "the file is played once, not again from its start"
    assert "Traceback" not in process.stderr.read().decode()
