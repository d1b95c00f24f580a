"""serd batch's RESULTS: rows written as files finish, read back for --resume, and turned back into serd analyze's objects.

JSON Lines (.jsonl) are appended a file at a time. A Parquet RESULTS (.parquet) cannot grow in place: rows go to
a journal beside it (RESULTS.partial, JSON Lines) and become Parquet, with the rows of earlier runs, when the batch
ends. Either way a killed batch loses at most the files in flight. pyarrow is imported only for Parquet.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from serd.analyze import FileAnalysis
from serd.batchwork import AFFECT_FIELDS, ERROR_ROW, OVERALL_ROW, SEGMENT_ROW
from serd.errors import SerdError

JSONL_EXTENSIONS = (".jsonl", ".ndjson")
PARQUET_EXTENSIONS = (".parquet", ".pq")
JOURNAL_SUFFIX = ".partial"  # a Parquet RESULTS' journal of rows not yet in it
COLUMNS = ("file", "size_bytes", "mtime_ns", "row", "start_s", "end_s", "windows", "label", "confidence", "probabilities",
           "arousal", "valence", "duration_s", "source_rate_hz", "warnings", "error")
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
    """RESULTS opened for one batch: the keys of the files already done (with --resume), and a place for new rows."""

    def __init__(self, path: str | os.PathLike, labels: tuple[str, ...], resume: bool, current: dict[str, tuple] | None = None):
        """current maps the batch's files to their keys now: earlier rows of a file since changed are dropped."""
        self.path, self.labels, self.current = Path(path), labels, current or {}
        self.format = results_format(self.path)
        self.log_path = self.path.with_name(self.path.name + JOURNAL_SUFFIX) if self.format == "parquet" else self.path
        if self.format == "parquet":
            require_pyarrow()
        self.kept_rows = self._earlier_rows(resume)
        self.done = {row_key(row) for row in self.kept_rows if row["row"] == OVERALL_ROW}
        self._log = self.log_path.open("a", encoding="utf-8")

    def write(self, rows: list[dict]) -> None:
        """Append one file's rows (at once, then flushed: a kill cuts at most the file being written)."""
        self._log.write("".join(json.dumps(row) + "\n" for row in rows))
        self._log.flush()

    def close(self) -> None:
        """Done: a Parquet RESULTS gets every row (earlier runs' and the journal's) and the journal goes."""
        self._log.close()
        if self.format == "parquet":
            write_parquet(self.path, self.kept_rows + read_jsonl(self.log_path), self.labels)
            self.log_path.unlink()

    def _earlier_rows(self, resume: bool) -> list[dict]:
        """With --resume, the complete analyses already in RESULTS (rewritten without the rest); without it, none."""
        existing = [p for p in (self.path, self.log_path) if p.exists()]
        if existing and not resume:
            raise SerdError("%s exists: --resume adds to it (or remove it)" % existing[0])
        rows = read_parquet(self.path) if self.format == "parquet" and self.path.exists() else []
        rows += read_jsonl(self.log_path) if self.log_path.exists() else []
        kept = [row for row in complete_rows(rows) if self.current.get(row["file"], row_key(row)) == row_key(row)]
        if self.format == "parquet":
            if self.log_path.exists():
                write_parquet(self.path, kept, self.labels)
                self.log_path.unlink()
        elif len(kept) != len(rows) or _cut_line(self.log_path):
            _rewrite_jsonl(self.log_path, kept)
        return kept


def row_key(row: dict) -> tuple:
    """(file, size_bytes, mtime_ns) of a row: what --resume compares with the file as it is now."""
    return row["file"], row["size_bytes"], row["mtime_ns"]


def complete_rows(rows: list[dict]) -> list[dict]:
    """Rows of the files whose overall row was written (a file's rows end with it); a file's error rows are
    dropped so that --resume tries it again, and so are rows a killed batch wrote for a file it did not finish."""
    done = {row_key(row) for row in rows if row["row"] == OVERALL_ROW}
    return [row for row in rows if row["row"] != ERROR_ROW and row_key(row) in done]


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSON Lines file; a last line cut short by a kill is left out, any other bad line is a SerdError."""
    lines = path.read_text(encoding="utf-8").split("\n")
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):  # no newline after it: cut short
                break
            raise SerdError("%s:%d: not a JSON row of serd batch" % (path, number)) from None
    if any(set(row) != set(COLUMNS) for row in rows):
        raise SerdError("%s: not serd batch results (its rows lack the columns %s)" % (path, ", ".join(COLUMNS)))
    return rows


def _cut_line(path: Path) -> bool:
    """The file does not end with a newline (a kill cut its last row)."""
    if not path.exists() or path.stat().st_size == 0:
        return False
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) != b"\n"


def _rewrite_jsonl(path: Path, rows: list[dict]) -> None:
    """Replace the file with these rows (a new file renamed over it)."""
    scratch = path.with_name(path.name + ".tmp")
    scratch.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
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


def write_parquet(path: Path, rows: list[dict], labels: tuple[str, ...]) -> None:
    """Rows as a Parquet file (a new file renamed over path)."""
    pa = require_pyarrow()
    scratch = path.with_name(path.name + ".tmp")
    pa.parquet.write_table(pa.Table.from_pylist(rows, schema=parquet_schema(labels)), scratch)
    os.replace(scratch, path)


def read_parquet(path: Path) -> list[dict]:
    """Rows of a Parquet RESULTS."""
    pa = require_pyarrow()
    try:
        table = pa.parquet.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise SerdError("%s: cannot read Parquet results: %s" % (path, exc)) from None
    if tuple(table.column_names) != COLUMNS:
        raise SerdError("%s: not serd batch results (columns %s)" % (path, ", ".join(table.column_names)))
    return table.to_pylist()


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
