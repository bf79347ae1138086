"""Running the installed `kling-pipe` as a user does, on a fresh copy of the examples.

The one place that knows where the checkout is (`REPO`), how the console script is started
(`kp` to run it to the end, `Running` to act on it while it runs) and how the examples are
copied out of the working tree (`copy_specs`, `copy_frames`): no test reads or writes
`specs/` in place, so a newcomer's own `kling-pipe run specs/demo.toml` changes nothing here.
"""

from __future__ import annotations

import fcntl
import os
import pty
import queue
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import attrs

REPO = Path(__file__).resolve().parent.parent
SPECS = REPO / "specs"
SCRIPT = Path(sys.executable).with_name("kling-pipe")
#: What a user's own runs leave in specs/: never copied into a test's folder.
RUN_RECORDS = ("renders", "*.kling-state", "*.lock.json", "*.lock.json.tmp")


def copy_specs(dest: Path) -> Path:
    """Copy specs/ (without renders or run records) to *dest*/specs and return that folder."""
    shutil.copytree(SPECS, dest / "specs", ignore=shutil.ignore_patterns(*RUN_RECORDS))
    return dest / "specs"


def copy_frames(dest: Path) -> Path:
    """Copy the example frames (specs/frames) to the folder *dest* and return it."""
    shutil.copytree(SPECS / "frames", dest)
    return dest


def user_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without the caller's API key, plus *env*."""
    full = {k: v for k, v in os.environ.items() if k != "WAVESPEED_API_KEY"}
    full.update(env or {})
    return full


def kp(
    *args: str | Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run the console script without a terminal and without the caller's API key.

    Without *cwd* it runs in an empty folder thrown away afterwards, never in the checkout.
    """
    if cwd is None:
        with tempfile.TemporaryDirectory(prefix="kp-") as empty:
            return kp(*args, env=env, cwd=Path(empty), timeout=timeout)
    return subprocess.run(
        [str(SCRIPT), *map(str, args)],
        capture_output=True,
        text=True,
        env=user_env(env),
        cwd=cwd,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


@attrs.frozen
class Finished:
    """How a `Running` process ended: its exit code and everything it printed."""

    returncode: int
    stdout: str
    stderr: str


class Running:
    """The console script started in the background, its stderr read line by line.

    Tests act at events (`wait_for` a line of progress), never after a number of seconds.
    """

    def __init__(self, *args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [str(SCRIPT), *map(str, args)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=user_env(env),
            cwd=cwd,
        )
        self.stderr_lines: list[str] = []
        self._stdout: list[str] = []
        self._new_lines: queue.Queue[str | None] = queue.Queue()
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        self._readers = [
            threading.Thread(target=self._read_stderr, args=(self.process.stderr,), daemon=True),
            threading.Thread(target=self._read_stdout, args=(self.process.stdout,), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stderr(self, stream: IO[str]) -> None:
        with stream:
            for line in stream:
                self.stderr_lines.append(line)
                self._new_lines.put(line)
        self._new_lines.put(None)

    def _read_stdout(self, stream: IO[str]) -> None:
        with stream:
            self._stdout.extend(stream)

    def wait_for(
        self, wanted: str | Callable[[str], bool], *, count: int = 1, timeout_s: float = 120
    ) -> str | None:
        """Return the *count*-th stderr line (from now on) containing *wanted* or satisfying it.

        Return None if the process closed its stderr (it ended) before that line came.
        *timeout_s* only guards against a hang; it is not part of what is tested.
        """
        matches = wanted if callable(wanted) else (lambda line: wanted in line)
        deadline = time.monotonic() + timeout_s
        found = 0
        while True:
            try:
                line = self._new_lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                msg = f"no line matching {wanted!r} within {timeout_s} s"
                raise AssertionError(msg) from None
            if line is None:
                self._new_lines.put(None)  # later waits see the end too
                return None
            if matches(line):
                found += 1
                if found == count:
                    return line

    def send_signal(self, sig: signal.Signals) -> None:
        """Send *sig* to the process if it is still running."""
        if self.process.poll() is None:
            self.process.send_signal(sig)

    def finish(self, timeout_s: float = 120) -> Finished:
        """Wait for the process to end (a hang guard of *timeout_s*); return what it printed."""
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        finally:
            for reader in self._readers:
                reader.join()
        return Finished(self.process.returncode, "".join(self._stdout), "".join(self.stderr_lines))

    def kill(self) -> Finished:
        """SIGKILL the process (as a closed laptop would) and return what it printed."""
        self.send_signal(signal.SIGKILL)
        return self.finish()


def wait_until(condition: Callable[[], object], *, what: str, timeout_s: float = 60) -> None:
    """Poll *condition* until it holds, for state that announces itself by no event.

    *timeout_s* only guards against a hang; it is not part of what is tested.
    """
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s} s")
        time.sleep(0.01)


def kp_on_a_terminal(
    *args: str | Path, answer: bytes, cwd: Path, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """Run the console script on a pseudo-terminal (40 x 120), as a user at a shell does.

    Types *answer* once the question ``[y/N] `` has been printed (``b"\x04"`` is Ctrl-D,
    end of input) and returns the exit code, what was printed up to the question (included)
    and what after it. stdin, stdout and stderr are all the terminal.
    """
    prompt, timeout = b"[y/N] ", 120
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen(
        [str(SCRIPT), *map(str, args)],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=user_env({"TERM": "xterm-256color", "COLUMNS": "", "LINES": "", **(env or {})}),
        cwd=cwd,
        start_new_session=True,
    )
    os.close(slave)
    deadline = time.monotonic() + timeout
    seen = b""
    typed_at: int | None = None
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no end after {timeout} s; printed: {seen.decode()!r}")
            ready, _, _ = select.select([master], [], [], min(left, 1.0))
            if not ready:
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the terminal's other side closed, the process ended
                break
            if not chunk:
                break
            seen += chunk
            if typed_at is None and prompt in seen:
                typed_at = seen.index(prompt) + len(prompt)
                os.write(master, answer)
        code = process.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
            process.wait()
    text = seen.decode("utf-8", "replace")
    cut = len(seen[:typed_at].decode("utf-8", "replace")) if typed_at is not None else len(text)
    return code, text[:cut], text[cut:]
