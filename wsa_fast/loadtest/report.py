"""What a person sees: a live progress line while the load runs, and the table at the end."""

from __future__ import annotations

import sys

from . import results
from .results import fmt_ns


class Progress:
    """One line per tick on stderr: rewritten in place on a terminal, a plain line each otherwise."""

    def __init__(self, clients: int, stream=None, enabled: bool = True) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.clients = clients
        self.enabled = enabled
        self.last = {"t": 0.0, "answered": 0}

    def tick(self, tick: dict) -> None:
        if not self.enabled:
            return
        dt = tick["t"] - self.last["t"]
        rate = (tick["answered"] - self.last["answered"]) / dt if dt > 0 else 0.0
        self.last = tick
        lat = results.percentiles_ns(results.decode_hdr(tick["hist"]))
        line = (
            f"{tick['t']:6.1f}s  sent {tick['sent']:>12,}  answered {tick['answered']:>12,}  "
            f"{rate:>11,.0f}/s  p50 {fmt_ns(lat.get('p50')):>9}  p99 {fmt_ns(lat.get('p99')):>9}  "
            f"errors {tick['errors']:,}  clients {tick['connected']:,}/{self.clients:,}"
        )
        if self.tty:
            self.stream.write("\r\x1b[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def done(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()


def table(result: dict, missed_slos: list[str]) -> str:
    """The final table: counts, fails by code, throughput, latency percentiles, generator CPU."""
    s = results.summary(result)
    c = result["counts"]
    settings = result["settings"]
    if settings["rate"]:
        pacing = f"rate {format(settings['rate'], ',g')}/s (open loop)"
    else:
        pacing = f"window {settings['window']} (closed loop)"
    lines = [
        f"wsa-fast bench: {result['scenario']}{' ' + settings['method'] if settings.get('method') else ''}"
        f" against {', '.join(result['urls'])}  ({settings['clients']:,} clients, "
        f"{pacing}, "
        f"{settings['form']}, {result.get('parts', 1)} process{'es' if result.get('parts', 1) > 1 else ''})",
        "",
    ]
    rows = [
        ("sent", f"{c['sent']:,}"),
        ("answered", f"{c['answered']:,}"),
        ("failed", f"{c['failed']:,}"),
        ("lost", f"{c['lost']:,}"),
        ("duplicated", f"{c['duplicated']:,}"),
    ]
    for key in ("unknown", "garbled", "skipped", "disconnects"):
        if c.get(key):
            rows.append((key, f"{c[key]:,}"))
    for code, n in result["fails"].items():
        rows.append((f"  fail {code}", f"{n:,}"))
    m = result["measured"]
    unit = "logins/s" if result["scenario"] == "connect" else "msg/s"
    rows.append(
        (
            "throughput",
            f"{s['throughput']:,.0f} {unit} over {m['seconds']:.1f} s"
            + (" (interrupted)" if result.get("interrupted") else ""),
        )
    )
    lat = s["latency_ns"]
    for key in ("p50", "p90", "p99", "p99.9", "max"):
        rows.append((f"latency {key}", fmt_ns(lat.get(key))))
    gen = s["generator_us_per_msg"]
    rows.append(
        (
            "generator CPU",
            "-" if gen is None else f"{gen:.2f} µs/msg ({s['generator_util']:.0%} of a core summed over processes)",
        )
    )
    server = result.get("server")
    if server and server.get("cpu_us_per_msg") is not None:
        rows.append(("server CPU", f"{server['cpu_us_per_msg']:.2f} µs/msg ({server['util']:.0%} of a core)"))
    width = max(len(k) for k, _ in rows)
    lines += [f"  {k:<{width}}  {v}" for k, v in rows]
    if result.get("bad_samples"):
        lines += ["", "first unexpected frames:"] + [f"  {x}" for x in result["bad_samples"]]
    verdict = results.problems(result) + missed_slos
    lines += ["", "FAIL: " + "; ".join(verdict) if verdict else "OK"]
    return "\n".join(lines)
