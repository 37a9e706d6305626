"""The command line: run, validate, version and help, with their exit codes."""

import os
import re
import subprocess

import pytest
import yaml

import harness
from harness import route

CLI_TIMEOUT_S = 10


def run_cli(*args):
    binary = harness.require_gatehouse_binary()
    return subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True,
                          timeout=CLI_TIMEOUT_S, stdin=subprocess.DEVNULL)


def valid_config():
    return harness.base_config(harness.free_port(), harness.free_port(),
                               [route("app.test", "http://127.0.0.1:9")])


def write_with_errors(path):
    """A config with two independent errors; returns {key path: line}."""
    lines = yaml.safe_dump(valid_config(), sort_keys=False).splitlines()
    errors = {}
    for index, line in enumerate(lines):
        if line.startswith("threads:"):
            lines[index] = "threads: lots"
            errors["threads"] = index + 1
        if line.strip().startswith("idle:"):
            lines[index] = line.split("idle:")[0] + "idle: forever"
            errors["timeouts.idle"] = index + 1
    assert len(errors) == 2
    path.write_text("\n".join(lines) + "\n")
    return errors


def test_version_prints_the_name_and_a_version():
    result = run_cli("version")
    assert result.returncode == 0
    assert re.search(r"gatehouse\D*\d+\.\d+", result.stdout), result.stdout


def allocator_line(result):
    lines = [line for line in result.stdout.splitlines() if line.startswith("allocator: ")]
    assert len(lines) == 1, result.stdout
    return lines[0]


def test_version_shows_that_mimalloc_serves_malloc():
    line = allocator_line(run_cli("version"))
    if "built without mimalloc" in line:
        pytest.skip("this build has GATEHOUSE_MIMALLOC=OFF")
    assert re.fullmatch(r"allocator: mimalloc \d+\.\d+\.\d+", line), line

    # The check looks at where malloc's blocks come from, not at what was linked: with glibc
    # loaded ahead of everything, glibc's malloc wins and the binary must say so.
    libc = subprocess.run(["ldd", str(harness.require_gatehouse_binary())], capture_output=True,
                          text=True, check=True, timeout=CLI_TIMEOUT_S).stdout
    libc_path = re.search(r"libc\.so\.6 => (\S+)", libc).group(1)
    result = subprocess.run([str(harness.require_gatehouse_binary()), "version"],
                            capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
                            env={**os.environ, "LD_PRELOAD": libc_path})
    assert "does not serve malloc" in allocator_line(result), result.stdout


def test_help_exits_0():
    result = run_cli("--help")
    assert result.returncode == 0
    assert "run" in result.stdout + result.stderr


def test_an_unknown_command_exits_2():
    assert run_cli("launch-rockets").returncode == 2


@pytest.mark.parametrize("command", ["run", "validate"])
def test_a_command_without_config_exits_2(command):
    assert run_cli(command).returncode == 2


def test_validate_accepts_a_valid_config(tmp_path):
    path = tmp_path / "good.yaml"
    path.write_text(yaml.safe_dump(valid_config()))
    result = run_cli("validate", "--config", path)
    assert result.returncode == 0, result.stderr


def test_validate_rejects_an_invalid_config_with_exit_2(tmp_path):
    path = tmp_path / "bad.yaml"
    write_with_errors(path)
    assert run_cli("validate", "--config", path).returncode == 2


def test_validate_reports_every_error_as_file_line_column_key_message(tmp_path):
    path = tmp_path / "bad.yaml"
    errors = write_with_errors(path)
    result = run_cli("validate", "--config", path)
    for key_path, line in errors.items():
        pattern = rf"^{re.escape(str(path))}:{line}:\d+: {re.escape(key_path)}: \S"
        assert re.search(pattern, result.stderr, re.MULTILINE), (
            f"no line matching {pattern!r} in:\n{result.stderr}")


def test_validate_rejects_a_missing_file_with_exit_2(tmp_path):
    result = run_cli("validate", "--config", tmp_path / "absent.yaml")
    assert result.returncode == 2
    assert "absent.yaml" in result.stderr


def test_run_with_an_invalid_config_exits_2(tmp_path):
    path = tmp_path / "bad.yaml"
    write_with_errors(path)
    result = run_cli("run", "--config", path)
    assert result.returncode == 2
