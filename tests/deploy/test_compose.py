"""deploy/compose.yaml and the files it mounts, checked the way `docker compose config` would, and further.

No Docker engine (nor the compose plugin) exists here. The file is validated against the Compose Specification's
JSON Schema (the copy shipped by the check-jsonschema package), then its promises are checked: two gateway
replicas behind the load balancer, healthchecks, every mounted file present, Prometheus loading the real alert
rules, Grafana provisioned with the real dashboards, the collector exporting to Jaeger, secrets only by reference.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.deploy.files import (
    COMPOSE,
    DEPLOY,
    DOCKERFILE,
    ROOT,
    SECRET_NAME,
    SECRET_VALUE,
    compose_variables,
    load_yaml,
    parse_dockerfile,
    read_env_file,
    require_module,
)
from tollgate.config.loader import load_config_file

# Images without a shell or HTTP client, so no container healthcheck can run in them.
NO_HEALTHCHECK = {"otel-collector", "jaeger"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = load_yaml(COMPOSE)
    assert isinstance(data, dict)
    return data


def _compose_schema() -> dict[str, Any]:
    require_module("check_jsonschema")
    text = (resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json").read_text()
    schema = json.loads(text)
    assert schema["title"] == "Compose Specification"
    return schema  # type: ignore[no-any-return]


def _schema_errors(document: dict[str, Any]) -> list[str]:
    jsonschema = require_module("jsonschema")
    schema = _compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def test_compose_file_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    assert _schema_errors(compose) == []


def test_the_schema_check_catches_mistakes(compose: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(compose))
    broken["services"]["lb"]["helthcheck"] = broken["services"]["lb"].pop("healthcheck")
    broken["services"]["redis"]["ports"] = {"6379": "6379"}
    errors = _schema_errors(broken)
    assert any("helthcheck" in e for e in errors)
    assert any(e.startswith("services/redis/ports") for e in errors)


def _mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Bind mounts of a service: container path -> host path (relative ones resolved against deploy/)."""
    result = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            result[target] = (DEPLOY / source).resolve()
    return result


def _host_file(service: dict[str, Any], container_path: str) -> Path:
    """The host file a container path resolves to through the service's bind mounts."""
    path = PurePosixPath(container_path)
    for target, source in sorted(_mounts(service).items(), key=lambda kv: -len(kv[0])):
        if path == PurePosixPath(target) or PurePosixPath(target) in path.parents:
            return source / path.relative_to(target)
    raise AssertionError(f"{container_path} is not mounted from the host")


