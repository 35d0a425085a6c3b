"""The template process of `PreloadedRunLauncher` (launcher.py): it imports Dagster and the data
libraries once, then forks a run worker per request.

    python -m wflog_assets.defs.warm

Each line on stdin is a request, `{"args": <serialized ExecuteRunArgs>, "env": {...}}`; the
template forks, answers `{"pid": <the worker's pid>}` on stdout, and goes on. The worker runs
the run as `dagster api execute_run` does, in the request's environment, and exits. The template
exits when its stdin closes (the launcher's process ended); workers running then go on.

It has no thread, so forking it is safe; a worker starts with the template's imports and its
frozen heap (heap.py) and imports only the project's own modules.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import traceback

# What a run worker imports before it reads a line. The last is the package's process settings:
# importing it freezes what the others loaded (heap.py), so no run's collections walk them.
PRELOAD = (
    "dagster",
    "dagster._cli.api",
    "dagster._core.storage.runs.sqlite",
    "dagster_aws.s3",
    "boto3",
    "sqlalchemy.orm",
    "pyarrow",
    "pyarrow.compute",
    "pyarrow.dataset",
    "pyarrow.json",
    "pyarrow.parquet",
    "pyiceberg.catalog.rest",
    "pyiceberg.catalog.sql",
    "pyiceberg.io.pyarrow",
    "pyiceberg.table",
    "wflog_assets.heap",
)


def work(serialized_args: str, environment: dict[str, str]) -> int:
    """A run worker: Dagster's `execute_run` for the run `serialized_args` names, in
    `environment` (the launcher's when it launched the run, not the template's)."""
    os.environ.clear()
    os.environ.update(environment)
    from dagster._cli.api import execute_run_command

    try:
        execute_run_command.main(args=[serialized_args], standalone_mode=False)
    except SystemExit as exc:  # a failed run with set_exit_code_on_failure
        return exc.code if isinstance(exc.code, int) else 1
    return 0


def _fork(request: dict[str, object]) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the worker waits for its own children
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(2, 1)  # stdout is the template's answer pipe: the worker prints to stderr
        args, env = request["args"], request["env"]
        if not isinstance(args, str) or not isinstance(env, dict):
            raise TypeError("a request holds the run's serialized args (text) and an env (a mapping)")
        code = work(args, env)
    except BaseException:  # noqa: BLE001 - the worker's last word, whatever it is, then exit
        traceback.print_exc()  # to the daemon's log; run monitoring fails the run
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # the template's state (its pipes, its atexit) is not the worker's


def main() -> None:
    for name in PRELOAD:
        importlib.import_module(name)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # finished workers are reaped by the kernel
    for line in sys.stdin:
        pid = _fork(json.loads(line))
        sys.stdout.write(json.dumps({"pid": pid}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
