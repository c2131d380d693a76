//! From timings tables to the coefficients file (DESIGN.md "Contracts").
