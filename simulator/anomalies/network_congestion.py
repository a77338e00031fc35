"""Offered traffic exceeds the link: throughput plateaus at capacity while latency soars."""

from dataclasses import dataclass

import numpy as np
from polars import Expr

from ..catalogue import C_NET
from ..phrases import Phrases
from .base import AnomalyKind, EventBatch, KindParams, Shape, envelope, param, register


@dataclass(frozen=True)
class NetworkCongestionParams(KindParams):
    max_extra_load: float = param(2.0, 0.1, 20.0, "extra offered traffic at severity 1, as a multiple of link capacity")


# offered traffic builds as clients pile on and retry (NAB iio_us-east-1_i-a2eb1cd9 NetworkIn: a
# 5-point climb to the peak, then a decay over 8+ points), varies with the retries while the link
# is saturated, and drains as the backlog clears
SHAPE = Shape(onset=(0.05, 0.2), recovery=(0.1, 0.25), tail=0.2, sigma=0.2, phi=0.6)


def build(batch: EventBatch, p: NetworkCongestionParams) -> np.ndarray:
    owner, _, _ = batch.positions()
    profile = batch.empty_profile()
    profile[:, C_NET] = batch.severity[owner] * p.max_extra_load * envelope(batch, SHAPE)
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
