"""Run directories, the append-only chunk log, and atomic writers.

Every file but ``chunks.jsonl`` is written whole to a temporary file in the same
directory and moved into place with ``os.replace`` (atomic on POSIX), so a crash
leaves the old file or the new one, never half of one. ``chunks.jsonl`` is
append-only: one JSON line per finished unit, written with a single ``write``
on an ``O_APPEND`` descriptor and ``fsync``-ed; a torn last line (a crash in
the middle of that write) is dropped when the log is reopened, and a complete
line that is not a valid unit record (a corrupted disk block, a hand edit) is
moved to ``chunks.jsonl.corrupt`` so its unit is redone.

A run directory is used by one process at a time: :func:`run_lock` takes an
exclusive ``fcntl.flock`` on its ``.lock`` file for the whole run or resume (a
second one gets :class:`RunLocked`), and the lock goes with the process, so a
killed run never leaves a stale lock.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import tempfile
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: run directories are not locked
    fcntl = None

import numpy as np

__all__ = [
    "atomic_write_text",
    "atomic_write_bytes",
    "write_json",
    "write_csv",
    "save_figure",
    "pyplot",
    "new_run_dir",
    "run_lock",
    "RunDirError",
    "RunLocked",
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


class RunDirError(RuntimeError):
    """A run directory that cannot be created or used (one line, for the CLI)."""


class RunLocked(RunDirError):
    """Another process is running or resuming the same run directory."""


def new_run_dir(out, name: str) -> Path:
    """Create ``out/<name>-<YYYYmmdd-HHMMSS>`` (with ``-2``, ``-3``… if taken).

    ``os.mkdir`` fails on an existing directory, so an earlier run is never
    overwritten, even by two runs started in the same second. ``name`` must be
    a single path component (the config checks ``[run].name``); the directory
    is checked to lie directly inside ``out`` all the same.

    Raises:
      RunDirError: ``out`` cannot be created, or ``name`` would leave it.
    """
    out = Path(out)
    if not name or name in (".", "..") or "/" in name or os.sep in name:
        raise RunDirError(f"run name {name!r} is not a single directory name.")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunDirError(
            f"--out {out}: cannot create the folder for run directories: "
            f"{err.strerror or err}."
        ) from None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for i in range(1, 1000):
        path = out / (f"{name}-{stamp}" if i == 1 else f"{name}-{stamp}-{i}")
        if path.resolve().parent != out.resolve():
            raise RunDirError(f"run name {name!r} would write outside --out {out}.")
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue
        except OSError as err:
            raise RunDirError(
                f"--out {out}: cannot create a run directory: {err.strerror or err}."
            ) from None
    raise RunDirError(f"could not create a fresh run directory under {out}")


#: the lock file inside a run directory
LOCK_NAME = ".lock"


@contextlib.contextmanager
def run_lock(run_dir):
    """Hold an exclusive lock on ``run_dir`` (``fcntl.flock`` on ``run_dir/.lock``).

    Raises:
      RunLocked: another process holds it (a run or resume still going on).
    """
    path = Path(run_dir) / LOCK_NAME
    if fcntl is None:  # pragma: no cover - not POSIX
        yield
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise RunDirError(
            f"{run_dir}: cannot lock the run directory: {err.strerror or err}."
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode("ascii", "replace").strip()
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise RunLocked(
                f"{run_dir} is in use by another mlejax process{who}; wait for it "
                "to finish (or stop it), then resume."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


class ChunkLog:
    """Append-only JSON-lines log of finished units, keyed ``experiment/unit``.

    Args:
      path: the ``chunks.jsonl`` file (created if missing).
    """

    def __init__(self, path):
        self.path = Path(path)
        self.done: dict[str, dict] = {}
        #: 1-based numbers of the complete lines that were not valid unit
        #: records (moved to ``chunks.jsonl.corrupt``; their units are redone)
        self.corrupt_lines: list[int] = []
        #: 1-based numbers of lines repeating a unit already recorded (dropped)
        self.duplicate_lines: list[int] = []
        self._repair_and_read()

    @property
    def corrupt_path(self) -> Path:
        return self.path.with_name(self.path.name + ".corrupt")

    @staticmethod
    def _record(line: bytes) -> dict | None:
        """The unit record on ``line``, or None when it is not a valid one."""
        try:
            rec = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None
        if not (
            isinstance(rec, dict)
            and isinstance(rec.get("experiment"), str)
            and isinstance(rec.get("unit"), str)
            and isinstance(rec.get("result"), dict)
            and isinstance(rec.get("seconds", 0.0), int | float | None)
        ):
            return None
        return rec

    def _repair_and_read(self) -> None:
        if not self.path.exists():
            self.path.touch()
            return
        raw = self.path.read_bytes()
        end = raw.rfind(b"\n") + 1
        keep, bad = [], []
        for number, line in enumerate(raw[:end].split(b"\n")[:-1], start=1):
            if not line.strip():
                continue
            rec = self._record(line)
            if rec is None:
                self.corrupt_lines.append(number)
                bad.append(line)
                continue
            k = self.key(rec["experiment"], rec["unit"])
            if k in self.done:  # the first record of a unit wins
                self.duplicate_lines.append(number)
                continue
            self.done[k] = rec
            keep.append(line)
        if bad or self.duplicate_lines:
            if bad:  # keep the evidence next to the log
                with open(self.corrupt_path, "ab") as fh:
                    fh.write(b"".join(line + b"\n" for line in bad))
            atomic_write_bytes(self.path, b"".join(line + b"\n" for line in keep))
        elif end < len(raw):  # torn last line from a crash inside a write
            with open(self.path, "r+b") as fh:
                fh.truncate(end)
                os.fsync(fh.fileno())

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
