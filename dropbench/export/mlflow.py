"""`dropbench export DIR --mlflow URI`: a results folder as MLflow runs.

An experiment per folder (named after it, or as given); in it a parent run per sweep (the folder)
holding the group statistics (each group's mean ± interval, the report's numbers), the summary
CSV and the plots; under it a child run per run: params = its flattened resolved config,
metrics = its curve with step = epoch plus its final metrics, tags = run_id, status and the
platform, artifact = config.yaml. Works with a local SQLite store (sqlite:///mlflow.db), no
server. Exporting again adds only the runs not exported yet (matched by their run_id tag): a sweep
exported while running gets the rest later. Needs the `mlflow` extra (mlflow-skinny and the
SQL store's sqlalchemy and alembic), imported here only.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from dropbench.errors import UserError
from dropbench.export import ExportResult, Folder, Row, curve_metrics, final_metrics, missing_extra, params, read_folder, run_tags

if TYPE_CHECKING:
    from mlflow import MlflowClient

KIND, FOLDER_TAG, DONE_TAG, COUNT_TAG = "dropbench.kind", "dropbench.folder", "dropbench.complete", "dropbench.exported_runs"
GROUP_STATS = ("n_seeds", "failed", "test_mean", "test_std", "test_se", "test_ci", "train_mean", "train_std", "gap", "rank",
               "paired_diff", "paired_ci")
BATCH = 500  # metrics per log_batch call (MLflow takes at most 1000)


def _client(uri: str) -> "MlflowClient":
    import logging

    try:
        from mlflow import MlflowClient
    except ImportError as e:
        raise missing_extra("MLflow", "mlflow", e) from None
    for name in ("mlflow", "alembic"):  # a new store's schema set-up is not news to the user
        logging.getLogger(name).setLevel(logging.WARNING)
    return MlflowClient(tracking_uri=uri, registry_uri=uri if uri.startswith("sqlite:") else None)


@contextlib.contextmanager
def _fail_fast() -> Iterator[None]:
    """While first contacting the store: no retries with backoff (minutes, for a server that is
    not there); the user's own settings are kept."""
    set_here = [k for k, v in (("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0"), ("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")) if k not in os.environ]
    for k, v in (("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0"), ("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")):
        if k in set_here:
            os.environ[k] = v
    try:
        yield
    finally:
        for k in set_here:
            os.environ.pop(k, None)


def _artifact_location(uri: str, name: str) -> str | None:
    """Beside a SQLite store's file (MLflow would put them under the current directory)."""
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        return (db.parent.absolute() / "mlartifacts" / name).as_uri()
    return None


def _connect(uri: str, name: str) -> tuple["MlflowClient", str]:
    """A client of the store at `uri` and the id of experiment `name` (created where missing);
    a store that cannot be reached or opened is one line."""
    with _fail_fast():
        try:
            client = _client(uri)
            exp = client.get_experiment_by_name(name)
            if exp is None:
                return client, client.create_experiment(name, artifact_location=_artifact_location(uri, name))
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - whatever the store's driver raises: one line
            first = " ".join(str(e).split())[:300]
            raise UserError(f"cannot use the MLflow tracking URI {uri}: {type(e).__name__}: {first}; "
                            "check it (a server's http://HOST:PORT, or sqlite:///PATH/mlflow.db)") from None
    if exp.lifecycle_stage != "active":
        raise UserError(f"MLflow experiment {name!r} at {uri} is deleted; restore it or give another --experiment")
    return client, exp.experiment_id


def _runs(client: "MlflowClient", exp_id: str) -> list[Any]:
    out, token = [], None
    while True:
        page = client.search_runs([exp_id], max_results=1000, page_token=token)
        out += list(page)
        token = page.token
        if not token:
            return out


def _label(group: dict[str, Any], keys: Sequence[str]) -> str:
    """A group as a metric-name prefix: MLflow takes letters, digits, _ - . space : / only."""
    from dropbench.analysis.taxonomy import key_str

    text = " ".join(f"{k}:{key_str(group.get(k))}" for k in keys if key_str(group.get(k))) or "all"
    return "".join(ch if ch.isalnum() or ch in "_-. :" else "_" for ch in text)


def _log_metrics(client: "MlflowClient", run_id: str, metrics: Sequence[tuple[str, float, int]]) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    for i in range(0, len(metrics), BATCH):
        client.log_batch(run_id, metrics=[Metric(k, v, now, step) for k, v, step in metrics[i:i + BATCH]])


