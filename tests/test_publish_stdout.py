"""stdout publisher: JSON lines through real pipes, including one whose reader went away."""

import io
import json
import os
import subprocess
import sys
import time

from serd.events import EmotionChanged, SpeechStarted, from_dict
from serd.publish import Fanout
from serd.publish.stdout_pub import StdoutPublisher

DEVICE = "hall"


def events(count):
    return [EmotionChanged(device=DEVICE, stream_time_s=float(i), wall_time_s=1700000000.0 + i, segment=i,
                           label="calm", previous="silence", confidence=0.5, probabilities={"calm": 0.5})
            for i in range(count)]


def test_json_lines_in_order_through_a_pipe():
    read_fd, write_fd = os.pipe()
    with open(write_fd, "w") as writer, open(read_fd) as reader:
        pub = StdoutPublisher(writer)
        sent = events(5)
        for event in sent:
            pub.publish(event)
        pub.close()
        writer.close()
        lines = reader.read().splitlines()
    assert [from_dict(json.loads(line)) for line in lines] == sent
    assert pub.dropped == 0


def test_a_non_finite_number_is_never_written_and_is_counted():
    read_fd, write_fd = os.pipe()
    with open(write_fd, "w") as writer, open(read_fd) as reader:
        pub = StdoutPublisher(writer)
        fanout = Fanout([pub])
        good = events(2)
        bad = EmotionChanged(device=DEVICE, stream_time_s=0.5, wall_time_s=1700000000.5, segment=0, label="calm",
                             previous="silence", confidence=float("nan"), probabilities={"calm": float("inf")})
        for event in (good[0], bad, good[1]):
            fanout.publish(event)
        pub.close()
        writer.close()
        lines = reader.read().splitlines()
    assert [from_dict(json.loads(line)) for line in lines] == good
    assert fanout.dropped_counts() == {pub.name: 1}


def test_each_line_is_flushed_without_close():
    read_fd, write_fd = os.pipe()
    with open(write_fd, "w") as writer, open(read_fd) as reader:
        pub = StdoutPublisher(writer)
        pub.publish(events(1)[0])
        line = reader.readline()
        pub.close()
    assert json.loads(line)["type"] == "emotion-changed"


def test_broken_pipe_disables_and_counts():
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    with open(write_fd, "w") as writer:
        pub = StdoutPublisher(writer)
        for event in events(4):
            pub.publish(event)
        pub.close()
        assert pub.dropped == 4
        pub.publish(events(1)[0])
        assert pub.dropped == 5


def test_full_queue_drops_instead_of_blocking():
    read_fd, write_fd = os.pipe()
    with open(write_fd, "w") as writer:
        pub = StdoutPublisher(writer, queue_lines=10)
        began_s = time.monotonic()
        for event in events(20000):
            pub.publish(event)
        elapsed_s = time.monotonic() - began_s
        assert pub.dropped > 0
        began_s = time.monotonic()
        pub.close(timeout_s=0.2)
        assert time.monotonic() - began_s < 1.0
        os.close(read_fd)
        pub._writer.join(5.0)
        assert not pub._writer.is_alive()
    assert elapsed_s < 5.0


CHILD = """
import sys
from serd.events import SpeechStarted
from serd.publish import Fanout
from serd.publish.stdout_pub import StdoutPublisher
pub = StdoutPublisher()
for index in range(20000):
    pub.publish(SpeechStarted(device="hall", stream_time_s=float(index), wall_time_s=0.0, segment=index))
pub.close()
print("dropped", pub.dropped, file=sys.stderr)
"""


def test_daemon_process_survives_a_reader_that_quits():
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = child.stdout.readline()
    child.stdout.close()
    _, err = child.communicate(timeout=30)
    assert json.loads(first)["type"] == SpeechStarted.TYPE
    assert child.returncode == 0
    assert "Traceback" not in err.decode() and "Exception ignored" not in err.decode()
    dropped = int(err.decode().split("dropped")[-1].split()[0])
    assert dropped > 0


def test_writing_to_a_closed_stream_is_counted():
    stream = io.StringIO()
    stream.close()
    pub = StdoutPublisher(stream)
    pub.publish(events(1)[0])
    pub.close()
    assert pub.dropped == 1


class StalledReader(io.TextIOBase):
    """An output whose reader has stopped: the first write blocks until released; entered says it has begun."""

    def __init__(self):
        import threading

        self.entered, self.release, self.lines = threading.Event(), threading.Event(), []

    def writable(self):
        return True

    def write(self, text):
        self.entered.set()
        self.release.wait(30)
        self.lines.append(text)
        return len(text)


def test_the_default_queue_holds_a_thousand_lines_behind_a_stalled_reader():
    stream = StalledReader()
    pub = StdoutPublisher(stream)
    pub.publish(events(1)[0])
    assert stream.entered.wait(5), "the writer took the first line"
    for event in events(1000):
        pub.publish(event)
    assert pub.dropped == 0, "a thousand lines wait behind the one being written"
    pub.publish(events(1)[0])
    assert pub.dropped == 1
    stream.release.set()
    pub.close()
    assert len(stream.lines) == 1001


