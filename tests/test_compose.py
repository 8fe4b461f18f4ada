"""docker-compose.yml, .env.example and the Dockerfile agree with the service's settings.

There is no container engine in CI, so the compose file is checked the way the
app will see it: parse it, substitute ``${VAR:-default}`` the way compose does,
and hand the app's environment to ``load_settings``. The rest pins the wiring
between services that only shows up as a broken upload or sign-in at run time.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from service.settings import ENV_PREFIX, PROVIDER_SETTINGS, Settings, declared_settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
# `minio server` serves the S3 API on :9000 unless --address says otherwise.
MINIO_API_PORT = 9000
# `soundpost serve` listens on 8000 unless PORT or --port says otherwise.
APP_PORT = 8000

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?-)(?P<default>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's substitution: ``$$`` is a literal ``$``; ``${X:-d}`` is d when X is unset or
    empty, ``${X-d}`` only when unset; ``${X}`` and ``$X`` are X or empty."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["bare"]
        current = env.get(name)
        if match["op"] == ":-" and not current:
            return match["default"]
        if match["op"] == "-" and current is None:
            return match["default"]
        return current or ""

    return _VARIABLE.sub(substitute, value)


def load_compose(env: Mapping[str, str]) -> dict[str, Any]:
    raw = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    compose: dict[str, Any] = interpolate(raw, env)
    return compose


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment, whether written as a mapping or as KEY=VALUE items."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def command_args(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(arg) for arg in command]


def command_text(service: dict[str, Any]) -> str:
    return " ".join(command_args(service))


def published(compose: dict[str, Any], name: str) -> dict[int, int]:
    """Container port -> host port, for the network namespace a service runs in."""
    service = compose["services"][name]
    mode = service.get("network_mode", "")
    if mode.startswith("service:"):
        return published(compose, mode.removeprefix("service:"))
    ports: dict[int, int] = {}
    for entry in service.get("ports", []):
        host, container = str(entry).rsplit(":", 2)[-2:]
        ports[int(container)] = int(host)
    return ports


def dependency(service: dict[str, Any], on: str) -> str | None:
    depends = service.get("depends_on") or {}
    if isinstance(depends, list):
        return "service_started" if on in depends else None
    condition = (depends.get(on) or {}).get("condition", "service_started")
    return str(condition) if on in depends else None


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The compose file as `docker compose up` sees it on a fresh machine: every default."""
    return load_compose({})


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = compose["services"]
    return result


@pytest.fixture(scope="module")
def app_env(services: dict[str, Any]) -> dict[str, str]:
    return environment(services["app"])


@pytest.fixture(scope="module")
def settings(app_env: dict[str, str]) -> Settings:
    return load_settings(app_env)


# --- the interpolation helper itself ---------------------------------------


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("${A:-x}", {}, "x"),
        ("${A:-x}", {"A": ""}, "x"),
        ("${A-x}", {"A": ""}, ""),
        ("${A:-x}", {"A": "set"}, "set"),
        ("${A}/$B", {"A": "a", "B": "b"}, "a/b"),
        ("$${A} costs $$5", {"A": "a"}, "${A} costs $5"),
        ("${MISSING}", {}, ""),
    ],
)
def test_interpolation_follows_compose_rules(text: str, env: dict[str, str], expected: str) -> None:
    """The helper substitutes exactly as compose does, so the checks below see what the app sees."""
    assert interpolate(text, env) == expected


# --- the app's configuration ------------------------------------------------


def test_app_environment_passes_settings_validation(settings: Settings) -> None:
    """With every default, the app's environment is a configuration `soundpost serve` accepts."""
    assert settings.providers


def test_session_secret_default_is_marked_dev_only(app_env: dict[str, str]) -> None:
    """Nobody mistakes the fallback session secret for a real one."""
    assert "dev-only" in app_env["SOUNDPOST_SESSION_SECRET"]


def test_minio_init_creates_the_app_bucket(services: dict[str, Any], settings: Settings) -> None:
    """The one-shot container makes the very bucket the app presigns uploads into."""
    made = re.findall(r"mc mb (?:--\S+ )*local/(\S+)", command_text(services["minio-init"]))
    assert made == [settings.s3_bucket]


