"""Checks the Kubernetes manifests in deploy/ for what docs/deployment.md promises.

The manifests are never applied here (no cluster runs in CI); instead each property the guide
relies on is read back from the YAML: the kinds and API versions, the probes and the ports they
name, the security context, the shutdown timing, and that the embedded gatehouse.yaml is accepted
by `gatehouse validate`. The last check needs GATEHOUSE_BINARY set to a built gatehouse (ctest
sets it); without it that test fails rather than pass by doing nothing.
"""

import math
import os
import pathlib
import re
import shutil
import subprocess

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
YAMLLINT_CONFIG = REPO / ".yamllint"

# Every manifest in deploy/ and the objects it must hold, as (apiVersion, kind).
EXPECTED_OBJECTS = {
    "namespace.yaml": [("v1", "Namespace")],
    "serviceaccount.yaml": [("v1", "ServiceAccount")],
    "configmap.yaml": [("v1", "ConfigMap")],
    "pvc.yaml": [("v1", "PersistentVolumeClaim")],
    "deployment.yaml": [("apps/v1", "Deployment")],
    "service.yaml": [("v1", "Service")],
}
KUSTOMIZATION = "kustomization.yaml"

CONFIG_KEY = "gatehouse.yaml"
STORE_PATH = "/var/lib/gatehouse"
APP_UID = 10001


# --- loading -----------------------------------------------------------------------------------


def load_documents(path):
    with open(path, encoding="utf-8") as file:
        return list(yaml.safe_load_all(file))


def manifest_files():
    return sorted(p.name for p in DEPLOY.glob("*.yaml"))


def only_object(kind):
    """The single object of `kind` across deploy/, failing when there is none or several."""
    found = []
    for name in EXPECTED_OBJECTS:
        found += [d for d in load_documents(DEPLOY / name) if d and d.get("kind") == kind]
    assert len(found) == 1, f"expected exactly one {kind} in deploy/, found {len(found)}"
    return found[0]


def pod_spec():
    return only_object("Deployment")["spec"]["template"]["spec"]


def gatehouse_container():
    containers = pod_spec()["containers"]
    named = [c for c in containers if c["name"] == "gatehouse"]
    assert len(named) == 1, "the Deployment must have exactly one container named gatehouse"
    return named[0]


def embedded_config_text():
    data = only_object("ConfigMap").get("data", {})
    assert CONFIG_KEY in data, f"the ConfigMap has no {CONFIG_KEY} key"
    return data[CONFIG_KEY]


def embedded_config():
    config = yaml.safe_load(embedded_config_text())
    assert isinstance(config, dict), f"{CONFIG_KEY} in the ConfigMap is not a mapping"
    return config


# --- value parsing -----------------------------------------------------------------------------

DURATION_UNITS_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_seconds(text):
    """Seconds in a gatehouse duration such as "30s", "250ms" or "1m30s"."""
    parts = re.findall(r"(\d+)(ms|s|m|h|d)", str(text))
    assert parts and "".join(n + u for n, u in parts) == str(text), f"bad duration {text!r}"
    return sum(int(n) * DURATION_UNITS_SECONDS[u] for n, u in parts)


def cpu_cores(quantity):
    text = str(quantity)
    if text.endswith("m"):
        return int(text[:-1]) / 1000
    return float(text)


MEMORY_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 10**3, "M": 10**6, "G": 10**9}


def memory_bytes(quantity):
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi|k|M|G)?", str(quantity))
    assert match, f"unsupported memory quantity {quantity!r}"
    return int(match.group(1)) * MEMORY_UNITS.get(match.group(2), 1)


def listen_port(address):
    """The port of a gatehouse listen address such as ":8080" or "127.0.0.1:9901"."""
    host, _, port = str(address).rpartition(":")
    return host, int(port)


def container_port(name):
    ports = {p["name"]: p["containerPort"] for p in gatehouse_container().get("ports", [])}
    assert name in ports, f"the container declares no port named {name!r}; it has {sorted(ports)}"
    return ports[name]


def security_setting(key):
    """A security setting as the kubelet applies it: the container's, else the pod's."""
    container_context = gatehouse_container().get("securityContext", {})
    if key in container_context:
        return container_context[key]
    return pod_spec().get("securityContext", {}).get(key)


