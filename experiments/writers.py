"""Run directories, the append-only chunk log, and atomic writers.

Every file but ``chunks.jsonl`` is written whole to a temporary file in the same
directory and moved into place with ``os.replace`` (atomic on POSIX), so a crash
leaves the old file or the new one, never half of one. ``chunks.jsonl`` is
append-only: one JSON line per finished unit, written with a single ``write``
on an ``O_APPEND`` descriptor and ``fsync``-ed; a torn last line (a crash in
the middle of that write) is dropped when the log is reopened.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np

__all__ = [
    "atomic_write_text",
    "atomic_write_bytes",
    "write_json",
    "write_csv",
    "save_figure",
    "pyplot",
    "new_run_dir",
    "ChunkLog",
    "to_jsonable",
]


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path, text: str) -> None:
    """Atomic UTF-8 text write."""
    atomic_write_bytes(path, text.encode("utf-8"))


def to_jsonable(obj):
    """Convert arrays and NumPy/JAX scalars to JSON values; non-finite -> null.

    JSON has no NaN or Infinity; ``None`` (null) keeps the file standard.
    """
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, str | bool) or obj is None:
        return obj
    if hasattr(obj, "shape") or isinstance(obj, np.generic):
        arr = np.asarray(obj)
        if arr.dtype == bool:
            return arr.tolist()
        if arr.dtype.kind in "iu":
            return arr.tolist()
        return to_jsonable(arr.astype(float).tolist())
    if isinstance(obj, int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return str(obj)


def write_json(path, obj) -> None:
    """Atomic JSON write (indent 2, non-finite numbers as null)."""
    text = json.dumps(to_jsonable(obj), indent=2, allow_nan=False)
    atomic_write_text(path, text + "\n")


def write_csv(path, rows: list[dict]) -> None:
    """Atomic CSV write of a list of flat dicts (columns from the first row)."""
    buf = io.StringIO()
    if rows:
        cols = list(rows[0])
        for r in rows[1:]:
            cols += [k for k in r if k not in cols]
        w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: _csv_cell(r.get(k)) for k in cols})
    atomic_write_text(path, buf.getvalue())


def _csv_cell(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    return v


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path) -> None:
    """Save a matplotlib figure as PNG atomically and close it."""
    plt = pyplot()

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def new_run_dir(out, name: str) -> Path:
    """Create ``out/<name>-<YYYYmmdd-HHMMSS>`` (with ``-2``, ``-3``… if taken).

    ``os.mkdir`` fails on an existing directory, so an earlier run is never
    overwritten, even by two runs started in the same second.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for i in range(1, 1000):
        path = out / (f"{name}-{stamp}" if i == 1 else f"{name}-{stamp}-{i}")
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a fresh run directory under {out}")


class ChunkLog:
    """Append-only JSON-lines log of finished units, keyed ``experiment/unit``.

    Args:
      path: the ``chunks.jsonl`` file (created if missing).
    """

    def __init__(self, path):
        self.path = Path(path)
        self.done: dict[str, dict] = {}
        self._repair_and_read()

    def _repair_and_read(self) -> None:
        if not self.path.exists():
            self.path.touch()
            return
        raw = self.path.read_bytes()
        end = raw.rfind(b"\n") + 1
        if end < len(raw):  # torn last line from a crash inside a write
            with open(self.path, "r+b") as fh:
                fh.truncate(end)
                os.fsync(fh.fileno())
        for line in raw[:end].decode("utf-8").splitlines():
            if line.strip():
                rec = json.loads(line)
                self.done[self.key(rec["experiment"], rec["unit"])] = rec

    @staticmethod
    def key(experiment: str, unit: str) -> str:
        return f"{experiment}/{unit}"

    def finished(self, experiment: str) -> dict[str, dict]:
        """unit -> result of the finished units of ``experiment``."""
        prefix = f"{experiment}/"
        return {
            k[len(prefix) :]: rec["result"]
            for k, rec in self.done.items()
            if k.startswith(prefix)
        }

    def seconds(self, experiment: str) -> dict[str, float]:
        """unit -> the seconds it took when it ran (as recorded, never re-timed)."""
        prefix = f"{experiment}/"
        return {
            k[len(prefix) :]: float(rec.get("seconds") or 0.0)
            for k, rec in self.done.items()
            if k.startswith(prefix)
        }

    def append(self, experiment: str, unit: str, result: dict, seconds: float) -> None:
        """Record one finished unit; a key already present is never written twice."""
        k = self.key(experiment, unit)
        if k in self.done:
            return
        rec = {
            "experiment": experiment,
            "unit": unit,
            "seconds": round(seconds, 4),
            "result": to_jsonable(result),
        }
        line = (json.dumps(rec, allow_nan=False) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.done[k] = rec
