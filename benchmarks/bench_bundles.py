"""Bundle operations against a real registry, side by side with skopeo, in one run.

Run from the repository root:

    .venv/bin/python benchmarks/bench_bundles.py [--repeat N] [--manifests M]

It starts its own registry (Debian's docker-registry, on a free loopback port, storage in a
temporary folder), generates a source of M manifests (ConfigMaps and Deployments with parameters)
in a git repository, and times each operation N times for Conveyor (in-process, through the same
functions the CLI and the flows call, a fresh store per operation) and for its closest skopeo
peer (a subprocess, so its figures include process start-up):

  build+push   artifact.build (git read, lint, tree hash, reuse check, pack, push) into a fresh
               repository  vs  skopeo copy of the same artifact from an OCI layout folder
  reuse check  store.find_by_tree_hash  vs  skopeo inspect --raw of the tree tag
  tag move     store.tag (staging alternates between two digests)  vs
               skopeo copy docker://repo@digest docker://repo:staging
  pull+verify  artifact.load (manifest and layer checked against their digests, archive read,
               source checked)  vs  skopeo copy docker://repo@digest oci:<fresh folder>:x
  image resolve  the digest of an image tag, as a build pins each image (ImageRegistries.digest)
               vs  skopeo inspect --raw of the tag
  chart render  render.render of a Helm-chart source for one target (the public metrics-server
               chart of tests/fixtures; helm template in a private folder, its output cut,
               parsed and checked)  vs  `helm template` of the same chart with the same values
               (the platform's Helm, built on first use)

Every build pins the source's image (registry.example/app:1.0.0, pushed to the benchmark's
registry, which mirrors every registry) and renders the manifests once to find it.

Conveyor's HTTP requests are counted with a response hook on the store's session. It prints a
table (median and p90 in ms, the ratio conveyor/skopeo of the medians) and writes every sample
to benchmarks/results/bundles.json. It is a script, never a timed unit test.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support, benchmarks.common

import requests

from benchmarks import common
from conveyor.adapters import oci
from conveyor.adapters.image_registry import ImageRegistries, push_small_image
from conveyor.bundles import artifact, render
from conveyor.bundles.source import load_source
from conveyor.kit.digests import sha256_digest
from conveyor.platform import binaries
from conveyor.platform.components import Registry
from conveyor.platform.process import free_port
from tests.support.git import git, init_repository

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "bundles.json"
SOURCE_PATH = "app"
REUSE_TARGET_MS = 100.0
TAG_MOVE_MAX_REQUESTS = 3
PEER_OPERATION = {"push only": "build+push"}  # skopeo's copy is the peer of the upload alone
PEER_TOOL = {"chart render": "helm"}  # every other operation's peer is skopeo
CHART = ROOT / "tests" / "fixtures" / "charts" / "metrics-server"
CHART_VALUES = {"replicas": 2, "apiService": {"create": False}, "fullnameOverride": "metrics"}
ENVIRONMENTS = ("dev", "test", "staging", "prod")  # what `conveyor bundle build` lints for
SKOPEO_TLS = ("--src-tls-verify=false", "--dest-tls-verify=false")

T = TypeVar("T")

BUNDLE_YAML = """\
apiVersion: conveyor.dev/v1alpha1
kind: Bundle
name: bench
parameters:
  type: object
  properties:
    replicas: {type: integer, minimum: 1, maximum: 50, default: 2}
    image: {type: string, default: registry.example/app}
    version: {type: string, pattern: "^[A-Za-z0-9._-]+$", default: "1.0.0"}
    greeting: {type: string, default: hello}
    logLevel: {type: string, enum: [debug, info, warn], default: info}
    cpu: {type: string, default: 100m}
  additionalProperties: false
"""

CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: svc-{i:03d}-config
  labels:
    app.kubernetes.io/name: svc-{i:03d}
    app.kubernetes.io/part-of: bench
data:
  greeting: ${{greeting}} from svc-{i:03d}
  log-level: ${{logLevel}}
  upstream: http://svc-{next:03d}.default.svc:8080
  timeout-seconds: "{timeout}"
  feature-flags: |
    alpha=true
    beta=false
    shard={i}
"""

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: svc-{i:03d}
  labels:
    app.kubernetes.io/name: svc-{i:03d}
    app.kubernetes.io/part-of: bench
