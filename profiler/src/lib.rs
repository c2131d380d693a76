//! Drives a model over (batch, input, output) grids and records every timed step.
