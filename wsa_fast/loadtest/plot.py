"""``--plot out.png``: latency over time (per second) and the latency distribution of the whole run.

matplotlib is an optional extra (``pip install 'wsa-fast[plot]'``): importing this module
without it raises ImportError with that advice, before any load runs.
"""

from __future__ import annotations

from . import results

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:  # pragma: no cover - depends on the environment
    raise ImportError("--plot needs matplotlib: pip install 'wsa-fast[plot]' (or pip install matplotlib)") from None

# Percentiles drawn in the distribution, as in HDR percentile plots: ever closer to 100.
DISTRIBUTION = (0, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 99.995, 99.999, 100)


def draw(result: dict, path: str) -> None:
    fig, (over_time, spread) = plt.subplots(1, 2, figsize=(12, 4.8))
    ticks = [t for t in result["timeline"] if t["answered"]]
    times: list[float] = []
    series: dict[str, list[float]] = {"p50": [], "p99": [], "max": []}
    for t in ticks:
        lat = results.percentiles_ns(results.decode_hdr(t["hist"]))
        if lat:
            times.append(t["t"])
            for key in series:
                series[key].append(lat[key] / 1e6)
    for key, style in (("p50", "-o"), ("p99", "-s"), ("max", ":^")):
        over_time.plot(times, series[key], style, markersize=3, label=key)
    over_time.set_yscale("log")
    over_time.set_xlabel("seconds since the load started")
    over_time.set_ylabel("latency, ms (per second)")
    over_time.set_title("latency over time")
    over_time.grid(True, which="both", alpha=0.3)
    over_time.legend()

    hdr = results.decode_hdr(result["histogram"])
    if hdr.get_total_count():
        qs = [q for q in DISTRIBUTION if q < 100]
        x = [1 / (1 - q / 100) for q in qs] + [1 / (1 - 99.9999 / 100)]
        y = [hdr.get_value_at_percentile(q) / 1e6 for q in qs] + [hdr.get_max_value() / 1e6]
        spread.plot(x, y, "-o", markersize=3)
        spread.set_xscale("log")
        spread.set_xticks([1, 10, 100, 1000, 10000, 100000, 1000000])
        spread.set_xticklabels(["0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "max"])
    spread.set_yscale("log")
    spread.set_xlabel("percentile")
    spread.set_ylabel("latency, ms")
    spread.set_title("latency distribution (measured window)")
    spread.grid(True, which="both", alpha=0.3)

    s = result["settings"]
    load = f"rate {s['rate']:,g}/s" if s["rate"] else f"window {s['window']}"
    fig.suptitle(
        f"wsa-fast bench {result['scenario']}: {s['clients']:,} clients, {load}, {s['form']}, "
        f"{results.summary(result)['throughput']:,.0f}/s"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