def test_a_slow_output_is_logged_with_the_queue_size_and_a_closed_one_with_its_error(caplog):
    stream = StalledReader()
    pub = StdoutPublisher(stream, queue_lines=3)
    pub.publish(events(1)[0])
    assert stream.entered.wait(5)
    for event in events(4):
        pub.publish(event)
    stream.release.set()
    pub.close()
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    with open(write_fd, "w") as writer:
        broken = StdoutPublisher(writer)
        broken.publish(events(1)[0])
        broken.close()
    messages = [record.getMessage() for record in caplog.records]
    assert "stdout: dropped 1 event(s): output too slow, 3 lines queued (total 1)" in messages
    assert "stdout: dropped 1 event(s): output closed (BrokenPipeError) (total 1)" in messages


def test_the_writer_waits_out_idle_spells_and_writes_what_comes_after():
    from serd.publish import stdout_pub

    read_fd, write_fd = os.pipe()
    with open(write_fd, "w") as writer, open(read_fd) as reader:
        pub = StdoutPublisher(writer)
        first, second = events(2)
        pub.publish(first)
        assert from_dict(json.loads(reader.readline())) == first
        time.sleep(2.5 * stdout_pub.WRITER_POLL_S)  # the writer's queue wait times out twice with nothing to write
        pub.publish(second)
        assert from_dict(json.loads(reader.readline())) == second
        pub.close()
    assert pub.dropped == 0


def test_after_a_close_that_gave_up_the_writer_stops_within_a_poll_of_the_queue_draining():
    stream = StalledReader()
    pub = StdoutPublisher(stream, queue_lines=2)
    pub.publish(events(1)[0])
    assert stream.entered.wait(5)
    for event in events(2):
        pub.publish(event)
    pub.close(timeout_s=0.1)  # the queue is full: close gives up on its stop marker
    stream.release.set()
    pub._writer.join(1.0)  # the queue drains at once; the writer notices it is closed at its next poll (0.5 s)
    assert not pub._writer.is_alive() and len(stream.lines) == 3


def test_close_waits_two_seconds_for_a_blocked_output_then_gives_up_with_a_warning(caplog):
    stream = StalledReader()
    pub = StdoutPublisher(stream, queue_lines=1)
    pub.publish(events(1)[0])
    assert stream.entered.wait(5)
    pub.publish(events(1)[0])
    began_s = time.monotonic()
    pub.close()
    waited_s = time.monotonic() - began_s
    stream.release.set()
    assert 1.5 < waited_s < 2.9, waited_s
    assert "stdout: output blocked, 1 line(s) not written" in [record.getMessage() for record in caplog.records]


NEVER_CLOSED = """
import os
from serd.events import SpeechStarted
from serd.publish.stdout_pub import StdoutPublisher
read_fd, write_fd = os.pipe()
pub = StdoutPublisher(open(write_fd, "w"))
pub.publish(SpeechStarted(device="hall", stream_time_s=0.0, wall_time_s=0.0, segment=1))
print("exiting", flush=True)
"""


def test_a_publisher_never_closed_does_not_keep_the_process_alive():
    child = subprocess.run([sys.executable, "-c", NEVER_CLOSED], capture_output=True, text=True, timeout=20)
    assert child.returncode == 0 and child.stdout == "exiting\n", child.stderr


def test_a_stream_closed_under_the_writer_is_counted_without_killing_the_writer_thread(monkeypatch, tmp_path):
    import threading

    failures = []
    monkeypatch.setattr(threading, "excepthook", failures.append)
    stream = open(tmp_path / "out.jsonl", "w")
    stream.close()  # its fileno() now raises ValueError as well as its write
    pub = StdoutPublisher(stream)
    pub.publish(events(1)[0])
    pub.close()
    assert pub.dropped == 1 and failures == []


OUT_OF_DESCRIPTORS = """
import os, resource, sys
from serd.events import SpeechStarted
from serd.publish.stdout_pub import StdoutPublisher
read_fd, write_fd = os.pipe()
os.close(read_fd)
pub = StdoutPublisher(open(write_fd, "w"))
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
held = []
try:
    while True:
        held.append(os.open(os.devnull, os.O_RDONLY))
except OSError:
    pass
pub.publish(SpeechStarted(device="hall", stream_time_s=0.0, wall_time_s=0.0, segment=1))
pub.close()
print("dropped", pub.dropped)
"""


def test_a_broken_output_with_no_descriptor_left_for_dev_null_is_still_only_counted():
    child = subprocess.run([sys.executable, "-c", OUT_OF_DESCRIPTORS], capture_output=True, text=True, timeout=20)
    assert child.returncode == 0 and child.stdout == "dropped 1\n", child.stderr
    assert "Traceback" not in child.stderr and "Exception in thread" not in child.stderr
