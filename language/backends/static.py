"""A fallback that calls no server: answers assembled from the YAML content, marked "static"."""

from __future__ import annotations

import hashlib

from .base import Backend, Reply, Request

OPENINGS = ("In short,", "Put simply,", "To answer directly,", "Here is the practical view:")
CLOSINGS = ("Check the service status and the relevant logs first, then change one thing at a time.",
            "Record what you observed and what you changed in the incident ticket.",
            "If the symptom persists, collect the logs and escalate with the exact timestamps.")


class StaticBackend(Backend):
    type = "static"
    model_type = "static"
    needs_endpoint = False

    @property
    def endpoints(self) -> tuple[str, ...]:
        return ("static:",)

    async def generate(self, client, endpoint: str, request: Request) -> Reply:
        ctx = request.context or {}
        h = int(hashlib.sha256(request.prompt.encode()).hexdigest(), 16)
        subject = ctx.get("term") or "this item"
        facts = ctx.get("description") or ctx.get("observation") or ctx.get("error") or ""
        text = (f"{OPENINGS[h % len(OPENINGS)]} {subject} matters here because it is part of how the estate "
                f"runs and is monitored. {facts} When it misbehaves, look at what changed recently, compare "
                f"the current readings with the usual ones for the host, and confirm the effect on the jobs and "
                f"users that depend on it. {CLOSINGS[(h >> 8) % len(CLOSINGS)]}")
        return Reply(text, "stop", 0, len(text.split()))
