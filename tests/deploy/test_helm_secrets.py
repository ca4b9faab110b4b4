"""The chart's secret files and Vault Kubernetes-auth token: rendered by Helm, valid for Kubernetes, and what
the gateway's config reads (``${file:...}`` paths and ``secrets.vault.auth.jwt_path``)."""

from __future__ import annotations

from typing import Any

from tests.deploy.test_helm import _validate_all, render

VALUES = {
    "secretFiles": [
        {"name": "openai", "secretName": "tollgate-openai", "mountPath": "/var/run/secrets/tollgate/openai"},
    ],
    "vault": {"kubernetesAuth": {"enabled": True, "audience": "vault.internal"}},
}


def _pod(objects: dict[str, dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = objects["Deployment"]["spec"]["template"]["spec"]
    return spec


def test_secret_files_and_the_vault_token_are_mounted_read_only() -> None:
    objects = render(VALUES)
    assert list(_validate_all(objects)) == []
    pod = _pod(objects)
    mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}

    files = mounts["/var/run/secrets/tollgate/openai"]
    assert files["readOnly"] is True
    assert volumes[files["name"]]["secret"] == {"secretName": "tollgate-openai", "defaultMode": 0o400}

    token = mounts["/var/run/secrets/tollgate/vault"]
    assert token["readOnly"] is True
    (source,) = volumes[token["name"]]["projected"]["sources"]
    assert source["serviceAccountToken"] == {"audience": "vault.internal", "expirationSeconds": 3600, "path": "token"}
    # The Kubernetes API token is still not mounted: the projected one is for Vault only.
    assert pod["automountServiceAccountToken"] is False


def test_by_default_nothing_extra_is_mounted() -> None:
    pod = _pod(render())
    assert {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]} == {
        "/etc/tollgate",
        "/var/lib/tollgate",
        "/tmp",
    }
