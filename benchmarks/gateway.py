"""The model gateway's cost on loopback: added latency per request and per streamed token, and
throughput with 50 concurrent streams, each against a direct call to the fake Messages API in
the same run (the baseline).

    python -m benchmarks.gateway [--requests 200] [--streams 50]

Bounded in count (requests, streams) and in time (every call has a 60 s timeout). The fake is
a threaded Python server, as slow as the gateway or slower, so the ratios say what the gateway
adds to a fast upstream; against the real API (hundreds of milliseconds a call) the added
milliseconds are what counts.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anthropic
from testbed.fakes.anthropic_api import API_KEY, FakeAnthropic, Reply

from agentfactory.core.grants import Grant, mint
from agentfactory.gateway.running import in_thread
from agentfactory.gateway.server import Gateway

SIGNING = b"benchmark-signing-key-0123456789abcdef"
MODEL = "claude-sonnet-4-6"
HI = [{"role": "user", "content": "hi"}]
SHORT = Reply([{"type": "text", "text": "ok"}], stop_reason="end_turn")
#: About 2,000 output tokens (the fake's four characters a token), in 167 deltas.
LONG = Reply([{"type": "text", "text": "stream " * 1143}], stop_reason="end_turn")


async def _key(grant: Grant) -> str:
    del grant
    return API_KEY


def _client(url: str, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=key, base_url=url, max_retries=0, timeout=60)


def _whole(client: anthropic.Anthropic) -> float:
    began = time.perf_counter()
    client.messages.create(model=MODEL, max_tokens=100, messages=HI)  # type: ignore[arg-type]
    return time.perf_counter() - began


def _streamed(client: anthropic.Anthropic) -> tuple[float, int]:
    began = time.perf_counter()
    with client.messages.stream(model=MODEL, max_tokens=4000, messages=HI) as stream:  # type: ignore[arg-type]
        message = stream.get_final_message()
    return time.perf_counter() - began, message.usage.output_tokens


def measure(url: str, key: str, requests: int, streams: int) -> dict[str, Any]:
    client = _client(url, key)
    _whole(client)  # warm: connections, the SDK's first-call work
    latencies = [_whole(client) for _ in range(requests)]
    streamed = [_streamed(client) for _ in range(10)]
    client.close()
    clients = [_client(url, key) for _ in range(streams)]
    began = time.perf_counter()
    with ThreadPoolExecutor(streams) as pool:
        done = list(pool.map(_streamed, clients))
    wall = time.perf_counter() - began
    for each in clients:
        each.close()
    return {
        "p50": statistics.median(latencies), "p95": statistics.quantiles(latencies, n=20)[18],
        "per_token": statistics.median(s / max(1, t) for s, t in streamed),
        "streams_per_second": len(done) / wall,
        "tokens_per_second": sum(t for _, t in done) / wall,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--streams", type=int, default=50)
    args = parser.parse_args()
    script = [SHORT] * (args.requests + 1) + [LONG] * (10 + args.streams)
    out = sys.stdout.write
    figures = {}
    with FakeAnthropic(list(script)) as fake:
        figures["direct"] = measure(fake.url, API_KEY, args.requests, args.streams)
    with FakeAnthropic(list(script)) as fake:
        gateway = Gateway(SIGNING, _key, upstream=fake.url)
        grant = Grant(namespace="bench", factory="bench", task="t", attempt="t-implement-1",
                      expires=time.time() + 3600, max_tokens=10**12,
                      requests_per_minute=100_000, concurrent_streams=args.streams)  # fmt: skip
        with in_thread(gateway) as url:
            figures["gateway"] = measure(url, mint(grant, SIGNING), args.requests, args.streams)
        spent = gateway.ledger.spent(grant.attempt_key)
    direct, through = figures["direct"], figures["gateway"]
    out("| figure | direct to the fake | through the gateway | added | ratio |\n")
    out("| --- | --- | --- | --- | --- |\n")
    for name, key, scale, unit in (
        ("latency per request, p50", "p50", 1000, "ms"),
        ("latency per request, p95", "p95", 1000, "ms"),
        ("time per streamed token", "per_token", 1e6, "us"),
    ):
        d, g = direct[key] * scale, through[key] * scale
        added = f"{g - d:+.2f} {unit}"
        out(f"| {name} | {d:.2f} {unit} | {g:.2f} {unit} | {added} | {g / d:.2f}x |\n")
    rates = (("streams per second, {n} at once", "streams_per_second"),
             ("streamed tokens per second, {n} at once", "tokens_per_second"))  # fmt: skip
    for name, key in rates:
        d, g = direct[key], through[key]
        out(f"| {name.format(n=args.streams)} | {d:,.1f} | {g:,.1f} | | {g / d:.2f}x |\n")
    out(f"\nThe gateway charged {spent.requests} requests, {spent.usage.total_tokens:,} tokens.\n")


if __name__ == "__main__":
    main()
