"""The Makefile's front doors: which apt packages `make run` and `make test` want, and Ctrl-C on `make run`."""

import os
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parent.parent
TEST_ONLY = {"mosquitto", "pulseaudio", "pulseaudio-utils", "libasound2-plugins", "systemd", "python3-seccomp"}
AS_USER = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []  # the path that names packages, not installs them
ABSENT = ["serd-absent-one", "serd-absent-two"]


def make(*args: str, user: list[str] = (), **kwargs) -> subprocess.CompletedProcess:
    """Run make in the project as `user` (a command prefix)."""
    command = [*user, "make", "-s", "--no-print-directory", "-C", str(PROJECT_DIR), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False, **kwargs)


def variable(name: str) -> set[str]:
    """A Makefile variable's words."""
    return set(make("--eval", "print-%: ; @echo $($*)", "print-" + name).stdout.split())


def test_make_run_installs_only_what_running_needs():
    run_packages, test_packages = variable("RUN_PACKAGES"), variable("TEST_PACKAGES")
    assert {"libportaudio2", "portaudio19-dev", "espeak-ng", "sox"} <= run_packages
    assert not run_packages & TEST_ONLY
    assert TEST_ONLY <= test_packages


def test_make_run_does_not_ask_for_test_packages():
    result = make("apt-run", "RUN_PACKAGES=dpkg", "TEST_PACKAGES=%s" % " ".join(ABSENT), user=AS_USER)
    assert (result.returncode, result.stdout) == (0, "")


def test_missing_packages_are_named_on_one_line():
    result = make("apt-test", "RUN_PACKAGES=dpkg %s" % ABSENT[0], "TEST_PACKAGES=%s" % ABSENT[1], user=AS_USER)
    assert result.returncode != 0
    assert result.stdout.count("\n") == 1, result.stdout
    assert result.stdout.startswith("serd needs these packages: %s (run: sudo apt-get install -y %s)" % (" ".join(ABSENT), " ".join(ABSENT)))


def wait_for_output(stream, wanted: str, timeout_s: float) -> str:
    """Lines of stream until one contains wanted."""
    seen, deadline = [], time.monotonic() + timeout_s
    while select.select([stream], [], [], max(0.0, deadline - time.monotonic()))[0]:
        line = stream.readline()
        seen.append(line)
        if wanted in line or not line:
            break
    return "".join(seen)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_ctrl_c_ends_make_run_quietly(tmp_path):
    """The demo (no capture device: no /dev/snd here, no PulseAudio server it can reach) stopped as a terminal stops it."""
    if Path("/dev/snd/controlC0").exists():
        pytest.skip("a sound card is present: make run would listen to it")
    env = {name: value for name, value in os.environ.items() if not name.startswith("PULSE_")}  # no virtual microphone either
    env.update(XDG_RUNTIME_DIR=str(tmp_path), TMPDIR=str(tmp_path))
    command = ["make", "-s", "--no-print-directory", "-o", "apt-run", "-o", "venv", "run"]  # packages and venv are the suite's own
    process = subprocess.Popen(command, cwd=PROJECT_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        shown = wait_for_output(process.stdout, "playing 1/5", timeout_s=60)
        assert "playing 1/5, meant calm" in shown, shown
        time.sleep(1.0)
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does: every process of the foreground group
        rest, errors = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode in (0, -signal.SIGINT)  # make re-raises the interrupt on itself; no error of its own
    assert "make: ***" not in errors and "Error" not in errors and "Traceback" not in errors, errors
    assert "carries little emotion" in shown and "model's guess" in shown
    deadline = time.monotonic() + 5
    while group_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not group_alive(process.pid), "make run left processes behind"