def test_app_reaches_minio_on_the_compose_network(services: dict[str, Any], settings: Settings) -> None:
    """Server-side S3 calls go to the minio service's container API port, not the host's."""
    assert "--address" not in command_text(services["minio"])
    endpoint = urlsplit(settings.s3_endpoint or "")
    assert (endpoint.scheme, endpoint.hostname, endpoint.port) == ("http", "minio", MINIO_API_PORT)


def test_browser_uploads_to_minio_published_port(compose: dict[str, Any], settings: Settings) -> None:
    """Presigned POSTs name the port MinIO's API is published on, on the browser's machine."""
    endpoint = urlsplit(settings.s3_public_endpoint or "")
    assert endpoint.hostname == "localhost"
    assert endpoint.port == published(compose, "minio")[MINIO_API_PORT]


def test_app_is_published_where_its_public_url_says(compose: dict[str, Any], settings: Settings) -> None:
    """The public URL is where the browser finds the app: localhost, on the published port."""
    public = urlsplit(settings.public_url)
    assert public.hostname == "localhost"
    assert public.port == published(compose, "app")[APP_PORT]


def test_minio_cors_allows_exactly_the_app_origin(services: dict[str, Any], settings: Settings) -> None:
    """MinIO's global CORS origin is the page's origin, so the browser may POST to S3 and nothing else may."""
    assert environment(services["minio"])["MINIO_API_CORS_ALLOW_ORIGIN"] == settings.public_origin


def test_minio_aborts_stale_uploads_after_the_staging_lifetime(
    services: dict[str, Any], settings: Settings
) -> None:
    """MinIO drops the lifecycle abort rule, so its own stale-upload expiry equals SOUNDPOST_STAGING_LIFETIME."""
    expiry = environment(services["minio"])["MINIO_API_STALE_UPLOADS_EXPIRY"]
    match = re.fullmatch(r"([0-9]+)h", expiry)
    assert match is not None, expiry
    assert int(match.group(1)) * 3600 == settings.staging_lifetime


@pytest.mark.parametrize(
    "shell", [{}, {"MINIO_ROOT_USER": "operator", "MINIO_ROOT_PASSWORD": "a-longer-password"}]
)
def test_s3_keys_are_minio_root_credentials(shell: dict[str, str]) -> None:
    """The app signs with MinIO's root credentials, defaulted or overridden from the shell alike."""
    services = load_compose(shell)["services"]
    minio, init, app = (environment(services[name]) for name in ("minio", "minio-init", "app"))
    credentials = (minio["MINIO_ROOT_USER"], minio["MINIO_ROOT_PASSWORD"])
    assert (app["SOUNDPOST_S3_ACCESS_KEY_ID"], app["SOUNDPOST_S3_SECRET_ACCESS_KEY"]) == credentials
    assert (init["MINIO_ROOT_USER"], init["MINIO_ROOT_PASSWORD"]) == credentials


def test_identity_provider_is_one_address_for_browser_and_app(
    compose: dict[str, Any], services: dict[str, Any], settings: Settings
) -> None:
    """Discovery points at localhost on the idp's port, which means the idp both to the browser
    (the port is published) and to the app (it shares the idp's network namespace), so the issuer
    the app discovers is the issuer in the ID token."""
    (provider,) = settings.providers
    discovery = urlsplit(provider.discovery_url or "")
    idp_args = command_args(services["idp"])
    port = int(idp_args[idp_args.index("--port") + 1])
    assert "oidc_provider_mock" in idp_args
    assert idp_args[idp_args.index("--host") + 1] == "0.0.0.0"
    assert (discovery.hostname, discovery.port) == ("localhost", port)
    assert published(compose, "idp")[port] == port
    assert services["app"]["network_mode"] == "service:idp"
    assert environment(services["idp"])["AUTHLIB_INSECURE_TRANSPORT"] == "1"


# --- start-up order and storage ---------------------------------------------


def test_minio_has_a_healthcheck_and_a_declared_named_volume(compose: dict[str, Any]) -> None:
    """Uploads survive `docker compose down`, and dependants can wait for MinIO to be ready."""
    minio = compose["services"]["minio"]
    assert minio["healthcheck"]["test"]
    volume, _, target = minio["volumes"][0].partition(":")
    assert target == "/data"
    assert not volume.startswith((".", "/")), "a named volume, not a bind mount"
    assert volume in (compose.get("volumes") or {})


