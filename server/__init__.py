"""OncoFed ServerApp: aggregation, server-side evaluation, run store, checkpoints."""
