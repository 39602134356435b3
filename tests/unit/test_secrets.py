"""Secrets stay out of what Conveyor records and shows: Secret values and sensitive parameters
as hashes, URLs without credentials; a Secret's `stringData` compared as the `data` it becomes."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from conveyor.bundles.compare import compare
from conveyor.bundles.parameters import restore_sensitive, shown, withhold_sensitive
from conveyor.bundles.render import Rendered, resolve_parameters
from conveyor.bundles.schema import parse_parameter_schema
from conveyor.bundles.source import Source
from conveyor.cluster import drift
from conveyor.cluster.ordering import ObjectRef
from conveyor.config.model import Cluster, Target
from conveyor.errors import RenderError, SourceError, StateError
from conveyor.kit.digests import json_digest
from conveyor.kit.redaction import short_hash, value_hash, without_userinfo
from conveyor.promotion.reports import Provenance, approval_form
from conveyor.records import state
from tests.unit.conftest import SourceBuilder

SECRET = "hunter2-s3cr3t"
DIGEST = "sha256:" + "ab" * 32


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://user:token@git.example/web.git", "https://git.example/web.git"),
        ("https://token@git.example/web.git", "https://git.example/web.git"),
        ("ssh://git@git.example:22/web.git", "ssh://git.example:22/web.git"),
        ("https://u:p%40ss@git.example/x", "https://git.example/x"),
        ("https://u:p@ss@git.example/x", "https://git.example/x"),
        ("https://git.example/a@b", "https://git.example/a@b"),
        ("https://git.example/web.git", "https://git.example/web.git"),
        ("git@github.com:org/web.git", "git@github.com:org/web.git"),
        ("/srv/git/web", "/srv/git/web"),
        (
            "`git clone --mirror -- https://u:t@h/r.git /tmp/x` failed: fatal: https://u:t@h/r.git",
            "`git clone --mirror -- https://h/r.git /tmp/x` failed: fatal: https://h/r.git",
        ),
        ("mail alice@example.com", "mail alice@example.com"),
    ],
)
def test_urls_lose_their_user_info(text: str, expected: str) -> None:
    assert without_userinfo(text) == expected


def test_a_short_hash_is_the_start_of_the_full_one() -> None:
    assert short_hash(SECRET) == value_hash(SECRET)[:15] + "…"
    assert SECRET not in short_hash(SECRET)


def test_a_recorded_secret_is_a_slow_hash_not_a_plain_sha256() -> None:
    """A plain sha256 in git lets a weak password be guessed offline at GPU speed."""
    assert value_hash(SECRET).startswith("scrypt:")
    assert value_hash(SECRET)[7:] != json_digest(SECRET)[7:]
    assert value_hash(SECRET) == value_hash(SECRET) != value_hash(SECRET + "!")


def test_a_secret_recorded_before_as_sha256_is_still_restored() -> None:
    older = {"password": {"sensitive": json_digest(SECRET)}, "replicas": 2}
    content = state.desired_to_yaml(desired(older))
    read = state.desired_from_yaml(content, "apps/web/dev.yaml").parameters
    assert restore_sensitive(read, {"password": SECRET}, "web/dev") == {
        "password": SECRET,
        "replicas": 2,
    }
    with pytest.raises(RenderError, match="is not the one recorded"):
        restore_sensitive(read, {"password": "changed"}, "web/dev")


def secret(**fields: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, **fields}


@pytest.mark.parametrize(
    ("desired", "stored"),
    [
        (secret(stringData={"p": "x"}), secret(data={"p": b64("x")})),
        (
            secret(data={"u": b64("a"), "p": b64("old")}, stringData={"p": "new"}),
            secret(data={"u": b64("a"), "p": b64("new")}),
        ),
        (secret(stringData={"p": "é"}), secret(data={"p": b64("é")})),
        (secret(data={"p": b64("x")}), secret(data={"p": b64("x")})),
        (
            {"apiVersion": "v1", "kind": "ConfigMap", "stringData": {"p": "x"}},
            {"apiVersion": "v1", "kind": "ConfigMap", "stringData": {"p": "x"}},
        ),
    ],
    ids=["string-data", "string-data-wins", "utf-8", "data-only", "not-a-secret"],
)
def test_a_secret_is_compared_as_the_api_server_stores_it(
    desired: dict[str, Any], stored: dict[str, Any]
) -> None:
    assert drift.as_stored(desired) == stored
    assert drift.object_drift(desired, stored) == []


@pytest.mark.parametrize(
    ("desired", "live", "path"),
    [
        (secret(stringData={"p": SECRET}), secret(data={"p": b64("other")}), "data.p"),
        (secret(data={"p": b64(SECRET)}), secret(), "data"),
        (secret(stringData={"p": SECRET}), secret(data={}), "data.p"),
    ],
)
def test_a_drifting_secret_shows_hashes_never_values(
    desired: dict[str, Any], live: dict[str, Any], path: str
) -> None:
    ref = ObjectRef("v1", "Secret", "ns", "s")
    found = drift.ObjectDrift(ref, fields=tuple(drift.object_drift(desired, live)))

    assert [f.path for f in found.fields] == [path]
    shown_text = found.describe() + str(found.rows()) + str(found.as_dict())
    for value in (SECRET, b64(SECRET), "other", b64("other")):
        assert value not in shown_text
    assert "scrypt:" in shown_text


SCHEMA = parse_parameter_schema(
    {
        "type": "object",
        "properties": {
            "password": {"type": "string", "writeOnly": True, "minLength": 20},
            "replicas": {"type": "integer"},
        },
    },
    "bundle.yaml",
)


def test_write_only_marks_a_parameter_sensitive() -> None:
    assert SCHEMA.sensitive_names == frozenset({"password"})
    with pytest.raises(SourceError, match=r"properties\.p\.writeOnly: must be true or false"):
        parse_parameter_schema(
            {"type": "object", "properties": {"p": {"type": "string", "writeOnly": "yes"}}}, "b"
        )


def test_a_sensitive_value_that_does_not_fit_is_refused_without_showing_it() -> None:
    with pytest.raises(RenderError) as caught:
        resolve_parameters(SCHEMA, {"password": SECRET}, "target dev")
    assert "at least 20 characters" in caught.value.message
    assert SECRET not in caught.value.message


RECORDED = withhold_sensitive(SCHEMA, {"password": SECRET, "replicas": 2})


def test_a_sensitive_value_is_recorded_as_its_hash() -> None:
    assert {"password": {"sensitive": value_hash(SECRET)}, "replicas": 2} == RECORDED
    assert shown(RECORDED["password"]) == short_hash(SECRET)
    assert shown(RECORDED["replicas"]) == 2


@pytest.mark.parametrize(
    ("configured", "restored", "error"),
    [
        ({"password": SECRET, "replicas": 5}, {"password": SECRET, "replicas": 2}, None),
        ({"replicas": 2}, None, "has no value for it"),
        ({"password": "rotated"}, None, "is not the one recorded"),
    ],
    ids=["configured-value-matches", "not-configured", "changed-since"],
)
def test_a_recorded_render_takes_the_configured_secret_back_only_if_it_is_the_same(
    configured: dict[str, Any], restored: dict[str, Any] | None, error: str | None
) -> None:
    if error is None:
        assert restore_sensitive(RECORDED, configured, "web/dev") == restored
        return
    with pytest.raises(RenderError, match=error) as caught:
        restore_sensitive(RECORDED, configured, "web/dev")
    assert "'password'" in caught.value.message
    assert SECRET not in caught.value.message and "rotated" not in caught.value.message


def desired(parameters: dict[str, Any]) -> state.DesiredState:
    return state.DesiredState(
        app="web",
        target="dev",
        stage="dev",
        digest=DIGEST,
        parameters=parameters,
        parameters_hash=DIGEST,
        rendered_hash=DIGEST,
        promoted_by="alice",
        flow_run_id=None,
        approved_by=None,
        updated_at=datetime(2024, 5, 1, tzinfo=UTC),
    )


def test_a_desired_state_records_a_withheld_value_and_reads_it_back() -> None:
    content = state.desired_to_yaml(desired(RECORDED))

    assert SECRET.encode() not in content
    assert state.desired_from_yaml(content, "apps/web/dev.yaml").parameters == RECORDED


@pytest.mark.parametrize(
    "value",
    [{"sensitive": "md5:abc"}, {"other": value_hash(SECRET)}, {"sensitive": DIGEST, "x": 1}],
)
def test_a_desired_state_refuses_any_other_mapping_as_a_parameter(value: object) -> None:
    content = yaml.safe_dump(state.desired_to_dict(desired({"password": value}))).encode()
    with pytest.raises(StateError, match="only mapping a parameter is recorded as"):
        state.desired_from_yaml(content, "apps/web/dev.yaml")


def rendered(parameters: dict[str, Any]) -> Rendered:
    return Rendered("web", "prod", "web-prod", DIGEST, parameters, DIGEST, DIGEST, [], [])


def baseline(parameters: dict[str, Any]) -> Target:
    return Target(
        name="staging",
        stage="staging",
        cluster=Cluster("local", None, None),
        namespace="web-staging",
        parameters_file=Path("config/environments/staging.yaml"),
        parameters=parameters,
        force_conflicts=False,
        self_heal=False,
    )


@pytest.mark.parametrize(
    ("base", "line"),
    [
        ({"password": SECRET, "replicas": 2}, "Parameters that differ from staging: none"),
        (
            {"password": "older-secret", "replicas": 2},
            "Parameters that differ from staging: `password`: "
            f"'{short_hash('older-secret')}' → '{short_hash(SECRET)}'",
        ),
        (RECORDED, "Parameters that differ from staging: none"),
    ],
    ids=["same-secret-configured", "other-secret", "same-secret-recorded"],
)
def test_the_approval_form_compares_sensitive_values_by_hash(
    base: dict[str, Any], line: str
) -> None:
    form = approval_form(
        "web",
        "prod",
        DIGEST,
        {"prod": rendered(RECORDED)},
        baseline=baseline(base),
        changes={"prod": []},
        provenance=Provenance("https://bot:ghp_token@git.example/web.git", "main", "c" * 40),
    )
    assert line in form.splitlines()
    assert "Built from `https://git.example/web.git`" in form
    for secret_text in (SECRET, "older-secret", "ghp_token", "bot:"):
        assert secret_text not in form


MANIFEST = """\
apiVersion: v1
kind: Secret
metadata:
  name: db
