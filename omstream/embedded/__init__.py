"""The embedded runtime: everything of `omstream up` and `demo` on one machine, as child processes.

- `stack`: a Tansu broker spawned for a run, the sink and the workers, waiting until events are stored;
- `control_plane`: IDCs bj and sh with two masters each, the control service, the demo operator;
- `supervisor`: children that die with the run, one run per state directory, restarts with backoff;
- `up`, `demo`: the two commands' runs;
- `running`: finding the broker and the query endpoint of a running `up` from another command;
- `accept`: the accepted event times in words, and whether a file's events are among them;
- `progress`: long work (generating, replaying) with a progress bar.
"""