spec:
  replicas: ${{replicas}}
  selector:
    matchLabels:
      app.kubernetes.io/name: svc-{i:03d}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: svc-{i:03d}
    spec:
      containers:
        - name: app
          image: ${{image}}:${{version}}
          args: ["--port=8080", "--shard={i}"]
          ports:
            - containerPort: 8080
          envFrom:
            - configMapRef:
                name: svc-{i:03d}-config
          resources:
            requests:
              cpu: ${{cpu}}
              memory: 64Mi
          readinessProbe:
            httpGet:
              path: /healthz
              port: 8080
"""


# --- measurements --------------------------------------------------------------------------------


@dataclass
class Series:
    """One operation's samples, in ms, and what was learnt about it."""

    operation: str
    tool: str
    samples: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def median(self) -> float:
        return common.median(self.samples)

    @property
    def p90(self) -> float:
        return common.p90(self.samples)


class RequestLog:
    """Counts a store's HTTP requests by method and path (a response hook on its session)."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        self.operations = 0

    def hook(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        request = response.request
        path = urllib.parse.urlsplit(str(request.url)).path
        self.counts[(str(request.method), _generic(path))] += 1

    def per_operation(self) -> float:
        return sum(self.counts.values()) / max(self.operations, 1)

    def blob_uploads(self) -> int:
        return sum(
            count
            for (method, path), count in self.counts.items()
            if method in ("POST", "PUT", "PATCH") and "/blobs/" in path
        )

    def lines(self) -> list[str]:
        return [
            f"{method} {path} x{count / max(self.operations, 1):g}"
            for (method, path), count in sorted(self.counts.items())
        ]


def _generic(path: str) -> str:
    """A request path with its repository, digest, tag and upload id replaced by their kind."""
    match = re.fullmatch(r"/v2/.+?/(manifests|blobs)/(.*)", path)
    if not match:
        return path
    area, rest = match.groups()
    if rest.startswith("sha256:"):
        rest = "<digest>"
    elif rest.startswith("uploads/"):
        rest = "uploads/<id>" if rest.removeprefix("uploads/") else "uploads/"
    elif rest.startswith(oci.TREE_TAG_PREFIX):
        rest = "<tree tag>"
    else:
        rest = "<tag>"
    return f"/v2/<repo>/{area}/{rest}"


def open_store(location: str, log: RequestLog | None = None) -> oci.BundleStore:
    store = oci.open_store(location)
    if log is not None:
        assert isinstance(store, oci.RegistryStore)
        store.session.hooks["response"].append(log.hook)
    return store


def timed_ms(action: Callable[[], T]) -> tuple[float, T]:
    """How long `action()` took, in ms, and what it returned."""
    seconds, result = common.timed(action)
    return seconds * 1000, result


def skopeo(*args: str) -> None:
    subprocess.run(["skopeo", *args], check=True, capture_output=True, timeout=60)


def skopeo_copy(source: str, destination: str) -> None:
    skopeo("copy", *SKOPEO_TLS, source, destination)


def skopeo_raw(image: str) -> bytes:
    return subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", image],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout


# --- the source ----------------------------------------------------------------------------------


def make_source(repo: Path, manifests: int) -> None:
    """A git repository whose `app/` holds bundle.yaml and `manifests` manifests."""
    folder = repo / SOURCE_PATH / "manifests"
    folder.mkdir(parents=True)
    (repo / SOURCE_PATH / "bundle.yaml").write_text(BUNDLE_YAML)
    services = manifests // 2
    for i in range(services):
        values = {"i": i, "next": (i + 1) % services, "timeout": 5 + i % 25}
        (folder / f"svc-{i:03d}-config.yaml").write_text(CONFIGMAP.format(**values))
        (folder / f"svc-{i:03d}-deployment.yaml").write_text(DEPLOYMENT.format(**values))
    init_repository(repo, "bench source")


def change_source(repo: Path) -> None:
    """A second commit whose source differs by one value: a second bundle to move tags to."""
    configmap = repo / SOURCE_PATH / "manifests" / "svc-000-config.yaml"
    configmap.write_text(configmap.read_text().replace("shard=0", "shard=zero"))
    git(repo, "commit", "-qam", "second bundle")


# --- the run -------------------------------------------------------------------------------------


@dataclass
class Bench:
    """One run: where it works, what it measures, and the series and request logs so far (in
    the order the table prints them)."""

    work: Path
    address: str
    repeat: int
    manifests: int
    series: list[Series] = field(default_factory=list)
    requests: dict[str, RequestLog] = field(default_factory=dict)
    build: Callable[[oci.BundleStore], artifact.Built] = field(init=False)
    """`artifact.build` of the source at HEAD into a store, as `conveyor bundle build` lints it."""

    def __post_init__(self) -> None:
        self.registries = ImageRegistries(mirrors={"*": self.address})
        self.build = partial(
            artifact.build,
            str(self.repo),
            "HEAD",
            SOURCE_PATH,
            environment_names=ENVIRONMENTS,
            registries=self.registries,
        )

    @property
    def repo(self) -> Path:
        return self.work / "repo"

    @property
    def layout(self) -> Path:
        return self.work / "layout"

    @property
    def home(self) -> str:
        """The repository of the first build, where reuse, tag moves and pulls are measured."""
        return f"{self.address}/bench/build-0"

    def request_log(self, series: Series) -> RequestLog:
        self.requests[series.operation] = log = RequestLog()
        return log


def run(work: Path, address: str, repeat: int, manifests: int) -> dict[str, Any]:
    bench = Bench(work, address, repeat, manifests)
    make_source(bench.repo, manifests)
    # The source's image, registry.example/app:1.0.0, as the registry's mirror of every registry.
    push_small_image(address, "app", "1.0.0", "the benchmark's app")
    built = measure_build(bench)
    measure_skopeo_copy(bench, built)
    measure_push(bench, built)
    measure_reuse(bench, built)
    measure_tag_moves(bench, built.digest)
    measure_pull(bench, built.digest)
    measure_image_resolution(bench)
    measure_chart_render(bench)
    return {
        "series": bench.series,
        "requests": bench.requests,
        "digest": built.digest,
        "layer_bytes": built.size,
    }


def measure_build(bench: Bench) -> artifact.Built:
    """1. build+push, each time into a fresh repository, so every build really pushes."""
    build = Series("build+push", "conveyor")
    build_log = bench.request_log(build)
    for i in range(bench.repeat):
        store = open_store(f"{bench.address}/bench/build-{i}", build_log)
        ms, built = timed_ms(partial(bench.build, store))
        build.samples.append(ms)
        build_log.operations += 1
        assert not built.reused, "a build into a fresh repository pushes"
    build.note = f"{bench.manifests} manifests, layer {built.size} bytes"
    bench.series.append(build)
    return built


def measure_skopeo_copy(bench: Bench, built: artifact.Built) -> None:
    """skopeo's peer of build+push: a copy of the same artifact from an OCI layout folder."""
    layout_build = bench.build(open_store(f"oci:{bench.layout}"))
    assert layout_build.digest == built.digest, "the same artifact"
    tree_tag = oci.tree_tag(built.tree_hash)
    copy = Series("build+push", "skopeo", note="copy oci:layout -> registry")
    for i in range(bench.repeat):
        destination = f"docker://{bench.address}/bench/skopeo-{i}:{tree_tag}"
        copy.samples.append(
            timed_ms(partial(skopeo_copy, f"oci:{bench.layout}:{tree_tag}", destination))[0]
        )
    copied = skopeo_raw(f"docker://{bench.address}/bench/skopeo-0:{tree_tag}")
    assert sha256_digest(copied) == built.digest, "skopeo copied the same manifest bytes"
    bench.series.append(copy)


