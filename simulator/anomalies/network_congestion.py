"""Offered traffic exceeds the link: throughput plateaus at capacity while latency soars."""

from dataclasses import dataclass

import numpy as np

from ..catalogue import C_NET
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


KIND = register(AnomalyKind(
    name="network_congestion", params=NetworkCongestionParams, primary="network_latency_ms",
    affects=("network_latency_ms", "network_in_mbps", "network_out_mbps", "load_average", "cpu_usage"),
    build=build,
    description="link saturated: inbound throughput plateaus at capacity, latency rises, softirq CPU",
))