@pytest.mark.parametrize("service", ["minio", "minio-init"])
def test_minio_images_come_from_quay_pinned_to_a_release(services: dict[str, Any], service: str) -> None:
    """Docker Hub no longer serves minio/minio or minio/mc; quay.io does, and a release tag keeps `up` repeatable."""
    image = services[service]["image"]
    registry, _, rest = image.partition("/")
    name, _, tag = rest.partition(":")
    assert registry == "quay.io" and name in ("minio/minio", "minio/mc")
    assert re.fullmatch(r"RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ", tag), image


def test_minio_init_waits_for_minio_to_be_healthy(services: dict[str, Any]) -> None:
    assert dependency(services["minio-init"], "minio") == "service_healthy"


def test_app_starts_after_the_bucket_exists(services: dict[str, Any]) -> None:
    assert dependency(services["app"], "minio-init") == "service_completed_successfully"
    assert dependency(services["app"], "idp") in ("service_started", "service_healthy")


# --- .env.example -----------------------------------------------------------

_ASSIGNMENT = re.compile(r"^(?P<commented>#\s*)?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")


def setting_names() -> tuple[set[str], set[str]]:
    """(fixed names, per-provider suffixes): the settings table's variables and the providers' own."""
    return {row.name for row in declared_settings()}, set(PROVIDER_SETTINGS)


def shown(default: object) -> str | None:
    """A default as an operator writes it, or None when it has no single written form."""
    if isinstance(default, bool):
        return str(default).lower()
    return str(default) if isinstance(default, (int, str)) else None


def env_example() -> Iterator[tuple[int, bool, str, str]]:
    """(line number, commented out, name, value) for every assignment in .env.example."""
    for number, line in enumerate((ROOT / ".env.example").read_text().splitlines()):
        match = _ASSIGNMENT.match(line)
        if match:
            yield number, bool(match["commented"]), match["name"], match["value"]


class RecordingEnv(dict[str, str]):
    """An environment that remembers every name looked up in it."""

    def __init__(self, values: Mapping[str, str]) -> None:
        super().__init__(values)
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self.asked.add(key)
        return super().get(key, default)


def test_the_settings_table_names_every_variable_load_settings_reads() -> None:
    """Every name load_settings actually asks for is a row of the table or a provider's own variable."""
    fixed, suffixes = setting_names()
    active = {name: value for _, commented, name, value in env_example() if not commented}
    recording = RecordingEnv(active)
    load_settings(recording)
    for asked in recording.asked:
        name = asked.removeprefix(ENV_PREFIX)
        provider = re.fullmatch(r"PROVIDER_[A-Z0-9_]+?_(" + "|".join(suffixes) + ")", name)
        assert name in fixed or provider, asked


def test_env_example_lists_every_setting_and_nothing_else() -> None:
    """Operators find every setting in .env.example, and no setting the service would ignore."""
    fixed, suffixes = setting_names()
    assert {"PUBLIC_URL", "SESSION_SECRET", "PROVIDERS", "S3_BUCKET"} <= fixed
    assert {"CLIENT_ID", "DISCOVERY_URL", "USERINFO_URL"} <= suffixes
    names = {name for _, _, name, _ in env_example() if name.startswith(ENV_PREFIX)}
    active = {name: value for _, commented, name, value in env_example() if not commented}
    providers = [p.strip().upper() for p in active[ENV_PREFIX + "PROVIDERS"].split(",")]

    expected_fixed = {ENV_PREFIX + name for name in fixed}
    per_provider = names - expected_fixed
    assert expected_fixed <= names, f"missing: {sorted(expected_fixed - names)}"
    listed_suffixes = set()
    for name in per_provider:
        match = re.fullmatch(rf"{ENV_PREFIX}PROVIDER_({'|'.join(providers)})_([A-Z0-9_]+)", name)
        assert match and match[2] in suffixes, f"{name} is not a setting"
        listed_suffixes.add(match[2])
    assert listed_suffixes == suffixes


def test_env_example_is_a_valid_configuration_with_both_provider_kinds() -> None:
    """The example's active lines load as they stand, with an OIDC and an OAuth 2.0 provider."""
    active = {name: value for _, commented, name, value in env_example() if not commented}
    settings = load_settings(active)
    assert {p.kind for p in settings.providers} == {"oidc", "oauth2"}