def pre_stop_sleep_seconds():
    command = gatehouse_container()["lifecycle"]["preStop"]["exec"]["command"]
    assert len(command) == 2 and command[0].endswith("/sleep"), f"preStop is not a sleep: {command}"
    return int(command[1])


# --- the files themselves ----------------------------------------------------------------------


def test_deploy_holds_exactly_the_known_manifests():
    assert set(manifest_files()) == set(EXPECTED_OBJECTS) | {KUSTOMIZATION}


@pytest.mark.parametrize("name", sorted(EXPECTED_OBJECTS) + [KUSTOMIZATION])
def test_each_manifest_is_yaml_with_no_empty_documents(name):
    documents = load_documents(DEPLOY / name)
    assert documents, f"{name} holds no document"
    assert all(isinstance(d, dict) for d in documents), f"{name} has an empty or scalar document"


def test_manifests_pass_yamllint():
    yamllint = shutil.which("yamllint")
    assert yamllint, "yamllint is not installed; scripts/install-deps.sh installs it"
    result = subprocess.run(
        [yamllint, "--strict", "-c", str(YAMLLINT_CONFIG), str(DEPLOY), str(YAMLLINT_CONFIG)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_embedded_gatehouse_config_passes_yamllint():
    yamllint = shutil.which("yamllint")
    assert yamllint, "yamllint is not installed; scripts/install-deps.sh installs it"
    # A configuration file need not open with "---"; everything else is as strict as deploy/.
    inline = f"{{extends: {YAMLLINT_CONFIG}, rules: {{document-start: disable}}}}"
    result = subprocess.run(
        [yamllint, "--strict", "-d", inline, "-"],
        input=embedded_config_text(),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", sorted(EXPECTED_OBJECTS))
def test_each_object_has_api_version_kind_and_name(name):
    for document in load_documents(DEPLOY / name):
        assert document.get("apiVersion"), f"{name}: an object has no apiVersion"
        assert document.get("kind"), f"{name}: an object has no kind"
        assert (document.get("metadata") or {}).get("name"), f"{name}: an object has no name"


@pytest.mark.parametrize("name", sorted(EXPECTED_OBJECTS))
def test_each_manifest_holds_the_expected_kinds(name):
    documents = load_documents(DEPLOY / name)
    assert [(d["apiVersion"], d["kind"]) for d in documents] == EXPECTED_OBJECTS[name]


def test_kustomization_lists_every_manifest_and_nothing_else():
    kustomization = load_documents(DEPLOY / KUSTOMIZATION)[0]
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"

    resources = kustomization.get("resources", [])
    assert len(resources) == len(set(resources)), f"a resource is listed twice: {resources}"
    assert set(resources) == set(EXPECTED_OBJECTS)
    for resource in resources:
        assert (DEPLOY / resource).is_file(), f"kustomization lists missing file {resource}"


def test_kustomization_image_name_matches_the_container_image():
    images = load_documents(DEPLOY / KUSTOMIZATION)[0].get("images", [])
    image_name = gatehouse_container()["image"].split(":")[0]
    assert image_name in [i["name"] for i in images], "kustomization does not set the image"


def test_namespaced_objects_live_in_the_gatehouse_namespace():
    namespace = only_object("Namespace")["metadata"]["name"]
    for name in EXPECTED_OBJECTS:
        for document in load_documents(DEPLOY / name):
            if document["kind"] == "Namespace":
                continue
            assert document["metadata"].get("namespace") == namespace, (
                f"{name}: {document['kind']} is not in namespace {namespace}"
            )


# --- the Deployment ----------------------------------------------------------------------------


def test_deployment_selects_its_own_pods():
    deployment = only_object("Deployment")
    selector = deployment["spec"]["selector"]["matchLabels"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector and selector.items() <= labels.items()


def test_deployment_runs_one_replica():
    assert only_object("Deployment")["spec"]["replicas"] == 1


def test_single_node_store_volume_forces_recreate_rollouts():
    access_modes = set(only_object("PersistentVolumeClaim")["spec"]["accessModes"])
    strategy = only_object("Deployment")["spec"].get("strategy", {}).get("type", "RollingUpdate")
    if access_modes <= {"ReadWriteOnce", "ReadWriteOncePod"}:
        assert strategy == "Recreate", "a surge rollout cannot mount a ReadWriteOnce volume"


def test_liveness_probe_asks_the_http_listener_for_the_health_path():
    probe = gatehouse_container()["livenessProbe"]["httpGet"]
    config = embedded_config()
    assert probe["path"] == "/healthz"
    assert config.get("health_path", "/healthz") == probe["path"]
    assert probe["port"] == "http"
    assert container_port("http") == listen_port(config["listen"]["http"])[1]


def test_readiness_probe_asks_the_admin_listener_for_readyz():
    probe = gatehouse_container()["readinessProbe"]["httpGet"]
    assert probe["path"] == "/readyz"
    assert probe["port"] == "admin"
    assert container_port("admin") == listen_port(embedded_config()["listen"]["admin"])[1]


def test_every_probe_names_a_declared_port():
    container = gatehouse_container()
    probes = [k for k in ("livenessProbe", "readinessProbe", "startupProbe") if k in container]
    assert "livenessProbe" in probes and "readinessProbe" in probes
    for key in probes:
        port = container[key]["httpGet"]["port"]
        assert isinstance(port, str), f"{key} uses a port number; name the port instead"
        container_port(port)


def test_admin_listener_binds_every_address_so_the_kubelet_can_probe_it():
    host, _ = listen_port(embedded_config()["listen"]["admin"])
    assert host in ("", "0.0.0.0", "[::]"), f"admin listens on {host!r}, out of kubelet reach"


def test_grace_period_covers_the_prestop_sleep_and_the_drain():
    drain = duration_seconds(embedded_config()["timeouts"]["drain"])
    grace = pod_spec()["terminationGracePeriodSeconds"]
    assert grace > pre_stop_sleep_seconds() + drain


def test_prestop_sleeps_a_few_seconds():
    assert 1 <= pre_stop_sleep_seconds() <= 30


def test_resources_request_and_limit_cpu_and_memory():
    resources = gatehouse_container()["resources"]
    requests, limits = resources["requests"], resources["limits"]
    assert cpu_cores(requests["cpu"]) <= cpu_cores(limits["cpu"])
    assert memory_bytes(requests["memory"]) <= memory_bytes(limits["memory"])


def test_worker_threads_match_the_cpu_limit():
    threads = embedded_config().get("threads")
    cpu_limit = cpu_cores(gatehouse_container()["resources"]["limits"]["cpu"])
    assert isinstance(threads, int), "threads must be a number: 'auto' ignores the CPU limit"
    assert threads == math.ceil(cpu_limit)


def test_container_runs_the_config_the_configmap_provides():
    container = gatehouse_container()
    args = container.get("args", [])
    assert args[:2] == ["run", "--config"], f"unexpected container args {args}"
    config_dir = os.path.dirname(args[2])
    assert os.path.basename(args[2]) == CONFIG_KEY

    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert config_dir in mounts, f"nothing is mounted at {config_dir}"
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    source = volumes[mounts[config_dir]].get("configMap", {})
    assert source.get("name") == only_object("ConfigMap")["metadata"]["name"]


def test_store_volume_is_the_claim_mounted_writable():
    mounts = {m["mountPath"]: m for m in gatehouse_container()["volumeMounts"]}
    assert STORE_PATH in mounts, f"nothing is mounted at {STORE_PATH}"
    assert not mounts[STORE_PATH].get("readOnly", False)

    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    claim = volumes[mounts[STORE_PATH]["name"]].get("persistentVolumeClaim", {})
    assert claim.get("claimName") == only_object("PersistentVolumeClaim")["metadata"]["name"]


def test_every_volume_mount_names_a_volume():
    volumes = {v["name"] for v in pod_spec()["volumes"]}
    for mount in gatehouse_container()["volumeMounts"]:
        assert mount["name"] in volumes, f"mount {mount['mountPath']} names no volume"


def test_pod_uses_its_service_account_without_an_api_token():
    account = only_object("ServiceAccount")
    assert account.get("automountServiceAccountToken") is False
    spec = pod_spec()
    assert spec.get("serviceAccountName") == account["metadata"]["name"]
    assert spec.get("automountServiceAccountToken") is not True


# --- security context --------------------------------------------------------------------------


def test_container_runs_as_the_image_user_and_never_as_root():
    assert security_setting("runAsNonRoot") is True
    assert security_setting("runAsUser") == APP_UID


def test_volumes_are_group_owned_by_the_app_user():
    assert pod_spec()["securityContext"].get("fsGroup") == APP_UID


def test_container_cannot_gain_privileges_or_write_its_root_filesystem():
    context = gatehouse_container()["securityContext"]
    assert context.get("allowPrivilegeEscalation") is False
    assert context.get("readOnlyRootFilesystem") is True
    assert context.get("capabilities", {}).get("drop") == ["ALL"]
    assert not context.get("capabilities", {}).get("add")
    assert not context.get("privileged", False)


def test_container_uses_the_runtime_default_seccomp_profile():
    assert (security_setting("seccompProfile") or {}).get("type") == "RuntimeDefault"


# --- the Service -------------------------------------------------------------------------------


def test_service_is_a_load_balancer_keeping_client_addresses():
    spec = only_object("Service")["spec"]
    assert spec["type"] == "LoadBalancer"
    assert spec["externalTrafficPolicy"] == "Local"


def test_service_selects_the_gatehouse_pods():
    selector = only_object("Service")["spec"]["selector"]
    labels = only_object("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert selector and selector.items() <= labels.items()


def test_service_exposes_http_on_port_80():
    ports = only_object("Service")["spec"]["ports"]
    http = [p for p in ports if p["port"] == 80]
    assert len(http) == 1 and http[0]["targetPort"] == "http"
    container_port("http")


def test_service_exposes_https_on_port_443():
    ports = only_object("Service")["spec"]["ports"]
    https = [p for p in ports if p["port"] == 443]
    assert len(https) == 1 and https[0]["targetPort"] == "https"
    assert container_port("https") == 8443


def test_service_does_not_expose_the_admin_port():
    admin_number = container_port("admin")
    for port in only_object("Service")["spec"]["ports"]:
        target = port.get("targetPort", port["port"])
        assert target not in ("admin", admin_number), f"Service exposes the admin port: {port}"
        assert port["port"] != admin_number


# --- the embedded configuration ----------------------------------------------------------------


def gatehouse_binary():
    """The binary named by GATEHOUSE_BINARY, failing (never skipping) when there is none."""
    value = os.environ.get("GATEHOUSE_BINARY")
    if not value:
        pytest.fail(
            "GATEHOUSE_BINARY is not set, so the ConfigMap's gatehouse.yaml cannot be validated; "
            "build gatehouse and run with GATEHOUSE_BINARY=build/gatehouse (ctest sets it)"
        )
    binary = pathlib.Path(value).resolve()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        pytest.fail(f"GATEHOUSE_BINARY={value} is not an executable file; build gatehouse first")
    return binary


def run_validate(binary, config_text, tmp_path):
    config_file = tmp_path / CONFIG_KEY
    config_file.write_text(config_text, encoding="utf-8")
    return subprocess.run(
        [str(binary), "validate", "--config", str(config_file)],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_embedded_config_passes_gatehouse_validate(tmp_path):
    binary = gatehouse_binary()
    result = run_validate(binary, embedded_config_text(), tmp_path)
    assert result.returncode == 0, (
        f"gatehouse validate rejected the ConfigMap's {CONFIG_KEY} "
        f"(exit {result.returncode}):\n{result.stdout}{result.stderr}"
    )


def test_gatehouse_validate_rejects_a_broken_copy_of_the_embedded_config(tmp_path):
    # Proves the check above can fail: the same file with an unparsable drain must be refused.
    binary = gatehouse_binary()
    broken, count = re.subn(r"drain: \S+", "drain: soon", embedded_config_text())
    assert count == 1, "the embedded config has no timeouts.drain line to break"
    result = run_validate(binary, broken, tmp_path)
    assert result.returncode == 2, f"expected exit 2, got {result.returncode}: {result.stderr}"
