"""The whole chain on one machine: database, central, simulated board, agent, a nurse."""
