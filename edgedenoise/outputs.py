"""The one place that guards what edgedenoise writes (no torch; the runtime uses it).

Every command that writes a file or folder calls `guard(output, inputs)` before it opens
anything for writing, so that:

- an output that is one of the command's inputs (the same file, by any path or link), or a
  folder that holds an input file (a folder sink where a glob's frames are: `--source
  'fr[a]mes/*.png' --sink frames`), is refused and nothing is touched;
- a folder output that already holds images (an earlier run's frames) is refused, so a new
  run's frames never mix with an older run's (`refuse_used_folder`);
- an output that cannot be written is refused with the real cause (the folder does not exist
  and cannot be made, permission denied, read-only file system, it is a folder, ...), not
  with whatever the writing library says later;
- two runs never write one output at once: `OutputLock` holds `.<name>.lock` beside it for
  the run; a second run is refused while the first is alive (a lock left by a dead process
  is taken over);
- a file appears whole or not at all (atomic.py): it is written to a new hidden file beside it (`temp_beside`,
  made with O_EXCL, so never an existing file or a planted link) and renamed over the output
  when complete (`write_atomic`; the video sink does the same at its close). A run killed on the
  way leaves the previous output as it was, and at most a hidden `.<stem>.*.part<ext>` file.

Every refusal is a `DataError`, which the CLI prints as one line with exit status 2.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path

from .atomic import temp_beside, write_atomic  # noqa: F401  (part of this module's interface)
from .errors import DataError


def same_path(a: str | Path, b: str | Path) -> bool:
    """True when a and b name the same file or folder (links and relative paths resolved)."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def refuse_inputs(output: str | Path, inputs, what: str = "output", against: str = "") -> None:
    """DataError when `output` is one of `inputs` (files or folders), or the folder an input file is in.
    `against`: what `inputs` are where they are another output (e.g. "sink"), not inputs."""
    inputs = [inp for inp in inputs if inp is not None]
    for inp in inputs:
        if same_path(output, inp):
            if against:
                raise DataError(f"{what} {output} is the {against} {inp}: one would overwrite the other; choose "
                                f"another {what} (nothing was written)")
            kind = "folder" if Path(inp).is_dir() else "file"
            raise DataError(f"{what} {output} is the input {kind} {inp}: writing it would destroy the input; "
                            f"choose another {what} (nothing was written)")
    if not Path(output).is_dir():
        return
    parents: dict[Path, Path] = {}  # each input file's folder, once (a glob may give thousands of files)
    for inp in inputs:
        if not Path(inp).is_dir():
            parents.setdefault(Path(inp).parent, Path(inp))
    for parent, inp in parents.items():
        if same_path(output, parent):
            raise DataError(f"{what} {output} is the folder of the input {inp}: its files would be overwritten "
                            f"or read again; choose another {what} (nothing was written)")


def refuse_used_folder(folder: str | Path, what: str = "output") -> None:
    """DataError when `folder` already holds images: a new run's frames must not mix with an older
    run's (some of which the new run would overwrite and some not)."""
    from .frames import IMAGE_EXTS  # the image files every folder reader takes

    folder = Path(folder)
    if not folder.is_dir():
        return
    old = sorted(f.name for f in folder.iterdir() if f.suffix.lower() in IMAGE_EXTS and f.is_file())
    if old:
        first = old[0] + (", ..." if len(old) > 1 else "")
        raise DataError(f"{what} folder {folder} already holds {len(old)} image(s) ({first}): choose a new folder, "
                        f"or empty this one first (nothing was written)")


def check_writable(path: str | Path, folder: bool = False, what: str = "output") -> None:
    """DataError naming the real cause when `path` (a file, or a folder if `folder`) cannot be written.
    Creates missing parent folders, as writing would."""
    path = Path(path)
    if not folder and path.is_dir():
        raise DataError(f"{what} {path} is a folder: give a file name")
    if folder and path.exists() and not path.is_dir():
        raise DataError(f"{what} folder {path} is an existing file")
    d = path if folder else path.parent
    up = d
    while not up.exists() and up != up.parent:
        up = up.parent
    if not up.is_dir():
        raise DataError(f"cannot write the {what} {path}: {up} is a file, not a folder "
                        f"({os.strerror(errno.ENOTDIR)})")
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create the {what} folder {d}: {e.strerror or e}") from None
    probe = d / f".edgedenoise-write-test-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
        os.unlink(probe)
    except FileExistsError:
        pass
    except OSError as e:
        raise DataError(f"cannot write the {what} {path}: {e.strerror or e} ({d})") from None
    if not folder and path.exists() and not os.access(path, os.W_OK):
        raise DataError(f"cannot write the {what} {path}: {os.strerror(errno.EACCES)}")


def output_names(files: list[Path], suffix: str = ".png") -> list[str]:
    """One output name per input file of a folder, all different: `<stem><suffix>`, or `<name><suffix>`
    where stems (or a stem and a whole name) would clash (`a.jpg`, `a.png` and `a.jpg.png` give
    `a.jpg.png`, `a.png.png` and `a.jpg.png.png`). DataError if no injective naming is found."""
    names = [f.stem + suffix for f in files]
    full = [False] * len(files)
    while True:
        seen: dict[str, list[int]] = {}
        for i, n in enumerate(names):
            seen.setdefault(n, []).append(i)
        clashes = [i for ids in seen.values() if len(ids) > 1 for i in ids]
        if not clashes:
            return names
        changed = False
        for i in clashes:
            if not full[i]:
                names[i], full[i], changed = files[i].name + suffix, True, True
        if not changed:
            raise DataError(f"cannot give every input its own output name ({names[clashes[0]]} twice): "
                            f"rename the inputs")


def guard(output: str | Path, inputs=(), folder: bool = False, what: str = "output") -> Path:
    """Refuse an output that is an input or cannot be written; returns it as a Path."""
    refuse_inputs(output, inputs, what)
    check_writable(output, folder, what)
    return Path(output)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class OutputLock:
    """`.<name>.lock` beside an output for as long as a run writes it (a context manager)."""

    def __init__(self, output: str | Path, what: str = "output"):
        self.output = Path(output)
        self.path = self.output.parent / f".{self.output.name}.lock"
        self.what = what
        self.held = False

    def acquire(self) -> OutputLock:
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    pid = int(self.path.read_text().strip() or 0)
                except (OSError, ValueError):
                    pid = 0
                if pid and pid != os.getpid() and _alive(pid):
                    raise DataError(f"another edgedenoise run (pid {pid}) is writing {self.output}: wait for it, "
                                    f"or choose another {self.what} (lock {self.path})") from None
                self.path.unlink(missing_ok=True)  # left by a run that died: take it over
                continue
            except OSError as e:
                raise DataError(f"cannot write the {self.what} {self.output}: {e.strerror or e}") from None
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            self.held = True
            return self
        raise DataError(f"cannot lock {self.output} (lock {self.path} keeps coming back)")

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