def measure_push(bench: Bench, built: artifact.Built) -> None:
    """The upload alone (packed bytes in hand), the part of build+push that skopeo copy also
    does."""
    manifest, layer = open_store(f"oci:{bench.layout}").pull(built.digest)
    annotations = oci.BundleAnnotations.from_dict(manifest["annotations"])
    push = Series(
        "push only", "conveyor", note="store.push of the packed layer (ratio vs skopeo copy)"
    )
    push_log = bench.request_log(push)
    for i in range(bench.repeat):
        store = open_store(f"{bench.address}/bench/push-{i}", push_log)
        ms, pushed = timed_ms(partial(store.push, layer, annotations))
        push.samples.append(ms)
        push_log.operations += 1
        assert pushed == built.digest
    bench.series.append(push)


def measure_reuse(bench: Bench, built: artifact.Built) -> None:
    """2. the reuse check: one manifest read, nothing uploaded; and a whole build, reused."""
    reuse = Series("reuse check", "conveyor")
    reuse_log = bench.request_log(reuse)
    for _ in range(bench.repeat):
        store = open_store(bench.home, reuse_log)
        ms, found = timed_ms(partial(store.find_by_tree_hash, built.tree_hash))
        reuse.samples.append(ms)
        reuse_log.operations += 1
        assert found == built.digest
    assert reuse_log.blob_uploads() == 0
    peek = Series("reuse check", "skopeo", note="inspect --raw of the tree tag")
    tree_tag = oci.tree_tag(built.tree_hash)
    for _ in range(bench.repeat):
        peek.samples.append(timed_ms(partial(skopeo_raw, f"docker://{bench.home}:{tree_tag}"))[0])
    whole = Series(
        "build, reused",
        "conveyor",
        note="git read + tree hash + reuse check (lint ran at the first build)",
    )
    for _ in range(bench.repeat):
        ms, again = timed_ms(partial(bench.build, open_store(bench.home)))
        whole.samples.append(ms)
        assert again.reused and again.digest == built.digest
    bench.series += [reuse, peek, whole]


