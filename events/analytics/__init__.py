"""`comet analytics`: the faust-streaming process that turns run, stage, attempt and deployment
events into insight facts in Postgres (docs/decisions/0025). Off the critical path."""
