"""serd batch's RESULTS: rows written as files finish, read back for --resume, and turned back into serd analyze's objects.

JSON Lines (.jsonl) are appended a file at a time. A Parquet RESULTS (.parquet) cannot grow in place: rows go to
a journal beside it (RESULTS.partial, JSON Lines) and become Parquet, with the rows of earlier runs, when the batch
ends. Either way a killed batch loses at most the files in flight. pyarrow is imported only for Parquet.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from serd.analyze import FileAnalysis
from serd.batchwork import AFFECT_FIELDS, ERROR_ROW, OVERALL_ROW, SEGMENT_ROW
from serd.errors import SerdError

JSONL_EXTENSIONS = (".jsonl", ".ndjson")
PARQUET_EXTENSIONS = (".parquet", ".pq")
JOURNAL_SUFFIX = ".partial"  # a Parquet RESULTS' journal of rows not yet in it
COLUMNS = ("file", "size_bytes", "mtime_ns", "row", "start_s", "end_s", "windows", "label", "confidence", "probabilities",
           "arousal", "valence", "duration_s", "source_rate_hz", "warnings", "error")
PARQUET_BATCH_ROWS = 65536  # rows converted to Parquet at a time (one row group each)
BATCH_EXTRA_HINT = "serd batch needs the [batch] extra: pip install 'serd[batch]'"


def results_format(path: Path) -> str:
    """'jsonl' or 'parquet' by RESULTS' extension; SerdError for any other."""
    suffix = path.suffix.lower()
    if suffix in JSONL_EXTENSIONS:
        return "jsonl"
    if suffix in PARQUET_EXTENSIONS:
        return "parquet"
    raise SerdError("--out %s: RESULTS must end in .parquet or .jsonl" % path)


def require_pyarrow():
    """The pyarrow module, or the one line that says how to install it."""
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401 - the submodule the writer uses
    except ImportError:
        raise SerdError(BATCH_EXTRA_HINT) from None
    return pyarrow


class ResultStore:
    """RESULTS opened for one batch: the keys of the files already done (with --resume), and a place for new rows.

    Rows are streamed, never all held: a resumed RESULTS is read for its keys, and rewritten (without what a kill
    cut, error rows, and rows of files changed since) only when it holds such rows."""

    def __init__(self, path: str | os.PathLike, labels: tuple[str, ...], resume: bool, current: dict[str, tuple] | None = None):
        """current maps the batch's files to their keys now: earlier rows of a file since changed are dropped."""
        self.path, self.labels, self.current = Path(path), labels, current or {}
        self.format = results_format(self.path)
        self.log_path = self.path.with_name(self.path.name + JOURNAL_SUFFIX) if self.format == "parquet" else self.path
        if self.format == "parquet":
            require_pyarrow()
        self.done = self._resume() if resume else self._fresh()
        self._log = None  # opened with the first rows: a batch that fails before any leaves no RESULTS behind

    def write(self, rows: list[dict]) -> None:
        """Append one file's rows (at once, then flushed: a kill cuts at most the file being written)."""
        if self._log is None:
            self._log = self.log_path.open("a", encoding="utf-8")
        self._log.write("".join(json.dumps(row) + "\n" for row in rows))
        self._log.flush()

    def close(self) -> None:
        """Done: a Parquet RESULTS gets every row (earlier runs' and the journal's) and the journal goes."""
        if self._log is None:
            return
        self._log.close()
        if self.format == "parquet":
            self._merge_journal(lambda row: True)

    def _fresh(self) -> set:
        """No earlier rows: RESULTS must not exist."""
        existing = [p for p in (self.path, self.log_path) if p.exists()]
        if existing:
            raise SerdError("%s exists: --resume adds to it (or remove it)" % existing[0])
        return set()

    def _resume(self) -> set:
        """Keys of the complete analyses in RESULTS (and its journal); the rest of its rows are dropped."""
        keys = set()
        for row in self._earlier_rows():
            if row["row"] == OVERALL_ROW and self.current.get(row["file"], row_key(row)) == row_key(row):
                keys.add(row_key(row))

        def keep(row: dict) -> bool:
            return row["row"] != ERROR_ROW and row_key(row) in keys

        if self.format == "parquet" and (self.log_path.exists() or not all(map(keep, self._earlier_rows()))):
            self._merge_journal(keep)
        elif self.format == "jsonl" and self.path.exists() and (_cut_line(self.path) or not all(map(keep, self._earlier_rows()))):
            _rewrite_jsonl(self.path, filter(keep, iter_jsonl(self.path)))
        return keys

    def _earlier_rows(self) -> Iterator[dict]:
        """The rows RESULTS and its journal hold now."""
        if self.format == "parquet" and self.path.exists():
            yield from iter_parquet(self.path)
        if self.log_path.exists():
            yield from iter_jsonl(self.log_path)

    def _merge_journal(self, keep) -> None:
        """A Parquet RESULTS rewritten with the rows it and its journal hold that keep() accepts; the journal goes."""
        write_parquet(self.path, filter(keep, self._earlier_rows()), self.labels)
        self.log_path.unlink(missing_ok=True)


