"""The app the bench serves (`wsa-fast serve --app bench.bench_app:app`, from the repo root).

`bench@v1/echo` is the `handler` scenario: a request answered by a plain sync Python
function, so the bench measures what the gateway adds around user code.
"""

from wsa_fast import App

app = App()


@app.request("bench@v1/echo")
def echo(ctx, params):
    return params  # not a str and not None: a success response with `data` = the params