def measure_tag_moves(bench: Bench, digest: str) -> None:
    """3. tag moves: `staging` alternates between two bundles of the same repository."""
    change_source(bench.repo)
    home = bench.home
    second = bench.build(open_store(home)).digest
    targets = [digest if i % 2 else second for i in range(bench.repeat)]
    tag = Series("tag move", "conveyor")
    tag_log = bench.request_log(tag)
    for target in targets:
        tag.samples.append(timed_ms(partial(open_store(home, tag_log).tag, target, "staging"))[0])
        tag_log.operations += 1
    assert sha256_digest(skopeo_raw(f"docker://{home}:staging")) == targets[-1]
    retag = Series("tag move", "skopeo", note="copy repo@digest -> repo:staging")
    for target in targets:
        move = partial(skopeo_copy, f"docker://{home}@{target}", f"docker://{home}:staging")
        retag.samples.append(timed_ms(move)[0])
    assert sha256_digest(skopeo_raw(f"docker://{home}:staging")) == targets[-1]
    bench.series += [tag, retag]


def measure_pull(bench: Bench, digest: str) -> None:
    """4. pull and verify by digest."""
    pull = Series("pull+verify", "conveyor")
    pull_log = bench.request_log(pull)
    for _ in range(bench.repeat):
        ms, loaded = timed_ms(partial(artifact.load, open_store(bench.home, pull_log), digest))
        pull.samples.append(ms)
        pull_log.operations += 1
        assert len(loaded.source.manifests) == bench.manifests
    fetch = Series("pull+verify", "skopeo", note="copy repo@digest -> oci:<fresh folder>")
    for i in range(bench.repeat):
        pulled = f"oci:{bench.work / f'pulled-{i}'}:x"
        copy = partial(skopeo_copy, f"docker://{bench.home}@{digest}", pulled)
        fetch.samples.append(timed_ms(copy)[0])
    bench.series += [pull, fetch]


# --- report --------------------------------------------------------------------------------------


