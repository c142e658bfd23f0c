"""mir's registry service: API, storage, lineage, audit, policy, CLI and client."""

__version__ = "0.1.0"