def _child(client: "MlflowClient", exp_id: str, parent: str, folder: Folder, row: Row) -> None:
    from mlflow.entities import Param, RunTag

    rid = row["run_id"]
    seed = row.get("seed")
    run = client.create_run(exp_id, run_name=f"{rid} seed={seed}" if seed is not None else rid,
                            tags={"mlflow.parentRunId": parent, KIND: "run", **run_tags(row)})
    child = run.info.run_id
    ps = [Param(k, v[:6000]) for k, v in params(folder, row).items()]
    for i in range(0, len(ps), 100):
        client.log_batch(child, params=ps[i:i + 100])
    last = max((int(p["epoch"]) for p in folder.curves.get(rid, [])), default=0)
    _log_metrics(client, child, [*curve_metrics(folder.curves.get(rid, [])), *((k, v, last) for k, v in final_metrics(row).items())])
    if rid in folder.configs:
        client.log_text(child, folder.configs[rid], "config.yaml")
    client.log_batch(child, tags=[RunTag(DONE_TAG, "true")])
    client.set_terminated(child, "FINISHED" if row.get("status") == "ok" else "FAILED")


def _parent_stats(client: "MlflowClient", parent: str, folder: Folder) -> None:
    """The report's group statistics on the parent run, step = the number of finished runs they
    are over (so an export while the sweep ran and a later one both stay readable), the summary
    CSV and the plots as artifacts."""
    from dropbench.plots import DPI, build_figures
    from dropbench.report import build_report, render_report

    from dropbench.analysis.grouping import by_keys

    # Groups named by reg always, then the other swept keys: a sweep exported while running, with
    # one regularizer finished so far, names its groups as the finished sweep will.
    rep = build_report([folder.path], by=["reg", *[k for k in by_keys(folder.rows, None) if k != "reg"]])
    ok = sum(1 for r in folder.rows if r.get("status") == "ok")
    metrics = [(f"{_label(s, rep.keys)}/{k}", float(s[k]), ok) for s in rep.summary for k in GROUP_STATS
               if isinstance(s.get(k), (int, float)) and s.get(k) == s.get(k)]
    _log_metrics(client, parent, metrics)
    client.log_text(parent, render_report(rep, "csv"), "summary.csv")
    with tempfile.TemporaryDirectory() as tmp:
        for name, fig in build_figures(folder.path).items():
            fig.savefig(Path(tmp) / name, format="png", dpi=DPI)
        client.log_artifacts(parent, tmp, "plots")


def to_mlflow(folder: Path | str, uri: str, experiment: str | None = None, rows: Sequence[Row] | None = None,
              curves: Sequence[Row] | None = None) -> ExportResult:
    """Export a results folder to the MLflow tracking store at `uri`; see the module's docstring.
    `rows` and `curves`: the folder's runs.csv and curves.csv rows, where already read."""
    data = read_folder(folder, rows, curves)
    name = experiment or data.name
    client, exp_id = _connect(uri, name)
    from mlflow.entities import RunTag

    where = str(data.path.resolve())
    existing = _runs(client, exp_id)
    parents = [r for r in existing if r.data.tags.get(KIND) == "sweep" and r.data.tags.get(FOLDER_TAG) == where]
    if parents:
        parent = parents[0].info.run_id
    else:
        parent = client.create_run(exp_id, run_name=data.name, tags={KIND: "sweep", FOLDER_TAG: where}).info.run_id
    done: set[str] = set()
    for r in existing:
        if r.data.tags.get("mlflow.parentRunId") == parent and "run_id" in r.data.tags:
            if r.data.tags.get(DONE_TAG) == "true":
                done.add(r.data.tags["run_id"])
            else:  # an export stopped half way through this run: it is done again, whole
                client.delete_run(r.info.run_id)
    added, skipped = [], []
    for row in data.rows:
        if row["run_id"] in done:
            skipped.append(row["run_id"])
        else:
            _child(client, exp_id, parent, data, row)
            added.append(row["run_id"])
    count = str(len(data.rows))
    if added or client.get_run(parent).data.tags.get(COUNT_TAG) != count:
        _parent_stats(client, parent, data)
    tags = [RunTag(COUNT_TAG, count), RunTag("dropbench.partial", "true" if data.partial else "false")]
    if data.partial:
        tags.append(RunTag("dropbench.partial_note", data.partial[:5000]))
    client.log_batch(parent, tags=tags)
    client.update_run(parent, status="RUNNING" if data.partial else "FINISHED")
    return ExportResult(added, skipped, f"{uri} experiment {name!r} (id {exp_id}), parent run {parent}", data.partial)
