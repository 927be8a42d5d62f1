"""One logger setup for every job, so each job log carries the same timestamps and progress lines.

`get_logger` also installs a `sys.excepthook` that appends an uncaught exception, with its traceback, to the
job's log file before handing it on to the previous hook (which still prints it to stderr): a failed job's log
then ends with the error rather than at its last info line.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from types import TracebackType

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Log files the exception hook writes to (absolute path -> logger name), in the order they were registered.
_EXCEPTION_LOGS: dict[str, str] = {}
_HOOK_MARK = "writes_job_logs"


def write_exception(
    log_path: str | os.PathLike,
    name: str,
    exc_type: type[BaseException],
    exc: BaseException,
    tb: TracebackType | None,
) -> None:
    """Append one ERROR record with the exception and its traceback to a log file; never raise."""
    record = logging.LogRecord(name, logging.ERROR, "", 0, "uncaught %s, the job failed", (exc_type.__name__,), None)
    text = logging.Formatter(FORMAT).format(record)
    lines = "".join(traceback.format_exception(exc_type, exc, tb))
    try:
        os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
        with open(log_path, "a") as handle:
            handle.write(f"{text}\n{lines}")
    except OSError:
        pass  # the previous hook still reports the exception on stderr


def _log_uncaught(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    """Write an uncaught exception to every registered job log."""
    for path, name in list(_EXCEPTION_LOGS.items()):
        write_exception(path, name, exc_type, exc, tb)


def install_exception_hook(log_path: str | os.PathLike, name: str = "uncaught") -> None:
    """Register a log file for uncaught exceptions; install the hook once, chaining to the hook found then."""
    _EXCEPTION_LOGS.setdefault(os.path.abspath(log_path), name)
    if getattr(sys.excepthook, _HOOK_MARK, False):
        return
    previous = sys.excepthook

    def hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        """Log the exception to the job logs, then let the previous hook report it."""
        try:
            _log_uncaught(exc_type, exc, tb)
        finally:
            previous(exc_type, exc, tb)

    setattr(hook, _HOOK_MARK, True)
    sys.excepthook = hook


def get_logger(name: str, log_path: str | os.PathLike | None = None) -> logging.Logger:
    """Return a logger writing to stderr and, when given, to the job's log file (uncaught exceptions included)."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    formatter = logging.Formatter(FORMAT)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(formatter)
    logger.addHandler(stream)
    if log_path is not None:
        os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
        file_handler = logging.FileHandler(log_path, mode="a")
        file_handler.setFormatter(formatter)
        logger.addHandler(file_handler)
        install_exception_hook(log_path, name)
    return logger
