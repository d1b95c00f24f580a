"""A real microphone for tests: PulseAudio in user mode whose default source hears a null sink.

Use it from a test module with `from tests.support_pulse import virtual_mic  # noqa: F401`; what a
test plays with virtual_mic.play(path) is what PyAudio's `pulse` and `default` devices capture,
about 300 ms later.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SINK = "vsink"
SINK_RATE_HZ = 16000
SETTLE_S = 2.5  # after start-up the monitor stutters for about this long
COMMAND_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0
TOOLS = ("pulseaudio", "pactl", "pacat", "paplay")


class PulseServer:
    """One PulseAudio daemon with its own runtime directory and a null sink as the microphone."""

    def __init__(self, runtime_dir: Path | None = None):
        self._own_dir = runtime_dir is None
        self.runtime_dir = Path(tempfile.mkdtemp(prefix="serd-pulse-")) if runtime_dir is None else runtime_dir  # short: socket paths are limited
        self.socket_path = self.runtime_dir / "pulse" / "native"
        self.env = dict(os.environ, XDG_RUNTIME_DIR=str(self.runtime_dir), PULSE_SERVER="unix:%s" % self.socket_path)
        self._keep_alive: subprocess.Popen | None = None

    def start(self, keep_alive: bool = True) -> None:
        """Start the daemon, make vsink's monitor the default source, feed vsink silence."""
        self.runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        server_env = {key: value for key, value in self.env.items() if key != "PULSE_SERVER"}
        self._run(
            ["pulseaudio", "-D", "-n", "--exit-idle-time=-1", "--disallow-exit",
             "--load=module-native-protocol-unix",
             "--load=module-null-sink sink_name=%s rate=%d channels=1" % (SINK, SINK_RATE_HZ)],
            server_env,
        )  # fmt: skip
        self._run(["pactl", "set-default-sink", SINK], self.env)
        self._run(["pactl", "set-default-source", SINK + ".monitor"], self.env)
        if keep_alive:
            self._keep_alive = subprocess.Popen(
                ["pacat", "--playback", "--raw", "--rate=%d" % SINK_RATE_HZ, "--channels=1", "--format=s16le",
                 "--latency-msec=20", "--device=%s" % SINK, "/dev/zero"],
                env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip

    def play(self, path: str | os.PathLike) -> None:
        """Play a sound file into the virtual microphone; returns when it has been played."""
        self._run(["paplay", "--device=%s" % SINK, str(path)], self.env)

    def stop(self) -> None:
        """Stop the keep-alive stream and the daemon; waits until the daemon is gone."""
        if self._keep_alive is not None:
            self._keep_alive.terminate()
            self._keep_alive.wait(STOP_TIMEOUT_S)
            self._keep_alive = None
        daemon_pid = self._daemon_pid()
        subprocess.run(["pulseaudio", "--kill"], env=self.env, capture_output=True, timeout=COMMAND_TIMEOUT_S, check=False)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while _running(daemon_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if self._own_dir:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)

    def _daemon_pid(self) -> int | None:
        """Process id the daemon wrote to its runtime directory, if any."""
        try:
            return int((self.runtime_dir / "pulse" / "pid").read_text().strip())
        except (OSError, ValueError):
            return None

    @staticmethod
    def _run(command: list[str], env: dict[str, str]) -> None:
        """Run a PulseAudio tool; a failure fails the test with the tool's own message."""
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False)
        if result.returncode != 0:
            pytest.fail("%s failed (exit %d): %s" % (command[0], result.returncode, result.stderr.strip()))


def _running(pid: int | None) -> bool:
    """Whether a process exists and has not exited (a zombie has exited)."""
    if pid is None:
        return False
    try:
        status = Path("/proc/%d/status" % pid).read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def require_pulse_tools() -> None:
    """Fail clearly when the PulseAudio programs are missing."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail("virtual microphone needs %s (apt install pulseaudio pulseaudio-utils)" % ", ".join(missing))


@pytest.fixture(scope="session")
def virtual_mic() -> Iterator[PulseServer]:
    """A running PulseAudio virtual microphone; the test process and its children talk to it."""
    require_pulse_tools()
    server = PulseServer()
    saved = {key: os.environ.get(key) for key in ("XDG_RUNTIME_DIR", "PULSE_SERVER")}
    try:
        server.start()
        os.environ.update(XDG_RUNTIME_DIR=server.env["XDG_RUNTIME_DIR"], PULSE_SERVER=server.env["PULSE_SERVER"])
        time.sleep(SETTLE_S)
        yield server
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()
