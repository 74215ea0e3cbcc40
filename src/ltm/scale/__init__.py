"""Past one machine: ltm's data stages as datatrove pipeline steps and their executors (extra
`scale`), and experiment grids submitted to a cluster. Nothing here is imported by the core CLI
until a command asks for it."""
