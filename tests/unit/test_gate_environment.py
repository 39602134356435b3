"""What a command gate's process sees of the worker's environment, and what is masked."""

from __future__ import annotations

import pytest

from conveyor.cluster.gates import gate_process_environment, mask, secret_values

WORKER = {
    "PATH": "/usr/bin",
    "HOME": "/home/worker",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "TMPDIR": "/tmp/w",
    "KUBECONFIG": "/home/worker/.kube/config",
    "CONVEYOR_REGISTRY_PASSWORD": "hunter2-registry",
    "CONVEYOR_REGISTRY_USERNAME": "robot",
    "PREFECT_API_URL": "http://127.0.0.1:4200/api",
    "PREFECT_API_KEY": "pnu_abcdef",
    "PREFECT_API_AUTH_STRING": "admin:s3cret",
    "AWS_SECRET_ACCESS_KEY": "aws-key-value",
    "GITHUB_TOKEN": "ghp_tokenvalue",
    "SSH_AUTH_SOCK": "/tmp/ssh-agent.sock",
}


def test_a_gate_gets_only_the_basics_of_the_worker_and_what_it_is_given() -> None:
    given = {"CONVEYOR_DIGEST": "sha256:ab", "KUBECONFIG": "/cfg/target", "MODE": "smoke"}

    environment = gate_process_environment(WORKER, given)

    assert environment == {
        "PATH": "/usr/bin",
        "HOME": "/home/worker",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TMPDIR": "/tmp/w",
        "CONVEYOR_DIGEST": "sha256:ab",
        "KUBECONFIG": "/cfg/target",
        "MODE": "smoke",
    }


def test_without_a_kubeconfig_of_the_target_the_workers_is_passed_on() -> None:
    environment = gate_process_environment(WORKER, {})

    assert environment["KUBECONFIG"] == "/home/worker/.kube/config"
    assert "PREFECT_API_URL" not in environment


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("password=hunter2-registry!", "password=***!"),
        ("auth admin:s3cret and pnu_abcdef", "auth *** and ***"),
        ("aws-key-value ghp_tokenvalue", "*** ***"),
        ("user robot at /tmp/ssh-agent.sock", "user robot at /tmp/ssh-agent.sock"),
        ("gate token abcd", "gate token ***"),
        ("x", "x"),
    ],
)
def test_secret_values_are_masked_by_the_name_of_their_variable(text: str, masked: str) -> None:
    secrets = secret_values(WORKER, {"API_TOKEN": "abcd", "SHORT_KEY": "x"})

    assert mask(text, secrets) == masked


def test_a_secret_containing_another_is_masked_whole() -> None:
    secrets = secret_values({"A_KEY": "abcd", "B_KEY": "abcdefgh"})

    assert mask("abcdefgh", secrets) == "***"
