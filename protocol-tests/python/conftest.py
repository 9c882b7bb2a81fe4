"""Shared by the Python tests: finding the metrobus binary and running one
broker on port 0 with an announce file, as the Rust harness does.

The binary is METROBUS_BIN, else $CARGO_TARGET_DIR/release/metrobus, else
~/.cache/metrobus-target/release/metrobus, else target/release/metrobus.
"""

import contextlib
import os
import pathlib
import signal
import subprocess
import time

import pytest

STARTUP_TIMEOUT_S = 60


def find_binary():
    explicit = os.environ.get("METROBUS_BIN")
    if explicit:
        if not os.path.isfile(explicit):
            pytest.fail(f"METROBUS_BIN={explicit} does not exist")
        return explicit
    candidates = []
    target = os.environ.get("CARGO_TARGET_DIR")
    if target:
        candidates.append(pathlib.Path(target) / "release" / "metrobus")
    candidates.append(pathlib.Path.home() / ".cache" / "metrobus-target" / "release" / "metrobus")
    repo = pathlib.Path(__file__).resolve().parents[2]
    candidates.append(repo / "target" / "release" / "metrobus")
    for c in candidates:
        if c.is_file():
            return str(c)
    pytest.fail(
        "metrobus binary not found (looked at: %s); build it with "
        "`cargo build --release --workspace` or set METROBUS_BIN / METROBUS_BOOTSTRAP"
        % ", ".join(str(c) for c in candidates)
    )


def log_tail(path, limit=64 * 1024):
    try:
        data = pathlib.Path(path).read_bytes()
    except OSError as e:
        return f"(cannot read {path}: {e})"
    return data[-limit:].decode("utf-8", "replace")


class Broker:
    """A running broker: `bootstrap` is its first listener's address,
    `listeners` every listener by name (from the announce file)."""

    def __init__(self, bootstrap, proc=None, log_path=None, listeners=None):
        self.bootstrap = bootstrap
        self.proc = proc
        self.log_path = log_path
        self.listeners = listeners or {}

    def assert_alive(self):
        if self.proc is not None and self.proc.poll() is not None:
            pytest.fail(f"broker exited with {self.proc.returncode}\n{log_tail(self.log_path)}")


def _read_announce(announce):
    """(kafka address, {listener name: address}), or None while the file
    is still being written."""
    kafka = None
    listeners = {}
    for line in announce.read_text().splitlines():
        if line.startswith("kafka="):
            kafka = line[len("kafka="):].strip()
        elif line.startswith("listener."):
            name, addr = line[len("listener."):].split("=", 1)
            listeners[name] = addr.strip()
    return (kafka, listeners) if kafka else None


@contextlib.contextmanager
def running_broker(tmp_path_factory, name, listeners="127.0.0.1:0", env=None):
    """Starts a broker in a fresh temp dir with `listeners` and the given
    METROBUS_* settings (the caller's own METROBUS_* variables are dropped),
    yields a Broker, then stops it with SIGTERM and prints its log tail.
    Fails the test if it exits during startup or during the tests."""
    binary = find_binary()
    d = tmp_path_factory.mktemp(name)
    announce = d / "announce"
    log_path = d / "broker.log"
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("METROBUS_")}
    child_env.update(env or {})
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                binary, "serve",
                "--listeners", listeners,
                "--http-listener", "127.0.0.1:0",
                "--data-dir", str(d / "data"),
                "--announce-file", str(announce),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=child_env,
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        found = None
        while found is None:
            if proc.poll() is not None:
                pytest.fail(
                    f"metrobus exited during startup with {proc.returncode}\n{log_tail(log_path)}"
                )
            if time.monotonic() > deadline:
                pytest.fail(
                    f"metrobus wrote no announce file within {STARTUP_TIMEOUT_S}s\n"
                    f"{log_tail(log_path)}"
                )
            # The file is written whole; retry if it is read mid-write.
            if announce.exists():
                found = _read_announce(announce)
            if found is None:
                time.sleep(0.01)
        kafka, named = found
        yield Broker(kafka, proc, log_path, named)
        if proc.poll() is not None:
            pytest.fail(
                f"broker exited during the tests with {proc.returncode}\n{log_tail(log_path)}"
            )
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        print(f"----- broker log {log_path} -----\n{log_tail(log_path)}")