def test_env_example_explains_every_setting() -> None:
    """Each assignment follows a comment line saying what it is."""
    lines = (ROOT / ".env.example").read_text().splitlines()
    for number, _, name, _ in env_example():
        above = lines[number - 1]
        assert above.startswith("#") and not _ASSIGNMENT.match(above), f"{name} has no comment"


def comment_above(lines: list[str], number: int) -> str:
    """The comment lines right above line ``number`` of .env.example, joined."""
    above: list[str] = []
    while number > 0 and lines[number - 1].startswith("#") and not _ASSIGNMENT.match(lines[number - 1]):
        number -= 1
        above.insert(0, lines[number])
    return " ".join(above)


def test_env_example_shows_each_settings_default_and_bounds_from_the_table() -> None:
    """Each setting's comment gives the table's default (or its commented-out line is the default) and bounds."""
    lines = (ROOT / ".env.example").read_text().splitlines()
    listed = {name: (number, commented, value) for number, commented, name, value in env_example()}
    for row in declared_settings():
        number, commented, value = listed[ENV_PREFIX + row.name]
        comment = comment_above(lines, number)
        default = shown(row.default)
        if default is not None:
            assert f"default {default}" in comment or (commented and value == default), row.name
        if row.low is not None:
            assert f"{row.low} to {row.high}" in comment, row.name


def test_configuration_page_gives_each_settings_default_from_the_table() -> None:
    """The Default column of docs/configuration.md shows the table's default, or says required."""
    page = (ROOT / "docs" / "configuration.md").read_text()
    cells = dict(re.findall(r"^\| `(SOUNDPOST_[A-Z0-9_]+)` \| ([^|]+) \|", page, re.M))
    for row in declared_settings():
        cell = cells[ENV_PREFIX + row.name]
        if row.required:
            assert "required" in cell, row.name
        elif (default := shown(row.default)) is not None:
            assert cell.startswith(f"`{default}`"), (row.name, cell)


# --- Dockerfile -------------------------------------------------------------


def test_image_runs_soundpost_serve_on_all_interfaces() -> None:
    """The container runs the production server, reachable from outside the container."""
    dockerfile = (ROOT / "Dockerfile").read_text().splitlines()
    (cmd,) = [json.loads(line.removeprefix("CMD ")) for line in dockerfile if line.startswith("CMD ")]
    assert cmd[:2] == ["soundpost", "serve"]
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
    assert any(line.startswith("EXPOSE ") and str(APP_PORT) in line.split() for line in dockerfile)


# --- docs -------------------------------------------------------------------


def test_configuration_page_settings_table_names_every_setting() -> None:
    """docs/configuration.md's settings table has a row for every setting the service reads, and no other."""
    fixed, suffixes = setting_names()
    page = (ROOT / "docs" / "configuration.md").read_text()
    rows = set(re.findall(r"^\| `(SOUNDPOST_[A-Z0-9_<>]+)` \|", page, re.M))
    expected = {ENV_PREFIX + name for name in fixed} | {
        f"{ENV_PREFIX}PROVIDER_<NAME>_{suffix}" for suffix in suffixes
    }
    assert rows == expected


def test_only_the_idp_image_carries_the_dev_stack(services: dict[str, Any]) -> None:
    """The app image installs the app lock; the idp builds the same Dockerfile from the dev lock."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "ARG LOCK=app" in dockerfile
    assert 'pip install --require-hashes --no-deps -r "requirements/${LOCK}.txt"' in dockerfile
    assert services["idp"]["build"]["args"]["LOCK"] == "dev"
    for lock in ("app", "dev"):
        assert (ROOT / "requirements" / f"{lock}.txt").exists()
    assert services["app"]["build"] == "."


def test_the_image_runs_the_python_the_lock_was_resolved_for() -> None:
    """The Dockerfile's Python is the one requirements/compile resolves the lock for, and CI runs."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    compile_script = (ROOT / "requirements" / "compile").read_text()
    assert "FROM python:3.11-slim" in dockerfile
    assert "--python-version 3.11" in compile_script
    for lock in ("app", "dev", "test"):
        assert "--python-version 3.11" in (ROOT / "requirements" / f"{lock}.txt").read_text().splitlines()[1]
