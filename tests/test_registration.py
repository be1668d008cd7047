# What Airflow learns about the provider: the provider-info dict, the installed entry point,
# and what the real `airflow providers` CLI lists from them.
from __future__ import annotations

import importlib
import os
import subprocess
import sys
from importlib.metadata import distribution, entry_points
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_smsonline import __version__
from airflow_provider_smsonline.get_provider_info import get_provider_info
from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook

AIRFLOW = Path(sys.executable).with_name("airflow")

#: Keys whose children are names chosen by the provider (field names), not schema keys.
NAME_MAPS = {"conn-fields", "relabeling", "placeholders"}


def connection_type() -> dict[str, Any]:
    (entry,) = [c for c in get_provider_info()["connection-types"] if c["connection-type"] == "smsonline"]
    return entry


def structural_keys(value: object, parent: str = "") -> list[str]:
    """Every dict key of the provider info that Airflow itself defines."""
    keys: list[str] = []
    if isinstance(value, dict):
        for key, child in value.items():
            if parent not in NAME_MAPS:
                keys.append(key)
            if key == "schema":
                continue  # JSON Schema keywords below
            if key == "config":
                continue  # Airflow's config schema: option names and their keys are snake_case
            keys.extend(structural_keys(child, key))
    elif isinstance(value, list):
        for child in value:
            keys.extend(structural_keys(child, parent))
    return keys


def test_package_name_is_the_distribution_name() -> None:
    info = get_provider_info()
    assert info["package-name"] == "airflow-provider-smsonline"
    assert distribution(info["package-name"]).metadata["Name"] == "airflow-provider-smsonline"


def test_version_is_the_installed_version() -> None:
    assert get_provider_info()["versions"] == [__version__]
    assert distribution("airflow-provider-smsonline").version == __version__


def test_provider_info_keys_are_kebab_case() -> None:
    snake = [key for key in structural_keys(get_provider_info()) if "_" in key]
    assert snake == []


def test_connection_type_names_the_hook_class() -> None:
    entry = connection_type()
    module, _, name = entry["hook-class-name"].rpartition(".")
    assert getattr(importlib.import_module(module), name) is SmsOnlineHook
    assert entry["hook-name"] == SmsOnlineHook.hook_name == "SMS.online"
    assert SmsOnlineHook.conn_type == "smsonline"


def test_connection_form_hides_login_and_schema() -> None:
    assert set(connection_type()["ui-field-behaviour"]["hidden-fields"]) == {"login", "schema"}


def test_connection_form_labels_the_password_api_key() -> None:
    assert connection_type()["ui-field-behaviour"]["relabeling"]["password"] == "API key"


def test_connection_form_extra_fields_have_labels_and_nullable_schema_types() -> None:
    fields = connection_type()["conn-fields"]
    assert {
        "timeout",
        "verify_ssl",
        "ca_bundle",
        "proxy",
        "server_timezone",
        "read_retries",
        "max_response_bytes",
    } <= set(fields)
    for name, field in fields.items():
        assert field["label"], name
        types = field["schema"]["type"]
        assert isinstance(types, list) and "null" in types, name
        assert set(types) <= {"string", "number", "integer", "boolean", "null"}, name
    assert fields["timeout"]["schema"]["type"][0] == "number"
    assert fields["verify_ssl"]["schema"]["type"][0] == "boolean"
    assert fields["read_retries"]["schema"]["type"][0] == "integer"


def test_connection_form_defaults_are_the_hooks_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import connection_env

    monkeypatch.setenv("AIRFLOW_CONN_SMSONLINE_DEFAULT", connection_env())
    config = SmsOnlineHook().config
    fields = connection_type()["conn-fields"]
    assert fields["timeout"]["schema"]["default"] == config.timeout
    assert fields["verify_ssl"]["schema"]["default"] is config.verify_ssl
    assert fields["read_retries"]["schema"]["default"] == config.read_retries
    assert fields["max_response_bytes"]["schema"]["default"] == config.max_response_bytes


def test_every_registered_module_imports() -> None:
    info = get_provider_info()
    for section in ("hooks", "operators", "sensors", "triggers"):
        for entry in info.get(section, []):
            for module in entry["python-modules"]:
                importlib.import_module(module)


def test_installed_entry_point_resolves_to_the_provider_info() -> None:
    (entry,) = [
        e
        for e in entry_points(group="apache_airflow_provider")
        if e.value.startswith("airflow_provider_smsonline")
    ]
    assert entry.load()() == get_provider_info()


def test_hook_is_built_from_its_conn_name_attribute() -> None:
    hook = SmsOnlineHook(**{SmsOnlineHook.conn_name_attr: "x"})
    assert hook.smsonline_conn_id == "x"
    assert SmsOnlineHook.conn_name_attr == "smsonline_conn_id"
    assert SmsOnlineHook.default_conn_name == "smsonline_default"


def test_connection_get_hook_builds_the_smsonline_hook() -> None:
    from airflow.sdk import Connection

    from tests.conftest import connection_env

    conn = Connection.from_json(connection_env(), conn_id="smsonline_x")
    hook = conn.get_hook()
    assert isinstance(hook, SmsOnlineHook)
    assert hook.smsonline_conn_id == "smsonline_x"


def run_airflow(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    }
    return subprocess.run(
        [str(AIRFLOW), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.airflow
def test_airflow_cli_lists_the_smsonline_hook(tmp_path: Path) -> None:
    # No `airflow db migrate` is needed: the providers commands read entry points, not the DB.
    result = run_airflow("providers", "hooks", "--output", "json", home=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    import json

    hooks = json.loads(result.stdout[result.stdout.index("[") :])
    (row,) = [h for h in hooks if h["connection_type"] == "smsonline"]
    assert row["class"] == "airflow_provider_smsonline.hooks.smsonline.SmsOnlineHook"
    assert row["conn_id_attribute_name"] == "smsonline_conn_id"
    assert row["package_name"] == "airflow-provider-smsonline"
    assert row["hook_name"] == "SMS.online"


@pytest.mark.airflow
def test_airflow_cli_lists_the_provider_without_breaking_the_others(tmp_path: Path) -> None:
    result = run_airflow("providers", "list", "--output", "json", home=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "airflow-provider-smsonline" in result.stdout
    assert "apache-airflow-providers-standard" in result.stdout
    assert "ValueError" not in result.stderr