def measure_image_resolution(bench: Bench, images: int = 10) -> None:
    """5. what pinning costs a build per image: the digest of a tag (Conveyor: one HEAD) vs
    skopeo inspect --raw of the same tag (a GET, in a process of its own)."""
    tags = [f"1.0.{n}" for n in range(images)]
    for tag in tags:
        push_small_image(bench.address, "pinned", tag, f"pinned {tag}")
    resolve = Series("image resolve", "conveyor", note="digest of a tag: one HEAD")
    resolve_log = bench.request_log(resolve)
    registries = ImageRegistries()
    for index in range(bench.repeat):
        tag = tags[index % images]
        before = registries.requests_made
        ms, found = timed_ms(partial(registries.digest, bench.address, "pinned", tag))
        resolve.samples.append(ms)
        resolve_log.counts[("HEAD", "/v2/<repo>/manifests/<tag>")] += (
            registries.requests_made - before
        )
        resolve_log.operations += 1
        assert found == sha256_digest(skopeo_raw(f"docker://{bench.address}/pinned:{tag}"))
    inspect = Series("image resolve", "skopeo", note="inspect --raw of the tag")
    for index in range(bench.repeat):
        image = f"docker://{bench.address}/pinned:{tags[index % images]}"
        inspect.samples.append(timed_ms(partial(skopeo_raw, image))[0])
    bench.series += [resolve, inspect]


def measure_chart_render(bench: Bench) -> None:
    """6. a Helm chart rendered for one target: Conveyor's render (helm template, then the
    output cut by template, parsed and checked) vs `helm template` alone."""
    helm = binaries.ensure_built(binaries.HELM)["helm"]
    os.environ["CONVEYOR_HELM"] = str(helm)
    folder = bench.work / "chart-source"
    shutil.copytree(CHART, folder / "chart")
    (folder / "bundle.yaml").write_text(
        "apiVersion: conveyor.dev/v1alpha1\nkind: Bundle\nname: metrics\nhelm: {chart: chart}\n"
    )
    source = load_source(folder)
    values = folder / "values.json"
    values.write_text(json.dumps(CHART_VALUES))
    conveyor = Series("chart render", "conveyor", note="render.render of metrics-server 3.12.2")
    objects: list[Any] = []
    for _ in range(bench.repeat):
        ms, objects = timed_ms(partial(render.render, source, CHART_VALUES, namespace="ops"))
        conveyor.samples.append(ms)
    peer = Series("chart render", "helm", note="helm template, same chart and values")
    command = [str(helm), "template", "metrics", str(folder / "chart"), "-n", "ops"]
    command += ["-f", str(values), "--include-crds", "--skip-tests"]
    printed = ""
    for _ in range(bench.repeat):
        ms, printed = timed_ms(
            lambda: subprocess.run(command, check=True, capture_output=True, text=True).stdout
        )
        peer.samples.append(ms)
    assert len(objects) == printed.count("\nkind: "), "both rendered the same objects"
    bench.series += [conveyor, peer]


def report(outcome: dict[str, Any], repeat: int, manifests: int, seconds: float) -> dict[str, Any]:
    series: list[Series] = outcome["series"]
    logs: dict[str, RequestLog] = outcome["requests"]
    print(
        f"\nbundle benchmarks: {manifests} manifests, layer {outcome['layer_bytes']} bytes, "
        f"{repeat} repetitions each, {seconds:.0f} s in all"
    )
    rows = print_table(series, logs)
    print("\nConveyor's HTTP requests per operation (method path x count):")
    for operation, log in logs.items():
        print(f"  {operation}:")
        for line in log.lines():
            print(f"    {line}")
    return {"rows": rows, "targets": check_targets(series, logs)}


