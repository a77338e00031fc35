"""Offered traffic exceeds the link: throughput plateaus at capacity while latency soars."""

from dataclasses import dataclass

import numpy as np
from polars import Expr

from ..catalogue import C_NET
from ..phrases import Phrases
from .base import AnomalyKind, EventBatch, KindParams, param, register, rise_hold_fall


@dataclass(frozen=True)
class NetworkCongestionParams(KindParams):
    max_extra_load: float = param(2.0, 0.1, 20.0, "extra offered traffic at severity 1, as a multiple of link capacity")


def build(batch: EventBatch, p: NetworkCongestionParams) -> np.ndarray:
    owner, t_rel, steps = batch.positions()
    profile = batch.empty_profile()
    rise = 1 + (batch.uniform[owner, 0] * np.minimum(3, steps // 4)).astype(np.int64)
    shape = rise_hold_fall(t_rel, steps, rise, np.maximum(1, steps // 6))
    profile[:, C_NET] = batch.severity[owner] * p.max_extra_load * shape
    return profile


# how an answer may name this kind (matched as whole words by the verifier of grounded answers)
NAMES = ("network congestion", "congestion", "congested", "saturated link", "link saturation",
         "bandwidth saturation", "saturated network", "packet loss", "network saturation", "link is saturated",
         "network is saturated", "link is congested")


def explain(say: Phrases) -> tuple[Expr, ...]:
    """The phrasings of its explanation, from what a sample shows."""
    return (
        say.text("Network congestion: {}; inbound traffic is {}.", say.moved("network_latency_ms", 2),
                 say.now("network_in_mbps")),
        say.text("The link is saturated: {}. Latency is {}.", say.moved("network_in_mbps"),
                 say.now("network_latency_ms", 2)),
        say.text("{}; it was {}. Queues on the link are full.", say.moved("network_latency_ms", 2),
                 say.ago("network_latency_ms", 2)),
    )


KIND = register(AnomalyKind(
    name="network_congestion", params=NetworkCongestionParams, primary="network_latency_ms",
    affects=("network_latency_ms", "network_in_mbps", "network_out_mbps", "load_average", "cpu_usage"),
    build=build,
    description="link saturated: inbound throughput plateaus at capacity, latency rises, softirq CPU",
    names=NAMES, explain=explain,
))
