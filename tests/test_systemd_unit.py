"""systemd/serd.service: verified by systemd-analyze, exposure score, required directives, and the
runtime libraries exercised under the unit's own seccomp policy (syscall filter, W^X, address families)."""

import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.support_mqtt import mosquitto  # noqa: F401  (fixture)

PROJECT_DIR = Path(__file__).resolve().parent.parent
UNIT = PROJECT_DIR / "systemd" / "serd.service"
EXAMPLE_CONFIG = PROJECT_DIR / "systemd" / "serd.conf"
SHIPPED_MODEL = PROJECT_DIR / "models" / "serd-emotion.tflite"
MAX_EXPOSURE = 2.0
INSTALLED_BY_MAKE = {"/usr/local/bin/serd"}  # `make install` puts the console script here
SYSTEM_UNIT_DIRS = (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))
EXEC_PREFIX_CHARS = "-@:+!"
SYSTEM_PYTHON = "/usr/bin/python3"
SANDBOX_TIMEOUT_S = 120


def unit_settings() -> list[tuple[str, str, str]]:
    """(section, key, value) for every assignment, in order (keys may repeat, so no configparser)."""
    settings, section = [], ""
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, value = line.split("=", 1)
        settings.append((section, key.strip(), value.strip()))
    return settings


def service(key: str) -> list[str]:
    """Every value of a [Service] key."""
    return [value for section, name, value in unit_settings() if section == "Service" and name == key]


def exec_binaries() -> list[str]:
    """The program paths of all Exec*= lines."""
    return [value.split()[0].lstrip(EXEC_PREFIX_CHARS) for section, key, value in unit_settings()
            if section == "Service" and key.startswith("Exec")]


def run_analyze(*args: str) -> subprocess.CompletedProcess:
    """systemd-analyze with plain output."""
    env = dict(os.environ, SYSTEMD_COLORS="0", SYSTEMD_PAGER="", LC_ALL="C.UTF-8")
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, env=env, timeout=60)