def print_table(series: list[Series], logs: dict[str, RequestLog]) -> list[dict[str, Any]]:
    """Print a line per series (ratio against skopeo's peer, requests per operation); the
    rows of the results file."""
    by_key = {(s.operation, s.tool): s for s in series}
    header = (
        f"{'operation':<14} {'tool':<9} {'median ms':>10} {'p90 ms':>8} {'ratio':>7} "
        f"{'requests':>9}  note"
    )
    print(header)
    print("-" * len(header))
    rows = []
    for s in series:
        peer_tool = PEER_TOOL.get(s.operation, "skopeo")
        peer = by_key.get((PEER_OPERATION.get(s.operation, s.operation), peer_tool))
        ratio = s.median / peer.median if s.tool == "conveyor" and peer else None
        log = logs.get(s.operation) if s.tool == "conveyor" else None
        count = log.per_operation() if log else None
        print(
            f"{s.operation:<14} {s.tool:<9} {s.median:>10.1f} {s.p90:>8.1f} "
            f"{'' if ratio is None else f'{ratio:.2f}':>7} "
            f"{'' if count is None else f'{count:g}':>9}  {s.note}"
        )
        rows.append(
            {
                "operation": s.operation,
                "tool": s.tool,
                "median_ms": round(s.median, 2),
                "p90_ms": round(s.p90, 2),
                "ratio_conveyor_over_skopeo": None if ratio is None else round(ratio, 3),
                "requests_per_operation": count,
                "requests": log.lines() if log else None,
                "note": s.note,
                "samples_ms": [round(x, 2) for x in s.samples],
            }
        )
    return rows


def check_targets(series: list[Series], logs: dict[str, RequestLog]) -> dict[str, Any]:
    """The reuse check's time and uploads, and a tag move's requests, against their targets."""
    reuse = next(s for s in series if (s.operation, s.tool) == ("reuse check", "conveyor"))
    tag_log = logs["tag move"]
    checks = {
        "reuse_check_median_ms": round(reuse.median, 2),
        "reuse_check_within_target": reuse.median <= REUSE_TARGET_MS,
        "reuse_check_blob_uploads": logs["reuse check"].blob_uploads(),
        "tag_move_requests": tag_log.per_operation(),
        "tag_move_within_target": tag_log.per_operation() <= TAG_MOVE_MAX_REQUESTS,
    }
    print(
        f"\ntargets: reuse check {reuse.median:.1f} ms (target <= {REUSE_TARGET_MS:g} ms: "
        f"{'met' if checks['reuse_check_within_target'] else 'MISSED'}), "
        f"{checks['reuse_check_blob_uploads']} blob uploads (target 0); tag move "
        f"{tag_log.per_operation():g} requests (target <= {TAG_MOVE_MAX_REQUESTS}: "
        f"{'met' if checks['tag_move_within_target'] else 'MISSED'})"
    )
    return checks


def skopeo_version() -> str:
    return subprocess.run(
        ["skopeo", "--version"], check=True, capture_output=True, text=True
    ).stdout.strip()


def main() -> None:
    parser = common.argument_parser(
        __doc__, repeat=25, repeat_help="repetitions of each operation", results=RESULTS
    )
    parser.add_argument("--manifests", type=int, default=200, help="manifests in the source")
    args = parser.parse_args()
    if args.repeat < 1 or args.manifests < 2:
        parser.error("--repeat must be at least 1 and --manifests at least 2")
    if not shutil.which("skopeo"):
        sys.exit("skopeo is not installed (./dev installs the Debian package)")

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-") as tmp:
        work = Path(tmp)
        registry = Registry(work / "platform", free_port())
        registry.up()
        try:
            outcome = run(work, registry.address, args.repeat, args.manifests)
        finally:
            registry.down()
    seconds = time.monotonic() - started
    summary = report(outcome, args.repeat, args.manifests, seconds)
    results = {
        "benchmark": "bundles",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "python": platform.python_version(),
            "system": platform.platform(),
            "cpus": os.cpu_count(),
            "skopeo": skopeo_version(),
        },
        "repeat": args.repeat,
        "manifests": args.manifests,
        "layer_bytes": outcome["layer_bytes"],
        "digest": outcome["digest"],
        "total_seconds": round(seconds, 1),
        **summary,
    }
    common.write_results(args.out, results)
    print(f"\nwrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()