def row_key(row: dict) -> tuple:
    """(file, size_bytes, mtime_ns) of a row: what --resume compares with the file as it is now."""
    return row["file"], row["size_bytes"], row["mtime_ns"]


def iter_jsonl(path: Path) -> Iterator[dict]:
    """Rows of a JSON Lines file; a last line cut short by a kill is left out, any other bad line is a SerdError."""
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                if not line.endswith("\n"):  # the last line, cut short
                    return
                raise SerdError("%s:%d: not a JSON row of serd batch" % (path, number)) from None
            if not isinstance(row, dict) or set(row) != set(COLUMNS):
                raise SerdError("%s:%d: not a row of serd batch results (columns %s)" % (path, number, ", ".join(COLUMNS)))
            yield row


def read_jsonl(path: Path) -> list[dict]:
    """Every row of a JSON Lines RESULTS (see iter_jsonl)."""
    return list(iter_jsonl(path))


def _cut_line(path: Path) -> bool:
    """The file does not end with a newline (a kill cut its last row)."""
    if path.stat().st_size == 0:
        return False
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) != b"\n"


def _rewrite_jsonl(path: Path, rows: Iterable[dict]) -> None:
    """Replace the file with these rows (a new file renamed over it)."""
    scratch = path.with_name(path.name + ".tmp")
    with scratch.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    os.replace(scratch, path)


def parquet_schema(labels: tuple[str, ...]):
    """The Parquet columns: probabilities is a struct with a float field per model label."""
    pa = require_pyarrow()
    return pa.schema([("file", pa.string()), ("size_bytes", pa.int64()), ("mtime_ns", pa.int64()), ("row", pa.string()),
                      ("start_s", pa.float64()), ("end_s", pa.float64()), ("windows", pa.int64()), ("label", pa.string()),
                      ("confidence", pa.float64()), ("probabilities", pa.struct([(name, pa.float64()) for name in labels])),
                      ("arousal", pa.float64()), ("valence", pa.float64()),
                      ("duration_s", pa.float64()), ("source_rate_hz", pa.int64()), ("warnings", pa.list_(pa.string())),
                      ("error", pa.string())])


def write_parquet(path: Path, rows: Iterable[dict], labels: tuple[str, ...]) -> None:
    """Rows as a Parquet file, PARQUET_BATCH_ROWS at a time (a new file renamed over path)."""
    pa = require_pyarrow()
    schema = parquet_schema(labels)
    scratch = path.with_name(path.name + ".tmp")
    rows = iter(rows)
    with pa.parquet.ParquetWriter(scratch, schema) as writer:
        while True:
            batch = list(itertools.islice(rows, PARQUET_BATCH_ROWS))
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            if len(batch) < PARQUET_BATCH_ROWS:
                break
    os.replace(scratch, path)


def iter_parquet(path: Path) -> Iterator[dict]:
    """Rows of a Parquet RESULTS, a row group at a time."""
    pa = require_pyarrow()
    try:
        table = pa.parquet.ParquetFile(path)
        names = tuple(table.schema_arrow.names)
    except (OSError, pa.ArrowException) as exc:
        raise SerdError("%s: cannot read Parquet results: %s" % (path, exc)) from None
    if names != COLUMNS:
        raise SerdError("%s: not serd batch results (columns %s)" % (path, ", ".join(names)))
    for batch in table.iter_batches(batch_size=PARQUET_BATCH_ROWS):
        yield from batch.to_pylist()


def read_parquet(path: Path) -> list[dict]:
    """Every row of a Parquet RESULTS."""
    return list(iter_parquet(path))


def read_results(path: str | os.PathLike) -> list[dict]:
    """Every row of a RESULTS file, Parquet or JSON Lines."""
    path = Path(path)
    return read_parquet(path) if results_format(path) == "parquet" else read_jsonl(path)


def analyses(rows: list[dict]) -> dict[str, dict]:
    """Per file, what `serd analyze --json` prints for it (the file's overall and segment rows; files with an
    error row are left out)."""
    found: dict[str, dict] = {}
    segments: dict[str, list[dict]] = {}
    affect = [name for name in AFFECT_FIELDS if name in FileAnalysis(0.0).to_dict()]
    for row in rows:
        verdict = {"label": row["label"], "confidence": row["confidence"], "probabilities": row["probabilities"] or {},
                   **{name: row[name] for name in affect}}
        if row["row"] == SEGMENT_ROW:
            segments.setdefault(row["file"], []).append({"start_s": row["start_s"], "end_s": row["end_s"], "windows": row["windows"], **verdict})
        elif row["row"] == OVERALL_ROW:
            found[row["file"]] = {"file": row["file"], "duration_s": row["duration_s"], "source_rate_hz": row["source_rate_hz"],
                                  **verdict, "warnings": list(row["warnings"] or [])}
    for name, analysis in found.items():
        analysis["segments"] = segments.get(name, [])
    return found
