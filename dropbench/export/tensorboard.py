"""`dropbench export DIR --tensorboard LOGDIR`: a results folder as TensorBoard event files.

LOGDIR/<folder name>/<run_id>/ per run: its curve as scalars (step = epoch), its final metrics
as final/<metric> scalars, and an HParams session (the group keys and seed as hparams, the final
metrics as its metrics), so that the grid can be browsed and sorted in the HParams dashboard.
Written with tensorboard's own event writer and protos (no TensorFlow, no torch). A run's folder
appears by one rename, so exporting again (a sweep exported while running) adds only the runs
missing. Needs the `tensorboard` extra, imported here only.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

from dropbench.analysis.grouping import by_keys
from dropbench.analysis.taxonomy import key_str
from dropbench.errors import UserError
from dropbench.export import ExportResult, Folder, Row, curve_metrics, final_metrics, missing_extra, number, read_folder

FINAL = "final/"


def _summary(tag: str, plugin_content: bytes) -> Any:
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams.metadata import PLUGIN_NAME

    meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name=PLUGIN_NAME, content=plugin_content))
    return Summary(value=[Summary.Value(tag=tag, metadata=meta)])


def _hparams(values: dict[str, Any], metric_tags: Sequence[str], status_ok: bool) -> list[Any]:
    """The experiment, session-start and session-end summaries of one run (the HParams plugin's
    protos, as tensorboard's own hparams API writes them)."""
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    start = plugin_data_pb2.SessionStartInfo()
    infos = []
    for k, v in values.items():
        if isinstance(v, float):
            start.hparams[k].number_value = v
            infos.append(api_pb2.HParamInfo(name=k, type=api_pb2.DataType.Value("DATA_TYPE_FLOAT64")))
        else:
            start.hparams[k].string_value = str(v)
            infos.append(api_pb2.HParamInfo(name=k, type=api_pb2.DataType.Value("DATA_TYPE_STRING")))
    exp = api_pb2.Experiment(hparam_infos=infos, metric_infos=[api_pb2.MetricInfo(name=api_pb2.MetricName(tag=t)) for t in metric_tags])
    version = metadata.PLUGIN_DATA_VERSION
    end = plugin_data_pb2.SessionEndInfo(status=api_pb2.Status.Value("STATUS_SUCCESS" if status_ok else "STATUS_FAILURE"))
    return [
        _summary(metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(experiment=exp, version=version).SerializeToString()),
        _summary(metadata.SESSION_START_INFO_TAG,
                 plugin_data_pb2.HParamsPluginData(session_start_info=start, version=version).SerializeToString()),
        _summary(metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=end, version=version).SerializeToString()),
    ]


def _write_run(folder: Folder, row: Row, keys: Sequence[str], metric_tags: Sequence[str], into: Path) -> None:
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter(str(into))
    try:
        def scalar(tag: str, value: float, step: int) -> None:
            writer.add_event(Event(step=step, summary=Summary(value=[Summary.Value(tag=tag, simple_value=value)])))

        points = folder.curves.get(row["run_id"], [])
        for tag, value, step in curve_metrics(points):
            scalar(tag, value, step)
        last = max((int(p["epoch"]) for p in points), default=0)
        for k, v in final_metrics(row).items():
            scalar(FINAL + k, v, last)
        values: dict[str, Any] = {}
        for k in [*keys, "seed"]:
            v = row.get(k)
            values[k] = x if (x := number(v)) is not None and not isinstance(v, str) else key_str(v)
        values["run_id"] = row["run_id"]
        for s in _hparams(values, metric_tags, row.get("status") == "ok"):
            writer.add_event(Event(step=0, summary=s))
    finally:
        writer.close()


def to_tensorboard(folder: Path | str, logdir: Path | str, rows: Sequence[Row] | None = None,
                   curves: Sequence[Row] | None = None) -> ExportResult:
    """Export a results folder into LOGDIR/<folder name>/<run_id>/; see the module's docstring."""
    try:
        import tensorboard  # noqa: F401
        from tensorboard.summary.writer.event_file_writer import EventFileWriter  # noqa: F401
    except ImportError as e:
        raise missing_extra("TensorBoard", "tensorboard", e) from None
    from dropbench.atomic import make_dirs, owner
    from dropbench.oserrors import writing

    data = read_folder(folder, rows, curves)
    root = Path(logdir) / data.name
    keys = [k for k in by_keys(data.rows, None) if k != "sweep"]
    metric_tags = sorted({FINAL + k for r in data.rows for k in final_metrics(r)})
    added, skipped = [], []
    if Path(logdir).exists() and not Path(logdir).is_dir():
        raise UserError(f"--tensorboard {logdir} is a file, not a folder; give a log folder")
    with writing("--tensorboard LOGDIR", logdir):
        make_dirs(root)
        for row in data.rows:
            final = root / row["run_id"]
            if final.is_dir():
                skipped.append(row["run_id"])
                continue
            tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{row['run_id']}.{owner()}."))
            try:
                _write_run(data, row, keys, metric_tags, tmp)
                tmp.rename(final)  # a run's events appear whole or not at all
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            added.append(row["run_id"])
    return ExportResult(added, skipped, str(root), data.partial)
