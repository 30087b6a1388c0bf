"""`omstream bench …`: performance targets, measured on this machine with the real broker and chDB.

- `throughput`: ingest, end-to-end stream rates (beside a plain consumer and the peers, each a module:
  Quix Streams `quix_peer`, Pathway `pathway_peer`, Bytewax `bytewax_peer`; `_peer` is what they share),
  the report's time, and what readers of the query endpoint cost the sink;
- `scale`: the full pipeline at the data set's scale, checked against the batch SQL;
- `control`: the control plane's publish-to-result latency and sustained commands/s.
"""


class BenchFailed(RuntimeError):
    """A benchmark run that could not measure what it measures (a service failed, a stage timed out)."""
