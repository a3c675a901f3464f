"""Local stand-ins of the five runbooks' systems, made of real parts, for `pytest -m daily`.

`python -m replicas agentauri` starts one, runs the suite with the system's seed inventory
(inventories/agentauri.yml) pointed at it, writes the report and stops. Each system's module
says what it is made of; its `drills` are the runbook's common issues as injected faults.
"""

import os
from importlib import import_module

# the stand-in gRPC servers run in this process: their handshake notices are not the run's output
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

SYSTEMS = {
    "ava": "replicas.ava:Ava",
    "accunode": "replicas.accunode:AccuNode",
    "agentauri": "replicas.agentauri:AgentAuri",
    "awe": "replicas.awe:Awe",
    "aiplatform": "replicas.aiplatform:AiPlatform",
}


def replica_class(name: str):
    """The Replica subclass of a system (imported on demand: each pulls its own servers)."""
    module, _, cls = SYSTEMS[name].partition(":")
    return getattr(import_module(module), cls)
