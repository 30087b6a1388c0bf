"""The `omstream` command line: one module per command group, each command a thin call into the runtime.

The invocation's `Settings` are built once, on first use, and handed to each command (`_common`).
"""

from __future__ import annotations

import logging

import click

from omstream.cli import bench, embedded, ops, pipeline, report, serve


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="omstream", prog_name="omstream", message="%(prog)s %(version)s")
def main() -> None:
    """OMStream: user-behaviour analytics over Kafka, Faust and ClickHouse."""
    # Salt, once imported, sets the root logger to its lowest level unless logging has a handler:
    # then every library's debug call (aiokafka's, once per record sent) builds a record no one wants.
    logging.basicConfig(level=logging.WARNING, format="%(message)s")


for command in (
    embedded.demo,
    embedded.up,
    pipeline.generate,
    pipeline.replay,
    report.report,
    report.alerts,
    ops.ops,
    serve.worker,
    serve.sink,
    serve.control,
    serve.master,
    serve.migrate,
    serve.retention,
    bench.bench,
):
    main.add_command(command)
