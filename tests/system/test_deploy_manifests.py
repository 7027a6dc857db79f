"""deploy/: the Kubernetes manifests validate against the Kubernetes API schemas that ship inside the
kubernetes-validate package (offline; strict, so a misspelt field fails), and the manifests, the compose
file and the Dockerfiles agree with the binary (subcommands, flags, configuration keys, probe ports) and
with each other. No Docker engine and no Kubernetes cluster run here: these are the checks that can be
made without one; deploy/local-cluster.sh runs the same processes for real (test_local_cluster.py)."""

from __future__ import annotations

import copy
import os
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.support.cluster import required_env

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
# The oldest Kubernetes release still supported upstream when this was written, and the newest the package knows.
K8S_VERSIONS = ["1.32.0", "1.37.0"]
# What each process serves (scheduler/src/http.rs, ingest/src/metrics.rs, executor/src/health.rs, Streamlit).
ENDPOINTS = {
    "scheduler": {8000: {"/healthz", "/metrics"}},
    "executor": {50053: {"/healthz", "/readyz"}},
    "ingest": {9464: {"/healthz", "/readyz", "/metrics"}},
    "dashboard": {8501: {"/_stcore/health"}},
}


def manifests() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def vitalflow(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VITALFLOW")}
    return subprocess.run([required_env("VITALFLOW_BIN"), *args], env=dict(clean, **(env or {})), capture_output=True, text=True, timeout=60)


def assert_config_accepted(env: dict[str, str], where: str) -> None:
    """The container config plus these variables load (unknown keys and bad values fail `vitalflow config`)."""
    keys = {k: v for k, v in env.items() if k.startswith("VITALFLOW__")}
    done = vitalflow("--config", str(DEPLOY / "vitalflow.container.toml"), "config", env=keys)
    assert done.returncode == 0, f"{where}: {done.stderr}"


def assert_command_accepted(args: list[str], where: str) -> None:
    """`vitalflow SUBCOMMAND --flag ...` as a container runs it: the subcommand and every flag exist."""
    subcommand, flags = args[0], [a.split("=")[0] for a in args[1:] if a.startswith("--")]
    done = vitalflow(subcommand, "--help")
    assert done.returncode == 0, f"{where}: `vitalflow {subcommand}` is not a command: {done.stderr}"
    for flag in flags:
        assert re.search(rf"\s{re.escape(flag)}\b", done.stdout), f"{where}: vitalflow {subcommand} has no {flag}"


def role(name: str) -> str:
    return next(r for r in ENDPOINTS if name.startswith(r))


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_kubernetes_manifests_validate_offline_against_the_shipped_schemas(version):
    docs = manifests()
    kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for _, d in docs)
    assert kinds == sorted([
        "ConfigMap/vitalflow-config", "Deployment/dashboard", "Deployment/executor", "Deployment/ingest",
        "Deployment/scheduler", "NetworkPolicy/executor-ballista", "NetworkPolicy/scheduler-ballista",
        "Secret/vitalflow-cluster-tls", "Secret/vitalflow-credentials",
        "Service/dashboard", "Service/scheduler",
    ])
    for name, doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)
    # The validator really checks (and really has the schemas here): a misspelt field and a wrong type fail.
    deployment = next(d for _, d in docs if d["kind"] == "Deployment")
    for mutate in (lambda c: c.update(readinessprobe={}), lambda c: c.update(ports="50060")):
        broken = copy.deepcopy(deployment)
        mutate(broken["spec"]["template"]["spec"]["containers"][0])
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, version, strict=True)


