"""``wsa-fast bench URL``: the load tester users point at their own deployment.

One concern per file: ``command`` (the command line), ``messages`` (frame templates),
``credentials`` (logins), ``driver`` (one load-generating process), ``procs`` (several, merged),
``results`` (histograms, merging, SLOs, JSON), ``report`` (progress line and final table),
``plot`` (the PNG), ``proctree`` (a local server's CPU and memory). The per-message work is the
compiled ``wsa_fast._loadgen``.
"""
