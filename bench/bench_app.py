"""The app the bench serves (`wsa-fast serve --app bench.bench_app:app`, from the repo root).

The `handler` scenarios: a request answered by a plain Python function, so the bench measures
what the gateway adds around user code: `bench@v1/echo` (sync), `bench@v1/echo_async` (the same
as a coroutine function) and `bench@v1/refuse` (raises WSAError: a fail response).
"""

from wsa_fast import App, WSAError

app = App()


@app.request("bench@v1/echo")
def echo(ctx, params):
    return params  # not a str and not None: a success response with `data` = the params


@app.request("bench@v1/echo_async")
async def echo_async(ctx, params):
    return params


@app.request("bench@v1/refuse")
def refuse(ctx, params):
    raise WSAError("CONFLICT")
