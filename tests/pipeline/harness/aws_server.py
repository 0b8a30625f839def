"""The buildspec harness's aws (harness/aws) served: `python aws_server.py SOCKET` imports boto3, loads the
models of the services the stand-in calls into one botocore loader, listens on the Unix socket SOCKET, and
runs each call handed to it (harness/aws with HARNESS_AWS_SOCKET=SOCKET) in a fork of itself, until
terminated.

A call sends its stdin, stdout and stderr (SCM_RIGHTS) with an 8-byte length, then its argv, environment,
working directory and umask as JSON of that length; the fork takes them on, sets up a FRESH boto3 default
session (its credentials, region and endpoint the caller's environment's: the IAM proxy authorizes each
request by the key that signed it) over the warm loader, runs the stand-in's main(), and sends back the exit
status Python would have exited with.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import signal
import socket
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import botocore.session

STAND_IN = Path(__file__).resolve().with_name("aws")
SERVICES = ("ecr", "ssm", "ecs", "sts", "s3", "sns")  # those the stand-in has clients of: their models warmed


def stand_in() -> ModuleType:
    """harness/aws as a module (it has no .py: it is the buildspecs' `aws`)."""
    loader = importlib.machinery.SourceFileLoader("harness_aws", str(STAND_IN))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


def warm_loader() -> Any:
    """A botocore data loader holding the services' models, endpoint rulesets and partitions: loaded by
    building a client of each (dummy credentials and endpoint: nothing is sent)."""
    session = botocore.session.get_session()
    for service in SERVICES:
        session.create_client(
            service, region_name="eu-west-1", endpoint_url="http://127.0.0.1:9",
            aws_access_key_id="warm", aws_secret_access_key="warm",
        )  # fmt: skip
    return session.get_component("data_loader")


def received(connection: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            raise EOFError(f"the caller hung up {size - len(data)} bytes short of its request")
        data += chunk
    return data


def exit_status(program: Callable[[], None]) -> int:
    """What Python exits with when `program` is its program: SystemExit's code (a message printed to stderr,
    then 1), or 1 after an uncaught exception's traceback."""
    try:
        program()
    except SystemExit as done:
        if done.code is None or isinstance(done.code, int):
            return done.code or 0
        print(done.code, file=sys.stderr)
        return 1
    except BaseException:  # noqa: BLE001 -- reported as Python reports it
        sys.excepthook(*sys.exc_info())
        return 1
    return 0


def answer(connection: socket.socket, loader: Any, main: Callable[[], None]) -> None:
    """One call, in a fork: the caller's stdin, stdout and stderr, arguments, environment, working directory
    and umask taken on, a fresh boto3 default session over the warm loader, main() run, its status sent."""
    header, fds, _, _ = socket.recv_fds(connection, 8, 3)
    if not fds:  # a probe: the check that the server answers
        return
    header += received(connection, 8 - len(header))
    request = json.loads(received(connection, int.from_bytes(header, "big")))
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    sys.stdout.reconfigure(line_buffering=os.isatty(1))  # line-buffered on a terminal, as Python sets it up
    os.chdir(request["cwd"])
    os.umask(request["umask"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = request["argv"]
    session = botocore.session.get_session()  # reads the caller's environment, now os.environ
    session.register_component("data_loader", loader)
    boto3.setup_default_session(botocore_session=session)
    status = exit_status(main)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:  # its reader gone: Python would exit with 120
            status = status or 120
    for fd in (0, 1, 2):  # closed before the caller exits: its reader sees the end of the call's output
        os.close(fd)
    connection.sendall(str(status).encode())


def serve(path: str) -> None:
    main = stand_in().main
    loader = warm_loader()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the forks reaped as they end
    while True:
        connection, _ = listener.accept()
        if os.fork() == 0:
            listener.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the call's subprocesses (docker) are waited for
            code = 0
            try:
                answer(connection, loader, main)
            except BaseException:  # noqa: BLE001 -- to the caller's stderr once answer() has it, else the server's
                traceback.print_exc()
                code = 1
            finally:
                sys.stderr.flush()
                os._exit(code)
        connection.close()


if __name__ == "__main__":
    serve(sys.argv[1])