def test_kubernetes_deployments_run_real_commands_config_and_probe_real_endpoints():
    docs = manifests()
    config_map = next(d for _, d in docs if d["kind"] == "ConfigMap")
    # One configuration text for compose and Kubernetes.
    assert config_map["data"]["vitalflow.toml"] == (DEPLOY / "vitalflow.container.toml").read_text()
    secret = next(d for _, d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == "vitalflow-credentials")
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    applied = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert sorted(kustomization["resources"]) == sorted(applied), "kustomization.yaml must list every manifest but the example secret"
    services = {d["metadata"]["name"]: d for _, d in docs if d["kind"] == "Service"}

    for _, deployment in (x for x in docs if x[1]["kind"] == "Deployment"):
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]["spec"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
        container = pod["containers"][0]
        # Secure by default: no root, no privilege escalation.
        assert pod["securityContext"]["runAsNonRoot"] is True and container["securityContext"]["allowPrivilegeEscalation"] is False
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe in ("livenessProbe", "readinessProbe"):
            get = container[probe]["httpGet"]
            port = ports[get["port"]]
            assert get["path"] in ENDPOINTS[role(name)][port], f"{name} {probe}: nothing serves {get['path']} on {port}"
        env = {}
        for item in container.get("env", []):
            if "value" in item:
                env[item["name"]] = item["value"]
            elif "secretKeyRef" in item.get("valueFrom", {}):
                ref = item["valueFrom"]["secretKeyRef"]
                assert ref["name"] == secret["metadata"]["name"], (name, ref)
                assert ref["key"] in secret["stringData"] or ref.get("optional") is True, (name, ref)
                env[item["name"]] = secret["stringData"].get(ref["key"], "")
            else:
                env[item["name"]] = "2" if "resourceFieldRef" in item["valueFrom"] else "10.0.0.7"
        for source in container.get("envFrom", []):
            assert source["secretRef"]["name"] == secret["metadata"]["name"]
            env.update(example_secret_values(secret["stringData"]))
        for mount in container.get("volumeMounts", []):
            assert mount["name"] in {v["name"] for v in pod["volumes"]}, (name, mount)
        for init in pod.get("initContainers", []):
            assert_command_accepted(init["args"], f"deployment {name} init container {init['name']}")
        if name == "dashboard":
            assert env["VITALFLOW_FLIGHT_SQL_URL"] == "grpc://scheduler:50060"
            continue
        assert env["VITALFLOW_CONFIG"] == "/etc/vitalflow/vitalflow.toml"
        assert_command_accepted(container["args"], f"deployment {name}")
        assert_config_accepted(env, f"deployment {name}")
        # Every vitalflow process reaches the tables' bucket with the store's credentials; no shared volume.
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"} <= env.keys(), f"deployment {name}: no object store credentials"
        assert "persistentVolumeClaim" not in str(pod["volumes"]), f"deployment {name} mounts a shared volume"
    scheduler_ports = {p["port"] for p in services["scheduler"]["spec"]["ports"]}
    config = tomllib.loads(config_map["data"]["vitalflow.toml"])
    assert config["storage"]["data_url"].startswith("s3://")
    # Executors register with the scheduler's external host: executor.scheduler_address derives from it.
    shown = tomllib.loads(vitalflow("--config", str(DEPLOY / "vitalflow.container.toml"), "config").stdout)
    assert "scheduler_address" not in config["executor"] and config["scheduler"]["external_host"] == "scheduler"
    assert shown["executor"]["scheduler_address"] == "scheduler:50050"
    assert {50050, 50060, 8000} <= scheduler_ports
    # The Ballista ports: the scheduler and the executors get the cluster secret, and only they reach those ports.
    assert "VITALFLOW__CLUSTER__SECRET" in secret["stringData"]
    for name in ("scheduler", "executor"):
        container = next(d for _, d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == name)
        container = container["spec"]["template"]["spec"]["containers"][0]
        from_secret = any("secretRef" in s for s in container.get("envFrom", [])) or any(
            e.get("valueFrom", {}).get("secretKeyRef", {}).get("key") == "VITALFLOW__CLUSTER__SECRET" for e in container["env"])
        assert from_secret, f"deployment {name} has no cluster secret"
    # Mutual TLS between them: each mounts the Secret holding the files the configuration names.
    tls = next(d for _, d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == "vitalflow-cluster-tls")
    for name in ("scheduler", "executor"):
        pod = next(d for _, d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == name)["spec"]["template"]["spec"]
        mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "cluster-tls")
        assert next(v for v in pod["volumes"] if v["name"] == "cluster-tls")["secret"]["secretName"] == "vitalflow-cluster-tls"
        for key in ("tls_cert_path", "tls_key_path", "tls_ca_path"):
            path = Path(config["cluster"][key])
            assert str(path.parent) == mount["mountPath"] and path.name in tls["stringData"], (name, key)
    policies = {d["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"]: d for _, d in docs if d["kind"] == "NetworkPolicy"}
    for pod, ports in (("scheduler", {50050}), ("executor", {50051, 50052})):
        for rule in policies[pod]["spec"]["ingress"]:
            if ports & {p["port"] for p in rule["ports"]}:
                peers = {peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for peer in rule.get("from", [])}
                assert peers and peers <= {"scheduler", "executor"}, (pod, rule)


