"""Offline validation of ``k8s/``: render the kustomization (base, cpu, gpu), then check every resource
against the Kubernetes JSON schemas (kubernetes-validate, strict) and the Dask operator's CRDs (shipped in
the dask-kubernetes package), assert the pods' security and resource settings, the wiring between
resources, that every stage's pod runs ``fnet run CONFIG --stages …`` (the stage registry) and nothing else,
and the Dockerfile."""
from __future__ import annotations

import copy
import fnmatch
import functools
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fnet_dist.core.config import load_config

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "k8s"
KUBERNETES_VERSION = "1.33"  # Indexed Jobs with backoffLimitPerIndex and podFailurePolicy FailIndex are GA
OVERLAYS = {"cpu": "pipeline/default.yaml", "gpu": "pipeline/paper-qwen2.5-7b.yaml"}
DASK_KINDS = {"DaskJob", "DaskCluster"}
SECRET_NAME = re.compile(r"(^|_)(KEY|SECRET|TOKEN|PASSWORD|CREDENTIALS?)(_|$)", re.I)


def _kustomize_command() -> list[str]:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    pytest.skip("needs a kustomize renderer: `kubectl` (has kustomize built in) or `kustomize` on PATH")


def kustomize(folder: Path) -> subprocess.CompletedProcess:
    """``kustomize build folder`` as the runbook runs it: no flags, so kustomize's default load restrictor
    (LoadRestrictionsRootOnly) refuses any file outside the folder of the kustomization that names it."""
    return subprocess.run([*_kustomize_command(), str(folder)], capture_output=True, text=True, timeout=120)


def render(folder: Path) -> list[dict]:
    """The resources ``kustomize build`` makes of ``folder``."""
    out = kustomize(folder)
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {"base": render(K8S / "base"), **{name: render(K8S / "overlays" / name) for name in OVERLAYS}}


# --- walking resources -----------------------------------------------------------------------------

def pod_specs(doc: dict) -> list[tuple[str, dict]]:
    """Every pod spec inside a resource (Job templates, Dask scheduler / worker / job pods), with its path."""
    found = []

    def walk(node, path):
        if isinstance(node, dict):
            if isinstance(node.get("containers"), list):
                found.append((path, node))
            for key, value in node.items():
                walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}[{i}]")

    walk(doc.get("spec", {}), f"{doc['kind']}/{doc['metadata']['name']}")
    return found


def all_pods(docs: list[dict]) -> list[tuple[str, dict]]:
    return [pod for doc in docs for pod in pod_specs(doc)]


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def env_config(docs: list[dict]) -> dict[str, str]:
    (env,) = [d["data"] for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("fnet-env")]
    return env


# --- schemas ---------------------------------------------------------------------------------------

@functools.cache
def crd_schemas() -> dict[str, tuple[str, "jsonschema.Validator"]]:
    """``{kind: (apiVersion, validator of its openAPIV3Schema)}`` of the Dask operator's CRDs, read from
    dask-kubernetes' files (``pip install --no-deps dask-kubernetes``; nothing of it is imported)."""
    import jsonschema

    spec = importlib.util.find_spec("dask_kubernetes")
    if spec is None:
        pytest.fail("the Dask operator's CRDs come from the dask-kubernetes package: "
                    "pip install --no-deps dask-kubernetes")
    folder = Path(spec.origin).parent / "operator" / "deployment" / "helm" / "dask-kubernetes-operator" / "crds"
    schemas = {}
    for path in folder.glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        for version in crd["spec"]["versions"]:
            api = f"{crd['spec']['group']}/{version['name']}"
            schema = strict(version["schema"]["openAPIV3Schema"])
            schemas[crd["spec"]["names"]["kind"]] = (api, jsonschema.Draft7Validator(schema))
    return schemas


