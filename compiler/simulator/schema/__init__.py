"""The Simulator API's parameter schemas (``compiler.simulator.schema.base``)."""
