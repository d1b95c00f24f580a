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
