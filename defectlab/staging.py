"""Write a whole output folder atomically: build it in a hidden sibling, then rename it into place.

The hidden sibling is named `.<out>.<pid>.<random>.part`: a run killed outright (SIGKILL, power loss)
leaves it behind, and the next `staged_folder` for the same output removes it once that process is gone.
SIGTERM is turned into a normal exit while a folder is being built, so its clean-up runs.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import DefectlabError
from .imageio import apply_umask, atomic_write_bytes


def check_outside(out_dir: Path, protect: Path) -> None:
    """Refuse an output folder that contains or lies inside `protect` (the input): what is written there would be
    read back as input next time, and replacing it would delete what is being read."""
    a, b = Path(out_dir).resolve(), Path(protect).resolve()
    if a == b or a in b.parents or b in a.parents:
        raise DefectlabError(f"{out_dir}: the output folder must not contain or lie inside the input {protect}")


def check_destination(out_dir: Path, overwrite: bool, *, protect: Path | None = None, owner: str | None = None) -> None:
    """Refuse an existing output (unless `overwrite`) and any output that contains or lies inside
    `protect` (`check_outside`). With `owner` (the name of the listing file a previous
    `staged_folder(owner=...)` wrote), `overwrite` replaces a folder only when it is empty or every
    file in it is one that listing names: unrelated files are never deleted."""
    out_dir = Path(out_dir)
    if protect is not None:
        check_outside(out_dir, protect)
    if out_dir.exists() or out_dir.is_symlink():
        if not out_dir.is_dir() or out_dir.is_symlink():
            raise DefectlabError(f"{out_dir}: exists and is not a folder")
        if not overwrite:
            raise DefectlabError(f"{out_dir}: output folder already exists; pass overwrite=True (--overwrite) to replace it")
        if owner is not None:
            foreign = _foreign_files(out_dir, owner)
            if foreign:
                raise DefectlabError(f"{out_dir}: holds {len(foreign)} file(s) this tool did not write (e.g. "
                                     f"{foreign[0]}); --overwrite replaces only its own output: move them away "
                                     "or choose another folder")


def _foreign_files(folder: Path, owner: str) -> list[str]:
    """Files under `folder` that its `owner` listing does not name (all of them when there is no listing)."""
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir())
    listing = folder / owner
    ours: set[str] = {owner}
    if listing.is_file():
        try:
            ours |= set(json.loads(listing.read_text())["files"])
        except (ValueError, KeyError, TypeError):
            pass  # an unreadable listing protects nothing: every file counts as foreign
    else:
        ours = set()
    return [f for f in files if f not in ours]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def remove_stale_stages(out_dir: Path) -> list[Path]:
    """Remove hidden `.part` / `.old` siblings of `out_dir` left by a process that no longer runs (an `.old`
    one still holding the previous output when `out_dir` is missing gives it back first)."""
    out_dir = Path(out_dir)
    removed = []
    if not out_dir.parent.is_dir():
        return removed
    prefix = f".{out_dir.name}."
    for sib in out_dir.parent.iterdir():
        name = sib.name
        if not (name.startswith(prefix) and name.endswith((".part", ".old")) and sib.is_dir()):
            continue
        pid = name[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            previous = sib / "previous"
            if name.endswith(".old") and previous.is_dir() and not out_dir.exists():
                os.replace(previous, out_dir)  # killed between the two renames: the old output comes back
            shutil.rmtree(sib, ignore_errors=True)
            removed.append(sib)
    return removed


@contextmanager
def exit_on_sigterm() -> Iterator[None]:
    """Inside the block, SIGTERM raises SystemExit (so `finally` clean-ups run) instead of killing outright."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is signal.SIG_IGN:
        yield
        return

    def terminate(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _mkdtemp(out_dir: Path, suffix: str) -> Path:
    path = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.{os.getpid()}.", suffix=suffix))
    apply_umask(path, folder=True)  # mkdtemp makes 0700; the finished folder must be as readable as mkdir's
    return path


@contextmanager
def staged_folder(out_dir: str | os.PathLike, overwrite: bool = False, *, owner: str | None = None) -> Iterator[Path]:
    """Yield an empty temporary folder beside `out_dir`; on success it replaces `out_dir`, on any
    error (or SIGTERM) it is deleted, so `out_dir` is either the old folder or the complete new one.

    `owner`: name of a listing file (JSON, `{"files": [...]}`) written into the finished folder, naming
    every file in it; with it, `overwrite` refuses a folder holding files the listing does not name."""
    out_dir = Path(out_dir)
    check_destination(out_dir, overwrite, owner=owner)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DefectlabError(f"{out_dir}: cannot create its parent folder ({exc.strerror or exc})") from exc
    remove_stale_stages(out_dir)
    with exit_on_sigterm():
        try:
            stage = _mkdtemp(out_dir, ".part")
        except OSError as exc:
            raise DefectlabError(f"{out_dir}: cannot write beside it ({exc.strerror or exc})") from exc
        try:
            yield stage
            if owner is not None:
                files = sorted(str(p.relative_to(stage)) for p in stage.rglob("*") if not p.is_dir())
                atomic_write_bytes(stage / owner, json.dumps({"files": files}, indent=1).encode())
            check_destination(out_dir, overwrite, owner=owner)  # someone may have created it meanwhile
            old = None
            if out_dir.exists():
                old = _mkdtemp(out_dir, ".old")
                os.replace(out_dir, old / "previous")
            try:
                os.replace(stage, out_dir)
            except OSError as exc:
                if old is not None:
                    os.replace(old / "previous", out_dir)
                raise DefectlabError(f"{out_dir}: could not move the finished output into place ({exc})") from exc
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        finally:
            if stage.exists():
                shutil.rmtree(stage, ignore_errors=True)


def write_step_folder(run: str | os.PathLike, step: int, blobs: dict[str, bytes], state: dict, *,
                      state_name: str = "state.json", latest: str = "latest", keep: int = 2) -> Path:
    """A training checkpoint `run/step-NNNNNNN/`: the files `blobs` plus `state_name` (`state` with the SHA-256 of
    each file under "sha256" and the step), built beside its final name (per process: two writers of the same bytes
    do not collide) and renamed into place, then `run/<latest>` naming it; the newest `keep` are kept. A crash
    mid-write leaves the previous checkpoint and pointer untouched."""
    import hashlib

    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    final, tmp = run / f"step-{step:07d}", run / f".step-{step:07d}.{os.getpid()}.part"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name, data in blobs.items():
        (tmp / name).write_bytes(data)
    sha = {name: hashlib.sha256(data).hexdigest() for name, data in blobs.items()}
    (tmp / state_name).write_text(json.dumps(dict(state, step=step, sha256=sha), indent=1))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    atomic_write_bytes(run / latest, final.name.encode())
    for old in sorted(run.glob("step-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final