def test_every_service_has_an_image_and_every_bind_mount_exists(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        assert "image" in service or "build" in service, name
        image = service.get("image", "")
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin an image tag"
        for target, source in _mounts(service).items():
            assert source.exists(), f"{name}: {source} (mounted at {target}) does not exist"
            assert source.is_relative_to(ROOT), f"{name}: mounts {source} from outside the repository"
    build = compose["services"]["gateway"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE


def test_two_gateway_replicas_share_no_host_port(compose: dict[str, Any]) -> None:
    gateway = compose["services"]["gateway"]
    assert gateway["deploy"]["replicas"] == 2
    # A published port or a container name cannot be shared by two replicas.
    assert "ports" not in gateway and "container_name" not in gateway
    # Each replica gets the image's VOLUME (its own data folder), never one named volume shared by both.
    data_dir = parse_dockerfile(DOCKERFILE.read_text()).env()["TOLLGATE_DATA_DIR"]
    assert not [v for v in gateway.get("volumes", []) if v.split(":")[1] == data_dir]


def test_healthchecks_and_startup_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        if name in NO_HEALTHCHECK:
            continue
        check = service.get("healthcheck")
        assert check and check["test"][0] == "CMD" and not check.get("disable"), f"{name} needs a healthcheck"
        assert "curl" not in check["test"], f"{name}: its image has no curl"
    gateway_check = " ".join(services["gateway"]["healthcheck"]["test"])
    assert "/health/ready" in gateway_check and "python" in gateway_check
    for name, service in services.items():
        depends = service.get("depends_on", {})
        for dependency in depends:
            assert dependency in services, f"{name} depends on unknown service {dependency}"
            if isinstance(depends, dict) and depends[dependency].get("condition") == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} waits for {dependency}'s healthcheck"
    assert services["gateway"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["gateway"]["depends_on"]["redis"]["condition"] == "service_healthy"


def _gateway_config(compose: dict[str, Any]) -> Any:
    gateway = compose["services"]["gateway"]
    path = _host_file(gateway, gateway["environment"]["TOLLGATE_CONFIG"])
    # The real loader, with the interpolated secret present as it is in the container.
    return load_config_file(str(path), env={"POSTGRES_PASSWORD": "x"})


def test_gateway_config_is_valid_and_points_at_the_stack(compose: dict[str, Any]) -> None:
    config = _gateway_config(compose)
    services = compose["services"]
    assert config.server.host == "0.0.0.0"
    assert [str(config.server.port)] == services["gateway"]["expose"]
    database = urlsplit(config.storage.database_url)
    assert database.scheme == "postgresql"
    assert (database.hostname, database.port) == ("postgres", 5432)
    assert database.username == services["postgres"]["environment"]["POSTGRES_USER"]
    assert database.path.lstrip("/") == services["postgres"]["environment"]["POSTGRES_DB"]
    assert "${POSTGRES_PASSWORD}" in _host_file(services["gateway"], "/etc/tollgate/tollgate.yaml").read_text()
    for url in (config.rate_limits.counter_url, config.cache.url):
        assert urlsplit(url).hostname == "redis"


def _nginx(text: str) -> list[tuple[str, list[str], list[Any]]]:
    """nginx.conf as nested (directive, arguments, block) triples."""
    tokens = re.findall(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'|[{};]|[^\s{};]+', re.sub(r"#[^\n]*", "", text))
    stack: list[list[Any]] = [[]]
    words: list[str] = []
    for token in tokens:
        if token == ";":
            stack[-1].append((words[0], words[1:], []))
            words = []
        elif token == "{":
            block: list[Any] = []
            stack[-1].append((words[0], words[1:], block))
            stack.append(block)
            words = []
        elif token == "}":
            assert not words, f"unterminated directive {words}"
            stack.pop()
        else:
            words.append(token.strip("\"'"))
    assert len(stack) == 1 and not words, "unbalanced braces in nginx.conf"
    return stack[0]


def _find(block: list[Any], name: str) -> list[tuple[str, list[str], list[Any]]]:
    return [d for d in block if d[0] == name]


def test_load_balancer_sends_every_request_to_the_gateway_replicas(compose: dict[str, Any]) -> None:
    services = compose["services"]
    lb = services["lb"]
    conf = _nginx(_host_file(lb, "/etc/nginx/nginx.conf").read_text())
    (http,) = _find(conf, "http")
    upstreams = {d[1][0]: d[2] for d in _find(http[2], "upstream")}
    (server,) = _find(http[2], "server")
    (listen,) = _find(server[2], "listen")
    assert f"8080:{listen[1][0]}" in lb["ports"]
    locations = {d[1][-1]: d[2] for d in _find(server[2], "location")}
    root = locations["/"]
    (proxy_pass,) = _find(root, "proxy_pass")
    upstream = upstreams[urlsplit(proxy_pass[1][0]).hostname or ""]
    targets = [d[1] for d in _find(upstream, "server")]
    port = str(_gateway_config(compose).server.port)
    assert targets == [[f"gateway:{port}", "resolve"]], "one name resolving to every replica, re-resolved"
    assert _find(upstream, "zone"), "`resolve` needs a shared-memory zone"
    resolvers = _find(http[2], "resolver")
    assert resolvers and resolvers[0][1][0] == "127.0.0.11", "Docker's embedded DNS"
    assert ["off"] in [d[1] for d in _find(root, "proxy_buffering")], "streams must not be buffered"
    (next_upstream,) = _find(root, "proxy_next_upstream")
    assert "non_idempotent" not in next_upstream[1], "a POST that reached a replica must not be replayed"
    # The LB's own healthcheck hits a location it answers itself.
    assert "http://127.0.0.1:8080/lb/health" in lb["healthcheck"]["test"]
    assert "/lb/health" in locations


def test_nginx_parser_rejects_unbalanced_blocks() -> None:
    with pytest.raises(AssertionError):
        _nginx("http { server { listen 80; }")


def test_prometheus_scrapes_every_replica_and_loads_the_alert_rules(compose: dict[str, Any]) -> None:
    prometheus = compose["services"]["prometheus"]
    config_arg = next(a for a in prometheus["command"] if a.startswith("--config.file="))
    config_path = config_arg.split("=", 1)[1]
    config = load_yaml(_host_file(prometheus, config_path))
    rule_files = [_host_file(prometheus, str(PurePosixPath(config_path).parent / f)) for f in config["rule_files"]]
    assert rule_files == [(DEPLOY / "prometheus" / "alerts.yml").resolve()]
    assert all(group["rules"] for group in load_yaml(rule_files[0])["groups"])
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "tollgate"]  # alerts use job="tollgate"
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == ["gateway"] and sd["type"] == "A"
    assert str(sd["port"]) == compose["services"]["gateway"]["expose"][0]
    assert job["metrics_path"] == "/metrics"


def test_grafana_is_provisioned_with_the_prometheus_datasource_and_every_dashboard(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    provisioning = _host_file(grafana, "/etc/grafana/provisioning")
    (datasource,) = load_yaml(provisioning / "datasources" / "prometheus.yml")["datasources"]
    url = urlsplit(datasource["url"])
    assert url.hostname == "prometheus" and url.hostname in compose["services"]
    assert f"{url.port}:{url.port}" in compose["services"]["prometheus"]["ports"]
    (provider,) = load_yaml(provisioning / "dashboards" / "tollgate.yml")["providers"]
    folder = _host_file(grafana, provider["options"]["path"])
    mounted = sorted(p.name for p in folder.glob("*.json"))
    assert mounted == sorted(p.name for p in (DEPLOY / "grafana" / "dashboards").glob("*.json"))
    assert len(mounted) >= 4
    for name in mounted:
        dashboard = json.loads((folder / name).read_text())
        assert dashboard["title"] and dashboard["panels"]


def test_collector_pipelines_are_complete_and_export_to_jaeger(compose: dict[str, Any]) -> None:
    services = compose["services"]
    collector = services["otel-collector"]
    config_path = collector["command"][0].split("=", 1)[1]
    config = load_yaml(_host_file(collector, config_path))
    for pipeline in config["service"]["pipelines"].values():
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline.get(kind, []):
                assert component in config[kind], f"{component} is used but not declared under {kind}"
    for extension in config["service"].get("extensions", []):
        assert extension in config["extensions"]
    exporters = config["service"]["pipelines"]["traces"]["exporters"]
    (jaeger,) = [config["exporters"][e] for e in exporters if e.startswith("otlp")]
    host, port = jaeger["endpoint"].split(":")
    assert host == "jaeger" and port in services["jaeger"]["expose"]
    assert services["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    grpc = config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    assert grpc.split(":")[1] in collector["expose"]


def test_secrets_come_from_the_environment_never_from_the_file(compose: dict[str, Any]) -> None:
    text = COMPOSE.read_text()
    assert not SECRET_VALUE.search(text)
    declared = compose["secrets"]
    for name, secret in declared.items():
        assert set(secret) <= {"environment", "file", "external"}, f"secret {name} must not be inline"
    for name, service in compose["services"].items():
        for secret in service.get("secrets", []):
            assert (secret if isinstance(secret, str) else secret["source"]) in declared
        for key, value in (service.get("environment") or {}).items():
            if not SECRET_NAME.search(key):
                continue
            value = str(value)
            by_file = key.endswith("_FILE") and value.startswith("/run/secrets/")
            assert by_file or re.fullmatch(r"\$\{[A-Z0-9_]+(:[-?][^}]*)?\}", value), f"{name}: {key} is literal"
            if by_file:
                assert value.removeprefix("/run/secrets/") in service["secrets"], f"{name}: {key} names no secret"


def _strings(node: Any) -> str:
    """Every string value of a parsed YAML document (what compose interpolates: not comments), one a line."""
    if isinstance(node, dict):
        return "\n".join(_strings(v) for v in node.values())
    if isinstance(node, list):
        return "\n".join(_strings(v) for v in node)
    return node if isinstance(node, str) else ""


def test_every_variable_is_declared_in_the_example_env_file(compose: dict[str, Any]) -> None:
    example = read_env_file(DEPLOY / ".env.example")
    used = compose_variables(_strings(compose))
    # Secrets read from the environment by compose itself (secrets.<name>.environment).
    for secret in compose["secrets"].values():
        used.setdefault(secret.get("environment", ""), None)
    used.pop("", None)
    assert set(used) == set(example), "deploy/.env.example must list exactly the variables compose.yaml reads"
    assert all(value == "" for value in example.values()), "the example holds no secret values"
    # Required secrets fail fast instead of starting with an empty key.
    for name in ("TOLLGATE_MASTER_KEY", "POSTGRES_PASSWORD"):
        assert used[name] == ":?"
    # The real env file never lands in git.
    assert ".env" in (DEPLOY / ".gitignore").read_text().split()


def test_variable_scanner_sees_every_form() -> None:
    text = "a: ${A}\nb: ${B:-x}\nc: ${C:?need C}\nd: $D\ne: $${NOT}\n"
    assert compose_variables(text) == {"A": None, "B": ":-", "C": ":?", "D": None}


def test_no_credential_in_any_deployment_file() -> None:
    # deploy/.env (git-ignored, see above) is where an operator's real secrets go: not part of the repository.
    files = [p for p in DEPLOY.rglob("*") if p.is_file() and p.name != ".env"]
    files += [DOCKERFILE, ROOT / "docs" / "deployment.md"]
    assert len(files) > 20
    for path in files:
        assert not SECRET_VALUE.search(path.read_text()), f"{path} holds something like a credential"


def test_the_credential_pattern_recognises_real_key_shapes() -> None:
    for sample in ("sk-proj-" + "a1B2" * 6, "sk-ant-api03-" + "x" * 20, "AKIA" + "ABCDEFGHIJKLMNOP", "tg-" + "k" * 32):
        assert SECRET_VALUE.search(f"key: {sample}")
    assert not SECRET_VALUE.search("api_key: ${OPENAI_API_KEY}")
