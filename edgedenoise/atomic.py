"""Files that appear whole or not at all (no torch; the runtime uses it; imports only errors.py).

A file is written to a new hidden file in the same folder, `.<stem>.<random>.part<suffix>`, made
with O_EXCL (so never an existing file or a planted link), and renamed over its final name once
complete. A process killed on the way leaves the previous file as it was.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import DataError

_UMASK = os.umask(0o022)  # read once, at import (os.umask can only be read by setting it)
os.umask(_UMASK)


def temp_beside(path: str | Path) -> Path:
    """A new, empty, hidden file in `path`'s folder, named `.<stem>.<random>.part<suffix>` (the
    suffix kept: a video writer picks its container by it), with the permissions a new file gets;
    rename it over `path` (os.replace) once it is complete."""
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".part{path.suffix}")
    os.close(fd)
    usual_mode(name)
    return Path(name)


def usual_mode(path: str | Path) -> None:
    """Give `path` the permissions a new file gets (0666 less the umask): mkstemp makes it 0600, and
    so do writers that replace the file (safetensors' save_file)."""
    os.chmod(path, 0o666 & ~_UMASK)


def write_atomic(path: str | Path, data: bytes | memoryview, what: str = "output") -> Path:
    """Write `data` to `path` whole or not at all (temp_beside, then a rename: a planted link at
    `path` is replaced, never followed). DataError with the cause (a full disk, ...) otherwise."""
    path = Path(path)
    try:
        tmp = temp_beside(path)
    except OSError as e:
        raise DataError(f"cannot write the {what} {path}: {e.strerror or e}") from None
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise DataError(f"cannot write the {what} {path}: {e.strerror or e}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
