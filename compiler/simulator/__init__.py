"""The Simulator backend API (shared/spec/simulator-backend-api.md) over
Tessera: pydantic schemas in ``compiler.simulator.schema.base``, the calls
in ``compiler.simulator.api`` (docs/simulator_api.md)."""