@pytest.fixture(scope="module")
def unit_root(tmp_path_factory) -> Path:
    """A file-system root holding systemd's units, serd.service as installed and the programs it runs.

    The unit is verified exactly as shipped: the programs it names must exist in the root, so the one
    `make install` provides is a stub and the others are copied from this machine."""
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze not found (apt-get install systemd)")
    root = tmp_path_factory.mktemp("root")
    unit_dir = next(d for d in SYSTEM_UNIT_DIRS if d.is_dir())
    shutil.copytree(unit_dir, root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(UNIT, root / "etc/systemd/system/serd.service")
    for program in exec_binaries():
        target = root / program.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if program in INSTALLED_BY_MAKE:
            target.write_text("#!/bin/sh\n")
        else:
            assert os.access(program, os.X_OK), "%s (named in the unit) is missing here" % program
            shutil.copy(program, target)
        target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return root


def test_verify_is_clean(unit_root):
    result = run_analyze("verify", "--root=%s" % unit_root, "serd.service")
    assert result.stderr == ""
    assert result.returncode == 0


def test_verify_would_report_a_bad_unit(unit_root):
    bad = unit_root / "etc/systemd/system/serd-bad.service"
    bad.write_text(UNIT.read_text().replace("\n[Service]\n", "\n[Service]\nWatchdogSecs=30\n", 1))
    try:
        result = run_analyze("verify", "--root=%s" % unit_root, "serd-bad.service")
    finally:
        bad.unlink()
    assert "Unknown key 'WatchdogSecs'" in result.stderr


def test_exposure_score(unit_root):
    result = run_analyze("security", "--offline=true", "--root=%s" % unit_root, "serd.service")
    match = re.search(r"Overall exposure level for serd\.service: (\d+\.\d+)", result.stdout + result.stderr)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout


def test_service_type_reload_and_watchdog():
    assert service("Type") == ["notify"]
    assert service("ExecStart") == ["/usr/local/bin/serd run --config /etc/serd/serd.conf"]
    assert service("ExecReload") == ["/bin/kill -HUP $MAINPID"]
    assert int(service("WatchdogSec")[0]) >= 10
    assert service("Restart") == ["on-failure"]
    assert "OPENBLAS_NUM_THREADS=1" in " ".join(service("Environment")).split()


def test_directories_and_credentials():
    assert service("RuntimeDirectory") == ["serd"]
    assert service("ConfigurationDirectory") == ["serd"]
    credentials = dict(value.split(":", 1) for value in service("LoadCredential"))
    assert credentials == {"mqtt-password": "/etc/serd/mqtt-password", "mqtt-key": "/etc/serd/mqtt-key.pem"}
    example = EXAMPLE_CONFIG.read_text(encoding="utf-8")
    for name in credentials:
        assert "/run/credentials/serd.service/%s\n" % name in example


def test_audio_access_survives_hardening():
    assert service("DeviceAllow") == ["char-alsa rw"]
    assert service("SupplementaryGroups") == ["audio"]
    assert service("PrivateDevices") == []
    families = service("RestrictAddressFamilies")[0].split()
    assert {"AF_UNIX", "AF_INET", "AF_INET6"} <= set(families)


SANDBOX = r'''
"""Load serd.service's seccomp policy as systemd does, then exec the workload."""
import errno, json, os, sys
import seccomp
policy = json.loads(sys.argv[1])
guard = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
if policy["wx"]:
    both, exe, shm_exec = 0x4 | 0x2, 0x4, 0o100000
    guard.add_rule(seccomp.ERRNO(errno.EPERM), "mmap", seccomp.Arg(2, seccomp.MASKED_EQ, both, both))
    for name in ("mprotect", "pkey_mprotect"):
        guard.add_rule(seccomp.ERRNO(errno.EPERM), name, seccomp.Arg(2, seccomp.MASKED_EQ, exe, exe))
    guard.add_rule(seccomp.ERRNO(errno.EPERM), "shmat", seccomp.Arg(2, seccomp.MASKED_EQ, shm_exec, shm_exec))
for family in range(policy["max_family"]):
    if family not in policy["families"]:
        guard.add_rule(seccomp.ERRNO(errno.EAFNOSUPPORT), "socket", seccomp.Arg(0, seccomp.EQ, family))
guard.load()
allow = seccomp.SyscallFilter(defaction=seccomp.ERRNO(policy["errno"]))
for name in policy["syscalls"]:
    try:
        allow.add_rule(seccomp.ALLOW, name)
    except (RuntimeError, ValueError, OSError):
        pass  # not a syscall of this architecture
allow.load()
os.execv(sys.argv[2], sys.argv[2:])
'''

WORKLOAD = r'''
"""What the daemon's libraries do at start and while running; prints one JSON line."""
import json, mmap, os, socket, sys, tempfile
sys.path.insert(0, sys.argv[1])
result = {}
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    result["wx_denied"] = False
except OSError:
    result["wx_denied"] = True
import numpy as np
matrix = np.arange(90000, dtype=np.float64).reshape(300, 300) / 90000
result["matmul"] = float((matrix @ matrix).trace())
from ai_edge_litert.interpreter import Interpreter
model = sys.argv[2]
if os.path.exists(model):
    for threads in (1, 2):
        interpreter = Interpreter(model_path=model, num_threads=threads)
        interpreter.allocate_tensors()
        tensor = interpreter.get_input_details()[0]
        interpreter.set_tensor(tensor["index"], np.zeros(tensor["shape"], tensor["dtype"]))
        interpreter.invoke()
    result["model_invoked"] = True
import _webrtcvad
vad = _webrtcvad.create()
_webrtcvad.init(vad)
_webrtcvad.set_mode(vad, 2)
result["vad"] = _webrtcvad.process(vad, 16000, b"\0" * 960, 480)
import zmq
directory = tempfile.mkdtemp()
context = zmq.Context()
publisher = context.socket(zmq.PUB)
publisher.bind("ipc://%s/events" % directory)
result["tcp_port"] = publisher.bind_to_random_port("tcp://127.0.0.1")
subscriber = context.socket(zmq.SUB)
subscriber.connect("ipc://%s/events" % directory)
subscriber.setsockopt(zmq.SUBSCRIBE, b"")
for _ in range(200):
    publisher.send(b"hello")
    if subscriber.poll(10):
        result["zmq"] = subscriber.recv().decode()
        break
import paho.mqtt.client as mqtt
client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="sandbox", protocol=mqtt.MQTTv5)
client.connect("127.0.0.1", int(sys.argv[3]))
client.loop_start()
message = client.publish("serd/sandbox", b"1", qos=1)
message.wait_for_publish(5)
result["mqtt"] = message.is_published()
client.loop_stop()
from serd.sdnotify import Notifier
notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
notify.bind(directory + "/notify")
Notifier({"NOTIFY_SOCKET": directory + "/notify"}).ready()
result["notify"] = notify.recv(64).decode()
import pyaudio
audio = pyaudio.PyAudio()
result["pyaudio_devices"] = audio.get_device_count()
audio.terminate()
print(json.dumps(result))
'''


def syscall_groups() -> dict[str, list[str]]:
    """systemd's named syscall groups (@name -> members, which may be groups)."""
    groups, current = {}, None
    for line in run_analyze("syscall-filter").stdout.splitlines():
        item = line.strip()
        if line.startswith("@"):
            current = groups.setdefault(item, [])
        elif item and not item.startswith("#") and current is not None:
            current.append(item)
    return groups


def expand(groups: dict[str, list[str]], names: list[str]) -> set[str]:
    """Syscall names of a filter list, groups expanded."""
    found = set()
    for name in names:
        found |= expand(groups, groups[name]) if name.startswith("@") else {name}
    return found


def seccomp_policy() -> dict:
    """The unit's SystemCallFilter / SystemCallErrorNumber / RestrictAddressFamilies / W^X as data."""
    groups = syscall_groups()
    filters = service("SystemCallFilter")
    assert filters and not filters[0].startswith("~"), "expected an allow list first"
    allowed = expand(groups, filters[0].split())
    for line in filters[1:]:
        assert line.startswith("~")
        allowed -= expand(groups, line[1:].split())
    allowed |= expand(groups, ["@default"])
    families = [getattr(socket, name) for name in service("RestrictAddressFamilies")[0].split()]
    return {
        "syscalls": sorted(allowed),
        "errno": getattr(__import__("errno"), service("SystemCallErrorNumber")[0]),
        "families": [int(f) for f in families],
        "max_family": 46,
        "wx": service("MemoryDenyWriteExecute") == ["yes"],
    }


def system_python_has_seccomp() -> bool:
    """Whether the system Python has the libseccomp bindings (Debian: python3-seccomp)."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return False
    return subprocess.run([SYSTEM_PYTHON, "-c", "import seccomp"], capture_output=True).returncode == 0


def test_runtime_libraries_work_under_the_units_seccomp_policy(tmp_path, mosquitto):  # noqa: F811
    if not system_python_has_seccomp():
        pytest.skip("python3-seccomp (apt) is needed to apply the unit's seccomp policy")
    (tmp_path / "sandbox.py").write_text(SANDBOX)
    (tmp_path / "workload.py").write_text(WORKLOAD)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", XDG_RUNTIME_DIR=str(tmp_path))
    command = [SYSTEM_PYTHON, str(tmp_path / "sandbox.py"), json.dumps(seccomp_policy()),
               sys.executable, str(tmp_path / "workload.py"), str(PROJECT_DIR), str(SHIPPED_MODEL),
               str(mosquitto.port)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=SANDBOX_TIMEOUT_S)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["wx_denied"] is True
    matrix = np.arange(90000, dtype=np.float64).reshape(300, 300) / 90000
    assert report["matmul"] == pytest.approx(float((matrix @ matrix).trace()), rel=1e-12)
    assert report["zmq"] == "hello" and report["tcp_port"] > 0
    assert report["mqtt"] is True
    assert report["notify"] == "READY=1"
    assert report["vad"] is False
    assert isinstance(report["pyaudio_devices"], int)
    assert report.get("model_invoked", False) is SHIPPED_MODEL.exists()


WHISPER_WORKLOAD = r'''
"""The opt-in whisper backend's encoder under a policy; prints one JSON line."""
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from serd.errors import ModelError
from serd.whisper import WhisperEncoder
tone = (3000 * np.sin(np.arange(16000) * 0.05)).astype(np.int16)
try:
    print(json.dumps({"frames": int(WhisperEncoder().encode(tone).shape[0])}))
except ModelError as exc:
    print(json.dumps({"error": str(exc)}))
'''


@pytest.mark.parametrize("drop_in", [False, True], ids=["as-shipped", "whisper-drop-in"])
def test_whisper_backend_needs_the_documented_drop_in(tmp_path, drop_in):
    """oneDNN (inside CTranslate2) writes code at run time: under W^X the encoder must fail with a clear
    error naming the drop-in, and with MemoryDenyWriteExecute=no (the drop-in) it must work."""
    if not system_python_has_seccomp():
        pytest.skip("python3-seccomp (apt) is needed to apply the unit's seccomp policy")
    assert "MemoryDenyWriteExecute=no" in UNIT.read_text(), "the unit must document the whisper drop-in"
    policy = seccomp_policy()
    policy["wx"] = policy["wx"] and not drop_in
    (tmp_path / "sandbox.py").write_text(SANDBOX)
    (tmp_path / "whisper.py").write_text(WHISPER_WORKLOAD)
    command = [SYSTEM_PYTHON, str(tmp_path / "sandbox.py"), json.dumps(policy), sys.executable, str(tmp_path / "whisper.py"),
               str(PROJECT_DIR)]
    result = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, OPENBLAS_NUM_THREADS="1"),
                            timeout=SANDBOX_TIMEOUT_S)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    if drop_in:
        assert report == {"frames": 50}
    else:
        assert "MemoryDenyWriteExecute=no" in report["error"]