def strict(schema: dict) -> dict:
    """The schema with unknown fields refused where it lists the known ones (the API server would silently
    prune them, so a typo in a manifest would be lost without a word)."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def validate(doc: dict) -> None:
    """Raise unless ``doc`` is valid for Kubernetes (strict) or for the Dask operator's CRD of its kind."""
    try:
        import kubernetes_validate
    except ImportError:
        pytest.fail("the Kubernetes JSON schemas come from the kubernetes-validate package: pip install kubernetes-validate")
    if doc["kind"] not in DASK_KINDS:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        return
    api, validator = crd_schemas()[doc["kind"]]
    assert doc["apiVersion"] == api, f"{doc['kind']} is served as {api}, not {doc['apiVersion']}"
    assert set(doc["metadata"]) <= {"name", "namespace", "labels", "annotations"}, doc["metadata"]
    validator.validate({k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")})



@pytest.mark.parametrize("name", ["base", *OVERLAYS])
def test_every_resource_validates(rendered, name):
    kinds = [doc["kind"] for doc in rendered[name]]
    assert {"Namespace", "PersistentVolumeClaim", "ConfigMap", "Job", "DaskJob", "DaskCluster"} <= set(kinds)
    for doc in rendered[name]:
        validate(doc)


def test_validation_catches_mistakes(rendered):
    """The validators are not vacuous: a misspelt field or a wrong type fails, for core kinds and CRDs."""
    import jsonschema
    import kubernetes_validate

    docs = rendered["gpu"]
    job = copy.deepcopy(by_kind(docs, "Job")["fnet-record"])
    job["spec"]["completionsMode"] = "Indexed"
    with pytest.raises(kubernetes_validate.ValidationError, match="completionsMode"):
        validate(job)
    daskjob = copy.deepcopy(by_kind(docs, "DaskJob")["fnet-decompose"])
    daskjob["spec"]["cluster"]["spec"]["workers"] = daskjob["spec"]["cluster"]["spec"].pop("worker")
    with pytest.raises(jsonschema.ValidationError, match="worker"):
        validate(daskjob)
    cluster = copy.deepcopy(by_kind(docs, "DaskCluster")["fnet-dask"])
    cluster["spec"]["worker"]["replicas"] = "two"
    with pytest.raises(jsonschema.ValidationError, match="'two' is not of type 'integer'"):
        validate(cluster)


# --- security (what checkov's Kubernetes checks look at, asserted directly) ------------------------

@pytest.mark.parametrize("name", ["base", *OVERLAYS])
def test_pods_are_locked_down(rendered, name):
    pods = all_pods(rendered[name])
    assert len(pods) == 15  # record, evaluate, controls, report; 3 DaskJobs x (job, scheduler, worker); DaskCluster x 2
    for where, pod in pods:
        ctx = pod["securityContext"]
        assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] >= 1000 and ctx["runAsGroup"] >= 1000, where
        assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert pod["automountServiceAccountToken"] is False and pod["serviceAccountName"] == "fnet", where
        assert not any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")), where
        assert all("hostPath" not in volume for volume in pod.get("volumes", [])), where
        for container in pod["containers"] + pod.get("initContainers", []):
            at = f"{where}/{container['name']}"
            sec = container["securityContext"]
            assert sec["allowPrivilegeEscalation"] is False and sec["readOnlyRootFilesystem"] is True, at
            assert sec["capabilities"] == {"drop": ["ALL"]} and not sec.get("privileged"), at
            assert "command" not in container, f"{at}: keep the image's init (tini); set args only"
            image, _, tag = container["image"].rpartition(":")
            assert image and tag and tag != "latest" and "/" not in tag, f"{at}: image {container['image']!r} unpinned"
            assert container["imagePullPolicy"] == "IfNotPresent", at
            for kind in ("requests", "limits"):
                assert {"cpu", "memory", "ephemeral-storage"} <= set(container["resources"][kind]), f"{at} {kind}"
            _assert_writable_tmp(pod, container, at)
            _assert_no_inline_secrets(container, at)


def _assert_writable_tmp(pod: dict, container: dict, at: str) -> None:
    """The root filesystem is read-only: /tmp must be a mounted emptyDir."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
    assert "/tmp" in mounts and "emptyDir" in volumes[mounts["/tmp"]["name"]], f"{at}: no writable /tmp"
    for path, mount in mounts.items():
        assert mount["name"] in volumes, f"{at}: mount {path} names no volume"


def _assert_no_inline_secrets(container: dict, at: str) -> None:
    for var in container.get("env", []):
        if SECRET_NAME.search(var["name"]):
            assert "valueFrom" in var and "secretKeyRef" in var["valueFrom"], f"{at}: {var['name']} inline"


@pytest.mark.parametrize("name", ["base", *OVERLAYS])
def test_secrets_only_by_reference(rendered, name):
    docs = rendered[name]
    assert "Secret" not in {d["kind"] for d in docs}
    for doc in docs:
        if doc["kind"] == "ConfigMap":
            for key, value in doc["data"].items():
                assert not SECRET_NAME.search(key), f"{doc['metadata']['name']}: {key} looks like a credential"
    refs = {ref["secretRef"]["name"] for _, pod in all_pods(docs) for c in pod["containers"]
            for ref in c.get("envFrom", []) if "secretRef" in ref}
    assert refs == {"fnet-object-storage", "fnet-hub-token"}


# --- wiring ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(OVERLAYS))
def test_references_resolve(rendered, name):
    """Every ConfigMap, PVC and ServiceAccount a pod names is in the output (generated names included)."""
    docs = rendered[name]
    names = {kind: set(by_kind(docs, kind)) for kind in ("ConfigMap", "PersistentVolumeClaim", "ServiceAccount")}
    for where, pod in all_pods(docs):
        assert pod["serviceAccountName"] in names["ServiceAccount"], where
        for volume in pod.get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in names["ConfigMap"], where
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in names["PersistentVolumeClaim"], where
        for container in pod["containers"]:
            for ref in container.get("envFrom", []):
                if "configMapRef" in ref:
                    assert ref["configMapRef"]["name"] in names["ConfigMap"], where
    for doc in docs:
        assert doc["kind"] == "Namespace" or doc["metadata"]["namespace"] == "fnet", doc["metadata"]["name"]


@pytest.mark.parametrize("name", ["base", *OVERLAYS])
def test_every_resource_belongs_to_a_stage(rendered, name):
    stages = {"setup", "record", "decompose", "match", "evaluate", "controls", "nulls", "report", "interactive"}
    for doc in rendered[name]:
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "fnet-dist"
        assert labels["app.kubernetes.io/component"] in stages, doc["metadata"]["name"]
    for doc in rendered[name]:
        if doc["kind"] in DASK_KINDS:  # the operator finds the scheduler through this selector
            cluster = doc["spec"].get("cluster", doc)["spec"]
            assert cluster["scheduler"]["service"]["selector"]["dask.org/cluster-name"] == doc["metadata"]["name"]


def mounted_config(overlay: str) -> str:
    """Where the pods read the overlay's pipeline config: ConfigMap fnet-pipeline is mounted at /etc/fnet."""
    return f"/etc/fnet/{Path(OVERLAYS[overlay]).name}"


def test_the_renderer_refuses_files_outside_the_root(tmp_path):
    """Rendering as the runbook does is not vacuous: a kustomization that reads a file beside its folder (as the
    overlays once read ../../../pipeline/*.yaml) fails without --load-restrictor LoadRestrictionsNone."""
    (tmp_path / "outside.yaml").write_text("version: 1\n")
    (tmp_path / "overlay").mkdir()
    (tmp_path / "overlay" / "kustomization.yaml").write_text(
        "configMapGenerator:\n- name: fnet-pipeline\n  files:\n  - pipeline.yaml=../outside.yaml\n")
    out = kustomize(tmp_path / "overlay")
    assert out.returncode != 0 and "is not in or below" in out.stderr, out.stderr


@pytest.mark.parametrize("name", list(OVERLAYS))
def test_pipeline_configmap_is_the_repository_config(rendered, name):
    """ConfigMap fnet-pipeline holds every pipeline/*.yaml as it is, so the overlay's FNET_CONFIG may name any."""
    (config_map,) = [d for d in rendered[name] if d["metadata"]["name"] == "fnet-pipeline"]
    configs = {path.name: path.read_text() for path in sorted((REPO / "pipeline").glob("*.yaml"))}
    assert config_map["data"] == configs, "list every pipeline/*.yaml in pipeline/Kustomization"
    assert config_map["metadata"]["labels"]["app.kubernetes.io/component"] == "setup"
    env = env_config(rendered[name])
    assert env["FNET_CONFIG"] == mounted_config(name)
    assert "FNET_CONFIG" not in env_config(rendered["base"]), "each overlay names its run, the base none"
    for _, pod in all_pods(rendered[name]):
        if any(c.get("args", [])[:2] == ["fnet", "run"] for c in pod["containers"]):
            mounts = {m["mountPath"]: m["name"] for c in pod["containers"] for m in c["volumeMounts"]}
            volume = {v["name"]: v for v in pod["volumes"]}[mounts["/etc/fnet"]]
            assert volume["configMap"]["name"] == "fnet-pipeline"


def _stage_containers(docs: list[dict]) -> dict[str, dict]:
    """The container that runs each stage: every Job's, and each DaskJob's job pod's (not Dask's own)."""
    found = {}
    for doc in docs:
        if doc["kind"] == "Job":
            (container,) = doc["spec"]["template"]["spec"]["containers"]
        elif doc["kind"] == "DaskJob":
            (container,) = doc["spec"]["job"]["spec"]["containers"]
        else:
            continue
        found[doc["metadata"]["labels"]["app.kubernetes.io/component"]] = container
    return found


@pytest.mark.parametrize("name", list(OVERLAYS))
def test_every_stage_runs_fnet_run_and_nothing_else(rendered, name):
    """Each stage's pod runs `fnet run CONFIG --stages STAGE [--index I --count N]`, parsed by fnet's own CLI;
    the sharded stages are Indexed Jobs whose --count is their completions."""
    from fnet_dist import cli
    from fnet_dist.stages import STAGES

    docs, env = rendered[name], env_config(rendered[name])
    containers = _stage_containers(docs)
    assert set(containers) == set(STAGES)
    jobs = by_kind(docs, "Job")
    for stage, container in containers.items():
        args = container["args"]
        assert args[:3] == ["fnet", "run", "$(FNET_CONFIG)"] and args[args.index("--stages") + 1] == stage, args
        variables = {**env, **{e["name"]: e.get("value", "") for e in container.get("env", [])}, "JOB_COMPLETION_INDEX": "0"}
        expanded = [re.sub(r"\$\((\w+)\)", lambda m: variables[m.group(1)], arg) for arg in args]
        parsed = cli.build_parser().parse_args(expanded[1:])
        assert parsed.config == mounted_config(name) and parsed.stages == stage
        if STAGES[stage].shards is None:
            assert parsed.index is None and parsed.count is None, stage
            continue
        spec = jobs[f"fnet-{stage}"]["spec"]
        assert spec["completionMode"] == "Indexed" and 1 <= spec["parallelism"] <= spec["completions"]
        assert parsed.index == 0 and parsed.count == spec["completions"], stage
        (index_env,) = [e for e in container["env"] if e["name"] == "JOB_COMPLETION_INDEX"]
        assert index_env["valueFrom"]["fieldRef"]["fieldPath"] == \
            "metadata.annotations['batch.kubernetes.io/job-completion-index']"
        (rule,) = spec["podFailurePolicy"]["rules"]
        assert rule["onExitCodes"] == {"containerName": container["name"], "operator": "In", "values": [2]}
    assert not (K8S / "stage.py").exists()  # no second description of the stages


# --- network policies ------------------------------------------------------------------------------

RUN_LABEL = {"app.kubernetes.io/part-of": "fnet-dist"}
STORAGE_SECRET = "fnet-object-storage"
DASK_ROLES = {"job": "job-runner", "scheduler": "scheduler", "worker": "worker"}  # the operator's dask.org/component


def placed_pods(doc: dict) -> list[tuple[str, dict, dict]]:
    """``(where, labels, pod spec)`` of every pod a resource makes, with the labels the pod carries in the
    cluster: a Job's template labels; for the Dask operator's resources the template's labels plus the ones the
    operator adds (``dask.org/cluster-name``, ``dask.org/component``: scheduler, worker, job-runner)."""
    name, spec = doc["metadata"]["name"], doc.get("spec", {})
    if doc["kind"] == "Job":
        template = spec["template"]
        return [(f"Job/{name}", template["metadata"].get("labels", {}), template["spec"])]
    if doc["kind"] == "DaskJob":
        parts = {"job": spec["job"], **{k: spec["cluster"]["spec"][k] for k in ("scheduler", "worker")}}
    elif doc["kind"] == "DaskCluster":
        parts = {k: spec[k] for k in ("scheduler", "worker")}
    else:
        parts = {}
    return [(f"{doc['kind']}/{name}/{role}",
             {**part.get("metadata", {}).get("labels", {}), "dask.org/cluster-name": name,
              "dask.org/component": DASK_ROLES[role]}, part["spec"])
            for role, part in parts.items() if part]


def selects(selector: dict, labels: dict) -> bool:
    """Whether a Kubernetes label selector (matchLabels, matchExpressions) selects ``labels``."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for rule in selector.get("matchExpressions", []):
        key, op, values = rule["key"], rule["operator"], rule.get("values", [])
        if not {"In": labels.get(key) in values, "NotIn": labels.get(key) not in values,
                "Exists": key in labels, "DoesNotExist": key not in labels}[op]:
            return False
    return True


def carries_storage_secret(pod: dict) -> bool:
    containers = pod["containers"] + pod.get("initContainers", [])
    return (any(ref.get("secretRef", {}).get("name") == STORAGE_SECRET for c in containers for ref in c.get("envFrom", []))
            or any(var.get("valueFrom", {}).get("secretKeyRef", {}).get("name") == STORAGE_SECRET
                   for c in containers for var in c.get("env", []))
            or any(v.get("secret", {}).get("secretName") == STORAGE_SECRET for v in pod.get("volumes", [])))


def _peer_is_a_run_pod(peer: dict) -> bool:
    """A ``from`` peer that admits this namespace's pods labelled as the run's, and nothing else."""
    return set(peer) == {"podSelector"} and peer["podSelector"] == {"matchLabels": RUN_LABEL}


def network_problems(docs: list[dict]) -> list[str]:
    """What the rendered ``docs`` leave open: no default deny; a pod holding the storage Secret that a policy
    opens to pods other than the run's; a Dask scheduler or worker no policy admits the run's pods to, or whose
    policy opens ports its containers do not listen on (or misses one they do); a pod talking to Dask without the
    run's label."""
    policies = [d["spec"] for d in docs if d["kind"] == "NetworkPolicy"]
    ingress = [p for p in policies if "Ingress" in p.get("policyTypes", ["Ingress"])]
    problems = []
    if not any(p["podSelector"] == {} and not p.get("ingress") for p in ingress):
        problems.append("no default deny of ingress for the namespace")
    for doc in docs:
        for where, labels, pod in placed_pods(doc):
            mine = [p for p in ingress if selects(p["podSelector"], labels)]
            if carries_storage_secret(pod):
                if not mine:
                    problems.append(f"{where} holds the storage Secret and no policy covers it")
                for policy in mine:
                    for rule in policy.get("ingress", []):
                        if not rule.get("from") or not all(_peer_is_a_run_pod(peer) for peer in rule["from"]):
                            problems.append(f"{where}: a policy admits pods other than the run's: {rule}")
            role = labels.get("dask.org/component")
            if role in ("scheduler", "worker"):
                opened = {port["port"] for p in mine for rule in p.get("ingress", []) for port in rule.get("ports", [])}
                listening = {port["containerPort"] for c in pod["containers"] for port in c.get("ports", [])}
                if not opened:
                    problems.append(f"{where}: no policy admits the run's pods to this Dask {role}")
                elif opened != listening:
                    problems.append(f"{where}: policy ports {sorted(opened)} are not its container ports {sorted(listening)}")
            if role and labels.get("app.kubernetes.io/part-of") != RUN_LABEL["app.kubernetes.io/part-of"]:
                problems.append(f"{where}: talks to Dask without the run's label")
    return problems


@pytest.mark.parametrize("name", ["base", *OVERLAYS])
def test_only_the_runs_pods_reach_any_dask_pod_and_the_namespace_denies_the_rest(rendered, name):
    docs = rendered[name]
    assert network_problems(docs) == []
    pods = [(where, labels, pod) for doc in docs for where, labels, pod in placed_pods(doc)]
    roles = {labels.get("dask.org/component") for _, labels, _ in pods}
    assert {"scheduler", "worker", "job-runner"} <= roles
    assert sum(carries_storage_secret(pod) for _, _, pod in pods) >= 6  # the stages' pods and every Dask pod
    for where, labels, pod in pods:  # each worker listens on exactly the ports its policy opens
        if labels.get("dask.org/component") == "worker":
            args = pod["containers"][0]["args"]
            assert args[args.index("--worker-port") + 1] == "8789" and args[args.index("--nanny-port") + 1] == "8790"


@pytest.mark.parametrize("change, problem", [
    (lambda docs: [d for d in docs if d["metadata"]["name"] != "fnet-dask-worker"],
     "no policy admits the run's pods to this Dask worker"),
    (lambda docs: [d for d in docs if d["metadata"]["name"] != "fnet-default-deny"], "no default deny"),
    (lambda docs: [_edited(d, "fnet-dask-scheduler", lambda spec: spec["ingress"][0]["from"].append(
        {"namespaceSelector": {}})) for d in docs], "admits pods other than the run's"),
    (lambda docs: [_edited(d, "fnet-dask-worker", lambda spec: spec["ingress"][0]["ports"].pop()) for d in docs],
     "are not its container ports"),
])
def test_the_network_check_finds_an_open_dask_pod(rendered, change, problem):
    found = network_problems(change(copy.deepcopy(rendered["cpu"])))
    assert any(problem in line for line in found), found


def _edited(doc: dict, name: str, edit) -> dict:
    if doc["kind"] == "NetworkPolicy" and doc["metadata"]["name"] == name:
        edit(doc["spec"])
    return doc


def test_gpu_overlay_places_the_model_stages_on_gpus_and_dask_on_the_cpu_image(rendered):
    for name in ("cpu", "gpu"):
        jobs = by_kind(rendered[name], "Job")
        for job in ("fnet-record", "fnet-evaluate", "fnet-controls"):
            pod = jobs[job]["spec"]["template"]["spec"]
            limits = pod["containers"][0]["resources"]["limits"]
            if name == "cpu":
                assert "nvidia.com/gpu" not in limits and "nodeSelector" not in pod and "tolerations" not in pod
                continue
            assert limits["nvidia.com/gpu"] == "1" and pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
            assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
            assert pod["containers"][0]["image"] == "fnet-dist:0.1.0-gpu"
        assert "nodeSelector" not in jobs["fnet-report"]["spec"]["template"]["spec"]
    gpu = rendered["gpu"]
    dask_images = {c["image"] for doc in gpu if doc["kind"] in DASK_KINDS for _, pod in pod_specs(doc)
                   for c in pod["containers"]}
    assert dask_images == {"fnet-dist-cpu:0.1.0"}
    assert {c["image"] for _, pod in all_pods(rendered["cpu"]) for c in pod["containers"]} == {"fnet-dist-cpu:0.1.0"}
    assert env_config(gpu)["FNET_STORES"].startswith("s3://")


# --- the image --------------------------------------------------------------------------------------

def test_dockerfile_builds_what_the_manifests_run(rendered):
    text = (REPO / "Dockerfile").read_text()
    uid = re.search(r"^ARG UID=(\d+)$", text, re.M).group(1)
    assert re.search(r"^USER \$\{UID\}:\$\{UID\}$", text, re.M)
    assert {pod["securityContext"]["runAsUser"] for _, pod in all_pods(rendered["gpu"])} == {int(uid)}
    assert 'ENTRYPOINT ["tini", "-g", "--"]' in text
    assert re.search(r"^FROM python:\$\{PYTHON_VERSION\}-slim", text, re.M)
    assert 'gpu) pip install --constraint gpu-constraints.txt ".[s3,gcs,offline,vllm]"' in text
    assert "gcc" in text, "Triton compiles kernels with the system C compiler at run time"
    pins = [line for line in (REPO / "gpu-constraints.txt").read_text().splitlines() if line and not line.startswith("#")]
    assert all("==" in line for line in pins) and any(line.startswith(("vllm==", "torch==")) for line in pins)
    ignore = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    copied = [src for line in re.findall(r"^COPY (.+)$", text, re.M) for src in line.split()[:-1]]
    for source in copied:
        assert (REPO / source).exists(), f"COPY {source}: no such file in the repository"
        assert _docker_admits(ignore, source), f"COPY {source}: excluded by .dockerignore"


def _docker_admits(rules: list[str], path: str) -> bool:
    """Whether ``path`` reaches the build context under .dockerignore ``rules`` (last match wins)."""
    admitted = True
    for rule in rules:
        negate = rule.startswith("!")
        pattern = rule.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
            admitted = negate
    return admitted