def example_secret_values(values: dict[str, str]) -> dict[str, str]:
    """The example secret with a real password hash where it says REPLACE, as a user fills it in."""
    hash_ = "pbkdf2-sha256$1000$c2FsdHNhbHQ$aGFzaA"
    return {k: v.replace('"REPLACE"', f'"{hash_}"').replace("REPLACE", "x" * 32) for k, v in values.items()}


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_compose_file_runs_the_binary_s_real_commands_config_and_health_checks():
    spec = compose()
    services = spec["services"]
    assert {"kafka", "scheduler", "executor", "ingest", "dashboard", "grafana"} <= services.keys()
    assert services["executor"]["deploy"]["replicas"] == 2 and services["ingest"]["deploy"]["replicas"] == 2
    secrets = dict(
        line.split("=", 1) for line in (DEPLOY / "secrets.env.example").read_text().splitlines() if line and not line.startswith("#")
    )
    secrets = example_secret_values(secrets)
    assert services["ingest"]["depends_on"]["topic"]["condition"] == "service_completed_successfully"
    for name in ("scheduler", "executor", "ingest", "simulator", "topic"):
        service = services[name]
        assert service["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
        assert [c["source"] for c in service["configs"]] == ["vitalflow"]
        # The tables are in the S3 server's bucket: its address here, its identity in secrets.env.
        # No shared data volume: only the cluster's TLS files (deploy/cluster-certs.sh), read-only, where the
        # configuration looks for them, for the processes that serve Ballista's ports.
        tls = ["./certs:/etc/vitalflow-cluster-tls:ro"] if name in ("scheduler", "executor") else []
        assert service["environment"]["AWS_ENDPOINT_URL"] == "http://s3:80" and service.get("volumes", []) == tls
        assert service["depends_on"].get("s3", {}).get("condition") == "service_healthy" or name in ("executor", "ingest")
        if "entrypoint" in service:
            # bash -c "... exec vitalflow executor": the command after `exec vitalflow`.
            words = shlex.split(service["entrypoint"][-1].replace("$$", "$"))
            args = words[words.index("vitalflow") + 1:]
        else:
            args = service["command"]
        assert_command_accepted(args, f"compose service {name}")
        assert_config_accepted(dict(secrets, **service.get("environment", {})), f"compose service {name}")
        if "healthcheck" in service:
            # bash -c "exec 3<>/dev/tcp/127.0.0.1/PORT && printf 'GET PATH ..."
            check = service["healthcheck"]["test"][-1]
            port, path = re.search(r"/dev/tcp/127\.0\.0\.1/(\d+).*GET (\S+)", check).groups()
            assert path in ENDPOINTS[name][int(port)], f"compose {name}: nothing serves {path} on {port}"
    assert spec["configs"]["vitalflow"]["file"] == "./vitalflow.container.toml"
    assert tomllib.loads((DEPLOY / "vitalflow.container.toml").read_text())["storage"]["data_url"].startswith("s3://")
    # The S3 server: reached from both networks (executors only have the internal one), started with the
    # identity every vitalflow process signs with, never published beyond the containers.
    s3 = services["s3"]
    assert set(s3["networks"]) == {"default", "cluster"} and "ports" not in s3
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= secrets.keys()
    assert "S3PROXY_IDENTITY=$$AWS_ACCESS_KEY_ID" in s3["entrypoint"][-1] and "S3PROXY_CREDENTIAL=$$AWS_SECRET_ACCESS_KEY" in s3["entrypoint"][-1]
    # Grafana gets the provisioning of clients/grafana mounted where its datasource and dashboard providers look.
    mounts = {m.split(":")[1]: m.split(":")[0] for m in services["grafana"]["volumes"] if m.startswith("..")}
    assert mounts == {
        "/etc/grafana/provisioning": "../clients/grafana/provisioning",
        "/var/lib/grafana/dashboards/vitalflow": "../clients/grafana/dashboards",
    }
    assert {"VITALFLOW_USER", "VITALFLOW_PASSWORD"} <= secrets.keys()
    assert services["grafana"]["environment"]["VITALFLOW_FLIGHT_SQL_HOST"] == "scheduler:50060"
    # The Ballista ports: a cluster secret for every vitalflow service, executors on the internal network only.
    assert "VITALFLOW__CLUSTER__SECRET" in secrets
    assert spec["networks"]["cluster"]["internal"] is True
    assert services["executor"]["networks"] == ["cluster"] and "cluster" in services["scheduler"]["networks"]
    # Published ports stay on the host's loopback.
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"compose {name} publishes {port} beyond 127.0.0.1"


def dockerfile(name: str) -> list[tuple[str, str]]:
    """(instruction, arguments) of a Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (DEPLOY / name).read_text())
    return [tuple(line.strip().split(None, 1)) for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_dockerfiles_are_multi_stage_copy_what_exists_and_run_what_the_local_cluster_runs():
    for name in ("Dockerfile", "dashboard.Dockerfile"):
        steps = dockerfile(name)
        stages = [args for op, args in steps if op == "FROM"]
        assert len(stages) == 2 and "slim" in stages[-1], f"{name}: a build stage and a slim runtime stage"
        for op, args in steps:
            if op == "COPY" and "--from" not in args:
                source = args.split()[0]
                assert (ROOT / source).exists(), f"{name}: COPY {source}: no such file in the repository"
        runtime = steps[[i for i, (op, _) in enumerate(steps) if op == "FROM"][-1]:]
        assert ("USER", "10001") in runtime, f"{name}: the runtime stage runs as a non-root user"
    build = " ".join(args for op, args in dockerfile("Dockerfile") if op == "RUN")
    assert "cargo build --release --locked -p vitalflow" in build

    # The dashboard image runs Streamlit with the options deploy/local-cluster.sh starts it with (tested live).
    entry = next(args for op, args in dockerfile("dashboard.Dockerfile") if op == "ENTRYPOINT")
    option = re.compile(r"--(?:server|browser|global)\.\w+")
    local = (DEPLOY / "local-cluster.sh").read_text()
    assert set(option.findall(entry)) == set(option.findall(local))
    assert "clients/streamlit/requirements.txt" in local and "clients/streamlit/app.py" in local


def test_the_runtime_image_installs_every_library_the_binary_links_to():
    # Debian packages of the shared libraries (the image is Debian like CI's machines); libc6 and
    # libgcc-s1 are in every Debian base image.
    package_of = {"libz.so": "zlib1g", "libssl.so": "libssl3", "libcrypto.so": "libssl3", "libgcc_s.so": "libgcc-s1",
                  "libm.so": "libc6", "libc.so": "libc6", "ld-linux": "libc6", "linux-vdso.so": None}
    linked = subprocess.run(["ldd", required_env("VITALFLOW_BIN")], capture_output=True, text=True, check=True).stdout
    steps = dockerfile("Dockerfile")
    runtime = steps[[i for i, (op, _) in enumerate(steps) if op == "FROM"][-1]:]
    installed = {"libc6", "libgcc-s1"} | set(" ".join(args for op, args in runtime if op == "RUN").split())
    for line in linked.splitlines():
        library = line.split()[0].rsplit("/", 1)[-1]
        package = next((p for prefix, p in package_of.items() if library.startswith(prefix)), "unknown")
        assert package is None or package in installed, f"the binary links {library} ({package}): install it in deploy/Dockerfile's runtime stage"