stringData:
  password: ${password}
  url: postgres://app:${password}@db/${region}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: db
data:
  dsn: postgres://app:${password}@db/${region}
"""


@pytest.fixture
def sensitive_source(build_source: SourceBuilder) -> Source:
    return build_source(
        {"app.yaml": MANIFEST},
        {
            "password": {"type": "string", "writeOnly": True},
            "region": {"type": "string", "default": "eu"},
        },
        allow_plaintext_secrets=True,
    )


def test_a_diff_of_two_targets_shows_secrets_as_hashes(sensitive_source: Source) -> None:
    result = compare(
        sensitive_source, {"password": SECRET}, {"password": "other-one", "region": "us"}
    )

    everything = repr(result)
    for secret_text in (SECRET, "other-one"):
        assert secret_text not in everything
    assert [(p.name, p.a, p.b) for p in result.parameters] == [
        ("password", short_hash(SECRET), short_hash("other-one")),
        ("region", "eu", "us"),
    ]
    fields = {(f.object.split()[0], f.path): (f.a, f.b) for f in result.fields}
    assert fields[("Secret", "stringData.password")] == (
        short_hash(SECRET),
        short_hash("other-one"),
    )
    assert fields[("ConfigMap", "data.dsn")] == (
        f"postgres://app:{short_hash(SECRET)}@db/eu",
        f"postgres://app:{short_hash('other-one')}@db/us",
    )
